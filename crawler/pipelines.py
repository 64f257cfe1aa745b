"""Item pipelines: PageItem -> (process pool: extract, clean, match) -> ProcessedArticle -> SQLite.

Extraction is CPU-bound and would stall Twisted's reactor, so it runs in a pool of
worker processes (one per core by default); the reactor thread only downloads and
writes to SQLite, one short transaction per article.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Any

from scrapy import Spider
from scrapy.crawler import Crawler
from twisted.internet.task import LoopingCall

from crawler.clustering import CandidateCache, assign_story
from crawler.extraction_server import extraction_context, start_extraction_server
from crawler.items import PageItem, ProcessedArticle
from crawler.processing import NO_ARTICLE_TEXT, init_worker, process_page, worker_ready
from crawler.rules import DEFAULT_RULE_SETS, load_rules

LOGGER = logging.getLogger(__name__)


class ExtractionPipeline:
    """Hands each downloaded page to the worker pool and waits for the processed article."""

    def __init__(self, workers: int, rule_specs: tuple[str, ...], crawler: Crawler, time_limit: float | None = None):
        self.workers = workers or os.cpu_count() or 1
        self.rule_specs = rule_specs
        self.crawler = crawler
        self.time_limit = time_limit  # seconds a worker may spend on one page
        self.pool: ProcessPoolExecutor | None = None
        self.started: Future | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ExtractionPipeline:
        settings = crawler.settings
        return cls(
            settings.getint("ARMSWATCH_EXTRACTION_WORKERS", 0),
            tuple(settings.getlist("ARMSWATCH_RULES", list(DEFAULT_RULE_SETS))),
            crawler,
            settings.getfloat("DOWNLOAD_TIMEOUT", 30.0),  # no page may cost the others more than a download may
        )

    def open_spider(self, spider: Spider | None = None) -> None:
        # A broken rule file stops the crawl here, with its file:line message, before any fetch.
        load_rules(self.rule_specs)
        self.pool = self.new_pool()
        start_extraction_server()  # already running when the crawl command started it

    def new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers, mp_context=extraction_context(), initializer=init_worker,
            initargs=(self.rule_specs, os.getpid(), self.time_limit),
        )

    def start_workers(self) -> Future:
        """Start the workers from a thread of their own.

        The first submit to a forkserver pool waits until the server has loaded and warmed the
        extraction stack (seconds, if it is still loading): on the reactor thread that wait would
        stall every download. Started at the first article: a run with nothing new starts no worker.
        """
        started: Future = Future()
        pool = self.pool

        def start() -> None:
            try:
                for future in [pool.submit(worker_ready) for _ in range(self.workers)]:
                    future.result()
            except Exception:  # a pool that cannot start fails again, and is handled, at the first page
                LOGGER.debug("starting the extraction workers failed", exc_info=True)
            started.set_result(None)

        threading.Thread(target=start, name="armswatch-start-workers", daemon=True).start()
        return started

    def close_spider(self, spider: Spider | None = None) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    async def process_item(self, item: Any, spider: Spider | None = None) -> Any:
        if not isinstance(item, PageItem):
            return item
        if self.started is None:
            self.started = self.start_workers()
        if not self.started.done():
            await asyncio.wrap_future(self.started)
        for attempt in (1, 2):
            pool = self.pool
            try:
                future = pool.submit(process_page, item, self.rule_specs)
                if await self.stuck(future):
                    # the worker's own limit went unheard: lxml holds the interpreter in C code
                    LOGGER.warning("extracting %s took over %s s: its worker is replaced", item.url, self.hard_limit)
                    self.replace_pool(pool, kill=True)
                    return await self.what_the_feed_said(
                        item, f"extraction stopped after {self.hard_limit:g} s: the page is too complex")
                return future.result()
            except BrokenProcessPool as exc:
                # a worker died (killed, out of memory, crashed in C code, or replaced for a page
                # that kept it too long): start a new pool and try the page once more; a page
                # that kills workers twice is recorded
                self.replace_pool(pool)
                error = f"extraction worker died: {exc}"
        return await self.what_the_feed_said(item, error)

    async def what_the_feed_said(self, item: PageItem, error: str) -> ProcessedArticle:
        """The article as its feed entry tells it, for a page no worker could extract (as a worker
        does for a page it stops itself); else `error`. The page is left out, so this is quick."""
        failed = ProcessedArticle(item.url, item.source, None, error=error, state_affiliated=item.state_affiliated)
        if item.entry is None or not (item.entry.summary or "").strip():
            return failed
        try:
            result = await asyncio.wrap_future(self.pool.submit(process_page, replace(item, body=b""), self.rule_specs))
        except Exception:  # the new pool broke too: the page stays an error, retried next run
            LOGGER.debug("extracting the feed entry of %s failed", item.url, exc_info=True)
            return failed
        return result if result.article is not None else failed

    @property
    def hard_limit(self) -> float | None:
        """Seconds after which a page's worker is killed: the worker stops a page itself at
        time_limit, but only between Python steps."""
        return 2 * self.time_limit + 5 if self.time_limit else None

    async def stuck(self, future: Future) -> bool:
        """Wait for the page; True if a worker has been on it longer than hard_limit."""
        waiting = asyncio.wrap_future(future)
        if self.hard_limit is None:
            await asyncio.wait({waiting})
            waiting.exception()  # read through `future`; not "never retrieved"
            return False
        running_since = None
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=1.0)
            if done:
                waiting.exception()
                return False
            if running_since is None and future.running():  # handed to a worker (or next in line for one)
                running_since = time.monotonic()
            if running_since is not None and time.monotonic() - running_since > self.hard_limit:
                waiting.cancel()  # its worker is about to be killed
                return True

    def replace_pool(self, pool: ProcessPoolExecutor, kill: bool = False) -> None:
        """A new pool for the pages still to come, once per broken pool (several pages see it
        break at once: the second must not shut down the pool the first has just started)."""
        if self.pool is not pool:
            return
        if kill:  # its pages in flight fail with BrokenProcessPool and are tried once more
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self.new_pool()


class StoragePipeline:
    """Writes processed articles, their matches, outbox rows and stories, a batch per transaction.

    A commit costs more than storing an article (SQLite flushes the full-text index and the
    WAL on each one), so articles are written BATCH_SIZE at a time, or when the oldest has
    waited BATCH_SECONDS, and at the end of the crawl. Each article keeps its own savepoint:
    one that fails is recorded and rolled back alone. A crash loses at most the batch not yet
    written, which the next run fetches again (its pages are not known yet).
    """

    BATCH_SIZE = 50
    BATCH_SECONDS = 1.0

    def __init__(self, crawler: Crawler):
        self.crawler = crawler
        self.pending: list[ProcessedArticle] = []
        self.oldest = 0.0
        self.cache = CandidateCache()
        self.timer: LoopingCall | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> StoragePipeline:
        return cls(crawler)

    def open_spider(self, spider: Spider | None = None) -> None:
        self.timer = LoopingCall(self.flush_if_stale)
        self.timer.start(self.BATCH_SECONDS, now=False)

    def close_spider(self, spider: Spider | None = None) -> None:
        if self.timer is not None and self.timer.running:
            self.timer.stop()
        self.flush()

    def process_item(self, item: Any, spider: Spider | None = None) -> Any:
        if not isinstance(item, ProcessedArticle):
            return item
        if not self.pending:
            self.oldest = time.monotonic()
        self.pending.append(item)
        if len(self.pending) >= self.BATCH_SIZE:
            self.flush()
        return item

    def flush_if_stale(self) -> None:
        if self.pending and time.monotonic() - self.oldest >= self.BATCH_SECONDS:
            try:
                self.flush()
            except Exception:  # the database is unwritable now; the timer must live on
                LOGGER.exception("writing a batch of articles failed; their pages are fetched again next run")

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        spider = self.crawler.spider
        new_per_source: Counter[str] = Counter()
        try:
            with spider.store.transaction():
                for item in batch:
                    if self.store(item, spider):
                        new_per_source[item.source] += 1
                for source, count in new_per_source.items():  # one health update per source, not per article
                    spider.store.add_items_new(source, count)
        except Exception as exc:
            message = f"the database refused a batch of {len(batch)} articles: {type(exc).__name__}: {exc}"
            for item in batch:  # the batch is lost: its sources say so, and are read in full next run
                spider.storage_failed(item.source, item.page_url, message)
            raise

    def store(self, item: ProcessedArticle, spider: Spider) -> bool:
        """Write one article in its own savepoint; True when it is a new article."""
        store = spider.store
        stats = self.crawler.stats
        if item.article is None:
            stats.inc_value("armswatch/errors")
            store.record_error(spider.run_id, item.source, item.page_url, "no article", item.error or "no article")
            if item.error != NO_ARTICLE_TEXT:  # a worker died or failed: the page may work next time
                spider.retry_failed_article(item.source, item.page_url)
            return False
        try:
            with store.transaction():  # the article and its story land together or not at all
                saved = store.save_article(item, spider.recipients_for_rule, refresh=spider.refresh)
                if saved.is_new:
                    self.assign_story(store, saved.article_id, spider, item)
        except Exception as exc:  # one article the database refuses must not cost the batch
            LOGGER.exception("storing %s failed", item.page_url)
            stats.inc_value("armswatch/errors")
            store.record_error(spider.run_id, item.source, item.page_url, "storage", f"{type(exc).__name__}: {exc}")
            spider.retry_next_run(item.source)
            return False
        if saved.is_new:
            stats.inc_value("armswatch/articles_stored")
        elif saved.is_update:
            stats.inc_value("armswatch/articles_updated")
        stats.inc_value("armswatch/matches_new", saved.new_matches)
        return saved.is_new

    def assign_story(self, store: Any, article_id: int, spider: Spider, item: ProcessedArticle) -> None:
        """Cluster the new article; a clustering bug must not cost the article or its alert."""
        try:
            with store.transaction():  # a savepoint inside the article's transaction
                assign_story(store, article_id, precomputed=item.fingerprint, cache=self.cache)
        except Exception as exc:
            LOGGER.exception("story clustering failed for %s", item.page_url)
            self.crawler.stats.inc_value("armswatch/errors")
            store.record_error(spider.run_id, item.source, item.page_url, "story clustering", f"{type(exc).__name__}: {exc}")
