"""Failure -> (error class, message): the words the health table and the logs use.

Users scan the health table for *why* a source failed; a short fixed vocabulary
(timeout, DNS, refused, HTTP 503, too large, robots denied, ...) makes that readable.
"""

from __future__ import annotations

import gzip
import zlib

from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadCancelledError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet.error import (
    ConnectError,
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    DNSLookupError,
    TCPTimedOutError,
    TimeoutError,
)
from twisted.python.failure import Failure
from twisted.web._newclient import ParseError, ResponseFailed, ResponseNeverReceived

from crawler.middlewares import ForbiddenUrl, HostResting, RedirectLoop

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
    if failure.check(HostResting):
        return f"HTTP {error.status}", f"{url} not fetched: {error}"
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
        return "too large", f"download of {url} cancelled: {str(error)[:300] or 'larger than the size limit'}"
    if failure.check(ResponseNeverReceived, ResponseFailed, DownloadFailedError, ConnectionLost, ResponseDataLossError):
        text = repr(error)
        if "maxsize" in text.lower() or "cancelled" in text.lower():
            return "too large", f"download of {url} cancelled: larger than the size limit ({text[:300]})"
        reasons = _reasons(error)
        described = "; ".join(str(reason) or type(reason).__name__ for reason in reasons)[:300] or text[:300]
        if any(type(reason).__module__.startswith(("OpenSSL", "ssl")) for reason in reasons):
            return "TLS error", f"TLS handshake with {url} failed: {described}"
        closed = any(isinstance(reason, (ConnectionDone, ConnectionLost)) for reason in reasons)
        if not closed and any(isinstance(reason, (ParseError, ValueError)) for reason in reasons):
            return "bad response", f"{url} answered with something that is not HTTP: {described}"
        return "connection lost", f"connection lost fetching {url}: {described}"
    if failure.check(zlib.error, gzip.BadGzipFile):  # Content-Encoding: gzip or deflate over bytes that are neither
        return "bad response", f"{url}: the body cannot be decompressed: {str(error)[:300]}"
    if failure.check(ConnectError):
        return "connect error", f"cannot connect to {url}: {error}"
    return type(error).__name__, f"{url}: {str(error)[:500]}"


def _reasons(error: BaseException) -> list[BaseException]:
    """What Twisted says went wrong inside a failed response (Scrapy >= 2.13 wraps the
    ResponseFailed, whose reasons are failures: the connection closed, a status line unread)."""
    failed = error if isinstance(error, (ResponseFailed, ResponseNeverReceived)) else error.__cause__
    reasons = getattr(failed, "reasons", None) or []
    return [getattr(reason, "value", reason) for reason in reasons]
