"""`orderflow-sim`: generate the store, land days and live orders, serve the carrier, set outages.

Exit codes: 0 success, 2 a request that cannot be served as asked (store already present without
--force, no store yet, a date inside the history, bad options); the message says how to fix it.
"""

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from foundation import layout, settings
from simulator.days import catch_up, simulate_day, yesterday_utc
from simulator.errors import SimulatorError
from simulator.history import generate_store
from simulator.live import run_live, stop_on_signals
from simulator.outages import (
    SYSTEMS,
    Faults,
    Outage,
    OutageStateError,
    outage_path,
    read_outage,
    write_outage,
)

EXIT_USAGE = 2


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _checked(name: str, parse, valid, problem: str):
    """An argparse type: `parse` the text, refuse a value that is not `valid` as `problem`."""

    def check(text: str):
        value = parse(text)
        if not valid(value):
            raise argparse.ArgumentTypeError(f"{problem}: {text!r}")
        return value

    check.__name__ = name  # argparse names the type in its message for unparsable text
    return check


_fraction = _checked("_fraction", float, lambda v: 0.0 <= v <= 1.0, "not a probability in 0..1")
_port = _checked("_port", int, lambda v: 0 <= v <= 65535, "not a TCP port (0..65535)")
_count = _checked("_count", int, lambda v: v >= 0, "must not be negative")
_positive = _checked("_positive", int, lambda v: v >= 1, "must be at least 1")
_seconds = _checked("_seconds", float, lambda v: v >= 0, "not a duration in seconds")
_timeout = _checked("_timeout", float, lambda v: v > 0, "not a timeout in seconds (more than 0)")


