"""`armswatch sources check` tells a user which configured sources are alive."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer

from crawler.demo_server import SiteServer
from tests.conftest import FIXTURES, run_armswatch


def rss(*dates: datetime) -> bytes:
    items = "".join(
        f"<item><title>Item {i}</title><link>http://127.0.0.1/a{i}.html</link><pubDate>{format_datetime(d)}</pubDate></item>"
        for i, d in enumerate(dates)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'.encode()


class CheckHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        now = datetime.now(timezone.utc)
        routes = {
            "/good.xml": (200, rss(now - timedelta(hours=3), now - timedelta(days=1))),
            "/stale.xml": (200, rss(now - timedelta(days=90))),
            "/empty.xml": (200, rss()),
            "/forbidden.xml": (403, b"Forbidden"),
        }
        status, body = routes.get(self.path, (404, b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_check_gives_a_verdict_per_source_and_exits_zero(tmp_path):
    dead = closed_port()
    with SiteServer(FIXTURES, handler=CheckHandler) as server:
        base = server.base_url
        config = tmp_path / "c.toml"
        config.write_text(
            "".join(
                f'[[sources]]\nname = "{name}"\nurl = "{url}"\n\n'
                for name, url in [
                    ("good", f"{base}/good.xml"),
                    ("stale", f"{base}/stale.xml"),
                    ("empty", f"{base}/empty.xml"),
                    ("forbidden", f"{base}/forbidden.xml"),
                    ("dead", f"http://127.0.0.1:{dead}/feed.xml"),
                ]
            )
        )
        result = run_armswatch("sources", "--config", str(config), "check", "--timeout", "5")
    assert result.returncode == 0, result.stderr
    verdicts = {line.split()[0]: line for line in result.stdout.splitlines()[1:-1]}
    assert " ok" in verdicts["good"] and "  2  " in verdicts["good"]
    assert "stale" in verdicts["stale"]
    assert "empty" in verdicts["empty"]
    assert "blocked" in verdicts["forbidden"] and "403" in verdicts["forbidden"]
    assert "unreachable" in verdicts["dead"]
    assert result.stdout.splitlines()[-1] == "1 blocked, 1 empty, 1 ok, 1 stale, 1 unreachable"


def test_check_offline_reports_unreachable_cleanly(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[[sources]]\nname = "nowhere"\nurl = "http://nonexistent.invalid/feed.xml"\n')
    result = run_armswatch("sources", "--config", str(config), "check", "--timeout", "5")
    assert result.returncode == 0
    assert "unreachable" in result.stdout


def test_check_reads_sitemaps_and_section_pages_with_the_crawl_parsers(site, tmp_path):
    config = tmp_path / "armswatch.toml"
    config.write_text(
        f'[[sources]]\nname = "news-sitemap"\nurl = "{site.base_url}/sitemaps/news.xml"\ntype = "sitemap"\n\n'
        f'[[sources]]\nname = "world-section"\nurl = "{site.base_url}/section/world.html"\ntype = "page"\n'
    )
    result = run_armswatch("sources", "--config", str(config), "check", "--timeout", "5")
    assert result.returncode == 0, result.stderr
    verdicts = {line.split()[0]: line for line in result.stdout.splitlines()[1:-1]}
    assert "cannot parse" not in result.stdout
    assert "empty" not in verdicts["news-sitemap"] and "empty" not in verdicts["world-section"]


class DripHandler(CheckHandler):
    """A server that answers, then sends its feed one byte every half second: each read is
    quick, the whole answer would take minutes."""

    def do_GET(self):
        body = rss(datetime.now(timezone.utc))
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for byte in body:
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.5)


def test_check_and_extract_give_up_on_a_dripping_server_after_their_timeout(tmp_path):
    with SiteServer(FIXTURES, handler=DripHandler) as server:
        config = tmp_path / "c.toml"
        config.write_text(f'[[sources]]\nname = "drip"\nurl = "{server.base_url}/feed.xml"\n')
        started = time.monotonic()
        check = run_armswatch("sources", "--config", str(config), "check", "--timeout", "2", timeout=60)
        checked_in = time.monotonic() - started
        extract = run_armswatch("extract", f"{server.base_url}/feed.xml", timeout=60)  # its limit: 20 s
    assert check.returncode == 0, check.stderr
    assert checked_in < 20
    drip = check.stdout.splitlines()[1]
    assert "unreachable" in drip and "no whole answer within 2 s" in drip
    assert extract.returncode == 2 and "no whole answer within" in extract.stderr


# -- politeness: per-host limit, robots.txt, homepages, compressed answers ------------------------

FEED_TYPE = {"Content-Type": "application/rss+xml"}
CRAWLER_UA = "testbot/1.0 (+https://example.org/contact)"


class CountingHandler(BaseHTTPRequestHandler):
    """Answers from the server's route table, noting for each request its path, its User-Agent
    and when it was in flight (what a site operator's log would show)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        server = self.server
        started = time.monotonic()
        with server.lock:
            server.in_flight += 1
            server.most_in_flight = max(server.most_in_flight, server.in_flight)
        try:
            time.sleep(server.latency)
            status, body, headers = server.routes.get(self.path, (404, b"not found", {}))
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)
        finally:
            with server.lock:
                server.in_flight -= 1
                server.requests.append((self.path, self.headers.get("User-Agent"), started, time.monotonic()))


