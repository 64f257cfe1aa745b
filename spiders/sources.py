"""SourcesSpider: one crawl over every configured source, then over the new article pages.

A source is a feed, a (news) sitemap, a listing page, or a homepage whose feeds are
discovered. Its first document gets a conditional GET (ETag / Last-Modified) and is
skipped when its body is one already seen; the documents it leads to (child sitemaps,
further listing pages, discovered feeds) become FeedEntry records, and only article
pages not stored yet are requested: they wait in the ArticleFrontier (spiders/frontier.py,
rows of a temporary SQLite database), which hands them to Scrapy a few per site at a time.
The validators of a source are saved when the crawl finishes, never before, so a run killed
halfway is completed by the next one instead of being answered by 304. Health is written
once per source and run before any of its article pages is requested, so the pipeline can
count new articles against it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import scrapy
from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider
from scrapy.http import Response
from twisted.python.failure import Failure

from crawler.clustering import assign_unassigned
from crawler.config import Config, Source, load_config
from crawler.errors import classify_failure
from crawler.items import FeedEntry, PageItem
from crawler.urls import canonical_url, is_fetchable_url
from spiders.discovery import announced_feeds, common_feed_urls
from spiders.feeds import FeedParseError, parse_feed
from spiders.frontier import ArticleFrontier
from spiders.listings import ListingError, parse_listing
from spiders.sitemaps import SitemapError, parse_sitemap
from storage.store import ArticleStore

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
# Article requests out per site at once, as a multiple of the per-site concurrency: enough that
# the downloader never waits for the frontier
AHEAD_PER_CONCURRENT_REQUEST = 4


@dataclass
class SourceRun:
    """What one run has learnt about a source so far (its health row is written once)."""

    recorded: bool = False
    announced_pending: int = 0
    feed_found: bool = False


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
        self.run_id: int | None = None
        self.pending_validators: dict[str, tuple[str | None, str | None, str]] = {}
        self.runs: dict[str, SourceRun] = {}
        self.frontier: ArticleFrontier  # sized from the crawler's settings in from_crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> SourcesSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        per_site = crawler.settings.getint("CONCURRENT_REQUESTS_PER_DOMAIN")
        spider.frontier = ArticleFrontier(AHEAD_PER_CONCURRENT_REQUEST * max(1, per_site))
        crawler.signals.connect(spider.on_opened, signal=scrapy.signals.spider_opened)
        crawler.signals.connect(spider.on_closed, signal=scrapy.signals.spider_closed)
        crawler.signals.connect(spider.on_request_dropped, signal=scrapy.signals.request_dropped)
        crawler.signals.connect(spider.on_idle, signal=scrapy.signals.spider_idle)
        return spider

    # -- lifecycle ---------------------------------------------------------------------

    def on_opened(self, spider: scrapy.Spider) -> None:
        self.store = ArticleStore(self.db_path)
        sources = self.armswatch_config.enabled_sources
        self.store.sync_sources(self.armswatch_config.sources)
        self.run_id = self.store.start_run(self.trigger, len(sources), os.getpid())
        assign_unassigned(self.store)  # articles stored before story clustering existed

    def on_closed(self, spider: scrapy.Spider, reason: str) -> None:
        self.frontier.close()
        if self.store is None:
            return
        if reason == "finished":
            for name, (etag, last_modified, body_hash) in self.pending_validators.items():
                self.store.set_source_validators(name, etag, last_modified, body_hash)
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
        for source in self.armswatch_config.enabled_sources:
            self.runs[source.name] = SourceRun()
            if source.type == "homepage":
                # A homepage changes on every visit; the feeds it leads to carry the validators.
                yield self.document_request(source, source.url, HOMEPAGE, conditional=False)
            else:
                yield self.document_request(source, source.url, ROOT, conditional=True)

    def document_request(self, source: Source, url: str, role: str, conditional: bool, **meta: Any) -> Request:
        """A request for a document of `source`; `conditional` ones carry the stored validators."""
        headers: dict[str, str] = {}
        if conditional and self.store is not None and not self.refresh:
            validators = self.store.source_validators(source.name)
            if validators["etag"]:
                headers["If-None-Match"] = validators["etag"]
            if validators["last_modified"]:
                headers["If-Modified-Since"] = validators["last_modified"]
        if source.user_agent:
            headers["User-Agent"] = source.user_agent
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
                "handle_httpstatus_list": SOURCE_STATUSES,
            },
            priority=10,
        )

    def parse_document(self, response: Response) -> Iterable[Request]:
        source: Source = response.meta["source"]
        role: str = response.meta["role"]
        stats = self.crawler.stats
        if response.status == 304:
            stats.inc_value("armswatch/sources_not_modified")
            self.source_ok(source, "not modified", 304, 0)
            return
        if response.status >= 400:
            yield from self.document_error(response.request, f"HTTP {response.status}", f"HTTP {response.status} from {response.url}", response.status)
            return
        stats.inc_value("armswatch/sources_fetched")
        if response.meta["conditional"]:
            body_hash = hashlib.sha256(response.body).hexdigest()
            if not self.refresh and self.store.source_validators(source.name)["body_hash"] == body_hash:
                stats.inc_value("armswatch/sources_not_modified")
                self.source_ok(source, "unchanged", response.status, 0)
                return
            etag = response.headers.get(b"ETag")
            last_modified = response.headers.get(b"Last-Modified")
            validators = (etag.decode("latin-1") if etag else None, last_modified.decode("latin-1") if last_modified else None, body_hash)
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
            yield from self.document_error(response.request, "parse error", f"{response.url}: {exc}", response.status)
            return
        if validators is not None and source.name not in self.pending_validators:
            self.pending_validators[source.name] = validators
        yield from requests
        self.release_articles()

    # -- one reader per source type ----------------------------------------------------------

    def read_feed(self, source: Source, response: Response) -> Iterable[Request]:
        entries = parse_feed(response.body, response.url).entries
        if source.max_items:
            entries = entries[: source.max_items]
        self.runs[source.name].feed_found = True
        self.source_ok(source, "ok", response.status, len(entries))
        self.queue_articles(source, entries)
        return []

    def read_sitemap(self, source: Source, response: Response) -> Iterable[Request]:
        since = None
        if source.since_days:
            since = datetime.now(timezone.utc) - timedelta(days=source.since_days)
        parsed = parse_sitemap(response.body, response.url, since)
        self.crawler.stats.inc_value("armswatch/sitemap_items_too_old", parsed.skipped_old)
        entries = parsed.entries[: source.max_items] if source.max_items else parsed.entries
        self.source_ok(source, "ok", response.status, len(entries))
        depth = response.meta.get("depth_in_source", 0)
        self.queue_articles(source, entries)
        requests = []
        if parsed.children and depth < MAX_SITEMAP_DEPTH:
            for url in parsed.children[:MAX_SITEMAP_CHILDREN]:
                if is_fetchable_url(url):
                    requests.append(self.document_request(source, url, CHILD_SITEMAP, conditional=False, depth_in_source=depth + 1))
        return requests

    def read_listing(self, source: Source, response: Response) -> Iterable[Request]:
        page = response.meta.get("page_number", 1)
        parsed = parse_listing(_text_of(response), response.url, source.selector)
        entries = parsed.entries[: source.max_items] if source.max_items else parsed.entries
        self.source_ok(source, "ok", response.status, len(entries))
        queued = self.queue_articles(source, entries)
        # Older pages of a listing hold older articles: stop paging once a page brings nothing new.
        if parsed.next_page and page < source.max_pages and (queued or self.refresh):
            return [self.document_request(source, parsed.next_page, NEXT_PAGE, conditional=False, page_number=page + 1)]
        return []

    def discover_feeds(self, source: Source, response: Response) -> Iterable[Request]:
        feeds = announced_feeds(_text_of(response), response.url)
        self.crawler.stats.inc_value("armswatch/feeds_discovered", len(feeds))
        if feeds:
            self.runs[source.name].announced_pending = len(feeds)
            # Only the first feed carries the source's validators: one set per source.
            return [self.document_request(source, url, ANNOUNCED, conditional=i == 0) for i, url in enumerate(feeds)]
        return [self.probe_request(source, 0)]

    def probe_request(self, source: Source, index: int) -> Request:
        url = common_feed_urls(source.url)[index]
        return self.document_request(source, url, PROBE, conditional=True, probe_index=index)

    # -- article pages -------------------------------------------------------------------

    def queue_articles(self, source: Source, entries: Iterable[FeedEntry]) -> int:
        """Put the articles not stored yet in the frontier; how many were new to this run."""
        queued = 0
        for entry in entries:
            if not is_fetchable_url(entry.link):
                self.crawler.stats.inc_value("armswatch/links_refused")
                self.logger.info("%s: refused non-http(s) link %r", source.name, entry.link[:200])  # the feed's problem, not a failure
                continue
            url = canonical_url(entry.link)
            if not self.refresh and (self.store.known_url(url) or self.store.known_url(entry.link)):
                self.crawler.stats.inc_value("armswatch/links_known")
                continue
            if self.frontier.add(source, entry, url) is None:
                self.crawler.stats.inc_value("armswatch/links_repeated")  # listed by two feeds of this run
                continue
            queued += 1
        return queued

    def release_articles(self, sites: list[str] | None = None) -> None:
        """Hand Scrapy the article requests the frontier lets out now."""
        for site, (source, entry, url) in self.frontier.take(sites):
            headers = {"User-Agent": source.user_agent} if source.user_agent else {}
            self.crawler.engine.crawl(
                Request(
                    url,
                    callback=self.parse_article,
                    errback=self.article_failed,
                    headers=headers,
                    meta={"source": source, "entry": entry, "canonical": url, "frontier_site": site},
                )
            )

    def article_finished(self, request: Request) -> None:
        site = request.meta["frontier_site"]
        self.frontier.finished(site)
        self.release_articles([site])

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
        error_class, message = classify_failure(failure)
        self.note_error(source, request.url, error_class, message)

    # -- health ------------------------------------------------------------------------------

    def source_ok(self, source: Source, status: str, http_status: int, items_seen: int) -> None:
        """The first good document of a source writes its health row; later ones add their items."""
        run = self.runs[source.name]
        if run.recorded:
            if items_seen:
                self.store.add_items_seen(source.name, items_seen)
            return
        run.recorded = True
        self.store.record_source_result(
            source.name, ok=True, status=status, http_status=http_status,
            items_seen=items_seen, items_new=0, run_id=self.run_id,
        )

    def document_failed(self, failure: Failure) -> Iterable[Request]:
        error_class, message = classify_failure(failure)
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
            self.note_error(source, request.url, error_class, message)
            run.announced_pending -= 1
            if run.announced_pending <= 0 and not run.feed_found:
                yield self.probe_request(source, 0)
            return
        if role in (CHILD_SITEMAP, NEXT_PAGE):
            self.note_error(source, request.url, error_class, message)
            return
        self.source_error(source, request.url, error_class, message, http_status)

    def note_error(self, source: Source, url: str, error_class: str, message: str) -> None:
        """A failure that does not fail the source (one child sitemap, one listing page)."""
        self.crawler.stats.inc_value("armswatch/errors")
        self.logger.warning("%s: %s failed: %s", source.name, url, message)
        self.store.record_error(self.run_id, source.name, url, error_class, message)

    def source_error(self, source: Source, url: str, error_class: str, message: str, http_status: int | None) -> None:
        self.note_error(source, url, error_class, message)
        self.runs[source.name].recorded = True
        self.store.record_source_result(
            source.name, ok=False, status=error_class, http_status=http_status, error=message, run_id=self.run_id
        )


def _text_of(response: Response) -> str | bytes:
    """Decoded text when Scrapy knows the encoding (headers, meta, BOM), else the raw bytes."""
    try:
        return response.text
    except AttributeError:
        return response.body
