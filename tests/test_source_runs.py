"""Run after run: what one crawl could not finish the next one does, and a source whose
further documents fail says so in the health table.

A live server on 127.0.0.1 whose pages the tests change between crawls (`web.pages`)."""

from __future__ import annotations

import gzip
import os
import sqlite3
import subprocess
import sys
import threading
import time
from io import BytesIO
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import pytest

from crawler.demo_server import SiteHandler, SiteServer
from storage.store import ArticleStore
from tests.conftest import ROOT, rows, run_armswatch
from tests.test_sources import health, write_config

ARMS = "Russia received a new batch of Shahed drones from Iran, the ministry of defence said on Monday."


def article(title: str, body: str = ARMS) -> bytes:
    paragraphs = "".join(f"<p>{body} Paragraph {i} adds detail about the delivery and the payment for it.</p>" for i in range(4))
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><article><h1>{title}</h1>{paragraphs}</article></body></html>""".encode()


def urlset(base: str, paths: list[str]) -> bytes:
    urls = "".join(f"<url><loc>{base}{path}</loc></url>" for path in paths)
    return f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'.encode()


def index(base: str, paths: list[str]) -> bytes:
    listed = "".join(f"<sitemap><loc>{base}{path}</loc></sitemap>" for path in paths)
    return f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{listed}</sitemapindex>'.encode()


def rss(base: str, paths: list[str]) -> bytes:
    items = "".join(f"<item><title>{path}</title><link>{base}{path}</link></item>" for path in paths)
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>{items}</channel></rss>'.encode()


class ChangingHandler(SiteHandler):
    """Serves `server.pages`: path -> (status, body, content type, headers); anything else is a 404.
    A page whose headers carry an ETag answers 304 to a request that sends it back.
    Status 0 hangs (until the test ends) instead of answering, -1 closes the connection without
    answering (a server restarting, an idle connection dropped); a 3xx body is its Location."""

    def send_head(self):  # type: ignore[override]
        self.server.request_times.append((time.monotonic(), self.path))
        status, body, content_type, *headers = self.server.pages.get(urlsplit(self.path).path, (404, b"not here", "text/plain"))
        if status == 0:
            self.server.released.wait(60)
            return None
        if status == -1:
            self.close_connection = True
            return None
        etag = (headers[0] if headers else {}).get("ETag")
        if etag and self.headers.get("If-None-Match") == etag:
            self.server.not_modified.append(urlsplit(self.path).path)
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return None
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", body.decode())
        self.send_header("Content-Type", content_type)
        for name, value in (headers[0] if headers else {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return BytesIO(body)


@pytest.fixture
def web():
    server = SiteServer(Path("."), handler=ChangingHandler)
    server.httpd.pages = {}  # type: ignore[attr-defined]
    server.httpd.request_times = []  # type: ignore[attr-defined]  # (monotonic time, path)
    server.httpd.not_modified = []  # type: ignore[attr-defined]  # paths answered 304 (If-None-Match matched)
    server.httpd.released = threading.Event()  # type: ignore[attr-defined]
    with server:
        yield server
        server.httpd.released.set()  # type: ignore[attr-defined]


def serve(web, path: str, body: bytes, status: int = 200, content_type: str = "application/xml",
          headers: dict[str, str] | None = None) -> None:
    web.httpd.pages[path] = (status, body, content_type, headers or {})


def crawl(config: Path):
    result = run_armswatch("crawl", "--config", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def stored(db: Path) -> set[str]:
    return {urlsplit(r["url"]).path for r in rows(db, "select url from articles")}


def test_an_unchanged_sitemap_index_still_leads_to_its_new_stories(web, tmp_path):
    b = web.base_url
    serve(web, "/sitemap.xml", index(b, ["/news-sitemap.xml"]))
    serve(web, "/news-sitemap.xml", urlset(b, ["/a/one.html"]))
    serve(web, "/a/one.html", article("One"), content_type="text/html")
    config = write_config(tmp_path / "c.toml", [{"name": "site", "url": f"{b}/sitemap.xml", "type": "sitemap"}])
    crawl(config)
    assert stored(tmp_path / "x.db") == {"/a/one.html"}

    # the index is the same to the byte; its child sitemap lists a new story
    serve(web, "/news-sitemap.xml", urlset(b, ["/a/two.html", "/a/one.html"]))
    serve(web, "/a/two.html", article("Two"), content_type="text/html")
    web.request_log.clear()
    crawl(config)
    assert stored(tmp_path / "x.db") == {"/a/one.html", "/a/two.html"}
    assert "/a/one.html" not in web.request_log  # stored already: not fetched again


def test_the_sitemaps_of_an_index_are_asked_for_conditionally_and_only_a_changed_one_is_read(web, tmp_path):
    """An archive's index lists many sitemaps, nearly all unchanged from one run to the next."""
    b = web.base_url
    serve(web, "/sitemap.xml", index(b, ["/s1.xml", "/s2.xml", "/s3.xml"]))
    for i in (1, 2, 3):
        serve(web, f"/s{i}.xml", urlset(b, [f"/a/{i}.html"]), headers={"ETag": '"v1"'})
        serve(web, f"/a/{i}.html", article(f"Story {i}"), content_type="text/html")
    config = write_config(tmp_path / "c.toml", [{"name": "archive", "url": f"{b}/sitemap.xml", "type": "sitemap"}])
    crawl(config)
    db = tmp_path / "x.db"
    assert stored(db) == {"/a/1.html", "/a/2.html", "/a/3.html"}
    assert web.httpd.not_modified == []

    serve(web, "/s2.xml", urlset(b, ["/a/4.html", "/a/2.html"]), headers={"ETag": '"v2"'})
    serve(web, "/a/4.html", article("Story 4"), content_type="text/html")
    web.request_log.clear()
    crawl(config)
    assert sorted(web.httpd.not_modified) == ["/s1.xml", "/s3.xml"]
    assert stored(db) == {"/a/1.html", "/a/2.html", "/a/3.html", "/a/4.html"}
    assert [p for p in web.request_log if p.startswith("/a/")] == ["/a/4.html"]
    assert health(db)["archive"]["status"] == "ok"