@contextmanager
def counting_site(routes: dict, host: str = "127.0.0.1", latency: float = 0.0):
    """A site on `host` (another loopback address is another host) serving `routes`:
    path -> (status, body, headers)."""
    server = ThreadingHTTPServer((host, 0), CountingHandler)
    server.daemon_threads = True
    server.routes, server.latency, server.lock = routes, latency, threading.Lock()
    server.in_flight = server.most_in_flight = 0
    server.requests = []  # (path, user agent, start, end), in the order they ended
    server.base_url = f"http://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def paths(server) -> list[str]:
    return [request[0] for request in sorted(server.requests, key=lambda r: r[2])]


def sources_toml(*sources: tuple, crawl: str = "") -> str:
    """[crawl] lines, then one [[sources]] table per (name, url[, extra TOML lines])."""
    tables = "".join(f'[[sources]]\nname = "{name}"\nurl = "{url}"\n{"".join(extra)}\n' for name, url, *extra in sources)
    return f"[crawl]\n{crawl}\n{tables}"


def check(tmp_path, toml: str, *options: str, **kwargs):
    config = tmp_path / "c.toml"
    config.write_text(toml)
    result = run_armswatch("sources", "--config", str(config), "check", "--timeout", "5", *options, **kwargs)
    assert result.returncode == 0, result.stderr
    return result, {line.split()[0]: line for line in result.stdout.splitlines()[1:-1]}


def test_check_keeps_to_concurrency_per_domain_per_host_and_reads_robots_txt_once(tmp_path):
    feed = (200, rss(datetime.now(timezone.utc)), FEED_TYPE)
    robots = (200, b"User-agent: *\nAllow: /\n", {"Content-Type": "text/plain"})
    routes = {"/robots.txt": robots, **{f"/f{i}.xml": feed for i in range(8)}}
    with counting_site(routes, latency=0.15) as big, counting_site(routes, host="127.0.0.2", latency=0.15) as other:
        sources = [(f"big{i}", f"{big.base_url}/f{i}.xml") for i in range(8)]
        sources += [(f"other{i}", f"{other.base_url}/f{i}.xml") for i in range(4)]
        result, _ = check(tmp_path, sources_toml(*sources, crawl="concurrency_per_domain = 2\ndownload_delay = 0"))
    assert result.stdout.splitlines()[-1] == "12 ok"
    assert big.most_in_flight == 2 and other.most_in_flight == 2  # the configured limit, and used
    for site in (big, other):
        assert paths(site)[0] == "/robots.txt" and paths(site).count("/robots.txt") == 1
    # the hosts are still checked side by side, each at its own limit
    assert any(b[2] < o[3] and o[2] < b[3] for b in big.requests for o in other.requests)


