"""Adaptive polling: poll a quiet source less often and a busy one more often.

After each scheduled run the share of a source's listed items that were new decides its
next interval, as Media Cloud does with its feeds (from 10 minutes up to a day): a feed
where nothing was new backs off, a feed whose items were nearly all new (we may be
missing some) is polled sooner. Intervals move on a ladder of powers of 1.5 around the
default interval, so sources with a similar pace land on the same interval and share
runs, and stay within [schedule].min_interval .. max_interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from crawler.config import ScheduleSettings

STEP = 1.5
NOT_CHANGED = ("not modified", "unchanged")  # 304, or the same body as last time


@dataclass(frozen=True)
class PollResult:
    """What one run saw of a source (its source_health row after the run)."""

    status: str | None
    items_seen: int = 0
    items_new: int = 0


def ladder_steps(share_new: float) -> int:
    """How many ladder steps to move: positive backs off, negative polls sooner."""
    if share_new >= 0.8:
        return -2  # nearly everything was new: items may have scrolled off unseen
    if share_new >= 0.4:
        return -1
    if share_new < 0.1:
        return 1  # (almost) nothing new: back off slowly
    return 0


def next_interval(current: float, result: PollResult, schedule: ScheduleSettings, first_poll: bool = False) -> float:
    """The interval to use after a poll with `result`, starting from `current` seconds.

    A failed fetch tells nothing about the pace of news and keeps the interval (failures
    are the health table's business); so does a source's first poll, where every item is
    new by definition.
    """
    if first_poll or result.status is None:
        steps = 0
    elif result.status in NOT_CHANGED:
        steps = 1
    elif result.status != "ok":
        steps = 0
    elif result.items_seen <= 0:
        steps = 1
    else:
        steps = ladder_steps(min(1.0, result.items_new / result.items_seen))
    return on_ladder(current * STEP**steps, schedule)


def on_ladder(seconds: float, schedule: ScheduleSettings) -> float:
    """Snap to default x 1.5^k (whole seconds), clamped to the configured bounds."""
    low = min(schedule.min_interval, schedule.max_interval)
    high = max(schedule.min_interval, schedule.max_interval)
    base = schedule.interval if schedule.interval > 0 else low
    if seconds <= 0 or base <= 0:
        return float(round(max(low, 1.0)))
    k = round(math.log(seconds / base, STEP))
    value = float(round(base * STEP**k))
    return float(round(min(high, max(low, value))))


def format_duration(seconds: float | None) -> str:
    """1800 -> '30m', 5400 -> '1h30m', 90 -> '1m30s' (the health table's 'poll every')."""
    if seconds is None:
        return "-"
    total = int(round(seconds))
    if total < 60:
        return f"{total}s"
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n]
    return "".join(shown[:2])
