"""The records that flow one way through armswatch: spider -> pipelines -> storage.

Plain frozen dataclasses, so they pickle cheaply into the extraction process pool
and read the same in every stage.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)  # a feed of thousands of items makes one per item
class FeedEntry:
    """What a feed, sitemap or listing page said about an article before we fetched it."""

    link: str
    title: str | None = None
    published: str | None = None  # ISO 8601, as given by the source
    summary: str | None = None  # plain text (HTML stripped)
    author: str | None = None


@dataclass(frozen=True)
class PageItem:
    """An article page as downloaded, not yet extracted."""

    url: str  # canonical form of the link we were asked to fetch
    final_url: str  # after redirects
    body: bytes = field(repr=False)  # a log line names the page, it does not dump it
    headers: dict[str, str] = field(repr=False)  # lower-cased names, first value of each
    status: int
    source: str  # name of the configured source
    entry: FeedEntry | None = None
    state_affiliated: bool = False


@dataclass(frozen=True)
class Article:
    """An extracted, cleaned article, ready for rules and storage."""

    url: str  # the URL fetched (after redirects)
    canonical_url: str  # rel=canonical / og:url when trustworthy, else url
    title: str | None
    text: str  # cleaned body, paragraphs separated by "\n\n"
    author: str | None = None
    published: str | None = None  # ISO 8601 date or datetime
    site_name: str | None = None
    language: str | None = None  # ISO 639-1 code
    summary_only: bool = False  # body came from the feed entry, not the page
    missing: tuple[str, ...] = ()  # fields that could not be found, e.g. ("author",)
    other_addresses: tuple[str, ...] = ()  # the page's own other versions (rel=amphtml): known, not fetched again


@dataclass(frozen=True)
class MatchedTerm:
    """One term occurrence that contributed to a flag."""

    concept: str  # name of the rule-file concept, e.g. "acquire" or "weapon.drone"
    term: str  # the text as it appears in the article
    start: int  # character offsets into rules.match_text(title, text)
    end: int


@dataclass(frozen=True)
class Match:
    """Why an article was flagged by one rule, with the tags that say who buys what."""

    rule: str
    score: float
    terms: tuple[MatchedTerm, ...]
    snippet: str  # plain text around the strongest match
    highlights: tuple[tuple[int, int], ...]  # offsets of matched terms inside snippet
    suppliers: tuple[str, ...] = ()  # e.g. ("Iran", "North Korea")
    recipients: tuple[str, ...] = ()  # e.g. ("Russia",)
    weapons: tuple[str, ...] = ()  # categories: drones, missiles, artillery shells, ...


@dataclass(frozen=True)
class ProcessedArticle:
    """The output of the CPU-bound stage (extract, clean, match) for one page."""

    page_url: str
    source: str
    article: Article | None  # None: the page held no article and no feed summary
    matches: tuple[Match, ...] = field(default_factory=tuple)
    error: str | None = None
    state_affiliated: bool = False
    content_hash: str | None = None  # text_hash(article.text)
    fingerprint: Any = None  # crawler.fingerprints.Fingerprint, for story clustering


def text_hash(text: str) -> str:
    """What tells a changed article from a repeat. Here, not in storage: the extraction workers
    compute it, and storage's import brought sqlite-utils, click and pluggy into them (about 1 MB)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