def test_check_keeps_a_hosts_crawl_delay_and_asks_nothing_more_of_a_host_that_answers_429(tmp_path):
    feed = (200, rss(datetime.now(timezone.utc)), FEED_TYPE)
    slow = {"/robots.txt": (200, b"User-agent: *\nCrawl-delay: 1\n", {"Content-Type": "text/plain"}),
            **{f"/f{i}.xml": feed for i in range(3)}}
    limited = {"/f0.xml": (429, b"slow down", {"Content-Type": "text/plain"}), **{f"/f{i}.xml": feed for i in range(1, 4)}}
    with counting_site(slow) as paced, counting_site(limited, host="127.0.0.2") as busy:
        sources = [(f"paced{i}", f"{paced.base_url}/f{i}.xml") for i in range(3)]
        sources += [(f"busy{i}", f"{busy.base_url}/f{i}.xml") for i in range(4)]
        result, verdicts = check(tmp_path, sources_toml(*sources, crawl="concurrency_per_domain = 1\ndownload_delay = 0"))
    starts = sorted(start for path, _agent, start, _end in paced.requests if path.startswith("/f"))
    assert len(starts) == 3 and all(b - a >= 0.95 for a, b in zip(starts, starts[1:])), starts  # Crawl-delay: 1
    assert [p for p in paths(busy) if p != "/robots.txt"] == ["/f0.xml"]
    for i in (1, 2, 3):
        assert "blocked (not asked: 127.0.0.2 answered HTTP 429 to busy0)" in verdicts[f"busy{i}"]


ROBOTS = (
    b"User-agent: *\nDisallow: /private/\n\n"
    b"User-agent: testbot\nDisallow: /private/\nDisallow: /bot-only/\n"
)


def test_check_obeys_robots_txt_for_the_crawlers_own_user_agent(tmp_path):
    feed = (200, rss(datetime.now(timezone.utc)), FEED_TYPE)
    routes = {
        "/robots.txt": (200, ROBOTS, {"Content-Type": "text/plain"}),
        "/good.xml": feed,
        "/private/feed.xml": feed,
        "/bot-only/feed.xml": feed,
        "/old.xml": (301, b"", {"Location": "/private/feed.xml"}),
    }
    browser = 'user_agent = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"\n'
    with counting_site(routes) as site:
        base = site.base_url
        result, verdicts = check(tmp_path, sources_toml(
            ("allowed", f"{base}/good.xml"),
            ("private", f"{base}/private/feed.xml"),
            ("redirected", f"{base}/old.xml"),
            ("browser", f"{base}/bot-only/feed.xml", browser),  # its own header; the rules are the crawler's
            crawl=f'user_agent = "{CRAWLER_UA}"',
        ))
    assert " ok" in verdicts["allowed"]
    assert f"blocked (robots.txt forbids {base}/private/feed.xml)" in verdicts["private"]
    assert f"blocked (robots.txt forbids {base}/private/feed.xml)" in verdicts["redirected"]
    assert f"blocked (robots.txt forbids {base}/bot-only/feed.xml)" in verdicts["browser"]
    assert result.stdout.splitlines()[-1] == "3 blocked, 1 ok"
    assert sorted(paths(site)) == ["/good.xml", "/old.xml", "/robots.txt"]  # nothing forbidden was fetched
    assert {ua for path, ua, *_ in site.requests} == {CRAWLER_UA}


def test_check_fetches_nothing_from_a_host_whose_robots_txt_answers_503(tmp_path):
    feed = (200, rss(datetime.now(timezone.utc)), FEED_TYPE)
    routes = {"/robots.txt": (503, b"busy", {}), "/a.xml": feed, "/b.xml": feed}
    with counting_site(routes) as site:
        _, verdicts = check(tmp_path, sources_toml(("a", f"{site.base_url}/a.xml"), ("b", f"{site.base_url}/b.xml")))
    assert paths(site) == ["/robots.txt"]  # asked once for both sources
    for name in ("a", "b"):
        assert "unreachable" in verdicts[name] and "robots.txt unreachable (HTTP 503)" in verdicts[name]


