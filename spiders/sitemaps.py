"""Sitemaps (index, urlset, Google News extension; plain or gzip) -> FeedEntry records.

Sitemaps are untrusted XML: the parser never resolves entities (XXE, billion laughs),
never touches the network and refuses huge trees; gzip bodies are inflated only up to a
fixed bound, so a small compressed bomb cannot fill memory. A `since` cut-off keeps an
archive sitemap from pulling years of old articles.
"""

from __future__ import annotations

import codecs
import re
import zlib
from io import BytesIO
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import urljoin

from lxml import etree

from crawler.dates import moment_of, newest_first_key, plausible, rfc822_moment, utc_iso
from crawler.encoding import as_utf8_xml, decode_html
from crawler.items import FeedEntry

MAX_SITEMAP_BYTES = 50_000_000  # the sitemap protocol's own limit for one uncompressed file
MAX_SITEMAP_URLS = 50_000  # and for the URLs it lists: reading more would hold the crawl up for seconds
GZIP_MAGIC = b"\x1f\x8b"
# A month or day in a child sitemap's URL (sitemap-2026-11.xml, /2026/11/23/, ?yyyy=2026&mm=11 is
# not read): the order of an index without <lastmod>
_URL_DATE = re.compile(r"(?<!\d)((?:19|20)\d\d)[-_/]?(0[1-9]|1[0-2])(?:[-_/]?(0[1-9]|[12]\d|3[01]))?(?!\d)")

_PROLOG_ENCODING = re.compile(rb"""^<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]+)""")
_UTF8_CHECK_CHUNK = 1 << 20


def _as_utf8(body: bytes, headers: dict[str, str] | None) -> bytes:
    """The sitemap in UTF-8, which the protocol requires and libxml2 assumes without a prolog.

    A prolog naming another charset is libxml2's to read. Bytes that are not UTF-8 under a
    prolog saying UTF-8, or none, are decoded as pages are (crawler.encoding: the header's
    charset, then detection): a windows-1251 sitemap's Cyrillic addresses came out as U+FFFD."""
    declared = _PROLOG_ENCODING.match(body)
    if declared and declared.group(1).lower().replace(b"_", b"-") not in (b"utf-8", b"utf8"):
        return body
    check = codecs.getincrementaldecoder("utf-8")()
    try:
        for start in range(0, len(body), _UTF8_CHECK_CHUNK):  # never a second copy of a 50 MB sitemap
            check.decode(body[start : start + _UTF8_CHECK_CHUNK], final=start + _UTF8_CHECK_CHUNK >= len(body))
        return body
    except UnicodeDecodeError:
        pass
    return as_utf8_xml(decode_html(body, headers))


_PARSER_OPTIONS = dict(resolve_entities=False, no_network=True, huge_tree=False, recover=True, remove_comments=True)


class SitemapError(ValueError):
    """The document is not a sitemap we can read."""


class SitemapTooLarge(SitemapError):
    """Past the sitemap protocol's 50 MB (MAX_SITEMAP_BYTES), as sent or once decompressed."""


@dataclass(frozen=True)
class ParsedSitemap:
    """A sitemap index lists child sitemaps; a urlset lists articles. One of the two is empty."""

    children: list[str] = field(default_factory=list)
    entries: list[FeedEntry] = field(default_factory=list)
    skipped_old: int = 0  # entries or children left out by the date window
    damage: str | None = None  # not well-formed XML (cut off, damaged): what was read is kept


def gunzip_bounded(body: bytes, limit: int = MAX_SITEMAP_BYTES) -> bytes:
    """Inflate a gzip body (Scrapy did not, having seen no Content-Encoding) up to `limit` bytes."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise SitemapError(f"broken gzip data: {exc}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise SitemapTooLarge(f"sitemap larger than {limit:,} bytes once decompressed")
    return data


def date_span(value: str | None) -> tuple[datetime, datetime, str] | None:
    """(start, end, precision) of a sitemap date: "2026-03-01" is the whole day, so a window
    starting at noon still holds it; precision is "year", "month", "day" or "time"."""
    value = (value or "").strip()
    if not value:
        return None
    span = _w3c_span(value) or _rfc822_span(value)
    if span is None or not plausible(span[0]):
        return None
    return span


def _w3c_span(value: str) -> tuple[datetime, datetime, str] | None:
    if re.fullmatch(r"\d{4}", value):
        start = datetime(int(value), 1, 1, tzinfo=timezone.utc)
        return start, start.replace(year=start.year + 1), "year"
    if re.fullmatch(r"\d{4}-\d{2}", value):
        try:
            start = datetime(int(value[:4]), int(value[5:]), 1, tzinfo=timezone.utc)
        except ValueError:
            return None
        after = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return start, after, "month"
    for candidate in (value, value[:19], value[:10]):
        moment = moment_of(candidate)
        if moment is not None:
            if len(candidate) == 10:
                return moment, moment + timedelta(days=1), "day"
            return moment, moment, "time"
    return None


def _rfc822_span(value: str) -> tuple[datetime, datetime, str] | None:
    moment = rfc822_moment(value)
    return (moment, moment, "time") if moment is not None else None


def _stored_date(span: tuple[datetime, datetime, str] | None) -> str | None:
    """What an entry's `published` says: the day of a date, the UTC time of a timestamp (as feeds
    store theirs); a month or a year is no publication date."""
    if span is None or span[2] in ("year", "month"):
        return None
    return span[0].date().isoformat() if span[2] == "day" else utc_iso(span[0])


def _url_date(url: str) -> datetime | None:
    """The month or day a URL names (sitemap-2026-11.xml, /2026/11/23/), else None; ?yyyy=2026&mm=11
    is not read."""
    match = _URL_DATE.search(url)
    if not match:
        return None
    year, month, day = match.groups()
    try:
        return datetime(int(year), int(month), int(day or 1), tzinfo=timezone.utc)
    except ValueError:  # 2026-02-31
        return None


def _local(tag: object) -> str:
    """"{namespace}url" -> "url"; comments and processing instructions have no name."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _fields(element: etree._Element) -> dict[str, str]:
    """Texts of an entry's children by local name, whatever the namespaces: "loc", "lastmod", and
    "news/title" for the Google News extension's. One pass: a sitemap may list 50,000 entries."""
    found: dict[str, str] = {}
    for child in element:
        name = _local(child.tag)
        if name == "news":
            for part in child:
                text = (part.text or "").strip()
                if text:
                    found.setdefault("news/" + _local(part.tag), text)
        else:
            text = (child.text or "").strip()
            if text:
                found.setdefault(name, text)
    return found


