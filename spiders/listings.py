"""Section/listing pages -> FeedEntry records for the article links, plus the next page.

A source may name a CSS selector for its article links; otherwise headline links (h1-h3,
<article>) and links whose path looks like an article (a date, a long slug, an id) are
taken, on the same site, outside navigation, and never tag/author/section pages. The
patterns are in listings.toml so a reviewer can read and extend them without code.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import lxml.html
from cssselect import SelectorError
from lxml import etree

from crawler.items import FeedEntry
from crawler.urls import canonical_url, is_fetchable_url

PATTERNS_FILE = Path(__file__).with_name("listings.toml")
_ARROWS = " .…»›>«‹<→←|"
_NAV_RELS = {"tag", "author", "next", "prev", "category"}
MAX_LINKS = 500  # per page: a listing with more is a sitemap in disguise


class ListingError(ValueError):
    """The page cannot be read as a listing (not HTML, or a broken selector)."""


@dataclass(frozen=True)
class ListingPatterns:
    headline_xpath: str
    skip_containers: frozenset[str]
    skip_classes: re.Pattern[str]
    article_path: tuple[re.Pattern[str], ...]
    not_article_path: tuple[re.Pattern[str], ...]
    next_text: frozenset[str]


@dataclass(frozen=True)
class ParsedListing:
    entries: list[FeedEntry] = field(default_factory=list)
    next_page: str | None = None


@lru_cache(maxsize=4)
def load_patterns(path: Path = PATTERNS_FILE) -> ListingPatterns:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    links, pagination = data["links"], data["pagination"]
    return ListingPatterns(
        headline_xpath=links["headline_xpath"],
        skip_containers=frozenset(links["skip_containers"]),
        skip_classes=re.compile(r"(?:^|[_-])(?:" + "|".join(map(re.escape, links["skip_classes"])) + r")$", re.I),
        article_path=tuple(re.compile(p, re.I) for p in links["article_path"]),
        not_article_path=tuple(re.compile(p, re.I) for p in links["not_article_path"]),
        next_text=frozenset(t.casefold() for t in pagination["next_text"]),
    )


def _site(host: str | None) -> str:
    host = (host or "").lower()
    return host[4:] if host.startswith("www.") else host


def same_site(url: str, page_url: str) -> bool:
    """Same host, ignoring `www.`, or a subdomain of the page's host (news.example.org)."""
    a, b = _site(urlsplit(url).hostname), _site(urlsplit(page_url).hostname)
    return bool(a) and (a == b or a.endswith("." + b) or b.endswith("." + a))


def _text(element: etree._Element) -> str:
    return " ".join("".join(element.itertext()).split())


_LAYOUT_TAGS = {"html", "body", "main"}  # their classes describe the layout, not a menu
_MENU = re.compile(r"(?:^|[_-])(?:menu|navbar)$", re.I)
_MENU_TAGS = frozenset({"menu", "header"})


def _inside(element: etree._Element, tags: frozenset[str], classes: re.Pattern[str], article_ends: bool) -> bool:
    """Is the element inside one of `tags`, or inside an element with a class or id token that
    `classes` matches? With `article_ends`, an <article> (and its own <header>) is content: the
    search stops there."""
    for ancestor in element.iterancestors():
        tag = ancestor.tag.lower() if isinstance(ancestor.tag, str) else ""
        if article_ends and tag == "article":
            return False
        if tag in tags:
            return True
        names = f"{ancestor.get('class') or ''} {ancestor.get('id') or ''}".split()
        if tag not in _LAYOUT_TAGS and any(classes.search(name) for name in names):
            return True
    return False


def _in_skipped_container(element: etree._Element, patterns: ListingPatterns) -> bool:
    """Inside <nav>, <footer>, <div class="main-menu">...: navigation, never articles."""
    return _inside(element, patterns.skip_containers, patterns.skip_classes, article_ends=True)


