"""RobotsTxtMiddleware that makes every request wait for its host's robots.txt.

Scrapy 2.19's middleware (asyncio reactor) lets all but the first of the requests that
arrive while a host's robots.txt is still downloading through unchecked: they share one
Deferred, and `Deferred.asFuture` hands the parser to the first waiter and `None` ("no
robots.txt") to the rest. A monitor starts many sources of one site at once, so that is
the common case. Here each waiter gets its own Deferred, relayed from the shared one.

A robots.txt that cannot be read is no permission (RFC 9309, 2.3.1.4): when it answers 5xx,
or the host times out, refuses or does not resolve, the host's other requests of the run are
refused at once with that reason instead of each waiting for its own timeout. A 4xx robots.txt
(none there) allows everything, as the RFC says.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

from scrapy import Request
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware as ScrapyRobotsTxtMiddleware
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response
from scrapy.robotstxt import RobotParser
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

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


class RobotsTxtMiddleware(ScrapyRobotsTxtMiddleware):
    def __init__(self, crawler) -> None:  # type: ignore[no-untyped-def]
        super().__init__(crawler)
        self._unreachable: dict[str, str] = {}  # netloc -> why its robots.txt could not be read

    async def process_request(self, request: Request) -> None:
        await super().process_request(request)
        if request.meta.get("dont_obey_robotstxt"):
            return
        reason = self._unreachable.get(urlparse_cached(request).netloc)
        if reason is not None:
            raise IgnoreRequest(reason)

    async def _parse_robots(self, response: Response, netloc: str, request: Request) -> None:
        if response.status >= 500:
            self._unreachable[netloc] = f"{UNREACHABLE} (HTTP {response.status}): {response.url} answered HTTP {response.status}"
        await super()._parse_robots(response, netloc, request)

    def _robots_error(self, exc: Exception, netloc: str) -> None:
        if not isinstance(exc, IgnoreRequest):
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
