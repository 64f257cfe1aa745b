"""Feed documents (RSS 0.9x/1.0/2.0, Atom, JSON Feed) -> FeedEntry records.

feedparser gets the bytes Scrapy downloaded, never a URL or a path: it would fetch on its
own, without our timeouts, size limits or URL policy. The bytes are decoded first as pages are
(crawler.encoding: a declaration is trusted only when the bytes agree), because feedparser
falls back to windows-1252 when a declared charset fails, which turns a windows-1251 feed
labelled UTF-8 into mojibake no rule can match. `bozo` means ill-formed, not unusable:
entries it recovered are kept. A feed cut off before its closing tag says so in `damage`,
for the source's health; one with a stray `&` or tag (common, and read in full by
feedparser's lenient parser) does not.
"""

from __future__ import annotations

import html
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urljoin
from xml.sax import SAXParseException

import feedparser

from crawler.dates import moment_of, plausible, rfc822_named_zone, utc_iso
from crawler.encoding import as_utf8_xml, decode_html
from crawler.items import FeedEntry

_TAGS = re.compile(r"<(?:/?[A-Za-z][^>]*|!--.*?--)>", re.DOTALL)  # not the "<" of "< 5%"
_SPACE = re.compile(r"\s+")
_HTML_TYPES = ("text/html", "application/xhtml+xml")
# the root's closing tag, then at most white space and comments (caches sign their copies so)
_CLOSED_ROOT = re.compile(r"</(?:[\w.-]+:)?(?:rss|feed|rdf)\s*>(?:\s|<!--.*?-->)*$", re.IGNORECASE | re.DOTALL)
# what feedparser is told the bytes are, once they are UTF-8 (it reads a missing type as ill-formed)
_DECODED_HEADERS = {"content-type": "application/xml; charset=utf-8"}

feedparser.registerDateHandler(rfc822_named_zone)  # tried before feedparser's own handlers


class FeedParseError(ValueError):
    """The document is not a feed we can read."""


@dataclass(frozen=True)
class ParsedFeed:
    title: str | None
    entries: list[FeedEntry]
    damage: str | None = None  # the document is not well-formed XML: what was read is kept


def plain_text(value: object, limit: int = 5000, is_html: bool = True) -> str | None:
    """The words of a feed field: HTML (tags dropped, entities read) or plain text as it is.

    A plain-text title such as "Exports < 5%, imports > 10%" must not lose what lies between
    its angle brackets; a field of the wrong type (a JSON Feed list or number) is no text."""
    if not isinstance(value, str) or not value:
        return None
    text = html.unescape(_TAGS.sub(" ", value)) if is_html else value
    text = _SPACE.sub(" ", text).strip()
    return text[:limit] or None


def _detail_text(raw: dict, key: str, limit: int = 5000) -> str | None:
    """A feedparser field as words, read as HTML or text by the type feedparser found for it."""
    detail = raw.get(f"{key}_detail") or {}
    return plain_text(raw.get(key), limit, detail.get("type", "text/html") in _HTML_TYPES)


def iso_date(value: object) -> str | None:
    """An RFC 3339 date (JSON Feed's format) as ISO 8601 in UTC, the form feed dates are stored in."""
    if not isinstance(value, str) or not value.strip():
        return None
    moment = moment_of(value.replace("z", "Z"))
    return utc_iso(moment) if moment and plausible(moment) else None


def _iso(struct: time.struct_time | None) -> str | None:
    """feedparser's UTC time tuple as ISO 8601; None for a date no article can have (1970, 2038)."""
    if not struct:
        return None
    try:
        moment = datetime(*struct[:6], tzinfo=timezone.utc)
    except (TypeError, ValueError):
        return None
    return moment.isoformat() if plausible(moment) else None


