"""One URL fetched now, outside Scrapy: for the commands that read a single page or feed on the
spot (`armswatch extract URL`, `armswatch sources check`).

The crawl's rules hold here too: only http(s) is fetched, and so only http(s) redirects are
followed (urllib alone would follow one to ftp://, sending a login to whatever answers);
the time and the size of a download are bounded, the time for the whole answer (a server
that drips a byte a second never trips a timeout that bounds each read), and the size after
decompression (identity is asked for, but some servers gzip anyway; a gzip bomb is stopped at
the limit, not inflated). robots.txt is read as the crawl reads it (`RobotsRules`).
"""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import urlsplit

from w3lib.url import safe_url_string

from crawler.config import robots_product_token
from crawler.settings import ARMSWATCH_ROBOTSTXT_MAXSIZE
from crawler.urls import is_fetchable_url

if TYPE_CHECKING:
    from protego import Protego  # imported when a robots.txt is read: extraction workers import this module

# RFC 9309, 2.5: a crawler parses at least the first 500 KiB of a robots.txt and may ignore the rest
ROBOTS_MAX_BYTES = ARMSWATCH_ROBOTSTXT_MAXSIZE
_CHUNK_BYTES = 64 * 1024
_GZIP = {"gzip", "x-gzip"}
_INFLATED = _GZIP | {"deflate"}


class Refused(ValueError):
    """An answer (or a URL) not used, for a reason a user can act on. `error_class` is the
    crawl's word for it (crawler.errors), so a check and a crawl name a failure alike."""

    error_class = "bad response"

    def __init__(self, message: str, error_class: str | None = None):
        super().__init__(message)
        if error_class is not None:
            self.error_class = error_class


class TooLarge(Refused):
    error_class = "too large"


class RobotsDenied(Refused):
    error_class = "robots denied"


class RobotsUnreachable(Refused):
    """robots.txt answered 5xx or could not be fetched: no permission to crawl (RFC 9309, 2.3.1.4)."""


@dataclass(frozen=True)
class Fetched:
    status: int
    body: bytes  # cut to max_bytes
    url: str  # after redirects
    headers: dict[str, str]  # names in lower case


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows http(s) redirects only, each target first shown to `check` (robots.txt), which
    raises to refuse it: a redirect must not lead where the first URL could not."""

    max_redirections = 5

    def __init__(self, check: Callable[[str], None] | None = None):
        super().__init__()
        self.check = check

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        if not is_fetchable_url(newurl):
            raise urllib.error.HTTPError(req.full_url, code, f"redirect to a non-http(s) URL refused: {newurl}", headers, fp)
        if self.check is not None:
            try:
                self.check(newurl)
            except Exception:
                fp.close()
                raise
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _Deadline:
    """Shuts the connections of one fetch when it has taken `seconds` in all: urllib's timeout
    bounds each read, and a server that sends a byte a second never trips it. A connection is
    known from its TCP connect on (a TLS handshake can drip too), and one opened after the
    deadline (a redirect followed late) is shut at once."""

    def __init__(self, seconds: float):
        self.sockets: list[socket.socket] = []
        self.passed = False
        self.timer = threading.Timer(seconds, self.expire)
        self.timer.daemon = True

    def expire(self) -> None:
        self.passed = True
        for sock in list(self.sockets):
            self.shut(sock)

    @staticmethod
    def shut(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # the blocked read returns at once
        except OSError:
            pass

    def connected(self, *args, **kwargs) -> socket.socket:
        """socket.create_connection, for http.client: the new socket is watched."""
        if self.passed:
            raise TimeoutError("the deadline has passed")
        sock = socket.create_connection(*args, **kwargs)
        self.sockets.append(sock)
        if self.passed:
            self.shut(sock)
        return sock

    def handlers(self) -> list[urllib.request.BaseHandler]:
        """urllib's http and https handlers, their connections made through `connected`."""
        deadline = self

        class Connection(http.client.HTTPConnection):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, **kwargs)
                self._create_connection = deadline.connected

        class SecureConnection(http.client.HTTPSConnection):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, **kwargs)
                self._create_connection = deadline.connected

        class Handler(urllib.request.HTTPHandler):
            def http_open(self, req):  # type: ignore[override]
                return self.do_open(Connection, req)

        class SecureHandler(urllib.request.HTTPSHandler):
            def https_open(self, req):  # type: ignore[override]
                return self.do_open(SecureConnection, req, context=self._context)

        return [Handler(), SecureHandler()]