def test_an_unchanged_archive_read_with_max_items_gives_nothing_new_run_after_run(web, tmp_path):
    """max_items reads the newest sitemaps first; when they answer 304, the older ones are not
    read one deeper into the archive every run."""
    b = web.base_url
    serve(web, "/sitemap.xml", index(b, ["/s1.xml", "/s2.xml", "/s3.xml"]))
    for i in (1, 2, 3):
        serve(web, f"/s{i}.xml", urlset(b, [f"/a/{i}.html"]), headers={"ETag": '"v1"'})
        serve(web, f"/a/{i}.html", article(f"Story {i}"), content_type="text/html")
    config = write_config(tmp_path / "c.toml", [{"name": "archive", "url": f"{b}/sitemap.xml", "type": "sitemap", "max_items": 1}])
    crawl(config)
    first = stored(tmp_path / "x.db")
    assert len(first) == 1
    for _ in range(2):
        web.request_log.clear()
        result = crawl(config)
        assert "0 new articles" in result.stdout, result.stdout
        assert stored(tmp_path / "x.db") == first
        assert [p for p in web.request_log if p.startswith("/a/")] == []


def test_an_unchanged_sitemap_whose_article_failed_is_read_again_for_it(web, tmp_path):
    b = web.base_url
    serve(web, "/sitemap.xml", index(b, ["/s1.xml"]))
    serve(web, "/s1.xml", urlset(b, ["/a/1.html", "/a/2.html"]), headers={"ETag": '"v1"'})
    serve(web, "/a/1.html", article("Story 1"), content_type="text/html")
    serve(web, "/a/2.html", b"busy", status=503, content_type="text/plain")
    config = write_config(tmp_path / "c.toml", [{"name": "archive", "url": f"{b}/sitemap.xml", "type": "sitemap"}])
    crawl(config)
    assert stored(tmp_path / "x.db") == {"/a/1.html"}

    serve(web, "/a/2.html", article("Story 2"), content_type="text/html")
    crawl(config)
    assert web.httpd.not_modified == []  # read in full: it has an article to retry
    assert stored(tmp_path / "x.db") == {"/a/1.html", "/a/2.html"}
    crawl(config)
    assert web.httpd.not_modified == ["/s1.xml"]  # nothing left to retry: asked for conditionally


def test_a_failing_child_sitemap_shows_in_the_health_table(web, tmp_path):
    b = web.base_url
    serve(web, "/all-dead.xml", index(b, ["/gone.xml"]))
    serve(web, "/half-dead.xml", index(b, ["/gone.xml", "/live.xml"]))
    serve(web, "/live.xml", urlset(b, ["/a/live.html"]))
    serve(web, "/a/live.html", article("Live"), content_type="text/html")
    config = write_config(tmp_path / "c.toml", [
        {"name": "all dead", "url": f"{b}/all-dead.xml", "type": "sitemap"},
        {"name": "half dead", "url": f"{b}/half-dead.xml", "type": "sitemap"},
    ])
    crawl(config)
    states = health(tmp_path / "x.db")
    assert states["all dead"]["status"] == "HTTP 404" and states["all dead"]["consecutive_failures"] == 1
    assert "/gone.xml" in states["all dead"]["error"] and states["all dead"]["last_success"] is None
    assert states["half dead"]["status"] == "partial" and states["half dead"]["consecutive_failures"] == 0
    assert "/gone.xml" in states["half dead"]["error"]
    assert stored(tmp_path / "x.db") == {"/a/live.html"}
    table = run_armswatch("sources", "--db", str(tmp_path / "x.db")).stdout
    assert "last attempt" in table.splitlines()[0]
    assert f"    error: HTTP 404 from {b}/gone.xml" in table.splitlines()  # whole, on a line of its own

    crawl(config)  # a second failed run counts on
    assert health(tmp_path / "x.db")["all dead"]["consecutive_failures"] == 2

    serve(web, "/gone.xml", urlset(b, ["/a/back.html"]))
    serve(web, "/a/back.html", article("Back"), content_type="text/html")
    crawl(config)
    states = health(tmp_path / "x.db")
    assert states["all dead"]["status"] == "ok" and states["all dead"]["consecutive_failures"] == 0
    assert states["half dead"]["status"] == "ok" and states["half dead"]["error"] is None
    assert "/a/back.html" in stored(tmp_path / "x.db")


def wire_with_a_failing_article(web, tmp_path, path: str, status: int) -> Path:
    """A feed of two articles, /a/steady.html and `path`, which answers `status`; its config."""
    serve(web, "/feed.xml", rss(web.base_url, ["/a/steady.html", path]))
    serve(web, "/a/steady.html", article("Steady"), content_type="text/html")
    serve(web, path, b"failing", status=status, content_type="text/plain")
    return write_config(tmp_path / "c.toml", [{"name": "wire", "url": f"{web.base_url}/feed.xml"}])


