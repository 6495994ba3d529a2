"""`orderflow-sim`: generate the store, land simulated days, catch up to yesterday.

Exit codes: 0 success, 2 a request that cannot be served as asked (store already present without
--force, no store yet, a date inside the history, bad options); the message says how to fix it.
"""

import argparse
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from simulator.days import catch_up, simulate_day, yesterday_utc
from simulator.errors import SimulatorError
from simulator.history import generate_store
from simulator.paths import default_data_dir

EXIT_USAGE = 2


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of orderflow-sim."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data dir (default: $ORDERFLOW_DATA_DIR, else ./data)",
    )
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run orderflow-sim with `argv` (default: the command line) and return the exit code."""
    args = build_parser().parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
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