def _absolute(base_url: str, loc: str) -> str:
    return loc if loc.startswith(("http://", "https://")) else urljoin(base_url, loc)


def parse_sitemap(
    body: bytes, base_url: str, since: datetime | None = None, headers: dict[str, str] | None = None
) -> ParsedSitemap:
    """Parse a sitemap index or urlset; drop items dated before `since` (undated ones are kept).

    The document is read as a stream and each <url> freed once read, so a 50,000-URL archive
    sitemap costs its list of entries, not a whole tree in memory. `headers` (lower-case names)
    may name its charset.
    """
    if body[:2] == GZIP_MAGIC:
        body = gunzip_bounded(body)
    if len(body) > MAX_SITEMAP_BYTES:
        raise SitemapTooLarge(f"sitemap larger than {MAX_SITEMAP_BYTES:,} bytes")
    body = _as_utf8(body.lstrip(b" \t\r\n"), headers)  # white space before <?xml ...?> is an error to libxml2
    kind = ""
    depth = 0
    dated: list[tuple[datetime | None, str]] = []  # (lastmod or a date in its URL, child sitemap URL)
    entries: list[FeedEntry] = []
    skipped = 0
    damage = None
    reader = etree.iterparse(BytesIO(body), events=("start", "end"), **_PARSER_OPTIONS)
    try:
        for event, node in reader:
            if event == "start":
                depth += 1
                if depth == 1:
                    kind = _local(node.tag)
                    if kind not in ("urlset", "sitemapindex"):
                        raise SitemapError(f"root element <{kind or node.tag}> is neither <urlset> nor <sitemapindex>")
                continue
            depth -= 1
            if depth != 1:
                continue
            item = _local(node.tag)
            fields = _fields(node)
            loc = fields.get("loc")
            if kind == "sitemapindex" and item == "sitemap" and loc:
                lastmod = date_span(fields.get("lastmod"))
                if since and lastmod and lastmod[1] < since:
                    skipped += 1
                else:
                    child = _absolute(base_url, loc)
                    dated.append((lastmod[0] if lastmod else _url_date(child), child))
            elif kind == "urlset" and item == "url" and loc:
                span = date_span(fields.get("news/publication_date")) or date_span(fields.get("lastmod"))
                if since and span and span[1] < since:
                    skipped += 1
                elif len(entries) == MAX_SITEMAP_URLS:
                    damage = f"more than {MAX_SITEMAP_URLS} URLs, the sitemap protocol's limit; the first {MAX_SITEMAP_URLS} read"
                    break
                else:
                    entries.append(
                        FeedEntry(link=_absolute(base_url, loc), title=fields.get("news/title"), published=_stored_date(span))
                    )
            node.clear()
            while node.getprevious() is not None:
                del node.getparent()[0]
    except etree.XMLSyntaxError as exc:
        if not kind:
            raise SitemapError(f"not a readable XML sitemap: {exc}") from None
        damage = str(exc)
    # lxml's recovering parser reads past damage, and closes a cut-off document itself
    fatal = [error for error in reader.error_log if error.level_name == "FATAL"]
    if fatal and kind:
        damage = damage or f"line {fatal[0].line}: {fatal[0].message}"
        cut_in = re.search(r"Premature end of data in tag (\S+)", fatal[0].message)
        if cut_in and cut_in.group(1) != kind:  # cut off inside an item: the last one read is cut too
            (dated or entries or [None]).pop()
        damage = f"not well-formed XML ({damage}); {len(dated) + len(entries)} entries read"
    if not kind:
        raise SitemapError("empty or unreadable XML document")
    if kind == "sitemapindex":
        # newest first (by <lastmod>, else a date in the URL; the rest in document order): a cap
        # keeps the recent ones
        dated.sort(key=lambda pair: (pair[0] is None, -pair[0].timestamp() if pair[0] else 0.0))
        return ParsedSitemap(children=[url for _, url in dated], skipped_old=skipped, damage=damage)
    entries.sort(key=lambda entry: newest_first_key(entry.published))  # in true time, whatever their zones
    return ParsedSitemap(entries=entries, skipped_old=skipped, damage=damage)
