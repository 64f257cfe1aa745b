"""ArticleFrontier: the article pages a run has still to fetch, handed to Scrapy a few per site at a time.

A feed, sitemap or listing page names up to thousands of articles at once. Queued in Scrapy's
scheduler as requests, each costs some 2.4 KB (headers, meta, fingerprint cache, reference
tracking) until it is fetched: 24 MB for a first run over 10,000 articles. Here an article
waits as a row of a private temporary SQLite database, which spills to a file past a small
page cache: a feed that puts whole articles in its summaries costs disk, not memory. Sites
take turns, so a site with a long backlog or slow answers holds only its own share of Scrapy's
queue, never the others'.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator

from crawler.config import Source
from crawler.items import FeedEntry
from crawler.urls import host_of, page_key

Waiting = tuple[Source, FeedEntry, str]  # the source, its feed entry, the canonical URL

# Pages of the temporary database kept in memory; the rest live in its file.
PAGE_CACHE_KIB = 512

_SCHEMA = """
CREATE TABLE articles (
    seq INTEGER PRIMARY KEY,
    site BLOB NOT NULL,
    source TEXT NOT NULL,  -- its name, checked by the config
    -- the feed's words as UTF-8 bytes (see _stored)
    page BLOB NOT NULL UNIQUE,  -- crawler.urls.page_key: a page taken once in a run, under any of its addresses, is not taken again
    url BLOB NOT NULL,  -- canonical
    link BLOB NOT NULL, title BLOB, published BLOB, summary BLOB, author BLOB
);
CREATE INDEX articles_by_site ON articles (site, seq);
"""


def _stored(value: str | None) -> bytes | None:
    """UTF-8 that keeps lone surrogates (a JSON Feed's "\\ud800"), which SQLite's text refuses."""
    return None if value is None else value.encode("utf-8", "surrogatepass")


def _loaded(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "surrogatepass")


class ArticleFrontier:
    """Articles waiting per site; at most `ahead_per_site` of a site's requests are out at once,
    and `ahead_in_all` of all sites' (by default no limit but the sites').

    The limit in all bounds the article pages held in memory at once, whatever the number of
    sites: Scrapy's own global limit is raised with the number of source hosts, so that dead
    hosts do not stop the others (see crawler.settings.MAX_CONCURRENT_REQUESTS)."""

    def __init__(self, ahead_per_site: int, ahead_in_all: int | None = None):
        if ahead_per_site < 1 or (ahead_in_all is not None and ahead_in_all < 1):
            raise ValueError(f"ahead_per_site and ahead_in_all must be at least 1, not {ahead_per_site}, {ahead_in_all}")
        self.ahead_per_site = ahead_per_site
        self.ahead_in_all = ahead_in_all
        self.waiting: dict[str, int] = {}  # articles not let out yet, per site, in turn order
        self.out: Counter[str] = Counter()  # requests handed to Scrapy and not finished yet, per site
        self.out_in_all = 0
        self.taken_up_to: Counter[str] = Counter()  # the last `seq` let out, per site
        self.sources: dict[str, Source] = {}
        # "" opens a private database in a temporary file, deleted when the connection closes
        self.db = sqlite3.connect("", isolation_level=None)
        self.db.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")
        self.db.execute("PRAGMA journal_mode = OFF")  # nothing here must survive a crash
        self.db.execute("PRAGMA synchronous = OFF")
        self.db.executescript(_SCHEMA)

    def __len__(self) -> int:
        return sum(self.waiting.values())

    def add(self, source: Source, entry: FeedEntry, url: str) -> str | None:
        """Queue an article; its site, or None when this run already has it."""
        site = host_of(url)  # Scrapy's per-site concurrency slot
        fields = (url, entry.link, entry.title, entry.published, entry.summary, entry.author)
        added = self.db.execute(
            "INSERT OR IGNORE INTO articles (site, source, page, url, link, title, published, summary, author)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (_stored(site), source.name, _stored(page_key(url)), *map(_stored, fields)),
        ).rowcount
        if not added:
            return None
        self.sources[source.name] = source
        self.waiting[site] = self.waiting.get(site, 0) + 1
        return site

    def take(self, sites: Iterable[str] | None = None) -> Iterator[tuple[str, Waiting]]:
        """The articles that may go out now, from `sites` (all by default, the sites taking
        turns), each site's in the order they came.

        A site's articles are counted out before the first is yielded, so the caller may hand
        them to Scrapy (and hear back from it) while iterating."""
        for site in list(self.waiting if sites is None else sites):
            room = self.ahead_per_site - self.out[site]
            if self.ahead_in_all is not None:
                room_in_all = self.ahead_in_all - self.out_in_all
                if room_in_all <= 0:
                    return
                room = min(room, room_in_all)
            if room <= 0 or site not in self.waiting:
                continue
            rows = self.db.execute(
                "SELECT seq, source, url, link, title, published, summary, author FROM articles"
                " WHERE site = ? AND seq > ? ORDER BY seq LIMIT ?",
                (_stored(site), self.taken_up_to[site], room),
            ).fetchall()  # not empty: the site's count says rows are waiting past its cursor
            self.taken_up_to[site] = rows[-1][0]
            self.out[site] += len(rows)
            self.out_in_all += len(rows)
            left = self.waiting.pop(site) - len(rows)
            if left > 0:
                self.waiting[site] = left  # its next turn comes after the others'
            for _seq, source, *fields in rows:
                url, link, title, published, summary, author = map(_loaded, fields)
                entry = FeedEntry(link=link, title=title, published=published, summary=summary, author=author)
                yield site, (self.sources[source], entry, url)

    def drop(self, site: str) -> Counter[str]:
        """Forget the site's articles not let out yet (its host asked to be left alone): how many
        each source had."""
        if self.waiting.pop(site, None) is None:
            return Counter()
        after = (_stored(site), self.taken_up_to[site])
        dropped = Counter(dict(self.db.execute(
            "SELECT source, count(*) FROM articles WHERE site = ? AND seq > ? GROUP BY source", after).fetchall()))
        self.db.execute("DELETE FROM articles WHERE site = ? AND seq > ?", after)
        return dropped

    def finished(self, site: str) -> None:
        """One of the site's requests is answered, failed or dropped: room for the next."""
        if self.out[site] > 0:
            self.out[site] -= 1
            self.out_in_all -= 1

    def nothing_out(self) -> None:
        """Scrapy is idle, so no request is out, whatever the counts say."""
        self.out.clear()
        self.out_in_all = 0

    def close(self) -> None:
        """Delete the temporary database."""
        self.db.close()
