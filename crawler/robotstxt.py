"""RobotsTxtMiddleware that makes every request wait for its host's robots.txt.

Scrapy 2.19's middleware (asyncio reactor) lets all but the first of the requests that
arrive while a host's robots.txt is still downloading through unchecked: they share one
Deferred, and `Deferred.asFuture` hands the parser to the first waiter and `None` ("no
robots.txt") to the rest. A monitor starts many sources of one site at once, so that is
the common case. Here each waiter gets its own Deferred, relayed from the shared one.

A robots.txt that cannot be read is no permission (RFC 9309, 2.3.1.4): when it answers 5xx or 429,
or the host times out, refuses or does not resolve, the host's other requests of the run are
refused at once with that reason instead of each waiting for its own timeout. A 4xx robots.txt
(none there) allows everything, as the RFC says.

robots.txt has its own size limit, not `max_page_bytes` (RFC 9309, 2.5: a crawler parses at
least 500 KiB and may ignore the rest): its first ARMSWATCH_ROBOTSTXT_MAXSIZE bytes are kept and
obeyed, cut at the last whole line, however long the file is. It is asked for uncompressed, so
the cut applies to what a site wrote; a body sent compressed anyway is inflated up to a hard
limit a few times larger (ARMSWATCH_ROBOTSTXT_INFLATED_MAXSIZE: no gzip bomb) and then cut
likewise; past that limit the host is unreachable (too large).

Rules are matched against the crawler's own User-Agent (ROBOTSTXT_USER_AGENT: the product token
of `[crawl].user_agent`), not the header a source may send instead.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

from scrapy import Request, Spider, signals
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware as ScrapyRobotsTxtMiddleware
from scrapy.exceptions import IgnoreRequest, StopDownload
from scrapy.http import Headers, Response
from scrapy.http.request import NO_CALLBACK
from scrapy.robotstxt import RobotParser
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from crawler.direct_fetch import whole_lines
from crawler.errors import UNREACHABLE, classify_failure


class _OneInfoLine(logging.Filter):
    """Scrapy logs a robots.txt that failed to download as an error with its traceback, some 30
    lines a host that cron mails every run, though the source's own warning already says it (in
    crawler.errors' words): here it is one line at INFO, seen with --verbose."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        if record.levelno > logging.INFO:
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


logging.getLogger("scrapy.downloadermiddlewares.robotstxt").addFilter(_OneInfoLine())
logger = logging.getLogger(__name__)

_ROBOTS = "armswatch_robotstxt"  # meta: a robots.txt request (kept by its redirects, which copy meta)
_LEFT = "armswatch_robotstxt_left"  # meta: bytes of an uncompressed robots.txt still to keep


def _is_robots_request(request: Request) -> bool:
    """Scrapy's own request for a host's robots.txt (RobotsTxtMiddleware.robot_parser makes it)."""
    return (
        request.callback is NO_CALLBACK
        and bool(request.meta.get("dont_obey_robotstxt"))
        and urlparse_cached(request).path == "/robots.txt"
    )


def _inflated_too_far(exc: Exception) -> bool:
    """HttpCompressionMiddleware's refusal of a body that inflates past `download_maxsize`
    (crawler.errors reads it so too, but names any error about a robots.txt "robots denied")."""
    return isinstance(exc, IgnoreRequest) and "DOWNLOAD_MAXSIZE" in str(exc)


