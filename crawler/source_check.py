"""`armswatch sources check`: is each configured source alive, and does it still publish?

A source list is evidence, not a guarantee: this fetches every source once (bounded in time and
size, http(s) only) and gives a verdict a user can act on: ok, empty, stale, blocked or
unreachable. It is as polite as the crawl: at most `concurrency_per_domain` requests to a host at
once (hosts are checked in parallel), robots.txt read once per site and obeyed (a disallowed
source is reported blocked, not fetched), and a homepage is read through the feed it leads to,
found as the crawl finds it. It never writes to the database: a check is not a crawl.
"""

from __future__ import annotations

import threading
import time
import urllib.error
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

from crawler import direct_fetch
from crawler.config import Source
from crawler.dates import newest_first_key
from crawler.encoding import decode_markup
from crawler.safe_text import shown
from crawler.settings import AUTOTHROTTLE_MAX_DELAY
from crawler.urls import host_of

BLOCKED_STATUSES = {401, 403, 407, 429, 451}
MAX_BYTES = 10_000_000
MAX_WORKERS = 16  # sources checked at once over all hosts; per host, concurrency_per_domain
MAX_CRAWL_DELAY = AUTOTHROTTLE_MAX_DELAY  # the most a robots.txt Crawl-delay holds a host back, as in the crawl


@dataclass(frozen=True)
class SourceCheck:
    name: str
    url: str
    status: str  # HTTP status code, the network error class, or the crawl's word (robots denied, too large, ...)
    parsed: bool
    items: int
    newest: str | None
    verdict: str  # ok | empty | stale | blocked | unreachable
    detail: str = ""
    feed: str = ""  # for a homepage: the feed checked in its place ("announced feed URL")


def entries_of(source: Source, body: bytes, url: str | None = None, headers: dict[str, str] | None = None) -> list:
    """The articles a source document lists, with the same parsers the crawl uses. A homepage's
    document is the feed found for it (`check_homepage`), read as a feed."""
    url = url or source.url
    if source.type == "sitemap":
        from spiders.sitemaps import parse_sitemap

        parsed = parse_sitemap(body, url, headers=headers)
        return [*parsed.entries, *parsed.children]  # an index lists sitemaps, each an undated item
    if source.type == "page":
        from spiders.listings import parse_listing

        return parse_listing(decode_markup(body, headers), url, source.selector).entries  # as the crawl reads it
    from spiders.feeds import parse_feed

    return parse_feed(body, url, headers).entries


def check_source(
    source: Source,
    user_agent: str,
    timeout: float = 15.0,
    stale_days: float = 14.0,
    robots: direct_fetch.RobotsRules | None = None,
) -> SourceCheck:
    """The verdict on one source. With `robots`, a URL robots.txt forbids is not fetched, nor
    followed to by a redirect: the source is `blocked`, as the crawl would find it."""
    if source.type == "homepage":
        return check_homepage(source, user_agent, timeout, stale_days, robots)
    return _check_document(source, source.url, user_agent, timeout, stale_days, robots)


def check_homepage(
    source: Source, user_agent: str, timeout: float, stale_days: float, robots: direct_fetch.RobotsRules | None
) -> SourceCheck:
    """A homepage lists no articles itself: the crawl reads the feeds it announces, else the
    first feed that answers at a usual path (spiders.discovery). The check reads the first of
    those that gives a feed and says which it was."""
    from spiders.discovery import announced_feeds, common_feed_urls

    try:
        home = _fetch(source, source.url, user_agent, timeout, robots)
    except Exception as exc:
        return _failed(source, exc)
    announced = announced_feeds(decode_markup(home.body, home.headers), home.url)
    candidates = [("announced feed", url) for url in announced]
    candidates += [("probed feed", url) for url in common_feed_urls(source.url) if url not in announced]
    first_failure: SourceCheck | None = None
    for role, url in candidates:
        result = _check_document(source, url, user_agent, timeout, stale_days, robots, as_feed=True)
        if result.parsed:
            return replace(result, url=source.url, feed=f"{role} {url}")
        if announced and first_failure is None:
            first_failure = result
    if first_failure is not None:  # the feeds it announces fail, and no usual path answers either
        return replace(first_failure, url=source.url, feed=f"announced feed {announced[0]}")
    paths = ", ".join(urlsplit(url).path for url in common_feed_urls(source.url))
    return SourceCheck(source.name, source.url, str(home.status), False, 0, None, "empty",
                       f"no feed found: the homepage announces none and none answers at {paths}")


def _check_document(
    source: Source,
    url: str,
    user_agent: str,
    timeout: float,
    stale_days: float,
    robots: direct_fetch.RobotsRules | None,
    as_feed: bool = False,
) -> SourceCheck:
    try:
        fetched = _fetch(source, url, user_agent, timeout, robots)
    except Exception as exc:
        return _failed(source, exc)
    try:
        reader = replace(source, type="feed") if as_feed else source
        entries = entries_of(reader, fetched.body, fetched.url, fetched.headers)
    except Exception as exc:  # any parse failure is a verdict, not a crash
        return SourceCheck(source.name, source.url, str(fetched.status), False, 0, None, "empty", f"cannot parse: {exc}"[:200])
    newest = min((d for d in (getattr(e, "published", None) for e in entries) if d), key=newest_first_key, default=None)
    if not entries:
        verdict = "empty"
    elif newest and _older_than(newest, stale_days):
        verdict = "stale"
    else:
        verdict = "ok"
    return SourceCheck(source.name, source.url, str(fetched.status), True, len(entries), newest, verdict)


