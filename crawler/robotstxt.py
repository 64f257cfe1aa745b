"""RobotsTxtMiddleware that makes every request wait for its host's robots.txt.

Scrapy 2.19's middleware (asyncio reactor) lets all but the first of the requests that
arrive while a host's robots.txt is still downloading through unchecked: they share one
Deferred, and `Deferred.asFuture` hands the parser to the first waiter and `None` ("no
robots.txt") to the rest. A monitor starts many sources of one site at once, so that is
the common case. Here each waiter gets its own Deferred, relayed from the shared one.
"""

from __future__ import annotations

from scrapy import Request
from scrapy.downloadermiddlewares.robotstxt import RobotsTxtMiddleware as ScrapyRobotsTxtMiddleware
from scrapy.robotstxt import RobotParser
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.httpobj import urlparse_cached
from twisted.internet.defer import Deferred


class RobotsTxtMiddleware(ScrapyRobotsTxtMiddleware):
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
