"""Scrapy extensions of the crawl process (enabled in crawler.settings.EXTENSIONS)."""

from __future__ import annotations

from scrapy import signals
from scrapy.crawler import Crawler
from twisted.internet.task import LoopingCall

from crawler.memory import give_back_free_memory


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
