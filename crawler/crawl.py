"""Run one crawl in this process: config -> Scrapy settings -> SourcesSpider -> summary.

Scrapy's reactor cannot be restarted within a process, so this runs at most once per
process; the scheduler starts each crawl as a subprocess (`armswatch crawl`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scrapy.crawler import CrawlerProcess
from scrapy.settings import Settings

from crawler.config import Config, robots_product_token
from crawler.memory import return_large_allocations
from spiders.sources import SourcesSpider
from storage.store import ArticleStore, StoreError


@dataclass(frozen=True)
class CrawlSummary:
    run_id: int | None
    exit_reason: str
    counts: dict[str, Any]

    @property
    def completed(self) -> bool:
        return self.exit_reason == "finished"

    def one_line(self, db: str) -> str:
        c = self.counts
        return (
            f"armswatch: {c.get('sources', 0)} sources, {c.get('pages_fetched') or 0} pages fetched, "
            f"{c.get('articles_stored') or 0} new articles, {c.get('matches_new') or 0} new matches, "
            f"{c.get('errors') or 0} errors ({self.exit_reason}) -> {db}"
        )


def scrapy_settings(config: Config, verbose: bool = False) -> Settings:
    """Scrapy settings: crawler.settings, then what the user's config says."""
    crawl = config.crawl
    settings = Settings()
    settings.setmodule("crawler.settings", priority="project")
    settings.setdict(
        {
            "USER_AGENT": crawl.user_agent,
            "ROBOTSTXT_USER_AGENT": robots_product_token(crawl.user_agent),  # whatever User-Agent a source sends
            "DOWNLOAD_TIMEOUT": crawl.download_timeout,
            "DOWNLOAD_MAXSIZE": crawl.max_page_bytes,
            "DOWNLOAD_WARNSIZE": min(crawl.max_page_bytes, 2_000_000),
            "CONCURRENT_REQUESTS_PER_DOMAIN": crawl.concurrency_per_domain,
            "DOWNLOAD_DELAY": crawl.download_delay,
            "AUTOTHROTTLE_START_DELAY": max(crawl.download_delay, 0.01),
            "ROBOTSTXT_OBEY": crawl.obey_robots,
            "ARMSWATCH_ALLOW_PRIVATE_ADDRESSES": crawl.allow_private_addresses,
            "ARMSWATCH_EXTRACTION_WORKERS": crawl.extraction_workers,
            "ARMSWATCH_RULES": list(crawl.rules),
            "LOG_LEVEL": "INFO" if verbose else "WARNING",
        },
        priority="cmdline",
    )
    return settings


def run_crawl(config: Config, trigger: str = "manual", refresh: bool = False, verbose: bool = False) -> CrawlSummary:
    """Crawl every enabled source of `config` once; return what the crawl_runs row says."""
    return_large_allocations()  # page bodies come and go: their memory must go back
    process = CrawlerProcess(scrapy_settings(config, verbose))  # installs the root log handler (LOG_LEVEL)
    crawler = process.create_crawler(SourcesSpider)
    process.crawl(crawler, armswatch_config=config, refresh=refresh, trigger=trigger)
    process.start()
    spider = crawler.spider
    if spider is None or spider.run_id is None:  # never another run's row: that would hide the failure
        raise StoreError(getattr(spider, "store_error", None) or f"{config.crawl.db}: the crawl did not start")
    with ArticleStore(config.crawl.db) as store:
        row = store.query_one("select * from crawl_runs where id = ?", [spider.run_id])
    if row is None:
        raise StoreError(f"{config.crawl.db}: the row of crawl run {spider.run_id} is gone")
    return CrawlSummary(row["id"], row["exit_reason"] or "unknown", row)
