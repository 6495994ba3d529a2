"""Landing-zone sensor: one order-to-cash run per day whose batch files changed, once per version.

Each tick lists `landing/orders/` once and rescans only the day directories that are new, whose
mtime moved (the atomic rename of a new or re-sent batch moves it) or that are among the latest days
(an in-place rewrite does not move it). A day is requested with run_key `<day>:<hash of its sorted
(file, version) pairs>`, so each new or replaced file version leads to one run, and files that did
not change are never run twice: Dagster does not launch a run_key it has already launched.
"""

import bisect
import hashlib
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg

from foundation.jobs import order_to_cash_job
from foundation.layout import zone_orders_dir
from foundation.partitions import HISTORY_START, daily_partitions
from resources.order_system import (
    BATCH_SUFFIXES,
    DAY_FOLDER_RULE,
    Batch,
    LandingZoneOrderSystem,
    describe,
    parse_day,
)

# Work per tick is bounded: a first tick over years of history is spread over several ticks.
MAX_DAYS_PER_TICK = 200
# Rewriting a file in place keeps its directory's mtime; only these latest days catch that.
RECENT_DAYS = 3
# Set to "all" to have the very first tick request every day found (e.g. a fresh landing zone).
FIRST_TICK_ENV = "ORDERFLOW_SENSOR_FIRST_TICK"
# A directory's mtime has a granularity (a few ms on ext4, 1-2 s on older file systems): one
# modified less than this before a scan is rescanned by the next tick before it is trusted.
SETTLE_NS = 2_000_000_000
CURSOR_VERSION = 1
# Enough to tell the states of one day apart.
STATE_HASH_CHARS = 16


@dataclass(frozen=True)
class DayRequest:
    """A day whose batch files changed since it was last requested."""

    day: str
    state: str
    files: int

    @property
    def run_key(self) -> str:
        """The day and the hash of its (file, version) set: the same files never run twice."""
        return f"{self.day}:{self.state}"


@dataclass
class LandingCursor:
    """What the sensor has seen, kept to a few hundred bytes: Dagster stores it with every tick.

    `spans` holds the days scanned at least once, as date ranges. A known day without a
    `detail` entry is folded under the `watermark`: it was scanned after its directory's last
    change, whose mtime is at most the watermark, so it is rescanned only once its mtime moves
    past it. `detail` keeps (directory mtime_ns, state hash) for the others: the latest days,
    days that changed a moment ago (negated mtime: rescan next tick) and days still to rescan.
    `newest` is the newest directory mtime the tick at `tick_ns` (wall clock) saw.
    """

    watermark: int = 0
    spans: list[tuple[int, int]] = field(default_factory=list)
    detail: dict[str, tuple[int, str]] = field(default_factory=dict)
    newest: int = 0
    tick_ns: int = 0

    def knows(self, day: str) -> bool:
        """Whether `day` (YYYY-MM-DD) was scanned before."""
        ordinal = date.fromisoformat(day).toordinal()
        index = bisect.bisect_right(self.spans, (ordinal, math.inf)) - 1
        return index >= 0 and self.spans[index][0] <= ordinal <= self.spans[index][1]

    def moved(self, day: str, mtime: int) -> bool:
        """Whether the mtime of `day`'s directory says it may have changed since its last scan."""
        if day in self.detail:
            return self.detail[day][0] != mtime
        return not self.knows(day) or mtime > self.watermark

    def changed(self, day: str, mtime: int, state: str) -> bool:
        """Whether `day`, just scanned to `state`, holds other (file, version) pairs than before."""
        if day in self.detail:
            return self.detail[day][1] != state
        # A folded day's last state is not kept: its mtime moved because a file came, went or
        # was replaced. Merely touched, it gets its last run_key again, which Dagster skips.
        return self.moved(day, mtime)

    @classmethod
    def build(
        cls,
        watermark: int,
        known: Iterable[str],
        detail: dict[str, tuple[int, str]],
        newest: int = 0,
        tick_ns: int = 0,
    ) -> "LandingCursor":
        """A cursor over the `known` days, folding consecutive ones into ranges."""
        spans: list[tuple[int, int]] = []
        for ordinal in sorted(date.fromisoformat(day).toordinal() for day in known):
            if spans and ordinal == spans[-1][1] + 1:
                spans[-1] = (spans[-1][0], ordinal)
            else:
                spans.append((ordinal, ordinal))
        return cls(watermark, spans, dict(sorted(detail.items())), newest, tick_ns)

    @classmethod
    def from_json(cls, text: str | None) -> "LandingCursor":
        """Parse a cursor (empty: nothing seen yet); ValueError if it is not one of ours."""
        if not text:
            return cls()
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict) or raw.get("v") != CURSOR_VERSION:
                raise ValueError(f"not a version {CURSOR_VERSION} landing cursor")
            spans = sorted(_parse_span(span) for span in raw["k"])
            detail = {}
            for day, (mtime, state) in raw["d"].items():
                date.fromisoformat(day)
                detail[day] = (int(mtime), str(state))
            return cls(int(raw["w"]), spans, detail, int(raw["m"]), int(raw["t"]))
        except (TypeError, KeyError, AttributeError) as error:
            raise ValueError(f"malformed landing cursor: {error!r}") from error

    def to_json(self) -> str:
        """Compact JSON: {"v", "w": watermark, "m": newest, "t": tick, "k": [ranges], "d": {}}."""
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                "w": self.watermark,
                "m": self.newest,
                "t": self.tick_ns,
                "k": [_format_span(span) for span in self.spans],
                "d": {day: [mtime, state] for day, (mtime, state) in self.detail.items()},
            },
            separators=(",", ":"),
        )


