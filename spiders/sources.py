"""SourcesSpider: one crawl over every configured source, then over the new article pages.

A source is a feed, a (news) sitemap, a listing page, or a homepage whose feeds are
discovered. Its first document gets a conditional GET (ETag / Last-Modified) and is
skipped when its body is one already seen; the documents it leads to (child sitemaps,
further listing pages, discovered feeds) become FeedEntry records, and only article
pages not stored yet are requested: they wait in the ArticleFrontier (spiders/frontier.py,
rows of a temporary SQLite database), which hands them to Scrapy a few per site at a time.
The validators of a source are saved when the crawl finishes, never before, so a run killed
halfway is completed by the next one instead of being answered by 304; nor are they saved
when a document or article of the source failed in a way that may pass (the next run must
retry it), nor for a sitemap index, whose children change while it stays the same. Health
is written once per source and run before any of its article pages is requested, so the
pipeline can count new articles against it; further documents that fail or arrive damaged
turn it to "partial" at the end of the run, or to a failure when the source gave no item.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider
from scrapy.http import Response
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from crawler.clustering import assign_unassigned
from crawler.config import Config, Source, load_config
from crawler.dates import newest_first_key
from crawler.encoding import decode_markup
from crawler.errors import UNREACHABLE, classify_failure
from crawler.items import FeedEntry, PageItem
from crawler.middlewares import HostResting, asks_to_rest, rest_end, rest_reason
from crawler.safe_text import show_logs_safely
from crawler.urls import address_variants, canonical_url, host_of, is_fetchable_url
from spiders.discovery import announced_feeds, common_feed_urls
from spiders.feeds import FeedParseError, parse_feed
from spiders.frontier import ArticleFrontier
from spiders.listings import ListingError, parse_listing
from spiders.sitemaps import MAX_SITEMAP_BYTES, SitemapError, SitemapTooLarge, parse_sitemap
from storage.store import ArticleStore, StoreError

# Statuses the document callback sees itself (to record them in the health table);
# redirects stay with Scrapy's RedirectMiddleware.
SOURCE_STATUSES = [304, *range(400, 600)]
MAX_SITEMAP_CHILDREN = 50  # per index, newest first: older archives need a since_days window anyway
MAX_SITEMAP_DEPTH = 2  # an index of indexes, no deeper

# Roles of the documents a source leads to
ROOT = "root"  # the configured URL of a feed, sitemap or listing source
HOMEPAGE = "homepage"  # the configured URL of a homepage source
ANNOUNCED = "announced feed"  # a feed the homepage links to
PROBE = "probed feed"  # a conventional feed path tried when the homepage announces none
CHILD_SITEMAP = "child sitemap"
NEXT_PAGE = "next page"  # page 2.. of a listing

READ_ERRORS = (FeedParseError, SitemapError, ListingError, ValueError)
# Article failures the next run may not meet: the source's validators are then not saved, so
# that an unchanged feed is read again and the article retried, in this many runs at most (then
# it waits for the feed to change: a page that fails every run must not cost its feed's 304s)
PASSING_ERRORS = ("timeout", "DNS", "refused", "connection lost", "connect error", "HTTP 408", "HTTP 429")
RETRY_RUNS = 3
# Article requests out per site at once, as a multiple of the per-site concurrency: enough that
# the downloader never waits for the frontier
AHEAD_PER_CONCURRENT_REQUEST = 4
# Article requests out in all, as a multiple of the configured global concurrency (before the
# spider raises it for many hosts): what bounds the pages in memory at once
ARTICLES_AHEAD_IN_ALL_PER_REQUEST = 2


@dataclass
class SourceRun:
    """What one run has learnt about a source so far (its health row is written once)."""

    recorded: bool = False
    succeeded: bool = False  # its health row this run says ok
    announced_pending: int = 0
    feed_found: bool = False
    items_seen: int = 0  # entries listed by all its documents
    items_taken: int = 0  # new articles queued, counted against max_items
    documents: set[str] = field(default_factory=set)  # URLs requested: an index or pager that loops is read once
    keep_validators: bool = True  # nothing of the source is left to retry: its documents' validators are saved
    index_root: bool = False  # the source is a sitemap index (see read_sitemap)
    indexes: set[str] = field(default_factory=set)  # its documents that were sitemap indexes
    problems: list[tuple[str, str]] = field(default_factory=list)  # (error class, message) of further documents
    before: tuple[int, str | None] = (0, None)  # (consecutive failures, last success) before this run
    waiting_sitemaps: list[tuple[str, int]] = field(default_factory=list)  # (URL, depth), newest first
    every_page: bool = False  # a listing read to max_pages: the last run did not finish it
    not_asked: int = 0  # articles left for the next run: their host asked to be left alone
    not_asked_why: tuple[str, str] = ("", "")  # (error class, message) of the first such host


class SourcesSpider(scrapy.Spider):
    name = "sources"

    def __init__(
        self,
        armswatch_config: Config | None = None,
        config: str | None = None,
        db: str | None = None,
        refresh: bool | str = False,
        trigger: str = "manual",
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if armswatch_config is None:
            # `scrapy crawl sources -a config=FILE [-a db=PATH]`
            if not config:
                raise ValueError("give a config: scrapy crawl sources -a config=armswatch.toml")
            armswatch_config = load_config(config)
        self.armswatch_config = armswatch_config
        self.db_path = db or armswatch_config.crawl.db
        self.refresh = refresh in (True, "1", "true", "yes")
        self.trigger = trigger
        self.store: ArticleStore | None = None
        self.store_error: str | None = None
        self.unwritten_errors: list[tuple[str, str, str]] = []  # (source, URL, message) refused with a batch
        self.run_id: int | None = None
        self.pending_validators: dict[str, tuple[str | None, str | None, str]] = {}
        self.pending_child_validators: dict[tuple[str, str], tuple[str | None, str | None, str]] = {}  # (source, URL)
        self.runs: dict[str, SourceRun] = {}
        self.frontier: ArticleFrontier  # sized from the crawler's settings in from_crawler
        self.host_rests: dict[str, tuple[str, int, str]] = {}  # host -> (until, status, why): not asked this run

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> SourcesSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        settings = crawler.settings
        configured, per_site = settings.getint("CONCURRENT_REQUESTS"), settings.getint("CONCURRENT_REQUESTS_PER_DOMAIN")
        spider.frontier = ArticleFrontier(AHEAD_PER_CONCURRENT_REQUEST * max(1, per_site),
                                          ARTICLES_AHEAD_IN_ALL_PER_REQUEST * configured)
        hosts = {urlsplit(source.url).netloc for source in spider.armswatch_config.enabled_sources}
        slots = max(configured, min(settings.getint("MAX_CONCURRENT_REQUESTS"), 2 * len(hosts)))
        settings.set("CONCURRENT_REQUESTS", slots, priority="spider")  # see MAX_CONCURRENT_REQUESTS
        crawler.signals.connect(spider.on_opened, signal=scrapy.signals.spider_opened)
        crawler.signals.connect(spider.on_closed, signal=scrapy.signals.spider_closed)
        crawler.signals.connect(spider.on_request_dropped, signal=scrapy.signals.request_dropped)
        crawler.signals.connect(spider.on_idle, signal=scrapy.signals.spider_idle)
        return spider

    # -- lifecycle ---------------------------------------------------------------------

    def on_opened(self, spider: scrapy.Spider) -> None:
        """Open the database and start this run's row; if it cannot be written (locked by another
        writer, read-only), nothing is crawled and `store_error` says why (Scrapy would only log it)."""
        show_logs_safely()  # warnings quote URLs and server answers; Scrapy's log handler is in place by now
        try:
            self.store = ArticleStore(self.db_path)
            sources = self.armswatch_config.enabled_sources
            self.store.sync_sources(self.armswatch_config.sources)
            self.run_id = self.store.start_run(self.trigger, len(sources), os.getpid())
        except (StoreError, sqlite3.Error) as exc:  # a StoreError names the database already
            self.store_error = str(exc) if isinstance(exc, StoreError) else f"{self.db_path}: database unusable: {exc}"
            if self.store is not None:
                self.store.close()
                self.store = None
            return
        assign_unassigned(self.store)  # articles stored before story clustering existed
        self.host_rests = self.store.host_rests()

    def on_closed(self, spider: scrapy.Spider, reason: str) -> None:
        self.frontier.close()
        if self.store is None:
            return
        if reason == "finished":
            for name, (etag, last_modified, body_hash) in self.pending_validators.items():
                if self.runs[name].keep_validators and not self.runs[name].index_root:
                    self.store.set_source_validators(name, etag, last_modified, body_hash)
                else:  # read in full next time
                    self.store.set_source_validators(name, None, None, None)
            for (name, url), validators in self.pending_child_validators.items():
                self.store.set_child_validators(name, url, *(validators if self.runs[name].keep_validators else (None, None, None)))
        self.record_problems()
        stats = self.crawler.stats
        counts = {
            "feeds": stats.get_value("armswatch/sources_fetched", 0),
            "not_modified": stats.get_value("armswatch/sources_not_modified", 0),
            "pages_fetched": stats.get_value("armswatch/pages_fetched", 0),
            "articles_stored": stats.get_value("armswatch/articles_stored", 0),
            "articles_updated": stats.get_value("armswatch/articles_updated", 0),
            "matches_new": stats.get_value("armswatch/matches_new", 0),
            "errors": stats.get_value("armswatch/errors", 0),
        }
        self.store.finish_run(self.run_id, reason, counts)
        self.store.close()

    def recipients_for_rule(self, rule: str) -> list[tuple[str, str]]:
        """(address, mode) of every alert recipient who follows this rule."""
        return [
            (r.address, r.mode)
            for r in self.armswatch_config.alerts.recipients
            if not r.rules or rule in r.rules
        ]

    # -- source documents --------------------------------------------------------------

    async def start(self) -> AsyncIterator[Request]:
        if self.store is None:  # the database could not be opened for writing: on_opened said why
            return
        for source in self.armswatch_config.enabled_sources:
            self.runs[source.name] = SourceRun(documents={source.url})
            rest = self.host_rests.get(host_of(source.url))
            if rest is not None:  # its host asked an earlier run to come back later
                _until, status, why = rest  # `why` names the time
                self.source_error(source, source.url, f"HTTP {status}", why, status)
                continue
            if source.type == "homepage":
                # A homepage changes on every visit; the feeds it leads to carry the validators.
                yield self.document_request(source, source.url, HOMEPAGE, conditional=False)
            else:
                yield self.document_request(source, source.url, ROOT, conditional=True)

    def document_request(self, source: Source, url: str, role: str, conditional: bool, **meta: Any) -> Request:
        """A request for a document of `source`; `conditional` ones carry the stored validators."""
        headers: dict[str, str] = {}
        if conditional and self.store is not None:
            validators = self.stored_validators(source, url, role)
            meta["stored_hash"] = validators["body_hash"]  # what parse_document compares the body with
            if validators["etag"] and not self.refresh:
                headers["If-None-Match"] = validators["etag"]
            if validators["last_modified"] and not self.refresh:
                headers["If-Modified-Since"] = validators["last_modified"]
        if source.user_agent:
            headers["User-Agent"] = source.user_agent
        if source.type == "sitemap":  # an archive sitemap may be larger than any article page
            meta.setdefault("download_maxsize", max(MAX_SITEMAP_BYTES, self.crawler.settings.getint("DOWNLOAD_MAXSIZE")))
        return Request(
            url,
            callback=self.parse_document,
            errback=self.document_failed,
            headers=headers,
            dont_filter=True,
            meta={
                **meta,
                "source": source,
                "role": role,
                "conditional": conditional,
                "document_url": url,  # as asked for: the key of its validators, whatever it redirects to
                "handle_httpstatus_list": SOURCE_STATUSES,
            },
            priority=10,
        )

    def further_request(self, source: Source, url: str, role: str, **meta: Any) -> Request | None:
        """A request for a document the source leads to, unless this run has asked for it already.
        A child sitemap is asked for conditionally: an archive's many sitemaps rarely change."""
        run = self.runs[source.name]
        if not is_fetchable_url(url) or url in run.documents:
            return None
        run.documents.add(url)
        return self.document_request(source, url, role, conditional=role == CHILD_SITEMAP, **meta)

    def stored_validators(self, source: Source, url: str, role: str) -> dict[str, str | None]:
        """The validators a conditional document was last read with: a child sitemap's own, else the source's."""
        if role == CHILD_SITEMAP:
            return self.store.child_validators(source.name, url)
        return self.store.source_validators(source.name)

    def parse_document(self, response: Response) -> Iterable[Request]:
        source: Source = response.meta["source"]
        role: str = response.meta["role"]
        stats = self.crawler.stats
        if response.status == 304:
            if role == CHILD_SITEMAP:  # unchanged since it was read in full: its articles are known
                self.child_unchanged(source)
                return
            stats.inc_value("armswatch/sources_not_modified")
            self.source_ok(source, "not modified", 304, 0)
            return
        if response.status >= 400:
            self.remember_rest(response)
            yield from self.document_error(response.request, f"HTTP {response.status}", f"HTTP {response.status} from {response.url}", response.status)
            return
        encoding = undecoded_encoding(response)
        if encoding:
            yield from self.document_error(response.request, "bad response", _undecodable(response.url, encoding), response.status)
            return
        stats.inc_value("armswatch/sources_fetched")
        if response.meta["conditional"]:
            body_hash = hashlib.sha256(response.body).hexdigest()
            stored_hash = response.meta.get("stored_hash")
            if not self.refresh and stored_hash == body_hash and role == CHILD_SITEMAP:
                self.child_unchanged(source)
                return
            if not self.refresh and stored_hash == body_hash:
                stats.inc_value("armswatch/sources_not_modified")
                self.source_ok(source, "unchanged", response.status, 0)
                return
            etag = response.headers.get(b"ETag")
            last_modified = response.headers.get(b"Last-Modified")
            validators = (etag.decode("latin-1") if etag else None, last_modified.decode("latin-1") if last_modified else None, body_hash)
            if source.type == "page":
                self.unfinished_listing(source, stored_hash)
        else:
            validators = None
        try:
            if role == HOMEPAGE:
                requests = list(self.discover_feeds(source, response))
            elif role in (ANNOUNCED, PROBE) or source.type == "feed":
                requests = list(self.read_feed(source, response))
            elif source.type == "sitemap":
                requests = list(self.read_sitemap(source, response))
            elif source.type == "page":
                requests = list(self.read_listing(source, response))
            else:
                raise FeedParseError(f"source type {source.type!r} is not supported")
        except READ_ERRORS as exc:
            error_class = "too large" if isinstance(exc, SitemapTooLarge) else "parse error"
            yield from self.document_error(response.request, error_class, f"{response.url}: {exc}", response.status)
            return
        except Exception as exc:  # a reader's bug on an odd document must not hide the source's failure
            self.logger.exception("%s: reading %s failed", source.name, response.url)
            yield from self.document_error(
                response.request, "parse error", f"{response.url}: {type(exc).__name__}: {exc}", response.status
            )
            return
        if validators is not None and role == CHILD_SITEMAP and response.meta["document_url"] not in self.runs[source.name].indexes:
            self.pending_child_validators[(source.name, response.meta["document_url"])] = validators
        elif validators is not None and source.name not in self.pending_validators:
            self.pending_validators[source.name] = validators
        yield from requests
        self.release_articles()

    # -- one reader per source type ----------------------------------------------------------

    def read_feed(self, source: Source, response: Response) -> Iterable[Request]:
        parsed = parse_feed(response.body, response.url, _charset_headers(response))
        entries = self.listed(source, parsed.entries)
        self.runs[source.name].feed_found = True
        self.source_ok(source, "ok", response.status, len(entries))
        if parsed.damage:
            self.note_problem(source, response.url, "parse error", f"{response.url}: {parsed.damage}")
        self.queue_articles(source, entries)
        return []

    def listed(self, source: Source, entries: list[FeedEntry]) -> list[FeedEntry]:
        """Count a document's entries as seen by its source in this run."""
        self.runs[source.name].items_seen += len(entries)
        return entries

    def room_for_articles(self, source: Source) -> bool:
        """Whether the source may still queue new articles in this run (max_items)."""
        return not source.max_items or self.runs[source.name].items_taken < source.max_items

    def read_sitemap(self, source: Source, response: Response) -> Iterable[Request]:
        since = None
        if source.since_days:
            since = datetime.now(timezone.utc) - timedelta(days=source.since_days)
        parsed = parse_sitemap(response.body, response.url, since, _charset_headers(response))
        self.crawler.stats.inc_value("armswatch/sitemap_items_too_old", parsed.skipped_old)
        entries = self.listed(source, parsed.entries)
        self.source_ok(source, "ok", response.status, len(entries))
        if parsed.damage:
            self.note_problem(source, response.url, "parse error", f"{response.url}: {parsed.damage}")
        depth = response.meta.get("depth_in_source", 0)
        self.queue_articles(source, entries)
        requests = []
        if parsed.children:  # an index keeps no validators: its sitemaps change while it stays the same
            self.runs[source.name].indexes.add(response.meta["document_url"])
            self.runs[source.name].index_root |= depth == 0
        if parsed.children and depth < MAX_SITEMAP_DEPTH:
            if len(parsed.children) > MAX_SITEMAP_CHILDREN:
                self.logger.info(
                    "%s: %s lists %d sitemaps; reading the %d newest (a since_days window leaves out older ones)",
                    source.name, response.url, len(parsed.children), MAX_SITEMAP_CHILDREN,
                )
            children = [(url, depth + 1) for url in parsed.children[:MAX_SITEMAP_CHILDREN]]
            if source.max_items:  # one at a time, newest first, until max_items are taken
                self.runs[source.name].waiting_sitemaps[0:0] = children
            else:
                for url, child_depth in children:
                    request = self.further_request(source, url, CHILD_SITEMAP, depth_in_source=child_depth)
                    if request is not None:
                        requests.append(request)
        return requests + self.next_sitemap(source)

    def child_unchanged(self, source: Source) -> None:
        """A child sitemap answered 304 or the same bytes. Its validators were saved, so the last run
        left nothing of the source to take: with max_items, read newest first, the older sitemaps
        hold nothing new either, and none is read after it (they would otherwise be read one
        deeper into the archive every run, their entries never counted)."""
        self.crawler.stats.inc_value("armswatch/child_sitemaps_not_modified")

    def next_sitemap(self, source: Source) -> list[Request]:
        """The next child sitemap of a source with max_items, until its sitemaps have listed that many
        entries (the newest part of the source) or that many new articles are taken."""
        run = self.runs[source.name]
        while run.waiting_sitemaps and run.items_seen < (source.max_items or 0) and self.room_for_articles(source):
            url, depth = run.waiting_sitemaps.pop(0)
            request = self.further_request(source, url, CHILD_SITEMAP, depth_in_source=depth)
            if request is not None:
                return [request]
        return []

    def read_listing(self, source: Source, response: Response) -> Iterable[Request]:
        page = response.meta.get("page_number", 1)
        parsed = parse_listing(_text_of(response), response.url, source.selector)
        entries = self.listed(source, parsed.entries)
        self.source_ok(source, "ok", response.status, len(entries))
        queued = self.queue_articles(source, entries)
        # Older pages of a listing hold older articles: stop paging once a page brings nothing new,
        # unless the last run left the listing unfinished (see unfinished_listing).
        more = queued or self.refresh or self.runs[source.name].every_page
        if parsed.next_page and page < source.max_pages and more and self.room_for_articles(source):
            request = self.further_request(source, parsed.next_page, NEXT_PAGE, page_number=page + 1)
            return [request] if request is not None else []
        return []

    def unfinished_listing(self, source: Source, stored_hash: str | None) -> None:
        """A listing's older pages are read only while they bring new articles, so one whose last run
        ended before its articles were stored (some failed, or the run was killed while page 2's
        were downloading) would lose them for good: its first page now lists only known ones.

        Its validators are therefore cleared as soon as a run reads it, and saved again only when
        the run finishes with nothing left to retry (on_closed). A listing found without them is
        read to max_pages."""
        self.runs[source.name].every_page = stored_hash is None
        self.store.set_source_validators(source.name, None, None, None)

    def discover_feeds(self, source: Source, response: Response) -> Iterable[Request]:
        feeds = announced_feeds(_text_of(response), response.url)
        self.crawler.stats.inc_value("armswatch/feeds_discovered", len(feeds))
        if feeds:
            self.runs[source.name].announced_pending = len(feeds)
            # Only the first feed carries the source's validators: one set per source.
            self.runs[source.name].documents.update(feeds)
            return [self.document_request(source, url, ANNOUNCED, conditional=i == 0) for i, url in enumerate(feeds)]
        return [self.probe_request(source, 0)]

    def probe_request(self, source: Source, index: int) -> Request:
        url = common_feed_urls(source.url)[index]
        return self.document_request(source, url, PROBE, conditional=True, probe_index=index)

    # -- article pages -------------------------------------------------------------------

    def queue_articles(self, source: Source, entries: Iterable[FeedEntry]) -> int:
        """Put the articles not stored yet in the frontier, newest first; how many were new to this run.

        max_items caps the new articles of a run, not the entries read: known ones do not count.
        When it leaves new articles behind, the source's validators are not kept, so that the
        next run reads it again and takes the next ones."""
        run = self.runs[source.name]
        listed: list[tuple[FeedEntry, str, list[str]]] = []  # (entry, canonical URL, addresses it may be stored under)
        for entry in sorted(entries, key=lambda entry: newest_first_key(entry.published)):
            if not is_fetchable_url(entry.link):
                self.crawler.stats.inc_value("armswatch/links_refused")
                self.logger.info("%s: refused non-http(s) link %r", source.name, entry.link[:200])  # the feed's problem, not a failure
                continue
            url = canonical_url(entry.link)
            listed.append((entry, url, [] if self.refresh else [*address_variants(url), entry.link]))
        known = self.store.known_urls(address for *_, addresses in listed for address in addresses)  # none when refreshing
        queued = 0
        for entry, url, addresses in listed:
            if not known.isdisjoint(addresses):
                self.crawler.stats.inc_value("armswatch/links_known")
                continue
            if not self.room_for_articles(source):
                run.keep_validators = False  # at least one new article is left for the next run
                break
            if self.frontier.add(source, entry, url) is None:
                self.crawler.stats.inc_value("armswatch/links_repeated")  # listed by two feeds of this run
                continue
            queued += 1
            run.items_taken += 1
        return queued

    def release_articles(self) -> None:
        """Hand Scrapy the article requests the frontier lets out now, the sites taking turns."""
        for site, (source, entry, url) in self.frontier.take():
            headers = {"User-Agent": source.user_agent} if source.user_agent else {}
            try:
                request = Request(
                    url,
                    callback=self.parse_article,
                    errback=self.article_failed,
                    headers=headers,
                    meta={"source": source, "entry": entry, "canonical": url, "frontier_site": site},
                )
            except ValueError as exc:  # a link Scrapy will not request must not cost the others of its site
                self.frontier.finished(site)
                self.article_problem(source, url, "bad link", f"{url[:300]}: {exc}")
                continue
            self.crawler.engine.crawl(request)

    def retry_next_run(self, source_name: str) -> None:
        """Something of this source failed in a way that may pass: its validators are not saved, so
        that the next run reads its documents in full and retries what is not stored."""
        if source_name in self.runs:
            self.runs[source_name].keep_validators = False

    def article_finished(self, request: Request) -> None:
        self.frontier.finished(request.meta["frontier_site"])
        self.release_articles()  # the room may be another site's turn

    def on_request_dropped(self, request: Request, spider: scrapy.Spider) -> None:
        if "frontier_site" in request.meta:  # a redirect to a page this run already fetched
            self.article_finished(request)

    def on_idle(self, spider: scrapy.Spider) -> None:
        if len(self.frontier):  # some request ended without a word to the frontier: a bug, but nothing is lost
            self.logger.warning("%d articles still waiting when Scrapy went idle: letting them out", len(self.frontier))
            self.frontier.nothing_out()
            self.release_articles()
            raise DontCloseSpider

    def parse_article(self, response: Response) -> Iterable[PageItem]:
        self.article_finished(response.request)
        source: Source = response.meta["source"]
        self.crawler.stats.inc_value("armswatch/pages_fetched")
        encoding = undecoded_encoding(response)
        if encoding:
            self.article_problem(source, response.url, "bad response", _undecodable(response.url, encoding))
            return
        headers = {
            key.decode("latin-1").lower(): values[0].decode("latin-1")
            for key, values in response.headers.items()
            if values
        }
        yield PageItem(
            url=response.meta["canonical"],
            final_url=response.url,
            body=response.body,
            headers=headers,
            status=response.status,
            source=source.name,
            entry=response.meta.get("entry"),
            state_affiliated=source.state_affiliated,
        )

    def article_failed(self, failure: Failure) -> None:
        request = failure.request
        self.article_finished(request)
        source: Source = request.meta["source"]
        error_class, message = self.described(failure)
        if failure.check(HostResting):  # asked for before its host said so: counted, not a line each
            self.not_asked(source.name, 1, error_class, str(failure.value))
            return
        self.article_problem(source, request.url, error_class, message)
        if failure.check(HttpError):
            response = failure.value.response
            retry_after = response.headers.get(b"Retry-After")
            if asks_to_rest(response.status, retry_after):
                self.leave_host_alone(host_of(request.url), error_class, rest_reason(request.url, response.status, retry_after))
                self.remember_rest(response)
        if error_class in PASSING_ERRORS or error_class.startswith("HTTP 5"):
            self.retry_failed_article(source.name, request.url)

    def article_problem(self, source: Source, url: str, error_class: str, message: str) -> None:
        """An article of the source could not be fetched or read: recorded now, and the source shows
        "partial" in its health at the end of the run (record_problems), as when a further document fails."""
        self.note_error(source, url, error_class, message)
        self.runs[source.name].problems.append((error_class, message))

    def remember_rest(self, response: Response) -> None:
        """A host that asks for a long rest (Retry-After past what a run waits out) is not asked by
        the next runs either before then (crawler.middlewares.rest_end)."""
        retry_after = response.headers.get(b"Retry-After")
        end = rest_end(retry_after) if asks_to_rest(response.status, retry_after) else None
        if end is not None:
            until = end.isoformat().replace("+00:00", "Z")
            why = rest_reason(response.url, response.status, retry_after, f"before {until}")
            self.store.rest_host(host_of(response.url), end.isoformat(), response.status, why)

    def leave_host_alone(self, host: str, error_class: str, why: str) -> None:
        """The host asked not to be asked again now (crawler.middlewares.HostRestMiddleware, which
        refuses its requests already out): its articles still waiting are left for the next run."""
        for source_name, count in self.frontier.drop(host).items():
            self.not_asked(source_name, count, error_class, why)

    def not_asked(self, source_name: str, count: int, error_class: str, why: str) -> None:
        run = self.runs[source_name]
        run.not_asked += count
        if not run.not_asked_why[0]:
            run.not_asked_why = (error_class, why)
        self.retry_next_run(source_name)  # an article never asked for has not failed: no RETRY_RUNS limit

    def described(self, failure: Failure) -> tuple[str, str]:
        """classify_failure's class and message, with the size limit a "too large" download hit."""
        error_class, message = classify_failure(failure)
        if error_class == "too large" and UNREACHABLE not in message:  # not robots.txt's, which has its own limit
            request = failure.request
            limit = request.meta.get("download_maxsize") or self.crawler.settings.getint("DOWNLOAD_MAXSIZE")
            message += f" (limit {limit:,} bytes)"
        return error_class, message

    def retry_failed_article(self, source_name: str, url: str) -> None:
        """An article failed in a way that may pass: retried next run, unless it has failed in
        RETRY_RUNS runs already (then it no longer holds back its feed's 304)."""
        if self.store.runs_failing(url) <= RETRY_RUNS:
            self.retry_next_run(source_name)

    # -- health ------------------------------------------------------------------------------

    def source_ok(self, source: Source, status: str, http_status: int, items_seen: int) -> None:
        """The first good document of a source writes its health row; later ones add their items."""
        run = self.runs[source.name]
        if run.recorded:
            if items_seen:
                self.store.add_items_seen(source.name, items_seen)
            return
        run.recorded = run.succeeded = True
        run.before = self.store.record_source_result(
            source.name, ok=True, status=status, http_status=http_status,
            items_seen=items_seen, items_new=0, run_id=self.run_id,
        )

    def document_failed(self, failure: Failure) -> Iterable[Request]:
        error_class, message = self.described(failure)
        return list(self.document_error(failure.request, error_class, message, None))

    def document_error(self, request: Request, error_class: str, message: str, http_status: int | None) -> Iterable[Request]:
        """A document of a source failed: the source fails if it was its first, or its last hope."""
        source: Source = request.meta["source"]
        role: str = request.meta["role"]
        run = self.runs[source.name]
        if role == PROBE:
            index = request.meta["probe_index"] + 1
            if run.feed_found:
                return
            if index < len(common_feed_urls(source.url)):
                yield self.probe_request(source, index)
                return
            paths = ", ".join(common_feed_urls(source.url))
            self.source_error(source, source.url, "no feed found", f"{source.url} announces no feed and none answers at {paths}", None)
            return
        if role == ANNOUNCED:
            run.announced_pending -= 1
            if run.announced_pending <= 0 and not run.feed_found:
                self.note_error(source, request.url, error_class, message)
                yield self.probe_request(source, 0)
            else:
                self.note_problem(source, request.url, error_class, message)
            return
        if role in (CHILD_SITEMAP, NEXT_PAGE):
            self.note_problem(source, request.url, error_class, message)
            yield from self.next_sitemap(source)
            return
        self.source_error(source, request.url, error_class, message, http_status)

    def note_error(self, source: Source, url: str, error_class: str, message: str) -> None:
        """A failure that does not fail the source (one child sitemap, one listing page)."""
        self.crawler.stats.inc_value("armswatch/errors")
        self.logger.warning("%s: %s failed: %s", source.name, url, message)
        self.store.record_error(self.run_id, source.name, url, error_class, message)

    def note_problem(self, source: Source, url: str, error_class: str, message: str) -> None:
        """A further document of a source failed or came damaged: recorded now, shown in its
        health at the end of the run, and the source's validators are not saved (retried next run)."""
        self.note_error(source, url, error_class, message)
        self.runs[source.name].problems.append((error_class, message))
        self.retry_next_run(source.name)

    def storage_failed(self, source_name: str, url: str, message: str) -> None:
        """An article the database refused with its whole batch (locked by another writer, disk
        full): its source shows it at the end of the run, and reads its documents in full next run.
        The error row is written then too: the database refuses writes now."""
        self.crawler.stats.inc_value("armswatch/errors")
        self.logger.warning("%s: %s not stored: %s", source_name, url, message)
        self.unwritten_errors.append((source_name, url, message))
        if source_name in self.runs:
            self.runs[source_name].problems.append(("storage", f"{url}: {message}"))
        self.retry_next_run(source_name)

    def record_problems(self) -> None:
        """Health of the sources whose further documents failed: "partial" when items were still
        read, a failure of the source when none was (a sitemap index whose sitemaps all failed)."""
        for source_name, url, message in self.unwritten_errors:
            self.store.record_error(self.run_id, source_name, url, "storage", message)
        for name, run in self.runs.items():
            if run.not_asked:
                error_class, why = run.not_asked_why
                source = next(s for s in self.armswatch_config.enabled_sources if s.name == name)
                message = f"{run.not_asked} article{'s' if run.not_asked > 1 else ''} left for the next run: {why}"
                self.note_error(source, source.url, error_class, message)
                run.problems.insert(0, (error_class, message))  # what the health table shows first
        for name, run in self.runs.items():
            if not run.problems or not run.succeeded:
                continue
            error_class, message = run.problems[0]
            more = len(run.problems) - 1
            error = message + (f" (and {more} more problem{'s' if more > 1 else ''} this run)" if more else "")
            failed = run.items_seen == 0
            self.store.record_source_problems(
                name, status=error_class if failed else "partial", error=error, failed=failed, before=run.before,
                run_id=self.run_id,
            )

    def source_error(self, source: Source, url: str, error_class: str, message: str, http_status: int | None) -> None:
        self.note_error(source, url, error_class, message)
        self.runs[source.name].recorded = True
        self.store.record_source_result(
            source.name, ok=False, status=error_class, http_status=http_status, error=message, run_id=self.run_id
        )


def _charset_headers(response: Response) -> dict[str, str]:
    """The header crawler.encoding reads a charset from."""
    content_type = response.headers.get(b"Content-Type")
    return {"content-type": content_type.decode("latin-1")} if content_type else {}


def _text_of(response: Response) -> str:
    """A listing or home page decoded as article pages are (crawler.encoding): a charset the
    bytes refuse is overruled. Scrapy's `response.text` takes the header's word for it, and a
    windows-1251 listing served as iso-8859-1 gave links to pages that do not exist."""
    return decode_markup(response.body, _charset_headers(response))


def undecoded_encoding(response: Response) -> str | None:
    """A Content-Encoding Scrapy could not undo (xz, an unknown name): the body is still encoded."""
    value = response.headers.get(b"Content-Encoding")
    encoding = value.decode("latin-1").strip().lower() if value else ""
    return encoding if encoding and encoding != "identity" else None


def _undecodable(url: str, encoding: str) -> str:
    return f"{url} is served in a content encoding armswatch cannot read ({encoding})"