def fetch(
    url: str, user_agent: str, timeout: float, max_bytes: int, redirect_check: Callable[[str], None] | None = None
) -> Fetched:
    """The URL's answer, whole within `timeout` seconds, its body decompressed (gzip, deflate).
    `redirect_check` sees each redirect target before it is followed and may raise to refuse it.

    Raises ValueError for a URL that is not fetched at all, Refused (a ValueError) for an answer
    that cannot be used (TooLarge once decompressed, an unknown Content-Encoding, broken
    compressed data), TimeoutError, and urllib's errors (HTTPError for a status of 400 or more,
    URLError, OSError) otherwise."""
    if not is_fetchable_url(url):
        raise ValueError(f"not an http(s) URL: {url}")
    url = safe_url_string(url)  # as the crawl sends it: urllib refuses non-ASCII and spaces
    deadline = _Deadline(timeout)
    opener = urllib.request.build_opener(_HttpOnlyRedirects(redirect_check), *deadline.handlers())
    request = urllib.request.Request(url, headers={"User-Agent": user_agent, "Accept-Encoding": "identity"})
    deadline.timer.start()
    try:
        with opener.open(request, timeout=timeout) as response:
            headers = {name.lower(): value for name, value in response.headers.items()}
            body = _body(response, headers.get("content-encoding", ""), response.geturl(), max_bytes)
            if deadline.passed:  # what came before the cut is not the answer
                raise TimeoutError
            return Fetched(response.status, body, response.geturl(), headers)
    except Exception as exc:
        if deadline.passed:
            raise TimeoutError(f"no whole answer within {timeout:g} s from {url}") from exc
        raise
    finally:
        deadline.timer.cancel()


def _body(stream: BinaryIO, content_encoding: str, url: str, max_bytes: int) -> bytes:
    """The body as the server meant it: cut to `max_bytes` when sent as is, inflated up to
    `max_bytes` when compressed (past it: TooLarge)."""
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip().lower() not in ("", "identity")]
    if not codings:
        return stream.read(max_bytes + 1)[:max_bytes]
    if len(codings) > 1 or codings[0] not in _INFLATED:
        raise Refused(f"{url} answered in Content-Encoding {content_encoding.strip()!r}, which cannot be read here"
                      " (identity was asked for)")
    return _inflated(stream, codings[0], url, max_bytes)


def _inflated(stream: BinaryIO, coding: str, url: str, max_bytes: int) -> bytes:
    """Decompress as the bytes arrive, never holding more than `max_bytes + 1` of output: a
    60 KB gzip bomb that would inflate to gigabytes costs one chunk, then TooLarge."""
    too_large = f"too large: {url} is larger than {max_bytes:,} bytes once decompressed ({coding})"
    # "deflate" is zlib-wrapped by the standard, raw by some servers: the first bytes say which
    wbits = 16 + zlib.MAX_WBITS if coding in _GZIP else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    out = bytearray()
    received = 0
    while chunk := stream.read(_CHUNK_BYTES):
        received += len(chunk)
        if received > max_bytes:
            raise TooLarge(too_large)
        pending = chunk
        while pending:
            if inflater.eof:
                if coding not in _GZIP:
                    break  # bytes after the end of a deflate stream: not part of the body
                inflater = zlib.decompressobj(wbits)  # gzip allows several members, one after another
            try:
                out += inflater.decompress(pending, max_bytes + 1 - len(out))
            except zlib.error as exc:
                if coding == "deflate" and wbits > 0 and not out and received == len(chunk):
                    wbits = -zlib.MAX_WBITS
                    inflater = zlib.decompressobj(wbits)
                    continue
                raise Refused(f"{url}: the body cannot be decompressed ({coding}): {exc}") from None
            if len(out) > max_bytes:
                raise TooLarge(too_large)
            pending = inflater.unconsumed_tail or (inflater.unused_data if inflater.eof else b"")
    if received and not inflater.eof:
        raise Refused(f"{url}: the body cannot be decompressed ({coding}): the compressed data ends early")
    return bytes(out)


