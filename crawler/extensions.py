"""Scrapy extensions of the crawl process (enabled in crawler.settings.EXTENSIONS)."""

from __future__ import annotations

import logging

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.extensions.throttle import AutoThrottle
from scrapy.http import Response
from scrapy.robotstxt import RobotParser
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.task import LoopingCall

from crawler.memory import give_back_free_memory

logger = logging.getLogger(__name__)


class FreeMemoryReturner:
    """Every second of a crawl, the heap's free pages go back to the system (see crawler.memory)."""

    INTERVAL_SECONDS = 1.0

    def __init__(self) -> None:
        self.timer = LoopingCall(give_back_free_memory)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> FreeMemoryReturner:
        extension = cls()
        crawler.signals.connect(extension.start, signal=signals.spider_opened)
        crawler.signals.connect(extension.stop, signal=signals.spider_closed)
        return extension

    def start(self) -> None:
        self.timer.start(self.INTERVAL_SECONDS, now=False)

    def stop(self) -> None:
        if self.timer.running:
            self.timer.stop()


class RobotsCrawlDelay:
    """A host whose robots.txt asks our User-Agent for a Crawl-delay gets at least that long
    between requests, capped at AUTOTHROTTLE_MAX_DELAY so that no value stalls a run.

    Crawl-delay is not in RFC 9309, but it is how sites ask for it. The delay is written into the
    downloader's per-slot settings, not only into the host's live slot: Scrapy drops a slot idle
    for a minute and makes a new one from those settings, which also tell FlooredAutoThrottle the
    host's floor. No jitter on such a host: Scrapy's default ±50% would halve the delay asked.
    """

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        settings = crawler.settings
        self.user_agent: str = settings.get("ROBOTSTXT_USER_AGENT") or settings.get("USER_AGENT")
        self.max_delay = settings.getfloat("AUTOTHROTTLE_MAX_DELAY")
        self.min_delay = settings.getfloat("DOWNLOAD_DELAY")

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RobotsCrawlDelay:
        if not crawler.settings.getbool("ROBOTSTXT_OBEY"):
            raise NotConfigured
        extension = cls(crawler)
        crawler.signals.connect(extension.robots_parsed, signal=signals.robots_parsed)
        return extension

    def robots_parsed(self, robotparser: RobotParser, request: Request) -> None:
        asked = robotparser.crawl_delay(self.user_agent)
        if not asked or asked <= 0:
            return
        delay = max(min(asked, self.max_delay), self.min_delay)
        downloader = self.crawler.engine.downloader
        key = downloader.get_slot_key(request)
        slot_settings = downloader.per_slot_settings.setdefault(key, {})
        if delay <= slot_settings.get("delay", 0):
            return  # another port of the host asked as much already
        slot_settings.update(delay=delay, jitter=0.0)
        slot = downloader.slots.get(key)
        if slot is not None:
            slot.delay, slot.jitter = max(slot.delay, delay), 0.0
        capped = f" (it asks {asked:g} s)" if asked > self.max_delay else ""
        logger.info("robots.txt of %s asks for a Crawl-delay: its requests go at least %g s apart%s",
                    urlparse_cached(request).netloc, delay, capped)


class FlooredAutoThrottle(AutoThrottle):
    """AutoThrottle that never takes a host's delay below the one its download slot was given in
    the downloader's per-slot settings (a robots.txt Crawl-delay, see RobotsCrawlDelay): Scrapy's
    lowers any slot towards latency / target concurrency, down to DOWNLOAD_DELAY."""

    def _response_downloaded(self, response: Response, request: Request, spider: Spider) -> None:
        super()._response_downloaded(response, request, spider)
        key, slot = self._get_slot(request, spider)
        if key is None or slot is None:
            return
        floor = self.crawler.engine.downloader.per_slot_settings.get(key, {}).get("delay")
        if floor is not None and slot.delay < floor:
            slot.delay = floor
