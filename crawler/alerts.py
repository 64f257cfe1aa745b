"""Alert delivery: which outbox rows are due, one email per recipient, and their state after.

Matches are queued in the outbox by the storage pipeline (in the match's own
transaction); this module only reads what is due and records what the mail server said.
Rows of one email change state together, committed right after the server's answer, so
delivery is at-least-once: a duplicate needs the process to die between that answer and
the commit. Message-IDs are derived from the outbox rows, so a resend carries the same ID.

Source-health notices (a source failing N runs in a row, or silent for too long, and its
recovery) are recorded once and ride along in the next email to every recipient.
"""

from __future__ import annotations

import hashlib
import re
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crawler.clustering import also_reported, story_already_alerted
from crawler.config import AlertSettings, Config, Recipient, is_email_address
from crawler.email_render import build_message, notice_from_row, render_alert, render_test, story_from_row
from crawler.locking import ProcessLock, lock_path_for
from crawler.mailer import DeliveryError, EmlMailer, SmtpMailer
from storage.store import ArticleStore

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_RETRY_DELAY = 86400.0
DELIVERY_LOCK_WAIT = 60.0

AlertFilter = Callable[[dict[str, Any], ArticleStore], bool]


class AlertConfigError(ValueError):
    """An [alerts] setting that cannot be used (bad digest time, weekday or time zone)."""


def should_alert(row: dict[str, Any], store: ArticleStore) -> bool:
    """Is this due outbox row still worth an email? The one place to say no.

    A match whose story was already alerted through another article is not: one story, one
    alert. A row rejected here is marked `suppressed` and never sent.
    """
    return not story_already_alerted(store, row["match_id"])


def one_row_per_story(rows: list[dict[str, Any]], store: ArticleStore) -> list[dict[str, Any]]:
    """Keep one article per story in an email; the others become its "also reported by" line.

    Two copies of a story crawled in the same run are both pending before either is alerted,
    so the story check alone would let both through.
    """
    lead: dict[int, int] = {}
    kept = [r for r in rows
            if r.get("story_id") is None or lead.setdefault(r["story_id"], r["article_id"]) == r["article_id"]]
    others: dict[tuple[int, int], list[str]] = {}  # an article has a row per rule and recipient
    for row in kept:
        if row.get("story_id") is not None:
            key = (row["story_id"], row["article_id"])
            if key not in others:
                others[key] = [f"{o['source']} ({(o['language'] or '??').upper()})"
                               for o in also_reported(store, *key)]
            row["also_reported"] = others[key]
    return kept


@dataclass
class DeliveryReport:
    """What one delivery run did, for the CLI and the tests."""

    emails: int = 0
    alerts: int = 0  # outbox rows delivered
    notices: int = 0  # health notices delivered
    suppressed: int = 0
    waiting: int = 0  # pending rows whose digest or retry time has not come
    given_up: int = 0
    files: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (address, error)
    destination: str | None = None
    new_notices: int = 0
    stopped: bool = False  # a signal stopped the delivery before its last email

    @property
    def ok(self) -> bool:
        return not self.failures

    def lines(self) -> list[str]:
        """Human-readable summary; failures are separate (they belong on stderr)."""
        out = []
        if self.emails:
            verb = "written to" if self.files else "sent via"
            out.append(
                f"alerts: {self.emails} {'email' if self.emails == 1 else 'emails'} {verb} {self.destination}"
                f" ({self.alerts} {'alert' if self.alerts == 1 else 'alerts'}, {self.notices} health"
                f" {'notice' if self.notices == 1 else 'notices'})"
            )
        if self.suppressed:
            out.append(f"alerts: {self.suppressed} suppressed (story already alerted)")
        if self.waiting and self.stopped:
            out.append(f"alerts: {self.waiting} left for the next delivery (stopped by a signal)")
        elif self.waiting:
            out.append(f"alerts: {self.waiting} waiting for their digest or retry time")
        if not out and not self.failures:
            out.append("alerts: nothing due")
        return out

    def failure_lines(self) -> list[str]:
        out = [f"alerts: not delivered to {address}: {error}" for address, error in self.failures]
        if self.given_up:
            out.append(f"alerts: gave up on {self.given_up} after the maximum number of attempts (status failed)")
        return out


@dataclass
class _Email:
    """One email to plan: a recipient in one mode, its rows and notices, the digest slot it covers."""

    address: str
    mode: str
    slot: datetime | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    notices: list[dict[str, Any]] = field(default_factory=list)
    wants_updates: bool = False  # digests list later articles of alerted stories; instant only on opt-in
    updates: list[dict[str, Any]] = field(default_factory=list)