def _parse_span(text: str) -> tuple[int, int]:
    first, _, last = text.partition("/")
    start = date.fromisoformat(first).toordinal()
    end = date.fromisoformat(last).toordinal() if last else start
    if end < start:
        raise ValueError(f"empty range {text!r}")
    return start, end


def _format_span(span: tuple[int, int]) -> str:
    first, last = (date.fromordinal(ordinal).isoformat() for ordinal in span)
    return first if first == last else f"{first}/{last}"


@dataclass
class TickPlan:
    """What one tick found: days to request, the next cursor, and what it left alone."""

    requests: list[DayRequest] = field(default_factory=list)
    cursor: str = ""
    listed: int = 0
    scanned: int = 0
    pending: int = 0
    waiting: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    # "<entry> (what it is)" for entries that cannot be read as a day folder or a batch file.
    unusable: list[str] = field(default_factory=list)
    cursor_reset: bool = False


def plan_tick(
    orders_root: Path,
    cursor: str | None,
    now: datetime,
    *,
    max_days: int = MAX_DAYS_PER_TICK,
    recent_days: int = RECENT_DAYS,
) -> TickPlan:
    """Decide which days to request at wall-clock time `now`, given the previous tick's cursor.

    Day directories are rescanned oldest first, at most `max_days` of them; the others stay
    unscanned in the cursor for the next ticks. Days past the calendar's last partition (today
    is one: the calendar keeps the current day open) are left out of the cursor, so the first
    tick after their partition exists requests them.
    """
    plan = TickPlan()
    try:
        seen = LandingCursor.from_json(cursor)
    except ValueError:
        seen, plan.cursor_reset = LandingCursor(), True
    entries = _list_day_dirs(orders_root, plan.unusable)
    listed, last_open = _days_with_partition(entries, now, plan)
    changed = {name for name, mtime in listed.items() if seen.moved(name, mtime)}
    recent_start = (last_open - timedelta(days=recent_days - 1)).isoformat()
    recent = {name for name in listed if name >= recent_start}
    to_scan = sorted(changed | recent)[:max_days]  # ISO names sort by date: oldest first
    pending = changed - set(to_scan)
    plan.listed, plan.pending = len(listed), len(pending)

    known = {name for name in listed if name in seen.detail or seen.knows(name)}
    detail = {name: seen.detail[name] for name in listed if name in seen.detail}
    now_ns = int(now.timestamp() * 1e9)
    for name in to_scan:
        state = _day_state(orders_root / name, name, plan.unusable)
        if state is None:  # removed since the listing, or unreadable
            known.discard(name)
            detail.pop(name, None)
            continue
        digest, files = state
        plan.scanned += 1
        mtime = listed[name]
        if files and seen.changed(name, mtime, digest):
            plan.requests.append(DayRequest(name, digest, files))
        known.add(name)
        # A change in the same mtime granule right after this scan would go unseen: trust the
        # mtime once it is old, or once it held still between two ticks (a clock-free test).
        settled = mtime <= now_ns - SETTLE_NS or seen.detail.get(name, (0,))[0] == -mtime
        detail[name] = (mtime if settled else -mtime, digest)

    newest = max((mtime for _name, mtime in entries if mtime <= now_ns), default=0)
    unscanned = [listed[name] for name in pending if name not in seen.detail and seen.knows(name)]
    watermark = _watermark(seen, newest, unscanned, now_ns)
    # Settled days fold under the watermark; the latest days and those left to rescan stay.
    stay = recent | pending
    for name, (mtime, _state) in list(detail.items()):
        if name not in stay and 0 < mtime <= watermark and mtime == listed[name]:
            del detail[name]
    plan.cursor = LandingCursor.build(watermark, known, detail, newest, now_ns).to_json()
    return plan


