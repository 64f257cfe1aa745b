"""Sitemaps (index, urlset, Google News extension; plain or gzip) -> FeedEntry records.

Sitemaps are untrusted XML: the parser never resolves entities (XXE, billion laughs),
never touches the network and refuses huge trees; gzip bodies are inflated only up to a
fixed bound, so a small compressed bomb cannot fill memory. A `since` cut-off keeps an
archive sitemap from pulling years of old articles.
"""

from __future__ import annotations

import re
import zlib
from io import BytesIO
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urljoin

from lxml import etree

from crawler.items import FeedEntry

MAX_SITEMAP_BYTES = 50_000_000  # the sitemap protocol's own limit for one uncompressed file
GZIP_MAGIC = b"\x1f\x8b"
# A month or day in a child sitemap's URL (sitemap-2026-11.xml, /2026/11/23/, ?yyyy=2026&mm=11 is
# not read): the order of an index without <lastmod>
_URL_DATE = re.compile(r"(?<!\d)((?:19|20)\d\d)[-_/]?(0[1-9]|1[0-2])(?:[-_/]?(0[1-9]|[12]\d|3[01]))?(?!\d)")

_PARSER_OPTIONS = dict(resolve_entities=False, no_network=True, huge_tree=False, recover=True, remove_comments=True)


class SitemapError(ValueError):
    """The document is not a sitemap we can read."""


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
        raise SitemapError(f"sitemap larger than {limit} bytes once decompressed")
    return data


def parse_date(value: str | None) -> datetime | None:
    """W3C datetime (`2026-03-01`, `2026-03-01T08:30:00Z`, `...+02:00`) -> aware datetime."""
    if not value:
        return None
    value = value.strip()
    for candidate in (value, value[:19], value[:10]):
        try:
            parsed = datetime.fromisoformat(candidate.replace("Z", "+00:00"))
        except ValueError:
            continue
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def _url_date(url: str) -> str:
    """"2026-11" or "2026-11-23" from a URL that names its month or day, else ""."""
    match = _URL_DATE.search(url)
    if not match:
        return ""
    year, month, day = match.groups()
    return f"{year}-{month}-{day}" if day else f"{year}-{month}"


def _local(tag: object) -> str:
    """"{namespace}url" -> "url"; comments and processing instructions have no name."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child_text(element: etree._Element, path: str) -> str | None:
    """Text at a path of local names ("news/title"), whatever the namespaces."""
    text = element.findtext("/".join("{*}" + name for name in path.split("/")))
    return text.strip() if text and text.strip() else None


def parse_sitemap(body: bytes, base_url: str, since: datetime | None = None) -> ParsedSitemap:
    """Parse a sitemap index or urlset; drop items dated before `since` (undated ones are kept).

    The document is read as a stream and each <url> freed once read, so a 50,000-URL archive
    sitemap costs its list of entries, not a whole tree in memory.
    """
    if body[:2] == GZIP_MAGIC:
        body = gunzip_bounded(body)
    if len(body) > MAX_SITEMAP_BYTES:
        raise SitemapError(f"sitemap larger than {MAX_SITEMAP_BYTES} bytes")
    body = body.lstrip(b" \t\r\n")  # white space before <?xml ...?> is an error to libxml2, not to readers
    kind = ""
    depth = 0
    dated: list[tuple[str, str]] = []  # (lastmod, child sitemap URL)
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
            loc = _child_text(node, "loc")
            if kind == "sitemapindex" and item == "sitemap" and loc:
                lastmod = parse_date(_child_text(node, "lastmod"))
                if since and lastmod and lastmod < since:
                    skipped += 1
                else:
                    child = urljoin(base_url, loc)
                    dated.append((lastmod.isoformat() if lastmod else _url_date(child), child))
            elif kind == "urlset" and item == "url" and loc:
                date = parse_date(_child_text(node, "news/publication_date")) or parse_date(_child_text(node, "lastmod"))
                if since and date and date < since:
                    skipped += 1
                else:
                    entries.append(
                        FeedEntry(
                            link=urljoin(base_url, loc),
                            title=_child_text(node, "news/title"),
                            published=date.isoformat() if date else None,
                        )
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
        dated.sort(key=lambda pair: pair[0], reverse=True)
        return ParsedSitemap(children=[url for _, url in dated], skipped_old=skipped, damage=damage)
    entries.sort(key=lambda e: e.published or "", reverse=True)  # newest first, as feeds are
    return ParsedSitemap(entries=entries, skipped_old=skipped, damage=damage)
