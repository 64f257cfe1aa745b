"""UrlPolicyMiddleware: every request, redirects included, must be an http(s) URL we may fetch.

Redirects create new requests that pass through here again, so a feed that redirects to
`file:///etc/passwd`, or (when private addresses are disallowed) a link or redirect to
169.254.169.254 or 10.0.0.1, is dropped with a logged reason instead of being followed.
Hosts of the configured sources themselves are trusted: the user chose them.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from urllib.parse import urljoin, urlsplit

from scrapy import Request, Spider, signals
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.redirect import MetaRefreshMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import HtmlResponse, Response
from twisted.python.failure import Failure
from w3lib.url import safe_url_string

from crawler.dates import rfc822_moment
from crawler.safe_text import one_line
from crawler.urls import host_of, is_fetchable_url, is_private_address, url_problem, without_password


class ForbiddenUrl(IgnoreRequest):
    """A URL outside the fetch policy (scheme or address)."""


class RedirectLoop(IgnoreRequest):
    """A redirect back to a URL of its own chain: Scrapy's duplicate filter would drop it silently."""


class HostResting(IgnoreRequest):
    """A request to a host that asked earlier in the run to be left alone (see HostRestMiddleware)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def asks_to_rest(status: int, retry_after: bytes | None) -> bool:
    """429 Too Many Requests, or a server error that says when to come back, for longer than a
    pause a run waits out (see HostRestMiddleware)."""
    if status != 429 and not (status >= 500 and retry_after):
        return False
    seconds = retry_after_seconds(retry_after)
    return seconds is None or seconds > MAX_PAUSE_SECONDS


def retry_after_seconds(value: bytes | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date (RFC 9110, 10.2.3); None
    when absent or unreadable."""
    text = (value or b"").decode("latin-1").strip()
    if text.isdigit():
        return float(text)
    moment = rfc822_moment(text)
    return None if moment is None else max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())


def rest_reason(url: str, status: int, retry_after: bytes | None, until: str = "in this run") -> str:
    wait = f" (Retry-After: {one_line(retry_after.decode('latin-1'))[:60]})" if retry_after else ""
    return f"{host_of(url)} answered HTTP {status}{wait}: not asked again {until}"


def rest_end(retry_after: bytes | None) -> datetime | None:
    """When a host that asked for a long rest may be asked again (at most MAX_REST_SECONDS on),
    for the runs that come before then; None when it named no time, or a pause a run waits out."""
    seconds = retry_after_seconds(retry_after)
    if seconds is None or seconds <= MAX_PAUSE_SECONDS:
        return None
    return datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=min(seconds, MAX_REST_SECONDS))


# A Retry-After up to this many seconds is waited out within the run (the longest delay
# AutoThrottle itself would set); a longer one, or a 429 that names no time, rests the host until
# the next run.
MAX_PAUSE_SECONDS = 30.0
# A longer one is kept past the run (storage: host_rests), up to this: a site's mistake must not
# silence it for good.
MAX_REST_SECONDS = 24 * 3600.0


class HostRestMiddleware:
    """A host that answers 429, or a 5xx with Retry-After, is asked nothing more for that long.

    Scrapy would go on with the host's other pages at full speed and retry a 503 seconds later.
    A short Retry-After (up to MAX_PAUSE_SECONDS) holds the host's next request back that long.
    A longer one, or a 429 without one, rests the host for the rest of the run: its pages not
    fetched are left for the next run (the spider keeps their sources' validators unsaved),
    which by then has usually waited long enough; Scrapy's RetryMiddleware is told not to retry
    the answer.

    The answer is seen as it arrives (response_downloaded), before the downloader sends the next
    request from the host's queue: the requests waiting there fail at once, as do those that
    reach this middleware later.
    """

    def __init__(self, crawler: Crawler):
        self.crawler = crawler
        self.resting: dict[str, tuple[int, str]] = {}  # host -> (status, why) its requests are refused with

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> HostRestMiddleware:
        middleware = cls(crawler)
        crawler.signals.connect(middleware.on_response_downloaded, signal=signals.response_downloaded)
        return middleware

    def process_request(self, request: Request, spider: Spider | None = None) -> None:
        if not self.resting:  # every request passes here: no URL parsing in the usual case
            return
        refusal = self.resting.get(host_of(request.url))
        if refusal is not None:
            raise HostResting(*refusal)

    def on_response_downloaded(self, response: Response, request: Request, spider: Spider) -> None:
        if response.status != 429 and response.status < 500:
            return
        retry_after = response.headers.get(b"Retry-After")
        slot = self.crawler.engine.downloader.slots.get(request.meta.get("download_slot", ""))
        if not asks_to_rest(response.status, retry_after):
            seconds = retry_after_seconds(retry_after)
            if seconds and slot is not None:  # the host's next request waits until then
                slot.delay = slot.delay or 0.001  # Scrapy looks at `lastseen` only for a slot with a delay
                slot.lastseen = max(slot.lastseen, time.monotonic() + seconds)
            return
        request.meta["dont_retry"] = True
        host = host_of(request.url)
        if host in self.resting:
            return
        self.resting[host] = (response.status, rest_reason(request.url, response.status, retry_after))
        while slot is not None and slot.queue:  # accepted by this middleware already, not sent yet
            _queued, waiting = slot.queue.popleft()
            waiting.errback(Failure(HostResting(*self.resting[host])))


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
        # followed as Scrapy's RedirectMiddleware reads it: raw UTF-8 (PHP and nginx send it)
        # percent-encoded; named in errors as the server sent it
        target = urljoin(request.url, safe_url_string(location.strip()))
        problem = url_problem(target)
        if problem:  # a password the redirect carried is not the user's to send, nor ours to record
            sent = urljoin(request.url, location.decode("utf-8", errors="replace").strip())
            raise ForbiddenUrl(f"{request.url} redirects to {without_password(sent)}: {problem}")
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
        if isinstance(response, HtmlResponse) and not self.may_refresh(response.body[: self.HEAD_BYTES]):
            return response
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

    @staticmethod
    def may_refresh(head: bytes) -> bool:
        """False when the head cannot hold a refresh tag: the word is not in its bytes.

        Most pages have none, and ruling it out here spares decoding the head and the regexes
        (4% of the crawl process's time). In every encoding a page can be in, ASCII letters are
        their ASCII bytes, except UTF-16 and UTF-32, whose zero bytes send the page to the full check."""
        return b"refresh" in head.lower() or b"\x00" in head
