"""Failure -> (error class, message): the words the health table and the logs use.

Users scan the health table for *why* a source failed; a short fixed vocabulary
(timeout, DNS, refused, HTTP 503, too large, robots denied, ...) makes that readable.
"""

from __future__ import annotations

from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet.error import (
    ConnectError,
    ConnectionLost,
    ConnectionRefusedError,
    DNSLookupError,
    TCPTimedOutError,
    TimeoutError,
)
from twisted.python.failure import Failure
from twisted.web._newclient import ResponseFailed, ResponseNeverReceived

from crawler.middlewares import ForbiddenUrl, RedirectLoop

# crawler.robotstxt refuses a host's requests with "robots.txt unreachable (<class>): ...";
# the class is read back from that message
UNREACHABLE = "robots.txt unreachable"


def classify_failure(failure: Failure) -> tuple[str, str]:
    """Name the class of a download failure and describe it, naming the URL."""
    request = getattr(failure, "request", None)
    url = request.url if request is not None else "?"
    error = failure.value
    if failure.check(HttpError):
        status = error.response.status
        return f"HTTP {status}", f"HTTP {status} from {url}"
    # Scrapy >= 2.13 wraps Twisted's errors in its own (scrapy.exceptions); both are named here.
    if failure.check(DNSLookupError, CannotResolveHostError):
        return "DNS", f"DNS lookup failed for {url}"
    if failure.check(TimeoutError, TCPTimedOutError, DownloadTimeoutError):
        return "timeout", f"timed out fetching {url}"
    if failure.check(ConnectionRefusedError, DownloadConnectionRefusedError):
        return "refused", f"connection refused by {url}"
    if failure.check(ForbiddenUrl):
        return "forbidden url", str(error)
    if failure.check(RedirectLoop):
        return "redirect loop", str(error)
    if failure.check(IgnoreRequest):
        text = str(error)
        if text.startswith(UNREACHABLE):  # "robots.txt unreachable (timeout): ..."
            return text[len(UNREACHABLE) + 2 :].split(")", 1)[0], f"{url} not fetched: {text}"
        if "robots.txt" in text.lower():
            return "robots denied", f"robots.txt forbids {url}"
        if "max redirections" in text.lower():
            chain = request.meta.get("redirect_urls", []) if request is not None else []
            return "too many redirects", f"{chain[0] if chain else url}: more redirects than the limit, stopped at {url}"
        if "DOWNLOAD_MAXSIZE" in text:  # a compression bomb, cut while inflating
            return "too large", f"{url}: {text[:300]}"
        return "ignored", f"{url}: {text or 'request ignored'}"
    if failure.check(DownloadCancelledError):
        return "too large", f"download of {url} cancelled (size limit): {str(error)[:300]}"
    if failure.check(ResponseNeverReceived, ResponseFailed, ConnectionLost, ResponseDataLossError):
        text = repr(error)
        if "maxsize" in text.lower() or "cancelled" in text.lower():
            return "too large", f"download of {url} cancelled (size limit): {text[:300]}"
        return "connection lost", f"connection lost fetching {url}: {text[:300]}"
    if failure.check(ConnectError):
        return "connect error", f"cannot connect to {url}: {error}"
    return type(error).__name__, f"{url}: {str(error)[:500]}"
