"""ArticleFrontier: the article pages a run has still to fetch, handed to Scrapy a few per site at a time.

A feed, sitemap or listing page names up to thousands of articles at once. Queued in Scrapy's
scheduler as requests, each costs some 2.4 KB (headers, meta, fingerprint cache, reference
tracking) until it is fetched: 24 MB for a first run over 10,000 articles. Waiting here, an
article is the FeedEntry the feed reader already made. Sites take turns, so a site with a long
backlog or slow answers holds only its own share of Scrapy's queue, never the others'.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Iterator

from crawler.config import Source
from crawler.items import FeedEntry
from crawler.urls import host_of

Waiting = tuple[Source, FeedEntry, str]  # the source, its feed entry, the canonical URL


class ArticleFrontier:
    """Articles waiting per site; at most `ahead_per_site` of a site's requests are out at once."""

    def __init__(self, ahead_per_site: int):
        if ahead_per_site < 1:
            raise ValueError(f"ahead_per_site must be at least 1, not {ahead_per_site}")
        self.ahead_per_site = ahead_per_site
        self.waiting: dict[str, deque[Waiting]] = {}
        self.out: Counter[str] = Counter()  # requests handed to Scrapy and not finished yet, per site
        self.seen: set[str] = set()  # canonical URLs taken in this run: an article listed twice is fetched once

    def __len__(self) -> int:
        return sum(len(queue) for queue in self.waiting.values())

    def add(self, source: Source, entry: FeedEntry, url: str) -> str | None:
        """Queue an article; its site, or None when this run already has it."""
        if url in self.seen:
            return None
        self.seen.add(url)
        site = host_of(url)  # Scrapy's per-site concurrency slot
        self.waiting.setdefault(site, deque()).append((source, entry, url))
        return site

    def take(self, sites: Iterable[str] | None = None) -> Iterator[tuple[str, Waiting]]:
        """The articles that may go out now, from `sites` (all by default), in the order they came."""
        for site in list(self.waiting if sites is None else sites):
            queue = self.waiting.get(site)
            while queue and self.out[site] < self.ahead_per_site:
                self.out[site] += 1
                yield site, queue.popleft()
            if queue is not None and not queue:
                del self.waiting[site]

    def finished(self, site: str) -> None:
        """One of the site's requests is answered, failed or dropped: room for the next."""
        if self.out[site] > 0:
            self.out[site] -= 1

    def nothing_out(self) -> None:
        """Scrapy is idle, so no request is out, whatever the counts say."""
        self.out.clear()
