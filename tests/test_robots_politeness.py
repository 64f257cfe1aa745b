"""robots.txt as a site owner sees it in the server log: rules written for armswatch hold
whatever User-Agent a source sends, a Crawl-delay spaces the requests, and a long robots.txt
is read in part (RFC 9309, 2.5) rather than blocking the host, without a gzip bomb through it.

A live server on 127.0.0.1 logs every request: when it came, its path and its User-Agent."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import rows, run_armswatch
from tests.test_source_runs import article, rss
from tests.test_sources import health, write_config

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
Page = tuple[int, bytes, dict[str, str]]


class LoggingHandler(BaseHTTPRequestHandler):
    """Serves `server.pages` (path -> (status, body, headers)) or `server.streams` (path -> a
    function that writes the response itself); logs (time, path, User-Agent) of each request."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.server.log.append((time.monotonic(), self.path, self.headers.get("User-Agent")))  # type: ignore[attr-defined]
        stream = self.server.streams.get(self.path)  # type: ignore[attr-defined]
        if stream is not None:
            stream(self)
            return
        status, body, headers = self.server.pages.get(self.path, (404, b"not here", {}))  # type: ignore[attr-defined]
        self.send_response(status)
        for name, value in {"Content-Type": "text/html; charset=utf-8", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Site:
    def __init__(self) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), LoggingHandler)
        self.httpd.daemon_threads = True
        self.httpd.log, self.httpd.pages, self.httpd.streams = [], {}, {}  # type: ignore[attr-defined]
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def log(self) -> list[tuple[float, str, str]]:
        return self.httpd.log  # type: ignore[attr-defined]

    def serve(self, path: str, body: bytes, content_type: str = "text/html; charset=utf-8", **headers: str) -> None:
        self.httpd.pages[path] = (200, body, {"Content-Type": content_type, **headers})  # type: ignore[attr-defined]

    def stream(self, path: str, writer: Callable[[BaseHTTPRequestHandler], None]) -> None:
        self.httpd.streams[path] = writer  # type: ignore[attr-defined]

    def news(self, paths: list[str]) -> None:
        """A feed at /feed.xml listing `paths`, each an article."""
        self.serve("/feed.xml", rss(self.base, paths), "application/rss+xml")
        for path in paths:
            self.serve(path, article(f"Story {path}"))

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.log]


@pytest.fixture
def site() -> Iterator[Site]:
    site = Site()
    thread = threading.Thread(target=site.httpd.serve_forever, daemon=True)
    thread.start()
    yield site
    site.httpd.shutdown()
    site.httpd.server_close()


