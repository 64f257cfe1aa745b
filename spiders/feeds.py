"""Feed documents (RSS 0.9x/1.0/2.0, Atom, JSON Feed) -> FeedEntry records.

feedparser gets the bytes Scrapy downloaded, never a URL or a path: it would fetch on its
own, without our timeouts, size limits or URL policy. `bozo` means ill-formed, not
unusable: entries it recovered are kept, and the error is reported only when none were.
"""

from __future__ import annotations

import html
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urljoin

import feedparser

from crawler.items import FeedEntry

_TAGS = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


class FeedParseError(ValueError):
    """The document is not a feed we can read."""


@dataclass(frozen=True)
class ParsedFeed:
    title: str | None
    entries: list[FeedEntry]
    warning: str | None = None  # feedparser's bozo exception when entries were still recovered


def plain_text(value: str | None, limit: int = 5000) -> str | None:
    """Feed summaries are HTML (or text/plain feedparser does not sanitise): keep the words only."""
    if not value:
        return None
    text = html.unescape(_TAGS.sub(" ", value))
    text = _SPACE.sub(" ", text).strip()
    return text[:limit] or None


def _iso(struct: time.struct_time | None) -> str | None:
    if not struct:
        return None
    try:
        return datetime(*struct[:6], tzinfo=timezone.utc).isoformat()
    except (TypeError, ValueError):
        return None


def parse_feed(body: bytes, base_url: str) -> ParsedFeed:
    """Parse a feed document; JSON Feed is read directly, everything else through feedparser."""
    stripped = body.lstrip()[:1]
    if stripped in (b"{", b"["):
        return _parse_json_feed(body, base_url)
    parsed = feedparser.parse(body, sanitize_html=True, resolve_relative_uris=True, response_headers={"content-location": base_url})
    version = parsed.get("version") or ""
    if not parsed.entries and not version:
        raise FeedParseError("no RSS, Atom or JSON Feed found in the document (an HTML page?)")
    if not parsed.entries and parsed.get("bozo"):
        raise FeedParseError(f"ill-formed feed with no readable entries: {parsed.get('bozo_exception')}")
    entries = []
    for raw in parsed.entries:
        link = raw.get("link") or _first_alternate(raw)
        if not link:
            continue
        entries.append(
            FeedEntry(
                link=urljoin(base_url, link.strip()),
                title=plain_text(raw.get("title"), 1000),
                published=_iso(raw.get("published_parsed") or raw.get("updated_parsed")),
                summary=plain_text(raw.get("summary") or _first_content(raw)),
                author=plain_text(raw.get("author"), 300),
            )
        )
    warning = str(parsed.get("bozo_exception")) if parsed.get("bozo") else None
    return ParsedFeed(title=plain_text(parsed.feed.get("title"), 500), entries=entries, warning=warning)


def _first_alternate(raw: dict) -> str | None:
    for link in raw.get("links", []):
        if link.get("rel") in (None, "alternate") and link.get("href"):
            return link["href"]
    return None


def _first_content(raw: dict) -> str | None:
    contents = raw.get("content") or []
    return contents[0].get("value") if contents else None


def _parse_json_feed(body: bytes, base_url: str) -> ParsedFeed:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FeedParseError(f"not a readable JSON feed: {exc}") from None
    if not isinstance(data, dict) or not str(data.get("version", "")).startswith("https://jsonfeed.org/version/"):
        raise FeedParseError("JSON document is not a JSON Feed (no jsonfeed.org version)")
    entries = []
    for item in data.get("items") or []:
        if not isinstance(item, dict):
            continue
        link = item.get("url") or item.get("external_url")
        if not isinstance(link, str):
            continue
        authors = item.get("authors") or ([item["author"]] if isinstance(item.get("author"), dict) else [])
        author = authors[0].get("name") if authors and isinstance(authors[0], dict) else None
        entries.append(
            FeedEntry(
                link=urljoin(base_url, link.strip()),
                title=plain_text(item.get("title"), 1000),
                published=item.get("date_published") or item.get("date_modified"),
                summary=plain_text(item.get("summary") or item.get("content_text") or item.get("content_html")),
                author=plain_text(author, 300),
            )
        )
    return ParsedFeed(title=plain_text(data.get("title"), 500), entries=entries)
