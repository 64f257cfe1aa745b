"""`armswatch schedule`: a daemon that runs crawls on time, one at a time, each in a subprocess.

Design. APScheduler (3.x, BackgroundScheduler) holds one job per distinct trigger: all
sources on the default interval (or on the same adaptive interval, or the same cron
expression) are one job, so sources due at the same time are due together. A job does
not crawl: it only adds its sources to a pending set. The main thread's loop takes
everything pending (after a one-second settle, so jobs firing together merge) and runs
ONE `armswatch crawl --config FILE --source A --source B --trigger schedule` subprocess:

- a subprocess because Scrapy's reactor cannot restart in one process, and a hung crawl
  must not block later runs: it gets [crawl].run_timeout, then SIGTERM to its process
  group, then SIGKILL after [schedule].kill_grace;
- sources falling due while a run is going are queued and crawled right after it, once
  each (coalescing; a source that fell due during its own run is served by that run);
  two crawls never overlap (and the crawl's own lock file keeps cron or manual crawls
  of the same database out too);
- SIGTERM/SIGINT stop the daemon after the current run has finished and committed (the
  child runs in its own session, so a terminal's Ctrl-C does not reach it); a second
  signal asks the running crawl to stop early (Scrapy then closes gracefully).

After each run, adaptive sources (no per-source `interval` or `cron` in the config) get
their next interval from crawler.polling, stored in source_health.poll_interval, and move
to the job of that interval. On start-up every interval job first fires when its most
overdue source is due (from source_health.last_attempt), so a restart does not re-poll
everything at once, and a fresh database is crawled immediately.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from types import FrameType

from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from crawler.config import Config, ConfigError, Source, load_config
from crawler.locking import LockError, scheduler_lock
from crawler.polling import PollResult, format_duration, next_interval, on_ladder
from crawler.safe_text import show_logs_safely
from storage.store import ArticleStore, StoreError

logger = logging.getLogger("armswatch.schedule")

SETTLE_SECONDS = 1.0  # jobs firing within this window share one run
CONFIG_CHECK_SECONDS = 5.0  # how often the daemon looks whether its config file changed
EXIT_LOCK_HELD = 75  # EX_TEMPFAIL: `armswatch crawl` found another crawl running
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

GroupKey = tuple[str, str]  # ("interval", "1800") or ("cron", "0 */2 * * *")


class ScheduleError(ValueError):
    """The config cannot be scheduled (for instance an invalid cron expression)."""


# -- which sources a run crawls -------------------------------------------------------------


def select_sources(config: Config, names: tuple[str, ...] | list[str]) -> Config:
    """The config restricted to the named sources (`crawl --source NAME`); unknown names are an error."""
    if not names:
        return config
    known = {s.name for s in config.sources}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ScheduleError(f"{config.path}: no source named {', '.join(repr(n) for n in unknown)}")
    wanted = set(names)
    return replace(config, sources=tuple(s for s in config.sources if s.name in wanted))


def crawl_command(config_path: str, names: list[str] | tuple[str, ...]) -> list[str]:
    """The command line of one scheduled run (the same CLI a user or cron runs)."""
    command = [sys.executable, "-m", "crawler.cli", "crawl", "--config", config_path, "--trigger", "schedule"]
    for name in names:
        command += ["--source", name]
    return command


# -- triggers ---------------------------------------------------------------------------------


def is_adaptive(source: Source, config: Config) -> bool:
    """A source adapts unless the user pinned it with its own `interval` or `cron`."""
    return config.schedule.adaptive and source.interval is None and not source.cron


def base_interval(source: Source, config: Config, stored: float | None = None) -> float:
    """The interval a source starts with: pinned, else the stored adaptive one, else the default."""
    if source.interval is not None:
        return float(source.interval)
    if is_adaptive(source, config) and stored:
        return on_ladder(stored, config.schedule)
    if is_adaptive(source, config):
        return on_ladder(config.schedule.interval, config.schedule)
    return float(config.schedule.interval)


def group_sources(config: Config, intervals: dict[str, float]) -> dict[GroupKey, tuple[str, ...]]:
    """Sources with an identical trigger, keyed by it: each group is one scheduler job."""
    groups: dict[GroupKey, list[str]] = {}
    for source in config.enabled_sources:
        if source.cron:
            key: GroupKey = ("cron", " ".join(source.cron.split()))
        else:
            seconds = intervals.get(source.name) or base_interval(source, config)
            key = ("interval", f"{seconds:g}")
        groups.setdefault(key, []).append(source.name)
    return {key: tuple(names) for key, names in groups.items()}


def make_trigger(key: GroupKey, jitter: float):
    """An APScheduler trigger for a group; jitter is capped at a quarter of the interval."""
    kind, value = key
    if kind == "cron":
        return cron_trigger(value, jitter)
    seconds = float(value)
    return IntervalTrigger(seconds=seconds, jitter=min(jitter, seconds / 4) or None)


def cron_trigger(expression: str, jitter: float = 0) -> CronTrigger:
    """A 5-field crontab expression as a CronTrigger, with crontab's weekday numbers.

    APScheduler 3.x counts weekdays from Monday = 0 while crontab uses Sunday = 0 (its
    documented mistake, issue 286), so numeric weekdays are translated to names here.
    """
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"a cron expression has 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, day, month, weekday = fields
    return CronTrigger(
        minute=minute, hour=hour, day=day, month=month, day_of_week=_crontab_weekdays(weekday), jitter=jitter or None
    )


def _crontab_weekdays(field: str) -> str:
    """Crontab weekday numbers (0 or 7 = Sunday, ranges, steps) as APScheduler weekday names."""
    if field == "*" or any(c.isalpha() for c in field):
        return field  # names mean the same in both
    days: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            first_text, last_text = span.split("-", 1)
            first, last = int(first_text), int(last_text)
        else:
            first = int(span)
            last = 6 if step_text else first
        if not (0 <= first <= 7 and 0 <= last <= 7) or step < 1:
            raise ValueError(f"weekday {part!r} out of range 0-7")
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(WEEKDAYS[d] for d in sorted(days))


def check_schedule(config: Config) -> None:
    """Fail at start-up, naming the source, when a cron expression is not valid."""
    for source in config.enabled_sources:
        if source.cron:
            try:
                cron_trigger(source.cron)
            except ValueError as exc:
                raise ScheduleError(f"{config.path}: source {source.name!r}: cron {source.cron!r}: {exc}") from None
        elif source.interval is not None and source.interval <= 0:
            raise ScheduleError(f"{config.path}: source {source.name!r}: interval must be positive")
    if config.schedule.interval <= 0:
        raise ScheduleError(f"{config.path}: [schedule].interval must be positive")


# -- one run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOutcome:
    returncode: int | None
    pid: int
    seconds: float
    timed_out: bool = False
    stopped: bool = False  # asked to stop early by a second signal


def run_subprocess(
    command: list[str], timeout: float, kill_grace: float, stop_early: threading.Event | None = None
) -> RunOutcome:
    """Run one crawl in its own process group; on timeout SIGTERM the group, then SIGKILL it."""
    started = time.monotonic()
    process = subprocess.Popen(command, start_new_session=True)
    deadline = started + timeout
    timed_out = stopped = False
    while True:
        try:
            process.wait(timeout=0.25)
            break
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() >= deadline:
            timed_out = True
        elif stop_early is not None and stop_early.is_set():
            stopped = True
        else:
            continue
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=max(kill_grace, 0.01))
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
        break
    _signal_group(process.pid, signal.SIGKILL)  # leftovers of the group (extraction workers)
    return RunOutcome(process.returncode, process.pid, time.monotonic() - started, timed_out, stopped)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


# -- the daemon -------------------------------------------------------------------------------


class CrawlScheduler:
    """The `armswatch schedule` daemon; `run()` returns the process exit status."""

    def __init__(self, config: Config, max_runs: int | None = None, until: float | None = None):
        check_schedule(config)
        self.config = config
        self.config_path = os.path.abspath(config.path)
        self.max_runs = max_runs
        self.until = until
        self.sources = {s.name: s for s in config.enabled_sources}
        self.intervals: dict[str, float] = {}
        self.groups: dict[GroupKey, tuple[str, ...]] = {}
        self.pending: list[str] = []
        self.wakeup = threading.Condition()
        self.stop_signals = 0
        self.stop_early = threading.Event()
        self.reload_asked = False
        self.config_stamp = _stamp(self.config_path)
        self.runs = 0
        self.scheduler = BackgroundScheduler(
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": max(1, int(config.schedule.misfire_grace_time)),
            }
        )
        self.scheduler.add_listener(self.missed, EVENT_JOB_MISSED)

    # signals ----------------------------------------------------------------------------------

    def request_stop(self, signum: int, frame: FrameType | None = None) -> None:
        self.stop_signals += 1
        name = signal.Signals(signum).name
        if self.stop_signals == 1:
            logger.info("%s: stopping after the current run", name)
        else:
            logger.info("%s again: asking the current run to stop now", name)
            self.stop_early.set()
        with self.wakeup:
            self.wakeup.notify_all()

    def request_reload(self, signum: int, frame: FrameType | None = None) -> None:
        self.reload_asked = True
        with self.wakeup:
            self.wakeup.notify_all()

    def reload_if_changed(self) -> bool:
        """Take up an edited config (file changed, or SIGHUP) between runs: new sources get
        jobs, removed ones lose theirs, changed intervals and crons are rescheduled. A config
        that does not load is reported and the daemon goes on with the one it has."""
        stamp = _stamp(self.config_path)
        if not self.reload_asked and stamp == self.config_stamp:
            return False
        self.reload_asked = False
        self.config_stamp = stamp
        try:
            config = load_config(self.config_path)
            check_schedule(config)
        except (ConfigError, ScheduleError, OSError) as exc:
            logger.error("config not reloaded, keeping the running one: %s", exc)
            return False
        with ArticleStore(config.crawl.db) as store:
            store.sync_sources(config.sources)
            health = _health(store)
        old_sources = self.sources
        self.config = config
        self.sources = {s.name: s for s in config.enabled_sources}
        self.set_intervals(health, unchanged=old_sources)
        with self.wakeup:
            self.pending = [n for n in self.pending if n in self.sources]
        for key in list(self.groups):  # rebuild every job: intervals, crons or jitter may have changed
            self.scheduler.remove_job(_job_id(key))
        self.groups = {}
        self.sync_jobs(health)
        logger.info("config reloaded from %s: %d sources", self.config_path, len(self.sources))
        return True

    def set_intervals(self, health: dict[str, dict], unchanged: dict[str, Source] | None = None) -> None:
        """The poll interval of every source not on a cron: its stored (adapted) one, else the
        configured one; a source the same as in `unchanged` keeps the interval it has now."""
        unchanged = unchanged or {}
        self.intervals = {
            name: self.intervals[name] if unchanged.get(name) == source and name in self.intervals
            else base_interval(source, self.config, (health.get(name) or {}).get("poll_interval"))
            for name, source in self.sources.items()
            if not source.cron
        }

    # jobs -------------------------------------------------------------------------------------

    def due(self, key: GroupKey) -> None:
        """APScheduler job: queue the group's sources for the next run (never crawls itself)."""
        with self.wakeup:
            for name in self.groups.get(key, ()):
                if name not in self.pending:
                    self.pending.append(name)
            self.wakeup.notify_all()

    def missed(self, event: JobExecutionEvent) -> None:
        """A slot missed by more than misfire_grace_time (the machine asleep, a clock jump) is
        skipped; said, since a daily source then waits a whole day."""
        names = next((self.groups[key] for key in self.groups if _job_id(key) == event.job_id), (event.job_id,))
        logger.warning(
            "%s: the run due at %s was missed by more than misfire_grace_time and is skipped; the next is at its next slot",
            ", ".join(names), f"{event.scheduled_run_time.astimezone():%Y-%m-%d %H:%M %Z}",
        )

    def sync_jobs(self, health: dict[str, dict]) -> None:
        """One job per trigger group: add new groups, drop empty ones, keep the rest's timing."""
        desired = group_sources(self.config, self.intervals)
        for key in set(self.groups) - set(desired):
            self.scheduler.remove_job(_job_id(key))
        known, self.groups = self.groups, desired  # before any job is added: a job due now fires at once and reads it
        now = datetime.now(timezone.utc)
        for key, names in desired.items():
            if key in known:
                continue
            trigger = make_trigger(key, self.config.schedule.jitter)
            if key[0] == "interval":
                first = max(now, min(_next_due(health.get(n), float(key[1])) for n in names))
                every = format_duration(float(key[1]))
            else:
                first = trigger.get_next_fire_time(None, now.astimezone())
                every = f"cron '{key[1]}'"
            self.scheduler.add_job(
                self.due, trigger, args=[key], id=_job_id(key), name=f"{key[0]} {key[1]}", next_run_time=first
            )
            logger.info("%s every %s, next at %s", ", ".join(names), every, f"{first.astimezone():%Y-%m-%d %H:%M:%S %Z}")

    # the loop ---------------------------------------------------------------------------------

    def run(self) -> int:
        db = self.config.crawl.db
        try:
            lock = scheduler_lock(db).acquire()
        except LockError as exc:
            logger.error("%s", exc)
            return 2
        try:
            with ArticleStore(db) as store:
                store.sync_sources(self.config.sources)
                health = _health(store)
            self.set_intervals(health)
            self.sync_jobs(health)
            previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
            previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self.request_reload)
            self.scheduler.start()
            try:
                self.loop()
            finally:
                self.scheduler.shutdown(wait=False)
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
            logger.info("stopped after %d run(s)", self.runs)
            return 0
        finally:
            lock.release()

    def loop(self) -> None:
        deadline = time.monotonic() + self.until if self.until is not None else None
        while not self.stop_signals:
            with self.wakeup:
                while not self.pending and not self.stop_signals and not self.reload_asked:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return
                    self.wakeup.wait(timeout=min(left, CONFIG_CHECK_SECONDS) if left is not None else CONFIG_CHECK_SECONDS)
                    if _stamp(self.config_path) != self.config_stamp:
                        break
            if self.stop_signals:
                return
            self.reload_if_changed()
            if not self.pending:
                continue
            time.sleep(SETTLE_SECONDS)  # let jobs firing together join this run
            if self.stop_signals:
                return
            with self.wakeup:
                names, self.pending = self.pending, []
            self.run_once(names)
            if self.max_runs is not None and self.runs >= self.max_runs:
                return
            if deadline is not None and time.monotonic() >= deadline:
                return

    def run_once(self, names: list[str]) -> RunOutcome:
        """One crawl of `names` in a subprocess, then adapt their intervals."""
        self.runs += 1
        try:
            before = self.read_health()
        except (StoreError, sqlite3.Error) as exc:
            logger.warning("cannot read source health before run %d: %s", self.runs, exc)
            before = {}
        logger.info("run %d: %s", self.runs, ", ".join(names))
        outcome = run_subprocess(
            crawl_command(self.config_path, names),
            self.config.crawl.run_timeout,
            self.config.schedule.kill_grace,
            self.stop_early,
        )
        try:
            after = self.record(names, outcome, before)
        except (StoreError, sqlite3.Error) as exc:  # the next run tries again; a daemon does not die of it
            logger.warning("run %d: cannot record its outcome: %s", self.runs, exc)
            after = before
        with self.wakeup:  # falling due again during their own run: the run just served them
            self.pending = [n for n in self.pending if n not in names]
        self.sync_jobs(after)
        return outcome

    def read_health(self) -> dict[str, dict]:
        with ArticleStore(self.config.crawl.db) as store:
            return _health(store)

    def record(self, names: list[str], outcome: RunOutcome, before: dict[str, dict]) -> dict[str, dict]:
        """Close what a killed child left open, log the outcome, adapt intervals; return the new health."""
        with ArticleStore(self.config.crawl.db) as store:
            # the child is gone: a row it left 'running' was cut short (SIGKILL leaves no chance to close it)
            store.abandon_runs("timeout" if outcome.timed_out else "killed", pid=outcome.pid)
            if outcome.timed_out:
                logger.warning(
                    "run %d: timed out after %.0f s ([crawl].run_timeout); stopped it", self.runs, outcome.seconds
                )
            elif outcome.stopped:
                logger.warning("run %d: stopped on request after %.0f s", self.runs, outcome.seconds)
            elif outcome.returncode == EXIT_LOCK_HELD:
                logger.warning("run %d: skipped, another crawl holds the database lock", self.runs)
            elif outcome.returncode != 0:
                logger.warning("run %d: crawl exited with status %s", self.runs, outcome.returncode)
            else:
                logger.info("run %d: finished in %.1f s", self.runs, outcome.seconds)
            after = _health(store)
            self.adapt(store, names, before, after)
        return after

    def adapt(self, store: ArticleStore, names: list[str], before: dict, after: dict) -> None:
        """Store each crawled source's next interval (the health table shows it) and keep it."""
        for name in names:
            source = self.sources.get(name)
            row = after.get(name)
            old = before.get(name) or {}
            if source is None or source.cron or row is None or row.get("last_run_id") == old.get("last_run_id"):
                continue  # cron sources are fixed; a source this run did not reach keeps its pace
            current = self.intervals.get(name) or base_interval(source, self.config)
            if is_adaptive(source, self.config):
                result = PollResult(row.get("status"), row.get("items_seen") or 0, row.get("items_new") or 0)
                new = next_interval(current, result, self.config.schedule, first_poll=not old.get("last_success"))
                if new != current:
                    logger.info("%s: next poll in %s (was %s)", name, format_duration(new), format_duration(current))
            else:
                new = current
            self.intervals[name] = new
            store.set_poll_interval(name, new)


def _stamp(path: str) -> tuple[float, int] | None:
    """When the config file last changed (None if it is gone)."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mtime, info.st_size)


def _job_id(key: GroupKey) -> str:
    return f"{key[0]}:{key[1]}"


def _health(store: ArticleStore) -> dict[str, dict]:
    return {row["source"]: row for row in store.query("select * from source_health")}


def _next_due(row: dict | None, interval: float) -> datetime:
    """When a source is next due: its last attempt plus its interval (now if never polled)."""
    now = datetime.now(timezone.utc)
    last = (row or {}).get("last_attempt")
    if not last:
        return now
    try:
        when = datetime.fromisoformat(last)
    except ValueError:
        return now
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when + timedelta(seconds=interval)


def run_scheduler(config: Config, max_runs: int | None = None, until: float | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT (or max_runs / until seconds); return the exit status."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, stream=sys.stderr, format="%(asctime)s armswatch schedule: %(message)s"
        )
    show_logs_safely()  # its lines name sources and quote their errors
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    return CrawlScheduler(config, max_runs=max_runs, until=until).run()