def crawl(tmp_path: Path, sources: list[dict], *args: str, **crawl_settings) -> str:
    config = write_config(tmp_path / "c.toml", sources, **crawl_settings)
    result = run_armswatch("crawl", "--config", str(config), *args, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


def test_rules_for_armswatch_hold_for_a_source_with_its_own_user_agent(site, tmp_path):
    """A source may send a browser's User-Agent to a site that refuses library agents; the site's
    robots.txt is still read as written for armswatch."""
    site.serve("/robots.txt", b"User-agent: armswatch\nDisallow: /\n\nUser-agent: *\nAllow: /\n", "text/plain")
    site.news(["/a/one.html"])
    crawl(tmp_path, [{"name": "browser", "url": f"{site.base}/feed.xml", "user_agent": BROWSER}])
    assert site.paths() == ["/robots.txt"]
    assert health(tmp_path / "x.db")["browser"]["status"] == "robots denied"


def test_a_crawl_delay_spaces_the_requests_to_its_host(site, tmp_path):
    """AutoThrottle would bring a fast host's delay down to next to nothing; a Crawl-delay in the
    group for our User-Agent keeps every request at least that long after the one before."""
    site.serve("/robots.txt", b"User-agent: armswatch\nCrawl-delay: 1\n\nUser-agent: *\nAllow: /\n", "text/plain")
    site.news(["/a/one.html", "/a/two.html", "/a/three.html"])
    stderr = crawl(tmp_path, [{"name": "wire", "url": f"{site.base}/feed.xml"}], "--verbose")
    assert sorted(site.paths()) == sorted(["/robots.txt", "/feed.xml", "/a/one.html", "/a/two.html", "/a/three.html"])
    times = [t for t, _, _ in site.log]
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    assert min(gaps) >= 0.95, gaps  # the server's clock against Scrapy's: a few ms apart
    assert len([line for line in stderr.splitlines() if "Crawl-delay" in line]) == 1, stderr[-3000:]


ALLOWED_RULES = b"User-agent: *\nDisallow: /private/\n"
PADDING_LINE = b"# a long comment line, as in a robots.txt some generator wrote\n"
PAST_LIMIT_RULES = b"User-agent: *\nDisallow: /\n"  # past 512 KiB: ignored, as RFC 9309 allows


def long_robots(size: int) -> bytes:
    return ALLOWED_RULES + PADDING_LINE * (size // len(PADDING_LINE)) + PAST_LIMIT_RULES


def endless_robots(handler: BaseHTTPRequestHandler) -> None:
    """A robots.txt that never ends (chunked, up to 64 MB); counts the bytes the client took."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/plain")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    chunk = ALLOWED_RULES + PADDING_LINE * 1000
    handler.server.sent = 0  # type: ignore[attr-defined]
    try:
        while handler.server.sent < 64_000_000:  # type: ignore[attr-defined]
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            handler.server.sent += len(chunk)  # type: ignore[attr-defined]
    except OSError:
        pass
    handler.close_connection = True


@pytest.mark.parametrize("served", ["600 KB", "endless"])
def test_a_robots_txt_longer_than_500_kib_is_obeyed_in_part_not_a_blocked_host(site, tmp_path, served):
    """RFC 9309, 2.5: at least 500 KiB are parsed and the rest may be ignored. Its own limit, not
    max_page_bytes: a long robots.txt no longer makes every source of its host fail."""
    if served == "endless":
        site.stream("/robots.txt", endless_robots)
    else:
        site.serve("/robots.txt", long_robots(600_000), "text/plain")
    site.news(["/a/one.html", "/private/two.html"])
    crawl(tmp_path, [{"name": "wire", "url": f"{site.base}/feed.xml"}], max_page_bytes=300_000)
    assert sorted(site.paths()) == ["/a/one.html", "/feed.xml", "/robots.txt"]  # not /private/, as its first rules say
    assert [row["url"] for row in rows(tmp_path / "x.db", "select url from articles")] == [f"{site.base}/a/one.html"]
    assert "robots.txt unreachable" not in (health(tmp_path / "x.db")["wire"]["error"] or "")
    if served == "endless":
        assert site.httpd.sent < 16_000_000  # type: ignore[attr-defined]  # stopped early, not read for a whole timeout


def test_a_long_robots_txt_sent_gzipped_is_obeyed_in_part_too(site, tmp_path):
    rules = b"User-agent: *\nDisallow: /private/\n" + b"# a long comment line\n" * 50_000  # 1.1 MB once inflated
    site.serve("/robots.txt", gzip.compress(rules), "text/plain", **{"Content-Encoding": "gzip"})
    site.news(["/a/one.html", "/private/two.html"])
    crawl(tmp_path, [{"name": "wire", "url": f"{site.base}/feed.xml"}])
    assert "/a/one.html" in site.paths() and "/private/two.html" not in site.paths()


def test_a_robots_txt_gzip_bomb_is_not_inflated_past_the_limit_nor_taken_for_no_rules(site, tmp_path):
    """A robots.txt sent gzip-compressed (though asked for uncompressed) that inflates past the
    limit is too large to read: the host is not crawled, as when robots.txt cannot be reached."""
    bomb = gzip.compress(b"User-agent: *\nDisallow: /private/\n" + b"#" * 20_000_000, compresslevel=9)
    site.serve("/robots.txt", bomb, "text/plain", **{"Content-Encoding": "gzip"})
    site.news(["/a/one.html"])
    crawl(tmp_path, [{"name": "wire", "url": f"{site.base}/feed.xml"}])
    assert site.paths() == ["/robots.txt"]
    state = health(tmp_path / "x.db")["wire"]
    assert state["status"] == "too large" and "robots.txt unreachable" in state["error"], state


def test_groups_named_for_other_words_of_the_user_agent_are_not_armswatchs(site, tmp_path):
    """robots.txt groups are matched against the product token, "armswatch" (RFC 9309, 2.2.1):
    a group for "news" bots is not armswatch's because its User-Agent says "news monitoring"."""
    site.serve("/robots.txt", b"User-agent: news\nDisallow: /\n\nUser-agent: *\nDisallow: /private/\n", "text/plain")
    site.news(["/a/one.html"])
    crawl(tmp_path, [{"name": "wire", "url": f"{site.base}/feed.xml"}])
    assert site.paths() == ["/robots.txt", "/feed.xml", "/a/one.html"]
    assert health(tmp_path / "x.db")["wire"]["status"] == "ok"