def whole_lines(body: bytes, limit: int) -> bytes:
    """The first `limit` bytes of a robots.txt, ending at a line break (RFC 9309, 2.5): a rule
    cut mid-line could allow more than it says (`Disallow: /private` cut to `Disallow: /pr` is
    stricter, `Allow: /a/b` cut to `Allow: /` is not)."""
    if len(body) <= limit:
        return body
    head = body[:limit]
    end = max(head.rfind(b"\n"), head.rfind(b"\r"))
    return head[: end + 1] if end >= 0 else head


@dataclass
class _SiteRobots:
    lock: threading.Lock = field(default_factory=threading.Lock)
    read: bool = False
    rules: Protego | None = None  # None: no robots.txt there, everything allowed
    unreachable: tuple[str, str] | None = None  # (error class, message): why robots.txt could not be read


class RobotsRules:
    """The robots.txt of each site, read once through `fetch` with the crawler's User-Agent and
    obeyed as the crawl obeys it (crawler/robotstxt.py, RFC 9309): a 4xx means no rules, a 5xx
    or no answer means no permission. Rules are matched against the crawler's own User-Agent
    (`[crawl].user_agent`), not the header a source may send instead: a browser string must
    not slip past rules written for armswatch. Thread-safe: the checks of one site wait for its
    one robots.txt, those of other sites do not."""

    def __init__(self, user_agent: str, timeout: float, max_bytes: int = ROBOTS_MAX_BYTES):
        self.user_agent = user_agent  # sent when robots.txt is asked for
        self.product_token = robots_product_token(user_agent)  # what its groups are matched against
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._sites: dict[str, _SiteRobots] = {}  # scheme://host:port -> its robots.txt

    def check(self, url: str) -> None:
        """Return when the crawl may fetch `url`; raise RobotsDenied or RobotsUnreachable otherwise."""
        site = self._site(url)
        if site.unreachable is not None:
            error_class, why = site.unreachable
            raise RobotsUnreachable(f"{url} not fetched: robots.txt unreachable ({error_class}): {why}", error_class)
        if site.rules is not None and not site.rules.can_fetch(url, self.product_token):
            raise RobotsDenied(f"robots.txt forbids {url}")

    def crawl_delay(self, url: str) -> float:
        """The Crawl-delay the site's robots.txt asks of the crawler (0 when none)."""
        rules = self._site(url).rules
        delay = rules.crawl_delay(self.product_token) if rules is not None else None
        return float(delay) if delay and delay > 0 else 0.0

    def _site(self, url: str) -> _SiteRobots:
        """The site's robots.txt, read on first use (the other threads of the site wait for it)."""
        parts = urlsplit(url)
        origin = f"{parts.scheme.lower()}://{parts.netloc.lower()}"
        with self._lock:
            site = self._sites.setdefault(origin, _SiteRobots())
        with site.lock:
            if not site.read:
                site.rules, site.unreachable = self._read(f"{origin}/robots.txt")
                site.read = True
        return site

    def _read(self, robots_url: str) -> tuple[Protego | None, tuple[str, str] | None]:
        """(rules, None), (None, None) when there are none, or (None, (error class, message))."""
        try:
            fetched = fetch(robots_url, self.user_agent, self.timeout, self.max_bytes + 1)  # + 1: was it cut?
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code < 500 and exc.code != 429:  # none there (4xx, or redirects past the limit): everything allowed
                return None, None
            return None, (f"HTTP {exc.code}", f"{robots_url} answered HTTP {exc.code}")
        except Refused as exc:
            return None, (exc.error_class, str(exc))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return None, (type(reason).__name__, f"{robots_url}: {reason}")
        from protego import Protego

        body = whole_lines(fetched.body, self.max_bytes)
        # bytes that are not UTF-8 are dropped, as Scrapy does
        return Protego.parse(body.decode("utf-8", errors="ignore")), None
