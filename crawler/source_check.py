"""`armswatch sources check`: is each configured source alive, and does it still publish?

A source list is evidence, not a guarantee: this fetches every source once (in parallel,
bounded in time and size, http(s) only) and gives a verdict a user can act on:
ok, empty, stale, blocked or unreachable. It never writes to the database: a check is
not a crawl.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from crawler import direct_fetch
from crawler.config import Source
from crawler.dates import newest_first_key
from crawler.safe_text import shown

BLOCKED_STATUSES = {401, 403, 407, 429, 451}
MAX_BYTES = 10_000_000


@dataclass(frozen=True)
class SourceCheck:
    name: str
    url: str
    status: str  # HTTP status code, or the network error class
    parsed: bool
    items: int
    newest: str | None
    verdict: str  # ok | empty | stale | blocked | unreachable
    detail: str = ""


def entries_of(source: Source, body: bytes) -> list:
    """The articles a source document lists, with the same parsers the crawl uses."""
    if source.type == "sitemap":
        from spiders.sitemaps import parse_sitemap

        parsed = parse_sitemap(body, source.url)
        return [*parsed.entries, *parsed.children]  # an index lists sitemaps, each an undated item
    if source.type in ("page", "homepage"):
        from spiders.listings import parse_listing

        return parse_listing(body, source.url, source.selector).entries
    from spiders.feeds import parse_feed

    return parse_feed(body, source.url).entries


def check_source(source: Source, user_agent: str, timeout: float = 15.0, stale_days: float = 14.0) -> SourceCheck:
    try:
        fetched = direct_fetch.fetch(source.url, source.user_agent or user_agent, timeout, MAX_BYTES)
        status, body = fetched.status, fetched.body
    except urllib.error.HTTPError as exc:
        verdict = "blocked" if exc.code in BLOCKED_STATUSES else "unreachable"
        return SourceCheck(source.name, source.url, str(exc.code), False, 0, None, verdict, str(exc.reason)[:200])
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return SourceCheck(source.name, source.url, type(reason).__name__, False, 0, None, "unreachable", str(reason)[:200])
    try:
        entries = entries_of(source, body)
        parsed = True
    except Exception as exc:  # any parse failure is a verdict, not a crash
        return SourceCheck(source.name, source.url, str(status), False, 0, None, "empty", f"cannot parse: {exc}"[:200])
    newest = min((d for d in (getattr(e, "published", None) for e in entries) if d), key=newest_first_key, default=None)
    if not entries:
        verdict = "empty"
    elif newest and _older_than(newest, stale_days):
        verdict = "stale"
    else:
        verdict = "ok"
    return SourceCheck(source.name, source.url, str(status), parsed, len(entries), newest, verdict)


def _older_than(iso: str, days: float) -> bool:
    try:
        when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return datetime.now(timezone.utc) - when > timedelta(days=days)


def check_sources(sources: Iterable[Source], user_agent: str, timeout: float = 15.0, stale_days: float = 14.0) -> list[SourceCheck]:
    sources = list(sources)
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda s: check_source(s, user_agent, timeout, stale_days), sources))


def check_table(results: list[SourceCheck]) -> str:
    header = ("source", "status", "parsed", "items", "newest item", "verdict")
    rows = [
        tuple(shown(cell, inline=True) for cell in (  # before any cut to width: a server's words must not rewrite the table
            r.name, r.status, "yes" if r.parsed else "no", str(r.items), (r.newest or "-")[:19],
            r.verdict + (f" ({r.detail})" if r.detail and r.verdict != "ok" else ""),
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