class RobotsTxtMiddleware(ScrapyRobotsTxtMiddleware):
    def __init__(self, crawler) -> None:  # type: ignore[no-untyped-def]
        super().__init__(crawler)
        self._unreachable: dict[str, str] = {}  # netloc -> why its robots.txt could not be read
        self._max_bytes = crawler.settings.getint("ARMSWATCH_ROBOTSTXT_MAXSIZE")
        self._max_inflated_bytes = crawler.settings.getint("ARMSWATCH_ROBOTSTXT_INFLATED_MAXSIZE")
        crawler.signals.connect(self._headers_received, signal=signals.headers_received)
        crawler.signals.connect(self._bytes_received, signal=signals.bytes_received)

    async def process_request(self, request: Request) -> None:
        if request.meta.get(_ROBOTS) or _is_robots_request(request):
            request.meta[_ROBOTS] = True
            request.meta["download_maxsize"] = self._max_bytes  # until its headers say how it comes
            request.meta["download_warnsize"] = 0  # a long one is cut, and says so at INFO
            request.headers[b"Accept-Encoding"] = b"identity"  # so the cut falls on what the site wrote
            return
        await super().process_request(request)
        if request.meta.get("dont_obey_robotstxt"):
            return
        reason = self._unreachable.get(urlparse_cached(request).netloc)
        if reason is not None:
            raise IgnoreRequest(reason)

    def _headers_received(self, headers: Headers, body_length: int, request: Request, spider: Spider | None) -> None:
        """Scrapy's HTTP handler reads `download_maxsize` right after this signal, and
        HttpCompressionMiddleware again when it inflates: an uncompressed robots.txt has no
        transfer limit there (_bytes_received stops it at ours, keeping what came), a compressed
        one keeps a hard limit for both, a few times ours (ARMSWATCH_ROBOTSTXT_INFLATED_MAXSIZE),
        and is cut to ours once inflated."""
        if not request.meta.get(_ROBOTS):
            return
        if headers.get(b"Content-Encoding"):
            request.meta["download_maxsize"] = self._max_inflated_bytes
            request.meta.pop(_LEFT, None)
        else:
            request.meta["download_maxsize"] = 0
            request.meta[_LEFT] = self._max_bytes

    def _bytes_received(self, data: bytes, request: Request, spider: Spider | None) -> None:
        left = request.meta.get(_LEFT)
        if left is None:
            return
        request.meta[_LEFT] = left = left - len(data)
        if left < 0:
            raise StopDownload(fail=False)  # the response keeps the body received so far

    async def _parse_robots(self, response: Response, netloc: str, request: Request) -> None:
        if response.status >= 500 or response.status == 429:  # a rate limit is no permission (as Google reads it)
            self._unreachable[netloc] = f"{UNREACHABLE} (HTTP {response.status}): {response.url} answered HTTP {response.status}"
        if len(response.body) > self._max_bytes:
            logger.info("%s is longer than %d bytes: its first %d are obeyed (RFC 9309, 2.5)",
                        response.url, self._max_bytes, self._max_bytes)
            response = response.replace(body=whole_lines(response.body, self._max_bytes))
        await super()._parse_robots(response, netloc, request)

    def _robots_error(self, exc: Exception, netloc: str) -> None:
        if _inflated_too_far(exc):  # a robots.txt too large to read, not one that is absent
            self._unreachable[netloc] = f"{UNREACHABLE} (too large): robots.txt of {netloc}: {str(exc)[:300]}"
        elif not isinstance(exc, IgnoreRequest):  # a refused redirect leaves no rules, as a 4xx does
            failure = Failure(exc)
            failure.request = SimpleNamespace(url=f"robots.txt of {netloc}", meta={})  # what the message names
            error_class, message = classify_failure(failure)
            self._unreachable[netloc] = f"{UNREACHABLE} ({error_class}): {message}"
        super()._robots_error(exc, netloc)

    async def robot_parser(self, request: Request) -> RobotParser | None:
        pending = self._parsers.get(urlparse_cached(request).netloc)
        if isinstance(pending, Deferred):
            waiter: Deferred[RobotParser | None] = Deferred()

            def relay(parser: RobotParser | None) -> RobotParser | None:
                waiter.callback(parser)
                return parser  # keep the result for the next waiter

            pending.addCallback(relay)
            return await maybe_deferred_to_future(waiter)
        return await super().robot_parser(request)