def parse_feed(body: bytes, base_url: str, headers: dict[str, str] | None = None) -> ParsedFeed:
    """Parse a feed document; JSON Feed is read directly, everything else through feedparser.

    `headers` are the response's (lower-case names): their charset is one of the declarations
    the decoding weighs."""
    text = decode_html(body, headers, undeclared="cp1252")
    if text.lstrip()[:1] in ("{", "["):
        return _parse_json_feed(text, base_url)
    utf8 = as_utf8_xml(text)
    parsed = feedparser.parse(
        utf8, sanitize_html=True, resolve_relative_uris=True,
        response_headers={**_DECODED_HEADERS, "content-location": base_url},
    )
    version = parsed.get("version") or ""
    if not parsed.entries and not version:
        raise FeedParseError("no RSS, Atom or JSON Feed found in the document (an HTML page?)")
    entries = []
    for raw in parsed.entries:
        link = _original_link(raw) or raw.get("link") or _first_alternate(raw)
        if not isinstance(link, str) or not link.strip():
            continue
        entries.append(
            FeedEntry(
                link=urljoin(base_url, link.strip()),
                title=_detail_text(raw, "title", 1000),
                published=_iso(raw.get("published_parsed")) or _iso(dict.get(raw, "updated_parsed")),  # no alias warning
                summary=_detail_text(raw, "summary") or _first_content(raw),
                author=plain_text(raw.get("author"), 300),
            )
        )
    damage = None
    if parsed.get("bozo") and isinstance(parsed.get("bozo_exception"), SAXParseException):
        if not entries:
            raise FeedParseError(f"ill-formed feed with no readable entries: {parsed['bozo_exception']}")
        if not _CLOSED_ROOT.search(text[-500:]):
            damage = f"the feed is cut off before its closing tag ({parsed['bozo_exception']}); {len(entries)} items read"
    return ParsedFeed(title=_detail_text(parsed.feed, "title", 500), entries=entries, damage=damage)


def _original_link(raw: dict) -> str | None:
    """FeedBurner's proxies (feeds.feedburner.com/~r/...) hide the article's own URL here; many
    of them no longer answer, the article does."""
    link = raw.get("feedburner_origlink")
    return link if isinstance(link, str) and link.strip().lower().startswith(("http://", "https://")) else None


def _first_alternate(raw: dict) -> str | None:
    for link in raw.get("links", []):
        if link.get("rel") in (None, "alternate") and link.get("href"):
            return link["href"]
    return None


def _first_content(raw: dict) -> str | None:
    contents = raw.get("content") or []
    if not contents:
        return None
    return plain_text(contents[0].get("value"), is_html=contents[0].get("type", "text/html") in _HTML_TYPES)


def _parse_json_feed(text: str, base_url: str) -> ParsedFeed:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise FeedParseError(f"not a readable JSON feed: {exc}") from None
    if not isinstance(data, dict) or not str(data.get("version", "")).startswith("https://jsonfeed.org/version/"):
        raise FeedParseError("JSON document is not a JSON Feed (no jsonfeed.org version)")
    entries = []
    items = data.get("items")
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        link = item.get("url") or item.get("external_url")
        if not isinstance(link, str):
            continue
        authors = item.get("authors") or ([item["author"]] if isinstance(item.get("author"), dict) else [])
        author = authors[0].get("name") if isinstance(authors, list) and authors and isinstance(authors[0], dict) else None
        entries.append(
            FeedEntry(
                link=urljoin(base_url, link.strip()),
                # JSON Feed's title, summary and content_text are plain text; content_html is HTML
                title=plain_text(item.get("title"), 1000, is_html=False),
                published=iso_date(item.get("date_published")) or iso_date(item.get("date_modified")),
                summary=plain_text(item.get("summary"), is_html=False)
                or plain_text(item.get("content_text"), is_html=False)
                or plain_text(item.get("content_html")),
                author=plain_text(author, 300, is_html=False),
            )
        )
    return ParsedFeed(title=plain_text(data.get("title"), 500, is_html=False), entries=entries)
