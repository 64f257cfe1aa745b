"""UrlPolicyMiddleware: every request, redirects included, must be an http(s) URL we may fetch.

Redirects create new requests that pass through here again, so a feed that redirects to
`file:///etc/passwd`, or (when private addresses are disallowed) a link or redirect to
169.254.169.254 or 10.0.0.1, is dropped with a logged reason instead of being followed.
Hosts of the configured sources themselves are trusted: the user chose them.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.redirect import MetaRefreshMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import HtmlResponse, Response

from crawler.urls import is_fetchable_url, is_private_address, url_problem, without_password


class ForbiddenUrl(IgnoreRequest):
    """A URL outside the fetch policy (scheme or address)."""


class RedirectLoop(IgnoreRequest):
    """A redirect back to a URL of its own chain: Scrapy's duplicate filter would drop it silently."""


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


class RedirectGuardMiddleware:
    """Looks at a redirect before Scrapy follows it (it sits closer to the downloader than
    Scrapy's RedirectMiddleware), so a redirect to file:// or back into its own chain fails
    with an error the health table and fetch_errors can name, instead of a bare "HTTP 302"
    or a request that silently vanishes."""

    def process_response(self, request: Request, response: Response, spider: Spider | None = None) -> Response:
        location = response.headers.get("Location")
        if not 300 <= response.status < 400 or not location:
            return response
        target = urljoin(request.url, location.decode("latin-1").strip())
        problem = url_problem(target)
        if problem:  # a password the redirect carried is not the user's to send, nor ours to record
            raise ForbiddenUrl(f"{request.url} redirects to {without_password(target)}: {problem}")
        chain = [*request.meta.get("redirect_urls", ()), request.url]
        if target.split("#")[0] in chain:
            raise RedirectLoop(f"redirect loop: {' -> '.join([*chain, target])}")
        return response


class HeadMetaRefreshMiddleware(MetaRefreshMiddleware):
    """Scrapy's meta-refresh redirects, read from the head of the page only.

    Scrapy looks for the refresh tag in the first 4,096 characters, but decodes the whole page to
    find them, and the response keeps that decoded copy (up to four times the page's size) until
    its article has come back from the extraction workers. Given the bytes that can hold those
    characters, it finds the same tag and decodes a few kilobytes.
    """

    HEAD_BYTES = 4 * 4096  # 4,096 characters of UTF-8 at most

    def process_response(self, request: Request, response: Response, spider: Spider | None = None):
        if not isinstance(response, HtmlResponse) or len(response.body) <= self.HEAD_BYTES:
            return super().process_response(request, response)
        # not response.replace(): it copies the encoding, which for a page that declares none
        # means decoding all of it to guess
        head = HtmlResponse(
            response.url, status=response.status, headers=response.headers,
            body=response.body[: self.HEAD_BYTES], request=response.request,
        )
        redirected = super().process_response(request, head)
        return response if redirected is head else redirected
