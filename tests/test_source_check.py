"""`armswatch sources check` tells a user which configured sources are alive."""

from __future__ import annotations

import socket
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import SimpleHTTPRequestHandler

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