def _fetch(
    source: Source, url: str, user_agent: str, timeout: float, robots: direct_fetch.RobotsRules | None
) -> direct_fetch.Fetched:
    """One document of a source: robots.txt asked first (for this URL and any redirect target),
    then fetched with the source's own User-Agent header if it has one, as the crawl does."""
    if robots is not None:
        robots.check(url)
    redirect_check = robots.check if robots is not None else None
    return direct_fetch.fetch(url, source.user_agent or user_agent, timeout, MAX_BYTES, redirect_check)


def _failed(source: Source, exc: Exception) -> SourceCheck:
    """The verdict on a source whose document could not be had."""
    if isinstance(exc, urllib.error.HTTPError):
        verdict = "blocked" if exc.code in BLOCKED_STATUSES else "unreachable"
        return SourceCheck(source.name, source.url, str(exc.code), False, 0, None, verdict, str(exc.reason)[:200])
    if isinstance(exc, direct_fetch.Refused):
        verdict = "blocked" if isinstance(exc, direct_fetch.RobotsDenied) else "unreachable"
        return SourceCheck(source.name, source.url, exc.error_class, False, 0, None, verdict, str(exc)[:200])
    if isinstance(exc, (urllib.error.URLError, OSError, ValueError)):
        reason = getattr(exc, "reason", exc)
        return SourceCheck(source.name, source.url, type(reason).__name__, False, 0, None, "unreachable", str(reason)[:200])
    raise exc


def _older_than(iso: str, days: float) -> bool:
    try:
        when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return datetime.now(timezone.utc) - when > timedelta(days=days)


def check_sources(
    sources: Iterable[Source],
    user_agent: str,
    timeout: float = 15.0,
    stale_days: float = 14.0,
    per_host: int = 2,
    obey_robots: bool = True,
    download_delay: float = 0.0,
) -> list[SourceCheck]:
    """Every source's verdict, in the order given. A host gets at most `per_host` requests at
    once, as in the crawl (`concurrency_per_domain`): its sources wait in its own queue, served
    by that many lanes, while the lanes of other hosts run beside them. Its checks start
    `download_delay` apart, or its robots.txt's Crawl-delay (at most MAX_CRAWL_DELAY), and a host
    that answers 429 is asked nothing more. robots.txt is matched against `user_agent`, the
    crawler's own, whatever header a source sends."""
    sources = list(sources)
    robots = direct_fetch.RobotsRules(user_agent, timeout) if obey_robots else None
    results: list[SourceCheck | None] = [None] * len(sources)
    queues: dict[str, deque[int]] = {}
    for index, source in enumerate(sources):
        queues.setdefault(host_of(source.url) or source.url, deque()).append(index)
    turns = {host: _HostTurns() for host in queues}

    def lane(host: str) -> None:
        queue, turn = queues[host], turns[host]
        while True:
            try:
                index = queue.popleft()
            except IndexError:
                return
            source = sources[index]
            delay = max(download_delay, min(robots.crawl_delay(source.url), MAX_CRAWL_DELAY) if robots else 0.0)
            with turn.lock:
                refusal, wait = turn.resting, turn.next_at - time.monotonic()
                turn.next_at = max(turn.next_at, time.monotonic()) + delay
            if refusal is not None:
                results[index] = SourceCheck(source.name, source.url, "429", False, 0, None, "blocked", refusal)
                continue
            if wait > 0:
                time.sleep(wait)
            results[index] = result = check_source(source, user_agent, timeout, stale_days, robots)
            if result.status == "429":  # too many requests: the host's other sources are not asked
                turn.resting = f"not asked: {host} answered HTTP 429 to {source.name}"

    # every host's first lane before any host's second: the hosts share the workers
    lanes = [host for n in range(max(per_host, 1)) for host, queue in queues.items() if len(queue) > n]
    with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
        for done in [pool.submit(lane, host) for host in lanes]:
            done.result()
    return [result for result in results if result is not None]


@dataclass
class _HostTurns:
    """When a host's next check may start (download_delay, or its robots.txt's Crawl-delay, between
    two), and why it is asked nothing more (a 429)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    next_at: float = 0.0
    resting: str | None = None


def check_table(results: list[SourceCheck]) -> str:
    header = ("source", "status", "parsed", "items", "newest item", "verdict")
    rows = [
        tuple(shown(cell, inline=True) for cell in (  # before any cut to width: a server's words must not rewrite the table
            r.name, r.status, "yes" if r.parsed else "no", str(r.items), (r.newest or "-")[:19],
            r.verdict + (f" ({r.detail})" if r.detail and r.verdict != "ok" else "") + (f" via {r.feed}" if r.feed else ""),
        ))
        for r in results
    ]
    widths = [min(max(len(h), *(len(row[i]) for row in rows)) if rows else len(h), 48) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c[:w].ljust(w) if i < 5 else c for i, (c, w) in enumerate(zip(row, widths))).rstrip() for row in rows]
    counts: dict[str, int] = {}
    for r in results:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    lines.append(", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "no sources")
    return "\n".join(lines)