class DeliveryStop:
    """Whether a signal asked the delivery to stop, and which (for the exit status 128 + signal)."""

    signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None


@contextmanager
def stop_between_emails() -> Iterator[DeliveryStop]:
    """SIGTERM or Ctrl-C during a delivery: the email being sent is finished and recorded, then
    the delivery stops and the others wait for the next one. A second signal changes nothing:
    leaving mid-send is what makes a duplicate email (the server accepts it while the process
    exits), and a send ends within the SMTP timeout anyway. After a crawl, Scrapy's handlers,
    left installed with no reactor to run them, ignored both signals."""
    stop = DeliveryStop()

    def on_signal(signum: int, frame: object) -> None:
        if stop.signum is None:
            stop.signum = signum
        sys.stderr.write("armswatch: stopping after the email being sent; the others wait for the next delivery\n")

    previous = {number: signal.signal(number, on_signal) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def deliver_alerts(
    config: Config,
    store: ArticleStore,
    now: datetime | None = None,
    alert_filter: AlertFilter | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
) -> DeliveryReport:
    """Send every pending alert that is due (instant now, digests at their time) and record the outcome.

    One delivery per database at a time (`<db>.alerts.lock`): a crawl's delivery and an
    `armswatch alerts send` started beside it must not both send the same pending rows.
    `stop_requested` is asked before each email: the others wait for the next delivery.
    """
    if store.path == ":memory:":
        return _deliver(config, store, now, alert_filter, stop_requested)
    with ProcessLock(lock_path_for(store.path, ".alerts.lock"), wait=DELIVERY_LOCK_WAIT, what="alert delivery"):
        return _deliver(config, store, now, alert_filter, stop_requested)


def _deliver(
    config: Config, store: ArticleStore, now: datetime | None, alert_filter: AlertFilter | None,
    stop_requested: Callable[[], bool],
) -> DeliveryReport:
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    settings = config.alerts
    zone = _zone(settings)
    report = DeliveryReport()
    report.new_notices = check_source_health(config, store, now)
    rows = store.due_alerts(_iso(now))
    notices = store.due_health_notices(_iso(now))
    emails = plan_emails(settings, rows, notices, store.digest_state(), now, zone)
    keep = alert_filter or should_alert
    crawl_time = store.last_crawl_time()
    with _mailer(config) as mailer:
        report.destination = mailer.where
        for email in emails:
            if stop_requested():
                report.stopped = True
                break
            fresh, stale = [], []
            for row in email.rows:
                (fresh if keep(row, store) else stale).append(row)
            wanted = one_row_per_story(fresh, store)
            if email.wants_updates:  # later articles of alerted stories: listed under "also reported"
                email.updates = [r for r in stale if r["story_id"] is not None]
            dropped = {r["outbox_id"] for r in email.rows} - {r["outbox_id"] for r in wanted + email.updates}
            if dropped:
                store.suppress_alerts(sorted(dropped), "suppressed: not worth an alert (story already alerted)")
                report.suppressed += len(dropped)
            email.rows = wanted
            if not email.rows and not email.notices and not email.updates:
                continue
            _send(settings, store, mailer, email, now, crawl_time, report)
    report.waiting = store.pending_alert_count()
    return report


def plan_emails(
    settings: AlertSettings,
    rows: list[dict[str, Any]],
    notices: list[dict[str, Any]],
    digests: dict[tuple[str, str], dict[str, Any]],
    now: datetime,
    zone: ZoneInfo,
) -> list[_Email]:
    """Group due rows per (recipient, mode); a notice joins its recipient's next email.

    A digest takes the rows created before its slot, once per slot (rows being retried
    after a failed send are always due). A notice goes with an email that is going out
    anyway, else alone when its recipient's window is open (instant, or a digest slot).
    """
    configured: dict[tuple[str, str], Recipient] = {}
    for recipient in settings.recipients:
        configured.setdefault((recipient.address, recipient.mode), recipient)
    keys = list(configured) + [(r["address"], r["mode"]) for r in rows]
    entries: list[tuple[_Email, bool]] = []  # (email, window open now)
    for address, mode in dict.fromkeys(keys):
        recipient = configured.get((address, mode)) or Recipient(address=address, mode=mode)
        slot = digest_slot(recipient, now, zone)
        cutoff = _iso(slot or now)
        last = (digests.get((address, mode)) or {}).get("last_slot")
        window_open = slot is None or not last or last < cutoff
        email = _Email(address, mode, slot, wants_updates=mode != "instant" or recipient.story_updates)
        email.rows = [
            row for row in rows
            if row["address"] == address and row["mode"] == mode and row["created_at"] <= cutoff
            and (window_open or row["attempts"] > 0)
        ]
        entries.append((email, window_open))
    for notice in notices:
        own = [(e, is_open) for e, is_open in entries if e.address == notice["address"]]
        if not own:  # a recipient no longer in the config still gets what was queued for it
            own = [(_Email(notice["address"], "instant", None), True)]
            entries += own
        target = next((e for e, _ in own if e.rows), None) or next(
            (e for e, is_open in own if is_open and notice["created_at"] <= _iso(e.slot or now)), None
        )
        if target is not None:
            target.notices.append(notice)
    return [e for e, _ in entries if e.rows or e.notices]


def digest_slot(recipient: Recipient, now: datetime, zone: ZoneInfo) -> datetime | None:
    """The latest scheduled digest time at or before `now` (UTC); None for instant recipients."""
    if recipient.mode == "instant":
        return None
    local = now.astimezone(zone)
    if recipient.mode == "hourly":
        slot = local.replace(minute=0, second=0, microsecond=0)
    else:
        hour, minute = _clock(recipient)
        slot = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if recipient.mode == "weekly":
            slot -= timedelta(days=(local.weekday() - _weekday(recipient)) % 7)
        if slot > local:
            slot -= timedelta(days=7 if recipient.mode == "weekly" else 1)
    return slot.astimezone(timezone.utc)


def message_id(settings: AlertSettings, outbox_ids: Iterable[int], notice_ids: Iterable[int] = ()) -> str:
    """<armswatch.SHA1@host>, from the rows the email carries: a resend has the same ID."""
    key = "outbox:" + ",".join(str(i) for i in sorted(outbox_ids))
    key += ";notices:" + ",".join(str(i) for i in sorted(notice_ids))
    return f"<armswatch.{hashlib.sha1(key.encode()).hexdigest()}@{_domain(settings)}>"


def check_source_health(config: Config, store: ArticleStore, now: datetime) -> int:
    """Open a notice when a source starts failing or goes silent, and one when it recovers."""
    settings = config.alerts
    sources = {s.name: s for s in config.enabled_sources}
    recipients = list(dict.fromkeys(r.address for r in settings.recipients))
    open_problems = store.open_health_problems()
    created = 0
    for row in store.health_watch():
        source = sources.get(row["source"])
        if source is None or row["last_attempt"] is None:
            continue
        failures = row["consecutive_failures"] or 0
        failing = settings.health_failures > 0 and failures >= settings.health_failures
        window = source.silent_after if source.silent_after is not None else settings.silent_after
        baseline = row["last_new_article"] or row["added_at"]
        silent = bool(window > 0 and baseline and _parse(baseline) < now - timedelta(seconds=window))
        events = []
        if failing and (source.name, "failing") not in open_problems:
            error = " ".join(str(p) for p in (row["status"], row["error"]) if p)
            events.append(("failing", "problem", f"{failures} failed runs in a row; last: {error or 'unknown error'}"))
        elif not failing and (source.name, "failing") in open_problems:
            events.append(("failing", "recovered", f"fetched successfully at {row['last_success'] or _iso(now)}"))
        if silent and not failing and (source.name, "silent") not in open_problems:
            since = f"since {baseline[:10]}" if row["last_new_article"] else f"since it was added on {baseline[:10]}"
            events.append(("silent", "problem", f"no new article {since} (window: {_days(window)})"))
        elif not silent and (source.name, "silent") in open_problems:
            events.append(("silent", "recovered", f"new article at {row['last_new_article']}"))
        for kind, event, detail in events:
            store.add_health_notice(source.name, kind, event, detail, recipients, _iso(now))
            created += 1
    return created


def send_test_message(config: Config, to: str | None = None) -> list[tuple[str, str]]:
    """Send (or write) a test message to `to` or every configured recipient; return (address, where)."""
    if to is not None and not is_email_address(to):
        raise AlertConfigError(f"--to {to!r} is not an email address")
    addresses = [to] if to else list(dict.fromkeys(r.address for r in config.alerts.recipients))
    if not addresses:
        raise AlertConfigError("no recipient: pass --to ADDRESS or add [[alerts.recipients]] to the config")
    results = []
    with _mailer(config) as mailer:
        rendered = render_test(mailer.where)
        stamp = datetime.now(timezone.utc).isoformat()
        for address in addresses:
            digest = hashlib.sha1(f"test {address} {stamp}".encode()).hexdigest()
            ident = f"<armswatch.test.{digest}@{_domain(config.alerts)}>"
            results.append((address, mailer.send(build_message(rendered, config.alerts.sender, address, ident), address)))
    return results


def outbox_folder(config: Config) -> Path:
    """outbox_dir, relative to the config file's folder like the database."""
    folder = Path(config.alerts.outbox_dir)
    if not folder.is_absolute() and Path(config.path).is_file():
        folder = Path(config.path).parent / folder
    return folder


def validate_alert_settings(settings: AlertSettings) -> None:
    """Raise AlertConfigError for digest times, weekdays or a time zone that cannot be used."""
    _zone(settings)
    for recipient in settings.recipients:
        if recipient.mode in ("daily", "weekly"):
            _clock(recipient)
        if recipient.mode == "weekly":
            _weekday(recipient)


def _send(
    settings: AlertSettings,
    store: ArticleStore,
    mailer: SmtpMailer | EmlMailer,
    email: _Email,
    now: datetime,
    crawl_time: str | None,
    report: DeliveryReport,
) -> None:
    """Send one email and record the server's answer (accepted: its rows sent, its stories alerted)."""
    outbox_ids = [r["outbox_id"] for r in email.rows + email.updates]
    notice_ids = [n["notice_id"] for n in email.notices]
    ident = message_id(settings, outbox_ids, notice_ids)
    rendered = render_alert(
        [story_from_row(r) for r in email.rows],
        [notice_from_row(n) for n in email.notices],
        mode=email.mode,
        crawl_time=crawl_time,
        # an article already shown as "also reported by" under its story's entry is not listed twice
        updates=[story_from_row(r) for r in email.updates if r["story_id"] not in {s["story_id"] for s in email.rows}],
    )
    message = build_message(rendered, settings.sender, email.address, ident)
    try:
        where = mailer.send(message, email.address)
    except DeliveryError as exc:
        report.failures.append((email.address, str(exc)))
        report.given_up += store.mark_email_failed(
            email.address, outbox_ids, notice_ids, str(exc), _retry_policy(settings, now)
        )
        return
    digest = (email.mode, _iso(email.slot)) if email.slot is not None else None
    # the stories of its alerts count as alerted in the same transaction as the rows sent
    store.mark_email_sent(email.address, outbox_ids, notice_ids, ident, _iso(now), digest,
                          alerted_match_ids=[r["match_id"] for r in email.rows])
    report.emails += 1
    report.alerts += len(outbox_ids)
    report.notices += len(notice_ids)
    if isinstance(mailer, EmlMailer):
        report.files.append(where)


def _retry_policy(settings: AlertSettings, now: datetime) -> Callable[[int], str | None]:
    """Exponential backoff from retry_after, capped at a day; None (give up) after max_attempts."""

    def next_attempt(attempts: int) -> str | None:
        if attempts >= settings.max_attempts:
            return None
        delay = min(settings.retry_after * 2 ** (attempts - 1), MAX_RETRY_DELAY)
        return _iso(now + timedelta(seconds=delay))

    return next_attempt


def _mailer(config: Config) -> SmtpMailer | EmlMailer:
    if config.alerts.smtp_host:
        return SmtpMailer(config.alerts)
    return EmlMailer(outbox_folder(config))


def _zone(settings: AlertSettings) -> ZoneInfo:
    try:
        return ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise AlertConfigError(f"[alerts].timezone {settings.timezone!r} is not an IANA time zone like 'Europe/Berlin'") from None


def _clock(recipient: Recipient) -> tuple[int, int]:
    try:
        hour, minute = (int(p) for p in recipient.at.split(":"))
        if not (0 <= hour < 24 and 0 <= minute < 60):
            raise ValueError
    except ValueError:
        raise AlertConfigError(f"recipient {recipient.address}: at must be a time like '08:00', got {recipient.at!r}") from None
    return hour, minute


def _weekday(recipient: Recipient) -> int:
    day = recipient.weekday.strip().lower()[:3]
    if day not in WEEKDAYS:
        raise AlertConfigError(f"recipient {recipient.address}: weekday must be one of {', '.join(WEEKDAYS)}, got {recipient.weekday!r}")
    return WEEKDAYS.index(day)


def _domain(settings: AlertSettings) -> str:
    domain = re.sub(r"[^A-Za-z0-9.-]", "", parseaddr(settings.sender)[1].rpartition("@")[2])
    return domain or "localhost"


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat()


def _parse(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _days(seconds: float) -> str:
    days = seconds / 86400
    return f"{days:g} days" if days >= 1 else f"{seconds / 3600:g} hours"