def _days_with_partition(
    entries: list[tuple[str, int]], now: datetime, plan: TickPlan
) -> tuple[dict[str, int], date]:
    """Day folders whose partition exists (name: mtime_ns), and the last day; others noted in plan."""
    today = now.astimezone(UTC).date()
    first_day = date.fromisoformat(HISTORY_START)
    with dg.partition_loading_context(effective_dt=now):
        last_key = daily_partitions.get_last_partition_key()
    last_open = date.fromisoformat(last_key) if last_key else first_day - timedelta(days=1)
    listed: dict[str, int] = {}
    for name, mtime_ns in entries:
        day = parse_day(name)
        if day is None or day < first_day or day > today:
            plan.skipped.append(name)
        elif day > last_open:
            plan.waiting.append(name)
        else:
            listed[name] = mtime_ns
    return listed, last_open


def _watermark(seen: LandingCursor, newest: int, unscanned: list[int], now_ns: int) -> int:
    """The mtime under which settled days fold: below any change to come and any folded day left."""
    # Behind the newest mtime seen now (mtimes ahead of this clock are not trusted), or up to the
    # newest one the previous tick saw if that tick is long enough ago for its mtime granule to be
    # over; and below the folded days still to be rescanned (`unscanned`: their mtimes).
    watermark = newest - SETTLE_NS
    if seen.tick_ns and now_ns - seen.tick_ns >= SETTLE_NS:
        watermark = max(watermark, seen.newest)
    if unscanned:
        watermark = min(watermark, min(unscanned) - 1)
    return max(seen.watermark, watermark)


def _list_day_dirs(orders_root: Path, unusable: list[str]) -> list[tuple[str, int]]:
    """(name, mtime_ns) of every visible directory under the orders root: one scandir.

    Visible entries that are not directories (files, broken links) go to `unusable`.
    """
    found = []
    try:
        with os.scandir(orders_root) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    if entry.is_dir():
                        found.append((entry.name, entry.stat().st_mtime_ns))
                        continue
                except FileNotFoundError:  # removed since the listing
                    continue
                except OSError:  # a link that loops or cannot be followed: described below
                    pass
                unusable.append(f"{entry.name} ({describe(Path(entry.path))})")
    except FileNotFoundError:
        pass
    except OSError:
        unusable.append(f"{orders_root} ({describe(orders_root)})")
    return found


