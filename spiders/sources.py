"""SourcesSpider: one crawl over every configured source, then over the new article pages.

Per source it sends a conditional GET (ETag / Last-Modified), skips a body it has seen,
turns the document into FeedEntry records, and requests only the article pages not
stored yet. The validators of a source are saved when the crawl finishes, never before,
so a run killed halfway is completed by the next one instead of being answered by 304.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterable
from typing import Any

import scrapy
from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.http import Response
from twisted.python.failure import Failure

from crawler.config import Config, Source, load_config
from crawler.errors import classify_failure
from crawler.items import FeedEntry, PageItem
from crawler.urls import canonical_url, is_fetchable_url
from spiders.feeds import FeedParseError, parse_feed
from storage.store import ArticleStore


# Statuses the source callback sees itself (to record them in the health table);
# redirects stay with Scrapy's RedirectMiddleware.
SOURCE_STATUSES = [304, *range(400, 600)]


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

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> SourcesSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider.on_opened, signal=scrapy.signals.spider_opened)
        crawler.signals.connect(spider.on_closed, signal=scrapy.signals.spider_closed)
        return spider

    # -- lifecycle ---------------------------------------------------------------------

    def on_opened(self, spider: scrapy.Spider) -> None:
        self.store = ArticleStore(self.db_path)
        sources = self.armswatch_config.enabled_sources
        self.store.sync_sources(self.armswatch_config.sources)
        self.run_id = self.store.start_run(self.trigger, len(sources), os.getpid())

    def on_closed(self, spider: scrapy.Spider, reason: str) -> None:
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

    # -- sources -----------------------------------------------------------------------

    async def start(self) -> AsyncIterator[Request]:
        for source in self.armswatch_config.enabled_sources:
            yield self.source_request(source)

    def source_request(self, source: Source) -> Request:
        headers: dict[str, str] = {}
        if self.store is not None and not self.refresh:
            validators = self.store.source_validators(source.name)
            if validators["etag"]:
                headers["If-None-Match"] = validators["etag"]
            if validators["last_modified"]:
                headers["If-Modified-Since"] = validators["last_modified"]
        if source.user_agent:
            headers["User-Agent"] = source.user_agent
        return Request(
            source.url,
            callback=self.parse_source,
            errback=self.source_failed,
            headers=headers,
            dont_filter=True,
            meta={"source": source, "handle_httpstatus_list": SOURCE_STATUSES},
            priority=10,
        )

    def parse_source(self, response: Response) -> Iterable[Request]:
        source: Source = response.meta["source"]
        stats = self.crawler.stats
        if response.status == 304:
            stats.inc_value("armswatch/sources_not_modified")
            self.store.record_source_result(source.name, ok=True, status="not modified", http_status=304, run_id=self.run_id)
            return
        if response.status >= 400:
            self.source_error(source, response.url, f"HTTP {response.status}", f"HTTP {response.status} from {response.url}", response.status)
            return
        stats.inc_value("armswatch/sources_fetched")
        body_hash = hashlib.sha256(response.body).hexdigest()
        etag = response.headers.get(b"ETag")
        last_modified = response.headers.get(b"Last-Modified")
        validators = (etag.decode("latin-1") if etag else None, last_modified.decode("latin-1") if last_modified else None, body_hash)
        if not self.refresh and self.store.source_validators(source.name)["body_hash"] == body_hash:
            stats.inc_value("armswatch/sources_not_modified")
            self.store.record_source_result(source.name, ok=True, status="unchanged", http_status=response.status, run_id=self.run_id)
            return
        try:
            entries = list(self.entries_for(source, response))
        except (FeedParseError, ValueError) as exc:
            self.source_error(source, response.url, "parse error", f"{response.url}: {exc}", response.status)
            return
        if source.max_items:
            entries = entries[: source.max_items]
        requests = list(self.article_requests(source, entries))
        self.pending_validators[source.name] = validators
        self.store.record_source_result(
            source.name, ok=True, status="ok", http_status=response.status,
            items_seen=len(entries), items_new=0, run_id=self.run_id,
        )
        yield from requests

    def entries_for(self, source: Source, response: Response) -> Iterable[FeedEntry]:
        """The articles a source lists; other source types plug in here."""
        if source.type == "feed":
            return parse_feed(response.body, response.url).entries
        raise FeedParseError(f"source type {source.type!r} is not supported by this spider yet")

    def article_requests(self, source: Source, entries: Iterable[FeedEntry]) -> Iterable[Request]:
        for entry in entries:
            if not is_fetchable_url(entry.link):
                self.crawler.stats.inc_value("armswatch/links_refused")
                self.logger.warning("%s: refused non-http(s) link %r", source.name, entry.link[:200])
                continue
            url = canonical_url(entry.link)
            if not self.refresh and (self.store.known_url(url) or self.store.known_url(entry.link)):
                self.crawler.stats.inc_value("armswatch/links_known")
                continue
            headers = {"User-Agent": source.user_agent} if source.user_agent else {}
            yield Request(
                url,
                callback=self.parse_article,
                errback=self.article_failed,
                headers=headers,
                meta={"source": source, "entry": entry, "canonical": url},
            )

    # -- article pages -------------------------------------------------------------------

    def parse_article(self, response: Response) -> Iterable[PageItem]:
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
        source: Source = request.meta["source"]
        error_class, message = classify_failure(failure)
        self.crawler.stats.inc_value("armswatch/errors")
        self.logger.warning("%s: article %s failed: %s", source.name, request.url, message)
        self.store.record_error(self.run_id, source.name, request.url, error_class, message)

    def source_failed(self, failure: Failure) -> None:
        request = failure.request
        source: Source = request.meta["source"]
        error_class, message = classify_failure(failure)
        self.source_error(source, request.url, error_class, message, None)

    def source_error(self, source: Source, url: str, error_class: str, message: str, http_status: int | None) -> None:
        self.crawler.stats.inc_value("armswatch/errors")
        self.logger.warning("%s: source %s failed: %s", source.name, url, message)
        self.store.record_error(self.run_id, source.name, url, error_class, message)
        self.store.record_source_result(
            source.name, ok=False, status=error_class, http_status=http_status, error=message, run_id=self.run_id
        )