@pytest.mark.parametrize("status", [503, -1], ids=["503", "closed-without-answer"])
def test_an_article_that_failed_is_fetched_again_though_its_feed_has_not_changed(web, tmp_path, status):
    config = wire_with_a_failing_article(web, tmp_path, "/a/flaky.html", status)
    crawl(config)
    assert stored(tmp_path / "x.db") == {"/a/steady.html"}

    serve(web, "/a/flaky.html", article("Flaky"), content_type="text/html")
    crawl(config)
    assert stored(tmp_path / "x.db") == {"/a/steady.html", "/a/flaky.html"}

    web.request_log.clear()  # all stored now: the unchanged feed is skipped again
    crawl(config)
    assert health(tmp_path / "x.db")["wire"]["status"] == "unchanged"
    assert [p for p in web.request_log if p.startswith("/a/")] == []


def test_max_items_counts_over_all_the_documents_of_a_source(web, tmp_path):
    b = web.base_url
    serve(web, "/sitemap.xml", index(b, ["/s1.xml", "/s2.xml"]))
    serve(web, "/s1.xml", urlset(b, [f"/a/one-{i}.html" for i in range(3)]))
    serve(web, "/s2.xml", urlset(b, [f"/a/two-{i}.html" for i in range(3)]))
    for i in range(3):
        for name in ("one", "two"):
            serve(web, f"/a/{name}-{i}.html", article(f"{name} {i}"), content_type="text/html")
    config = write_config(tmp_path / "c.toml", [{"name": "site", "url": f"{b}/sitemap.xml", "type": "sitemap", "max_items": 4}])
    crawl(config)
    assert len(stored(tmp_path / "x.db")) == 4
    assert health(tmp_path / "x.db")["site"]["items_seen"] == 6  # all listed; 4 of them taken


