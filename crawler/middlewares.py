"""UrlPolicyMiddleware: every request, redirects included, must be an http(s) URL we may fetch.

Redirects create new requests that pass through here again, so a feed that redirects to
`file:///etc/passwd`, or (when private addresses are disallowed) a link or redirect to
169.254.169.254 or 10.0.0.1, is dropped with a logged reason instead of being followed.
Hosts of the configured sources themselves are trusted: the user chose them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest

from crawler.urls import is_fetchable_url, is_private_address


class ForbiddenUrl(IgnoreRequest):
    """A URL outside the fetch policy (scheme or address)."""


class UrlPolicyMiddleware:
    def __init__(self, crawler: Crawler, allow_private: bool):
        self.crawler = crawler
        self.allow_private = allow_private

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> UrlPolicyMiddleware:
        return cls(crawler, crawler.settings.getbool("ARMSWATCH_ALLOW_PRIVATE_ADDRESSES", True))

    def process_request(self, request: Request, spider: Spider | None = None) -> None:
        if not is_fetchable_url(request.url):
            raise ForbiddenUrl(f"not an http(s) URL: {request.url}")
        if not self.allow_private and is_private_address(request.url):
            spider = spider or self.crawler.spider
            if urlsplit(request.url).netloc.lower() not in self.trusted_hosts(spider):
                raise ForbiddenUrl(f"non-public address refused: {request.url}")
        return None

    @staticmethod
    def trusted_hosts(spider: Spider | None) -> set[str]:
        """host:port of every configured source: the user chose them, so they may be private."""
        config = getattr(spider, "armswatch_config", None)
        return {urlsplit(s.url).netloc.lower() for s in (config.sources if config else ())}
