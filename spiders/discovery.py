"""Feed discovery for a homepage: the feeds it announces, else the usual feed paths.

A site announces its feeds with `<link rel="alternate" type="application/rss+xml">`
(or Atom, or JSON Feed); many that do not still serve one at a conventional path, which
the spider then tries one at a time, stopping at the first real feed.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import lxml.html
from lxml import etree

from crawler.urls import is_fetchable_url

FEED_TYPES = {
    "application/rss+xml",
    "application/atom+xml",
    "application/rdf+xml",
    "application/feed+json",  # not application/json: WordPress announces its REST API so on every page
    "application/x-rss+xml",
    "text/xml",
    "application/xml",
}
COMMON_FEED_PATHS = ("/feed", "/rss", "/rss.xml", "/feed.xml", "/atom.xml", "/index.xml")
MAX_FEEDS = 5  # a homepage announcing dozens of feeds (one per tag) is crawled by its first few


def announced_feeds(html: str | bytes, page_url: str) -> list[str]:
    """Feed URLs a page announces with <link rel="alternate">, in page order, once each."""
    try:
        doc = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return []
    base = urljoin(page_url, doc.xpath("string(//base/@href)") or page_url)
    found: list[str] = []
    for link in doc.xpath("//link[@href]"):
        rels = (link.get("rel") or "").lower().split()
        kind = (link.get("type") or "").split(";")[0].strip().lower()
        if "alternate" not in rels or kind not in FEED_TYPES:
            continue
        url = urljoin(base, link.get("href").strip())
        if is_fetchable_url(url) and url not in found:
            found.append(url)
    # comment feeds are rarely what a monitor wants; keep them last
    found.sort(key=lambda u: "comment" in u.lower())
    return found[:MAX_FEEDS]


def common_feed_urls(homepage: str) -> list[str]:
    """The conventional feed locations at the root of the homepage's site."""
    parts = urlsplit(homepage)
    root = f"{parts.scheme}://{parts.netloc}"
    return [root + path for path in COMMON_FEED_PATHS]