def dated_rss(base: str, items: list[tuple[str, int]]) -> bytes:
    """(path, hour of 2026-03-03) per item, in the order given."""
    listed = "".join(
        f"<item><title>{path}</title><link>{base}{path}</link><pubDate>Tue, 03 Mar 2026 {hour:02d}:00:00 GMT</pubDate></item>"
        for path, hour in items
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>{listed}</channel></rss>'.encode()


def test_max_items_takes_the_newest_new_articles_and_leaves_the_rest_for_the_next_runs(web, tmp_path):
    """An oldest-first feed with max_items: the newest stories first, then what was left, a run at
    a time, and a story added at the bottom is taken on the next run, not never."""
    b = web.base_url
    items = [(f"/a/{hour:02d}.html", hour) for hour in range(1, 7)]  # oldest first
    serve(web, "/feed.xml", dated_rss(b, items))
    for path, hour in items + [("/a/07.html", 7)]:
        serve(web, path, article(f"Story of {hour} o'clock"), content_type="text/html")
    config = write_config(tmp_path / "c.toml", [{"name": "wire", "url": f"{b}/feed.xml", "max_items": 2}])
    crawl(config)
    assert stored(tmp_path / "x.db") == {"/a/05.html", "/a/06.html"}
    assert (health(tmp_path / "x.db")["wire"]["items_seen"], health(tmp_path / "x.db")["wire"]["items_new"]) == (6, 2)
    crawl(config)  # the same feed, byte for byte: read again, since new stories were left
    assert stored(tmp_path / "x.db") >= {"/a/03.html", "/a/04.html"} and "/a/02.html" not in stored(tmp_path / "x.db")
    serve(web, "/feed.xml", dated_rss(b, items + [("/a/07.html", 7)]))
    crawl(config)
    assert stored(tmp_path / "x.db") >= {"/a/07.html", "/a/02.html"} and "/a/01.html" not in stored(tmp_path / "x.db")
    crawl(config)
    crawl(config)
    assert len(stored(tmp_path / "x.db")) == 7
    assert health(tmp_path / "x.db")["wire"]["status"] == "unchanged"  # all taken: the validators are kept again


def test_a_malformed_link_in_a_feed_costs_only_itself(web, tmp_path):
    b = web.base_url
    feed = rss(b, ["/a/one.html", "/a/two.html"]).replace(
        b"<item><title>/a/two.html", b"<item><title>bad</title><link>http://127.0.0.1:99999/x</link></item><item><title>/a/two.html"
    )
    serve(web, "/feed.xml", feed)
    serve(web, "/a/one.html", article("One"), content_type="text/html")
    serve(web, "/a/two.html", article("Two"), content_type="text/html")
    crawl(write_config(tmp_path / "c.toml", [{"name": "wire", "url": f"{b}/feed.xml"}]))
    assert stored(tmp_path / "x.db") == {"/a/one.html", "/a/two.html"}


@pytest.mark.parametrize("robots_status, error_class, headers", [
    (503, "HTTP 503", {}), (0, "timeout", {}), (429, "HTTP 429", {"Retry-After": "1"}),
], ids=["robots-503", "robots-hangs", "robots-429-for-a-second"])
def test_a_site_whose_robots_txt_cannot_be_read_is_not_crawled(web, tmp_path, robots_status, error_class, headers):
    """RFC 9309: an unreachable robots.txt is no permission (a rate limit neither: its rules are not
    "none"); and the site's other documents fail at once with the reason, instead of each waiting
    for its own timeout."""
    b = web.base_url
    serve(web, "/robots.txt", b"down", status=robots_status, content_type="text/plain", headers=headers)
    serve(web, "/one.xml", rss(b, ["/a/one.html"]))
    serve(web, "/two.xml", rss(b, ["/a/two.html"]))
    config = write_config(tmp_path / "c.toml", [{"name": "one", "url": f"{b}/one.xml"}, {"name": "two", "url": f"{b}/two.xml"}],
                          download_timeout=2)
    result = crawl(config)
    assert set(web.request_log) == {"/robots.txt"}
    states = health(tmp_path / "x.db")
    for name in ("one", "two"):
        assert states[name]["status"] == error_class and "robots.txt unreachable" in states[name]["error"]
    assert "Traceback" not in result.stderr


def test_a_refreshed_article_that_becomes_an_arms_story_is_flagged_once(web, tmp_path):
    b = web.base_url
    harmless = "The city council approved the new tram line on Monday after a long debate about its cost."
    serve(web, "/feed.xml", rss(b, ["/a/story.html"]))
    serve(web, "/a/story.html", article("Story", harmless), content_type="text/html")
    config = write_config(tmp_path / "c.toml", [{"name": "wire", "url": f"{b}/feed.xml"}])
    crawl(config)
    db = tmp_path / "x.db"
    assert rows(db, "select * from matches") == []

    serve(web, "/a/story.html", article("Story", ARMS), content_type="text/html")
    assert run_armswatch("crawl", "--config", str(config), "--refresh").returncode == 0
    assert [m["rule"] for m in rows(db, "select rule from matches")] == ["arms-procurement"]
    assert len(rows(db, "select * from article_updates")) == 1

    serve(web, "/a/story.html", article("Story", ARMS + " More drones are expected next month."), content_type="text/html")
    assert run_armswatch("crawl", "--config", str(config), "--refresh").returncode == 0
    assert len(rows(db, "select * from matches")) == 1  # updated again, not flagged again
    assert len(rows(db, "select * from article_updates")) == 2


def test_a_redirect_chain_longer_than_the_limit_is_named_so(web, tmp_path):
    b = web.base_url
    for hop in range(8):
        serve(web, f"/hop{hop}.xml", f"{b}/hop{hop + 1}.xml".encode(), status=302)
    crawl(write_config(tmp_path / "c.toml", [{"name": "chain", "url": f"{b}/hop0.xml"}]))
    state = health(tmp_path / "x.db")["chain"]
    assert state["status"] == "too many redirects" and "/hop0.xml" in state["error"]


def test_an_archive_sitemap_larger_than_an_article_page_is_read_through_its_date_window(web, tmp_path):
    """Sitemaps may be 50 MB (the protocol's limit); max_page_bytes is about article pages."""
    b = web.base_url
    old = "".join(f"<url><loc>{b}/2016/story-{i}.html</loc><lastmod>2016-01-01</lastmod></url>" for i in range(60_000))
    new = f"<url><loc>{b}/a/new.html</loc></url>"
    body = f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{new}{old}</urlset>'.encode()
    assert len(body) > 5_000_000
    serve(web, "/archive.xml", body)
    serve(web, "/a/new.html", article("New"), content_type="text/html")
    crawl(write_config(tmp_path / "c.toml", [{"name": "archive", "url": f"{b}/archive.xml", "type": "sitemap", "since_days": 3}],
                       max_page_bytes=5_000_000))
    assert stored(tmp_path / "x.db") == {"/a/new.html"}
    assert health(tmp_path / "x.db")["archive"]["status"] == "ok"


def test_max_items_takes_the_newest_sitemaps_first_and_reads_no_further(web, tmp_path):
    b = web.base_url
    months = [f"/sitemap-2026-{month:02d}.xml" for month in range(1, 13)]
    serve(web, "/index.xml", index(b, months))  # oldest first, no <lastmod>
    for month, path in enumerate(months, start=1):
        serve(web, path, urlset(b, [f"/a/{month}-{i}.html" for i in range(3)]))
        for i in range(3):
            serve(web, f"/a/{month}-{i}.html", article(f"Month {month} story {i}"), content_type="text/html")
    crawl(write_config(tmp_path / "c.toml", [{"name": "site", "url": f"{b}/index.xml", "type": "sitemap", "max_items": 5}]))
    assert {path.split("-")[0] for path in stored(tmp_path / "x.db")} == {"/a/12", "/a/11"}
    assert [p for p in web.request_log if p.startswith("/sitemap-")] == ["/sitemap-2026-12.xml", "/sitemap-2026-11.xml"]


def test_an_article_that_fails_every_run_stops_holding_back_its_feeds_304(web, tmp_path):
    config = wire_with_a_failing_article(web, tmp_path, "/a/broken.html", 500)
    requests_per_run = []
    for _ in range(5):
        web.request_log.clear()
        crawl(config)
        requests_per_run.append(web.request_log.count("/a/broken.html"))
    assert requests_per_run[:4] == [2, 2, 2, 2]  # tried (and retried once) in the first runs
    assert requests_per_run[4] == 0  # then the unchanged feed is skipped again
    assert health(tmp_path / "x.db")["wire"]["status"] == "unchanged"


def crawled_wire_of_one_article(web, tmp_path, path: str) -> Path:
    """A feed "wire" listing one article at `path`, crawled once; its config."""
    serve(web, "/feed.xml", rss(web.base_url, [path]))
    serve(web, path, article(path), content_type="text/html")
    config = write_config(tmp_path / "c.toml", [{"name": "wire", "url": f"{web.base_url}/feed.xml"}])
    crawl(config)
    return config


def test_an_article_relisted_over_https_or_with_www_is_not_fetched_again(web, tmp_path):
    """A site that moves to https relists every article under a new URL: the same page, not news."""
    b = web.base_url
    config = crawled_wire_of_one_article(web, tmp_path, "/a/story.html")
    port = urlsplit(b).port
    relisted = rss("", [f"https://127.0.0.1:{port}/a/story.html", f"http://www.127.0.0.1:{port}/a/story.html",
                        f"https://www.127.0.0.1:{port}/a/story.html/"])
    serve(web, "/feed.xml", relisted)
    result = crawl(config)
    assert "0 new articles" in result.stdout and "0 errors" in result.stdout, result.stdout
    assert stored(tmp_path / "x.db") == {"/a/story.html"}


def test_one_article_listed_twice_in_a_run_under_two_addresses_is_fetched_and_flagged_once(web, tmp_path):
    b = web.base_url
    serve(web, "/feed.xml", rss(b, ["/a/story.html", "/a/story.html/"]))
    serve(web, "/a/story.html", article("Story"), content_type="text/html")
    serve(web, "/a/story.html/", article("Story"), content_type="text/html")
    crawl(write_config(tmp_path / "c.toml", [{"name": "wire", "url": f"{b}/feed.xml"}]))
    assert [p for p in web.request_log if p.startswith("/a/")] in (["/a/story.html"], ["/a/story.html/"])
    assert len(rows(tmp_path / "x.db", "select * from articles")) == 1
    assert len(rows(tmp_path / "x.db", "select * from matches")) == 1


def test_a_refresh_that_finds_an_article_under_another_address_updates_it(web, tmp_path):
    """--refresh fetches known pages again under the address listed now: an edit is an update of
    the stored article, not a second article flagged a second time."""
    b = web.base_url
    config = crawled_wire_of_one_article(web, tmp_path, "/a/story.html")
    db = tmp_path / "x.db"
    assert len(rows(db, "select * from matches")) == 1
    serve(web, "/feed.xml", rss(b, ["/a/story.html/"]))
    serve(web, "/a/story.html/", article("/a/story.html", ARMS + " A second batch is due in May."), content_type="text/html")
    result = run_armswatch("crawl", "--config", str(config), "--refresh")
    assert result.returncode == 0, result.stderr
    assert "0 new articles" in result.stdout, result.stdout
    assert len(rows(db, "select * from articles")) == 1
    assert len(rows(db, "select * from article_updates")) == 1
    assert "A second batch is due in May." in rows(db, "select text from articles")[0]["text"]
    assert len(rows(db, "select * from matches")) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_a_host_that_asks_to_be_left_alone_is_not_asked_again_in_the_run(web, tmp_path, status):
    """429 Too Many Requests, or a 503 with Retry-After: the host's other pages wait for the next
    run, and its source's health says so."""
    b = web.base_url
    paths = [f"/a/s{i}.html" for i in range(1, 13)]
    serve(web, "/feed.xml", rss(b, paths))
    for path in paths:
        serve(web, path, article(path), content_type="text/html")
    serve(web, "/a/s3.html", b"slow down", status=status, content_type="text/plain", headers={"Retry-After": "120"})
    config = write_config(tmp_path / "c.toml", [{"name": "wire", "url": f"{b}/feed.xml"}], concurrency_per_domain=1)
    db = tmp_path / "x.db"
    crawl(config)
    asked = [p for p in web.request_log if p.startswith("/a/")]
    assert asked[-1] == "/a/s3.html" and asked.count("/a/s3.html") == 1  # nothing after it, no retry
    assert stored(db) == set(asked[:-1])
    state = health(db)["wire"]
    assert state["status"] == "partial", state
    assert f"HTTP {status}" in state["error"] and "Retry-After: 120" in state["error"]
    assert f"{12 - len(asked)} articles left for the next run" in state["error"]
    assert run_armswatch("sources", "--db", str(db)).stdout.splitlines()[-1] == "1 source: none failing, 1 partial"

    serve(web, "/a/s3.html", article("/a/s3.html"), content_type="text/html")
    web.request_log.clear()
    rest_is_over(db)  # two minutes later
    crawl(config)
    assert stored(db) == set(paths)
    assert not set(asked[:-1]) & set(web.request_log)  # stored already: not fetched again
    assert health(db)["wire"]["status"] == "ok"


def rest_is_over(db: Path) -> None:
    """As if the time a host asked for had passed since."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("update host_rests set until = '2000-01-01T00:00:00+00:00'")
    conn.close()


def test_a_host_that_asks_for_an_hour_is_not_asked_by_the_next_runs_before_then(web, tmp_path):
    b = web.base_url
    serve(web, "/feed.xml", b"slow down", status=429, content_type="text/plain", headers={"Retry-After": "3600"})
    config = write_config(tmp_path / "c.toml", [{"name": "wire", "url": f"{b}/feed.xml"}])
    db = tmp_path / "x.db"
    crawl(config)
    assert health(db)["wire"]["status"] == "HTTP 429"

    web.request_log.clear()
    crawl(config)
    assert web.request_log == []  # not even its robots.txt
    state = health(db)["wire"]
    assert state["status"] == "HTTP 429" and state["consecutive_failures"] == 2
    assert "127.0.0.1 answered HTTP 429 (Retry-After: 3600): not asked again before" in state["error"]

    rest_is_over(db)  # an hour later
    serve(web, "/feed.xml", rss(b, ["/a/one.html"]))
    serve(web, "/a/one.html", article("One"), content_type="text/html")
    crawl(config)
    assert health(db)["wire"]["status"] == "ok" and stored(db) == {"/a/one.html"}


def test_a_short_retry_after_holds_the_hosts_next_request_back_that_long(web, tmp_path):
    b = web.base_url
    paths = [f"/a/s{i}.html" for i in range(1, 7)]
    serve(web, "/feed.xml", rss(b, paths))
    for path in paths:
        serve(web, path, article(path), content_type="text/html")
    serve(web, "/a/s3.html", b"slow down", status=429, content_type="text/plain", headers={"Retry-After": "2"})
    crawl(write_config(tmp_path / "c.toml", [{"name": "wire", "url": f"{b}/feed.xml"}], concurrency_per_domain=1))
    asked = [(at, path) for at, path in web.httpd.request_times if path.startswith("/a/")]
    refused_at = next(at for at, path in asked if path == "/a/s3.html")
    after = [at for at, path in asked if at > refused_at]
    assert after and min(after) - refused_at >= 1.9  # Retry-After: 2
    assert stored(tmp_path / "x.db") == set(paths) - {"/a/s3.html"}  # the others are fetched in this run


def test_a_gzip_sitemap_that_inflates_past_the_protocols_limit_is_too_large_not_unreadable(web, tmp_path):
    serve(web, "/bomb.xml.gz", gzip.compress(b"<urlset>" + b" " * 60_000_000 + b"</urlset>"), content_type="application/x-gzip")
    crawl(write_config(tmp_path / "c.toml", [{"name": "bomb", "url": f"{web.base_url}/bomb.xml.gz", "type": "sitemap"}]))
    state = health(tmp_path / "x.db")["bomb"]
    assert state["status"] == "too large", state
    assert "larger than 50,000,000 bytes once decompressed" in state["error"]


def test_the_amp_version_a_stored_article_declares_is_not_fetched_when_listed_later(web, tmp_path):
    b = web.base_url
    amp = b'<link rel="amphtml" href="/amp/story.html"></head>'
    serve(web, "/feed.xml", rss(b, ["/a/story.html", "/a/other.html"]))
    serve(web, "/a/story.html", article("Story").replace(b"</head>", amp), content_type="text/html")
    serve(web, "/amp/story.html", article("Story"), content_type="text/html")
    # a CMS slip: another story declares the same AMP page; it is still a story of its own
    other = article("Other", "Egypt signed a contract for Rafale fighter jets with France in Cairo on Tuesday.")
    serve(web, "/a/other.html", other.replace(b"</head>", amp), content_type="text/html")
    config = write_config(tmp_path / "c.toml", [{"name": "wire", "url": f"{b}/feed.xml"}])
    crawl(config)
    assert stored(tmp_path / "x.db") == {"/a/story.html", "/a/other.html"}
    serve(web, "/feed.xml", rss(b, ["/amp/story.html"]))
    web.request_log.clear()
    result = crawl(config)
    assert "0 new articles" in result.stdout, result.stdout
    assert "/amp/story.html" not in web.request_log
    assert len(rows(tmp_path / "x.db", "select * from articles")) == 2


def refuse(db: Path, trigger: str) -> None:
    """Make the real database refuse a write, as a full disk or a quota would."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(trigger)
    conn.close()


def test_a_database_that_refuses_this_runs_row_fails_the_crawl_instead_of_reporting_the_last_one(web, tmp_path):
    b = web.base_url
    config = crawled_wire_of_one_article(web, tmp_path, "/a/one.html")
    refuse(tmp_path / "x.db", "create trigger quota before insert on crawl_runs begin select raise(abort, 'disk quota exceeded'); end")
    serve(web, "/feed.xml", rss(b, ["/a/one.html", "/a/two.html"]))
    result = run_armswatch("crawl", "--config", str(config))
    assert result.returncode == 2
    assert "database unusable" in result.stderr and "disk quota exceeded" in result.stderr
    assert "new articles" not in result.stdout  # not the previous run's summary
    assert "Traceback" not in result.stderr


def test_a_batch_the_database_refuses_shows_in_the_sources_health_and_is_fetched_next_run(web, tmp_path):
    b = web.base_url
    paths = ["/a/one.html", "/a/two.html", "/a/three.html"]
    serve(web, "/feed.xml", rss(b, paths))
    for path in paths:
        serve(web, path, article(path), content_type="text/html")
    config = write_config(tmp_path / "c.toml", [{"name": "wire", "url": f"{b}/feed.xml"}])
    db = tmp_path / "x.db"
    ArticleStore(db).close()
    refuse(db, "create trigger full before update of items_new on source_health when new.items_new > old.items_new"
               " begin select raise(abort, 'database or disk is full'); end")
    crawl(config)
    assert stored(db) == set()
    state = health(db)["wire"]
    assert state["status"] == "partial" and "database refused a batch of 3 articles" in state["error"]
    assert state["error"].endswith("(and 2 more problems this run)")  # articles, not "failed documents"
    assert len(rows(db, "select * from fetch_errors where error_class = 'storage'")) == 3
    refuse(db, "drop trigger full")
    crawl(config)
    assert stored(db) == set(paths)
    assert health(db)["wire"]["status"] == "ok"


def test_a_page_too_complex_to_extract_in_time_keeps_what_its_feed_said_and_holds_no_one_back(web, tmp_path):
    """trafilatura slows down more than linearly on odd pages (100,000 links in one paragraph took
    minutes and 700 MB): a page may take a worker no longer than a download may take."""
    import time

    b = web.base_url
    links = "".join(f'<a href="/l/{k}.html">link {k}</a> ' for k in range(100_000))
    odd = article("Odd").replace(b"</article>", f"<p>{links}</p></article>".encode())
    items = "".join(
        f"<item><title>{title}</title><link>{b}{path}</link>{summary}</item>"
        for title, path, summary in [
            ("Odd", "/a/odd.html", f"<description>{ARMS}</description>"),
            ("Odder", "/a/odder.html", ""),
            ("Plain", "/a/plain.html", ""),
        ]
    )
    serve(web, "/feed.xml", f'<?xml version="1.0"?><rss version="2.0"><channel><title>W</title>{items}</channel></rss>'.encode())
    serve(web, "/a/odd.html", odd, content_type="text/html")
    serve(web, "/a/odder.html", odd.replace(b"Odd", b"Odder"), content_type="text/html")
    serve(web, "/a/plain.html", article("Plain"), content_type="text/html")
    config = write_config(tmp_path / "c.toml", [{"name": "wire", "url": f"{b}/feed.xml"}], download_timeout=3)
    started = time.monotonic()
    crawl(config)
    assert time.monotonic() - started < 45  # unbounded, the two odd pages take a minute or more
    db = tmp_path / "x.db"
    assert stored(db) == {"/a/odd.html", "/a/plain.html"}
    [odd_row] = rows(db, "select text, summary_only from articles where url like '%/a/odd.html'")
    assert odd_row["summary_only"] and ARMS in odd_row["text"]
    [error] = rows(db, "select * from fetch_errors where url like '%/a/odder.html'")
    assert "extraction stopped after 3 s" in error["message"]


def test_a_worker_held_in_lxml_past_the_time_limit_is_replaced_and_the_crawl_goes_on(web, tmp_path):
    """On this page (100,000 links after an article's comments) lxml keeps the interpreter in C
    code for most of a minute, so the worker cannot stop itself: the crawl process kills it."""
    import time

    from tests.conftest import ROOT

    b = web.base_url
    page = (ROOT / "crawler/demo_site/articles/kndr-snariady-rosiia.html").read_text(encoding="utf-8").replace("{{BASE}}", b)
    links = "".join(f'<a href="/l/{k}.html">link {k}</a> ' for k in range(100_000))
    heavy = page.replace("</article>", f"<p>One more paragraph.</p>{links}</article>", 1).encode()
    serve(web, "/a/heavy.html", heavy, content_type="text/html; charset=utf-8")
    serve(web, "/a/heavy-summarised.html", heavy, content_type="text/html; charset=utf-8")
    serve(web, "/a/plain.html", article("Plain"), content_type="text/html")
    items = "".join(f"<item><title>{path}</title><link>{b}{path}</link>{summary}</item>" for path, summary in [
        ("/a/heavy.html", ""), ("/a/heavy-summarised.html", f"<description>{ARMS}</description>"), ("/a/plain.html", "")])
    serve(web, "/feed.xml", f'<?xml version="1.0"?><rss version="2.0"><channel><title>W</title>{items}</channel></rss>'.encode())
    config = write_config(tmp_path / "c.toml", [{"name": "wire", "url": f"{b}/feed.xml"}], download_timeout=5)
    started = time.monotonic()
    crawl(config)
    assert time.monotonic() - started < 40
    db = tmp_path / "x.db"
    assert stored(db) == {"/a/plain.html", "/a/heavy-summarised.html"}  # the second as its feed told it
    [summarised] = rows(db, "select text, summary_only from articles where url like '%/a/heavy-summarised.html'")
    assert summarised["summary_only"] and ARMS in summarised["text"]
    [error] = rows(db, "select * from fetch_errors where url like '%/a/heavy.html'")
    assert "extraction stopped after" in error["message"] and "too complex" in error["message"]


def test_https_asked_of_a_plain_http_server_is_a_tls_error_not_a_lost_connection(web, tmp_path):
    serve(web, "/feed.xml", rss(web.base_url, ["/a/one.html"]))
    crawl(write_config(tmp_path / "c.toml", [{"name": "tls", "url": web.base_url.replace("http://", "https://") + "/feed.xml"}]))
    state = health(tmp_path / "x.db")["tls"]
    assert state["status"] == "TLS error" and "TLS handshake with" in state["error"] and "Failure" not in state["error"]


def section(base: str, slugs: list[str], next_page: str | None) -> bytes:
    teasers = "".join(
        f'<article class="teaser"><h2><a href="{base}/news/2026/03/10/{slug}.html">The story about {slug} told at length</a></h2></article>'
        for slug in slugs
    )
    pager = f'<link rel="next" href="{base}{next_page}">' if next_page else ""
    return f"<!DOCTYPE html><html><head><title>World</title>{pager}</head><body><main>{teasers}</main></body></html>".encode()


@pytest.mark.parametrize("how", ["failed", "killed"])
def test_a_listing_page_whose_articles_a_run_did_not_store_is_read_again_next_run(web, tmp_path, how):
    """Older listing pages are read while they bring new articles; page 1 listing only known ones
    must not hide page 2's articles that the last run failed to store or was killed before storing."""
    b = web.base_url
    serve(web, "/world.html", section(b, ["l4", "l5", "l6"], "/world-2.html"), content_type="text/html")
    serve(web, "/world-2.html", section(b, ["l1", "l2", "l3"], None), content_type="text/html")
    for slug in ("l4", "l5", "l6"):
        serve(web, f"/news/2026/03/10/{slug}.html", article(f"Story {slug}"), content_type="text/html")
    config = write_config(tmp_path / "c.toml", [{"name": "world", "url": f"{b}/world.html", "type": "page", "max_pages": 3}])
    db = tmp_path / "x.db"
    if how == "failed":
        for slug in ("l1", "l2", "l3"):
            serve(web, f"/news/2026/03/10/{slug}.html", b"busy", status=503, content_type="text/plain")
        crawl(config)
    else:  # the run died while page 2's articles were downloading: they hang until it is killed
        for slug in ("l1", "l2", "l3"):
            serve(web, f"/news/2026/03/10/{slug}.html", b"", status=0)
        process = subprocess.Popen([sys.executable, "-m", "crawler.cli", "crawl", "--config", str(config)], cwd=ROOT,
                                   env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ("/news/2026/03/10/l1.html" in web.request_log and len(stored_if_any(db)) == 3):
            time.sleep(0.1)
        process.kill()
        process.wait()
    assert {"/news/2026/03/10/l4.html", "/news/2026/03/10/l5.html", "/news/2026/03/10/l6.html"} <= stored(db)
    assert "/news/2026/03/10/l1.html" not in stored(db)

    for slug in ("l1", "l2", "l3"):
        serve(web, f"/news/2026/03/10/{slug}.html", article(f"Story {slug}"), content_type="text/html")
    web.request_log.clear()
    crawl(config)
    assert "/world-2.html" in web.request_log
    assert {f"/news/2026/03/10/l{i}.html" for i in range(1, 7)} == stored(db)
    assert not any(p.endswith(("l4.html", "l5.html", "l6.html")) for p in web.request_log)  # stored: not fetched again

    web.request_log.clear()  # finished now: page 1 unchanged, nothing more is read
    crawl(config)
    assert health(db)["world"]["status"] == "unchanged"
    assert [p for p in web.request_log if p != "/robots.txt"] == ["/world.html"]


def stored_if_any(db: Path) -> set[str]:
    """What a crawl still running has committed so far."""
    try:
        return stored(db)
    except sqlite3.OperationalError:  # no database, or no table, yet
        return set()


STYLES = "<style>" + ".site-header .nav-item a { color: #222; padding: 4px 8px; }\n" * 120 + "</style>"


@pytest.mark.parametrize("header", ["text/html; charset=iso-8859-1", "text/html; charset=utf-8"])
def test_a_windows_1251_listing_under_a_servers_default_charset_leads_to_its_articles(web, tmp_path, header):
    """The listing says windows-1251 in its head; the server's header says otherwise. Its links,
    raw Cyrillic, are read as the page declares, as article pages are: read as the header says,
    they named pages that do not exist."""
    slugs = ["/2026/12/02/поставки-шахедов-0", "/2026/12/02/поставки-шахедов-1"]
    links = "".join(f'<li><h2><a href="{slug}">Поставки шахедов {i}</a></h2></li>' for i, slug in enumerate(slugs))
    page = f"<html><head><meta charset='windows-1251'><title>Новости</title>{STYLES}</head><body><ul>{links}</ul></body></html>"
    serve(web, "/news/", page.encode("cp1251"), content_type=header)
    for i, slug in enumerate(slugs):
        serve(web, quote(slug), article(f"Iran ships drones {i}"), content_type="text/html; charset=utf-8")
    config = write_config(tmp_path / "c.toml", [{"name": "lenta", "url": f"{web.base_url}/news/", "type": "page"}])
    crawl(config)
    assert {unquote(path) for path in stored(tmp_path / "x.db")} == set(slugs)
    assert health(tmp_path / "x.db")["lenta"]["status"] == "ok"


def test_an_article_moved_to_an_address_sent_as_raw_utf8_is_followed(web, tmp_path):
    """PHP and nginx send a Location header of raw UTF-8 bytes; browsers follow it, and so must
    the crawl (it was refused: "it holds control characters")."""
    moved = "/новости/статья-1"
    # ChangingHandler sends a 3xx body, decoded as UTF-8, as its Location in Latin-1: these bytes
    # arrive as the raw UTF-8 of `moved`
    serve(web, "/old/1", moved.encode().decode("latin-1").encode(), status=301)
    serve(web, quote(moved), article("Iran ships drones"), content_type="text/html; charset=utf-8")
    serve(web, "/feed.xml", rss(web.base_url, ["/old/1"]))
    config = write_config(tmp_path / "c.toml", [{"name": "wire", "url": f"{web.base_url}/feed.xml"}])
    crawl(config)
    assert {unquote(path) for path in stored(tmp_path / "x.db")} == {moved}
    assert health(tmp_path / "x.db")["wire"]["status"] == "ok"


def test_an_article_relisted_with_its_escapes_in_the_other_case_is_not_fetched_again(web, tmp_path):
    """WordPress lists a Cyrillic slug as "%d0%bd…", another feed or a sitemap as "%D0%BD…":
    one address (RFC 3986, 6.2.2), one article, fetched and flagged once."""
    lower = "/%d0%bd%d0%be%d0%b2%d0%be%d1%81%d1%82%d1%8c-1"
    upper = lower.upper()  # the same bytes, escaped in capitals
    for path in (lower, upper):
        serve(web, path, article("Iran ships drones"), content_type="text/html; charset=utf-8")
    config = write_config(tmp_path / "c.toml", [{"name": "wire", "url": f"{web.base_url}/feed.xml"}])
    serve(web, "/feed.xml", rss(web.base_url, [lower]))
    crawl(config)
    serve(web, "/feed.xml", rss(web.base_url, [upper]))
    crawl(config)
    fetched = [path for _, path in web.httpd.request_times if path.lower() == lower]
    assert len(fetched) == 1
    assert len(rows(tmp_path / "x.db", "select id from articles")) == 1
    assert len(rows(tmp_path / "x.db", "select id from matches")) == 1


@pytest.mark.parametrize(("prolog", "header"), [
    ("", "application/xml; charset=windows-1251"),
    ('<?xml version="1.0" encoding="UTF-8"?>', "application/xml"),
])
def test_a_windows_1251_sitemap_leads_to_its_cyrillic_articles(web, tmp_path, prolog, header):
    """The protocol asks for UTF-8, and libxml2 assumes it; a sitemap in windows-1251 whose
    header names it, or whose prolog wrongly says UTF-8, gave addresses full of U+FFFD."""
    slug = "/2026/12/02/поставки-шахедов"
    serve(web, "/sitemap.xml", (prolog + urlset(web.base_url, [slug]).decode()).encode("cp1251"), content_type=header)
    serve(web, quote(slug), article("Iran ships drones"), content_type="text/html; charset=utf-8")
    config = write_config(tmp_path / "c.toml", [{"name": "map", "url": f"{web.base_url}/sitemap.xml", "type": "sitemap"}])
    crawl(config)
    assert {unquote(path) for path in stored(tmp_path / "x.db")} == {slug}
    assert health(tmp_path / "x.db")["map"]["status"] == "ok"
