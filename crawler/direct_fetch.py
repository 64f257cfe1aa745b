"""One URL fetched now, outside Scrapy: for the commands that read a single page or feed on the
spot (`armswatch extract URL`, `armswatch sources check`).

The crawl's rules hold here too: only http(s) is fetched, and so only http(s) redirects are
followed (urllib alone would follow one to ftp://, sending a login to whatever answers);
the time and the size of a download are bounded, the time for the whole answer (a server
that drips a byte a second never trips a timeout that bounds each read).
"""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

from crawler.urls import is_fetchable_url


@dataclass(frozen=True)
class Fetched:
    status: int
    body: bytes  # cut to max_bytes
    url: str  # after redirects
    headers: dict[str, str]  # names in lower case


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    max_redirections = 5

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        if not is_fetchable_url(newurl):
            raise urllib.error.HTTPError(req.full_url, code, f"redirect to a non-http(s) URL refused: {newurl}", headers, fp)
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


def fetch(url: str, user_agent: str, timeout: float, max_bytes: int) -> Fetched:
    """The URL's answer, whole within `timeout` seconds. Raises ValueError for a URL that is not
    fetched at all, TimeoutError, and urllib's errors (HTTPError for a status of 400 or more,
    URLError, OSError) otherwise."""
    if not is_fetchable_url(url):
        raise ValueError(f"not an http(s) URL: {url}")
    deadline = _Deadline(timeout)
    opener = urllib.request.build_opener(_HttpOnlyRedirects, *deadline.handlers())
    request = urllib.request.Request(url, headers={"User-Agent": user_agent, "Accept-Encoding": "identity"})
    deadline.timer.start()
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read(max_bytes + 1)
            headers = {name.lower(): value for name, value in response.headers.items()}
            if deadline.passed:  # what came before the cut is not the answer
                raise TimeoutError
            return Fetched(response.status, body[:max_bytes], response.geturl(), headers)
    except Exception as exc:
        if deadline.passed:
            raise TimeoutError(f"no whole answer within {timeout:g} s from {url}") from exc
        raise
    finally:
        deadline.timer.cancel()