def _section_link(url: str, anchor: etree._Element) -> bool:
    """A headline-placed link to a section ("World" over a block, a card's "Europe" kicker):
    one word at the end of the path, no digits, and a label too short to be a headline."""
    last = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
    last = re.sub(r"\.(html?|php|aspx?)$", "", last, flags=re.I)
    return bool(last) and re.fullmatch(r"[^\W\d_]+", last) is not None and len(_text(anchor).split()) < 4


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def looks_like_article(url: str, patterns: ListingPatterns) -> bool:
    path = _path_of(url)
    if path in ("", "/") or any(p.search(path) for p in patterns.not_article_path):
        return False
    return any(p.search(path) for p in patterns.article_path)


def _is_excluded(url: str, patterns: ListingPatterns) -> bool:
    path = _path_of(url)
    return path in ("", "/") or any(p.search(path) for p in patterns.not_article_path)


def parse_listing(html: str | bytes, page_url: str, selector: str | None = None) -> ParsedListing:
    """Article links of a listing page (in page order, once each) and its next-page URL."""
    patterns = load_patterns()
    try:
        doc = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError) as exc:
        raise ListingError(f"not a readable HTML page: {exc}") from None
    if not doc.xpath("//a[@href]"):  # JSON, an image, an error text: a listing has links at least
        raise ListingError("no links at all on the page: not an HTML listing")
    base = doc.xpath("string(//base/@href)") or page_url
    base = urljoin(page_url, base)

    if selector:
        try:
            chosen = doc.cssselect(selector)
        except SelectorError as exc:
            raise ListingError(f"bad CSS selector {selector!r}: {exc}") from None
        anchors = []
        for element in chosen:
            if element.tag == "a" and element.get("href"):
                anchors.append(element)
            else:
                anchors.extend(element.xpath(".//a[@href]"))
        candidates = [(a, True) for a in anchors]
    else:
        headlines = set(doc.xpath(patterns.headline_xpath))
        candidates = [(a, a in headlines) for a in doc.iter("a") if a.get("href")]

    entries: list[FeedEntry] = []
    seen: set[str] = {canonical_url(page_url)}
    for anchor, trusted in candidates:
        url = urljoin(base, anchor.get("href", "").strip())
        if not is_fetchable_url(url) or not same_site(url, page_url):
            continue
        url = url.split("#", 1)[0]
        if not selector:
            if _in_skipped_container(anchor, patterns) or _NAV_RELS & set((anchor.get("rel") or "").lower().split()):
                continue
            if trusted:
                if _is_excluded(url, patterns) or (_section_link(url, anchor) and not looks_like_article(url, patterns)):
                    continue
            elif not looks_like_article(url, patterns):
                continue
        key = canonical_url(url)
        if key in seen:
            continue
        seen.add(key)
        title = _text(anchor) or anchor.get("title") or None
        entries.append(FeedEntry(link=url, title=title[:1000] if title else None))
        if len(entries) >= MAX_LINKS:
            break
    return ParsedListing(entries=entries, next_page=_next_page(doc, base, page_url, patterns))


def _in_menu(anchor: etree._Element) -> bool:
    """In a site menu (the pager may well sit in a <nav>, or a class="pagination" block)."""
    return _inside(anchor, _MENU_TAGS, _MENU, article_ends=False)


def _next_page(doc: lxml.html.HtmlElement, base: str, page_url: str, patterns: ListingPatterns) -> str | None:
    """rel=next (link or a) first, then a link whose text says "next" in a known language."""
    hrefs = doc.xpath("//link[contains(concat(' ', normalize-space(@rel), ' '), ' next ')]/@href")
    hrefs += doc.xpath("//a[contains(concat(' ', normalize-space(@rel), ' '), ' next ')]/@href")
    for anchor in doc.iter("a"):
        href = anchor.get("href")
        if not href or _in_menu(anchor):
            continue
        label = (_text(anchor) or anchor.get("aria-label") or anchor.get("title") or "").casefold()
        if label.strip(" .…") in patterns.next_text or label.strip(_ARROWS) in patterns.next_text:
            hrefs.append(href)
    for href in hrefs:
        url = urljoin(base, href.strip()).split("#", 1)[0]
        if is_fetchable_url(url) and same_site(url, page_url) and canonical_url(url) != canonical_url(page_url):
            return url
    return None