PIPELINE_DATA_DIR_HELP = (
    "data dir (default: the pipeline's, $ORDERFLOW_DATA_DIR, else data/ in the project)"
)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of orderflow-sim."""
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument("--data-dir", type=Path, default=None, help=PIPELINE_DATA_DIR_HELP)
    common = argparse.ArgumentParser(add_help=False, parents=[data_dir])
    common.add_argument("--corrupt-rate", type=float, default=0.0, metavar="R")
    common.add_argument("--duplicate-rate", type=float, default=0.0, metavar="R")
    common.add_argument("--seed", type=int, default=0, help="seed of the random streams")

    parser = argparse.ArgumentParser(
        prog="orderflow-sim", description="The store's order system export, simulated locally."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    generate = commands.add_parser(
        "generate", parents=[common], help="generate the catalog and the TPC-H order history"
    )
    generate.add_argument("--scale", type=float, required=True, metavar="SF")
    generate.add_argument("--batches", type=int, default=2, metavar="N", help="batches per day")
    generate.add_argument("--force", action="store_true", help="replace an existing store")

    day = commands.add_parser("day", parents=[common], help="land one simulated day")
    day.add_argument("day", type=_iso_date, metavar="YYYY-MM-DD")
    day.add_argument("--batches", type=int, default=3, metavar="N")

    catchup = commands.add_parser(
        "catch-up", parents=[common], help="land every missing simulated day up to yesterday"
    )
    catchup.add_argument("--until", type=_iso_date, default=None, metavar="YYYY-MM-DD")
    catchup.add_argument("--batches", type=int, default=3, metavar="N")

    live = commands.add_parser(
        "live",
        parents=[data_dir],
        help="keep landing a new batch of orders for today (UTC) every few seconds",
        description=(
            "Land the next free batch-NNN.jsonl.gz of today (UTC) every S seconds, with new "
            "orders whose keys follow the day's earlier batches; Ctrl-C or SIGTERM stops it."
        ),
    )
    live.add_argument(
        "--interval",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="seconds between ticks (default: 30)",
    )
    live.add_argument(
        "--batches-per-tick",
        type=_positive,
        default=1,
        metavar="N",
        help="batches per tick (default: 1)",
    )
    live.add_argument(
        "--until-count",
        type=_count,
        default=None,
        metavar="K",
        help="stop after K batches (default: run until stopped)",
    )
    live.add_argument(
        "--day",
        type=_iso_date,
        default=None,
        metavar="YYYY-MM-DD",
        help="land late batches for this day instead of today",
    )
    live.add_argument("--seed", type=int, default=0, help="seed of the random streams")

    carrier = commands.add_parser(
        "carrier",
        parents=[data_dir],
        help="serve the carrier's HTTP API (bearer token from $ORDERFLOW_CARRIER_TOKEN if set)",
        description=(
            "Serve the carrier's HTTP API. Its outage state is switched with "
            "`orderflow-sim outage carrier`; the fault options below hold for the server's life."
        ),
    )
    carrier.add_argument("--port", type=_port, required=True, metavar="N")
    carrier.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    carrier.add_argument(
        "--max-connections",
        type=_positive,
        default=32,
        metavar="N",
        help="requests served at once; more wait their turn (default: 32)",
    )
    carrier.add_argument(
        "--request-timeout",
        type=_timeout,
        default=30.0,
        metavar="S",
        help="seconds a client has to send its request, and to take the answer (default: 30)",
    )
    carrier.add_argument(
        "--max-body-bytes",
        type=_positive,
        default=16 * 1024 * 1024,
        metavar="N",
        help="largest request body accepted (default: 16 MiB; a 5000-order batch is ~2 MB)",
    )
    carrier.add_argument(
        "--database",
        default=None,
        metavar="URL",
        help="SQLAlchemy URL of the carrier's database (default: DATA/systems/carrier.sqlite)",
    )
    carrier.add_argument("--down", action="store_true", help="fail every call (503)")
    carrier.add_argument(
        "--outage-calls",
        type=_count,
        default=0,
        metavar="N",
        help="fail the first N calls",
    )
    carrier.add_argument(
        "--slow",
        type=_seconds,
        default=0.0,
        metavar="S",
        help="wait S seconds per call",
    )
    carrier.add_argument(
        "--error-rate",
        type=_fraction,
        default=0.0,
        metavar="P",
        help="fail calls with probability P",
    )
    carrier.add_argument(
        "--reject",
        nargs="+",
        action="extend",
        default=[],
        metavar="ORDERKEY",
        help="refuse these orders' shipments",
    )

    outage = commands.add_parser(
        "outage",
        parents=[data_dir],
        help="switch an outside system's faults on or off, or show them",
        description=(
            "Set or show the faults of an outside system: a state of the system, read by the "
            "pipeline's backends (and the carrier's HTTP server) at every call, so a running "
            "`dagster dev` sees a change at once. Each option changes its own fault and keeps the "
            "others; without options (or with --show) the state is printed."
        ),
    )
    outage.add_argument(
        "system",
        nargs="?",
        choices=SYSTEMS,
        metavar="SYSTEM",
        help=f"one of {', '.join(SYSTEMS)} (none: show every system)",
    )
    switch = outage.add_mutually_exclusive_group()
    switch.add_argument(
        "--down",
        action="store_true",
        help="fail every call (transient: steps retry, then the run fails and an admin is alerted)",
    )
    switch.add_argument("--up", action="store_true", help="end the outage (other faults stay)")
    outage.add_argument(
        "--slow", type=_seconds, default=None, metavar="S", help="wait S seconds per call (0: off)"
    )
    outage.add_argument(
        "--error-rate",
        type=_fraction,
        default=None,
        metavar="P",
        help="fail calls transiently with probability P (0: off)",
    )
    outage.add_argument(
        "--reject",
        nargs="+",
        default=None,
        metavar="KEY",
        help=(
            "refuse these idempotency keys for good (they replace the refused keys): inventory "
            "ORDER:LINE, carrier ORDER (the shipment is refused and compensated), notifier a "
            "message key (it bounces), accounting an entry key"
        ),
    )
    outage.add_argument("--clear", action="store_true", help="turn all the system's faults off")
    outage.add_argument("--show", action="store_true", help="print the state (the default)")
    return parser


def _pipeline_data_dir(args: argparse.Namespace) -> Path:
    # One data dir for the store, its outside systems and the pipeline, wherever this runs from.
    return args.data_dir or settings.data_dir()


def _outage(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    changes: dict[str, object] = {}
    if args.down or args.up:
        changes["down"] = args.down
    if args.slow is not None:
        changes["slow_seconds"] = args.slow
    if args.error_rate is not None:
        changes["error_rate"] = args.error_rate
    if args.reject is not None:
        changes["reject_keys"] = list(dict.fromkeys(args.reject))
    change = bool(changes) or args.clear
    if change and args.system is None:
        parser.error(
            "outage: name the SYSTEM whose faults to change, e.g. "
            "`orderflow-sim outage inventory --down`"
        )
    systems_dir = layout.systems_dir(_pipeline_data_dir(args))
    try:
        for system in [args.system] if args.system else SYSTEMS:
            path = outage_path(systems_dir, system)
            if change:
                before = Outage() if args.clear else read_outage(path)
                write_outage(path, before.model_copy(update=changes))
            print(f"{system}: {read_outage(path).describe()}", flush=True)
    except OutageStateError as exc:
        _stderr(f"orderflow-sim: error: {exc}")
        return EXIT_USAGE
    return 0


def _serve_carrier(args: argparse.Namespace) -> int:
    # Imported here: the other commands need no SQLAlchemy, and start faster.
    from foundation.sqldb.connections import sqlite_url
    from simulator.carrier_server import Limits, run

    faults = Faults(
        down=args.down,
        outage_calls=args.outage_calls,
        slow_seconds=args.slow,
        error_rate=args.error_rate,
        reject_keys=args.reject,
    )
    systems_dir = layout.systems_dir(_pipeline_data_dir(args).absolute())
    database = args.database or sqlite_url(systems_dir / "carrier.sqlite")
    try:
        run(
            args.host,
            args.port,
            database,
            faults,
            token=os.environ.get("ORDERFLOW_CARRIER_TOKEN") or None,
            on_ready=lambda url: print(f"carrier listening on {url}", flush=True),
            systems_dir=systems_dir,
            limits=Limits(
                max_connections=args.max_connections,
                request_timeout=args.request_timeout,
                max_body_bytes=args.max_body_bytes,
            ),
        )
    except OSError as exc:
        _stderr(
            f"orderflow-sim: error: cannot listen on {args.host}:{args.port} ({exc.strerror}); "
            "choose another --port or --host"
        )
        return EXIT_USAGE
    return 0


def _live(args: argparse.Namespace, data_dir: Path) -> int:
    try:
        with stop_on_signals() as stop:
            run_live(
                data_dir,
                interval=args.interval,
                batches_per_tick=args.batches_per_tick,
                until_count=args.until_count,
                day=args.day,
                seed=args.seed,
                report=lambda batch: print(batch.describe(), flush=True),
                stop=stop,
            )
    except SimulatorError as exc:
        _stderr(f"orderflow-sim: error: {exc}")
        return EXIT_USAGE
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run orderflow-sim with `argv` (default: the command line) and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    data_dir = _pipeline_data_dir(args)
    if args.command == "carrier":
        return _serve_carrier(args)
    if args.command == "outage":
        return _outage(args, parser)
    if args.command == "live":
        return _live(args, data_dir)
    defects = {
        "corrupt_rate": args.corrupt_rate,
        "duplicate_rate": args.duplicate_rate,
        "seed": args.seed,
    }
    try:
        if args.command == "generate":
            summary = generate_store(
                data_dir,
                args.scale,
                batches=args.batches,
                force=args.force,
                progress=_stderr,
                **defects,
            )
            print(
                f"generated {summary.orders} orders ({summary.lines} lines) in {summary.files} "
                f"files over {summary.days} days; {summary.corrupted} corrupted, "
                f"{summary.duplicated} duplicated"
            )
        elif args.command == "day":
            files = simulate_day(data_dir, args.day, batches=args.batches, **defects)
            print(f"{args.day}: {len(files)} batch files in {files[0].parent}")
        else:
            until = args.until or yesterday_utc()
            days = catch_up(
                data_dir, until=until, batches=args.batches, progress=_stderr, **defects
            )
            span = f" ({days[0]} .. {days[-1]})" if days else ""
            print(f"caught up to {until}: wrote {len(days)} days{span}")
    except SimulatorError as exc:
        _stderr(f"orderflow-sim: error: {exc}")
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