def _day_state(directory: Path, name: str, unusable: list[str]) -> tuple[str, int] | None:
    """Hash of the day's sorted (file name, version) pairs and its number of batch files.

    Batch-named entries that are not files (broken links, directories) are not counted and go to
    `unusable`: the staging step refuses them, naming them.
    """
    day = date.fromisoformat(name)
    pairs = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                # Names starting with "." are files still being written (atomic rename pending).
                if entry.name.startswith(".") or not entry.name.endswith(BATCH_SUFFIXES):
                    continue
                try:
                    if entry.is_file():
                        stat = entry.stat()
                        batch = Batch(
                            day, entry.name, Path(entry.path), stat.st_size, stat.st_mtime_ns
                        )
                        pairs.append(f"{batch.name}\t{batch.version}")
                        continue
                except FileNotFoundError:  # removed since the listing
                    continue
                except OSError:  # a link that loops or cannot be followed: described below
                    pass
                unusable.append(f"{name}/{entry.name} ({describe(Path(entry.path))})")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        unusable.append(f"{name} ({describe(directory)})")
        return None
    pairs.sort()
    digest = hashlib.sha1("\n".join(pairs).encode(), usedforsecurity=False).hexdigest()
    return digest[:STATE_HASH_CHARS], len(pairs)


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


@dg.sensor(
    name="landing_zone_sensor",
    job=order_to_cash_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description=(
        "Launches order_to_cash_job for each day whose landing files are new or re-sent, "
        "once per file version."
    ),
)
def landing_zone_sensor(
    context: dg.SensorEvaluationContext, order_system: LandingZoneOrderSystem
) -> dg.SensorResult:
    """Request an order-to-cash run for every day with new or replaced batch files.

    A tick lists the day directories once and rescans, oldest first and at most MAX_DAYS_PER_TICK,
    those that are new or whose mtime moved, plus the latest RECENT_DAYS; the cursor (see
    LandingCursor) keeps the days seen, a watermark of directory mtimes, and the hash of the
    (file, version) pairs of the latest days.
    """
    orders_root = zone_orders_dir(Path(order_system.landing_dir))
    now = datetime.now(UTC)
    if context.cursor is None and os.environ.get(FIRST_TICK_ENV, "recent") != "all":
        # Turned on over a store with years of files: the history is a backfill's job, so the
        # first tick takes stock of every day and requests only the latest closed days.
        plan = plan_tick(orders_root, None, now, max_days=10**9)
        cutoff = (now.date() - timedelta(days=RECENT_DAYS)).isoformat()
        older = [r for r in plan.requests if r.day < cutoff]
        plan.requests = [r for r in plan.requests if r.day >= cutoff]
        context.log.info(
            f"First tick: {len(older)} older days with files are taken as loaded (backfill them "
            f"from the UI if they are not); requesting the {len(plan.requests)} latest."
        )
    else:
        plan = plan_tick(orders_root, context.cursor, now)
    if plan.cursor_reset:
        context.log.warning("Unreadable cursor: rescanning the landing zone from the start.")
    # Entries that are never staged, said on every tick until someone moves them away.
    odd = []
    if plan.skipped:
        odd.append(
            f"{_names(plan.skipped)}: not an order day of the partitions ({DAY_FOLDER_RULE}, "
            f"from {HISTORY_START} to today, UTC), never requested"
        )
    if plan.unusable:
        odd.append(f"{_names(plan.unusable)}: not a day folder or batch file that can be read")
    for line in odd:
        context.log.warning(f"In {orders_root}: {line}.")
    if plan.waiting:
        context.log.info(f"Waiting for {_names(plan.waiting)}: no partition of the calendar yet.")
    if plan.pending:
        context.log.info(f"{plan.pending} changed days left for the next ticks.")
    context.log.info(
        f"Listed {plan.listed} days, rescanned {plan.scanned}, requested {len(plan.requests)}."
    )
    if not plan.requests:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(
                f"No new or replaced batch files in {orders_root} ({plan.listed} days listed)."
                + "".join(f" {line}." for line in odd)
            ),
            cursor=plan.cursor,
        )
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=request.run_key,
                partition_key=request.day,
                tags={"orderflow/landing_files": str(request.files)},
            )
            for request in plan.requests
        ],
        cursor=plan.cursor,
    )