HOMEPAGE = b"""<html><head><title>News</title>
<link rel="alternate" type="application/rss+xml" title="News" href="/news.xml">
</head><body><a href="/a1.html">A story</a></body></html>"""


def test_check_reads_a_homepage_through_the_feed_it_announces_or_a_usual_feed_path(tmp_path):
    feed = (200, rss(datetime.now(timezone.utc), datetime.now(timezone.utc)), FEED_TYPE)
    plain_home = (200, b"<html><body><a href='/a1.html'>A story</a></body></html>", {"Content-Type": "text/html"})
    with counting_site({"/": (200, HOMEPAGE, {"Content-Type": "text/html"}), "/news.xml": feed}) as announcing, \
            counting_site({"/": plain_home, "/rss.xml": feed}, host="127.0.0.2") as quiet:
        result, verdicts = check(tmp_path, sources_toml(
            ("announcing", f"{announcing.base_url}/", 'type = "homepage"\n'),
            ("quiet", f"{quiet.base_url}/", 'type = "homepage"\n'),
        ))
    assert verdicts["announcing"].split()[1:4] == ["200", "yes", "2"]
    assert verdicts["announcing"].endswith(f"ok via announced feed {announcing.base_url}/news.xml")
    assert verdicts["quiet"].endswith(f"ok via probed feed {quiet.base_url}/rss.xml")
    assert paths(quiet) == ["/robots.txt", "/", "/feed", "/rss", "/rss.xml"]  # the crawl's order, stopping at the first feed
    assert result.stdout.splitlines()[-1] == "2 ok"


def gzip_bomb(inflated_mb: int) -> bytes:
    """Gzip members one after another (allowed by RFC 1952): a few hundred KB that inflate to `inflated_mb` MB."""
    member = gzip.compress(b"\0" * 1_000_000, compresslevel=9)
    return member * inflated_mb


def test_check_reads_a_gzipped_feed_and_stops_a_gzip_bomb_without_inflating_it(tmp_path):
    routes = {
        "/gz.xml": (200, gzip.compress(rss(datetime.now(timezone.utc))), {**FEED_TYPE, "Content-Encoding": "gzip"}),
        "/bomb.xml": (200, gzip_bomb(1000), {**FEED_TYPE, "Content-Encoding": "gzip"}),
        "/xz.xml": (200, b"\xfd7zXZ\x00\x00 not really xz", {**FEED_TYPE, "Content-Encoding": "xz"}),
    }
    with counting_site(routes) as site:
        base = site.base_url
        result, verdicts = check(tmp_path, sources_toml(
            ("gzipped", f"{base}/gz.xml"), ("bomb", f"{base}/bomb.xml"), ("xz", f"{base}/xz.xml"),
        ), measure_memory=True)
    assert " ok" in verdicts["gzipped"] and "  1  " in verdicts["gzipped"]
    assert f"too large: {base}/bomb.xml is larger than 10,000,000 bytes once decompressed" in verdicts["bomb"]
    assert f"{base}/xz.xml answered in Content-Encoding 'xz', which cannot be read here" in verdicts["xz"]
    assert result.peak_rss_mb < 200  # the bomb inflates to 1 GB; the check holds at most its 10 MB limit


def test_check_matches_robots_groups_to_the_user_agents_product_token(tmp_path):
    """"testbot/1.0 (+https://example.org/contact)" is testbot: a group for "example" is not its."""
    routes = {
        "/robots.txt": (200, b"User-agent: example\nDisallow: /\n\nUser-agent: testbot\nDisallow: /private/\n",
                        {"Content-Type": "text/plain"}),
        "/good.xml": (200, rss(datetime.now(timezone.utc)), FEED_TYPE),
    }
    with counting_site(routes) as site:
        base = site.base_url
        _, verdicts = check(tmp_path, sources_toml(
            ("allowed", f"{base}/good.xml"), ("private", f"{base}/private/feed.xml"),
            crawl=f'user_agent = "{CRAWLER_UA}"',
        ))
    assert " ok" in verdicts["allowed"]
    assert f"blocked (robots.txt forbids {base}/private/feed.xml)" in verdicts["private"]
