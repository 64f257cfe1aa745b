"""Every kind of news source, crawled politely and incrementally, with its health in plain sight."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from datetime import date, datetime, timedelta, timezone
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from crawler.demo_server import SiteHandler, SiteServer
from spiders.feeds import parse_feed
from spiders.listings import parse_listing
from spiders.sitemaps import SitemapError, gunzip_bounded, parse_sitemap
from tests.conftest import FIXTURES, rows, run_armswatch

SITE = FIXTURES / "site"
RECENT = (date.today() - timedelta(days=2)).isoformat()


def story(version: int) -> bytes:
    text = {
        1: "The navy commissioned a new patrol boat on Monday at the northern base, the ministry said in a statement.",
        2: "The navy postponed the commissioning of a new patrol boat after a fault was found during sea trials, the ministry said.",
    }[version]
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Patrol boat news</title></head>
<body><article><h1>Patrol boat news</h1><p>{text}</p>
<p>The vessel is the third of its class and is expected to patrol the coast and the fishing grounds far offshore for many years.</p>
<p>Officials declined to comment further on the matter when reached by telephone on Tuesday, and a spokesperson said a statement would follow.</p>
</article></body></html>""".encode()


class HeraldHandler(SiteHandler):
    """The fixture site, plus the routes a static folder cannot give: validators, gzip
    with and without Content-Encoding, dates relative to today, a page that changes, a 500."""

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None):
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return BytesIO(body)

    def fill(self, data: bytes) -> bytes:
        return data.replace(b"{{BASE}}", self.server.base_url.encode()).replace(b"{{RECENT}}", RECENT.encode())

    def send_head(self):  # type: ignore[override]
        path = urlsplit(self.path).path
        self.server.user_agents.append(self.headers.get("User-Agent", ""))
        if path == "/huge.xml":
            return self.reply(200, b"<rss>" + b" " * 2_000_000 + b"</rss>", {"Content-Type": "application/xml"})
        if path == "/etag/feed.xml":
            if self.headers.get("If-None-Match") == '"v1"':
                return self.reply(304, headers={"ETag": '"v1"'})
            body = self.fill((SITE / "feed.xml").read_bytes())
            return self.reply(200, body, {"Content-Type": "application/rss+xml", "ETag": '"v1"'})
        if path == "/error500.xml":
            return self.reply(500, b"boom", {"Content-Type": "text/plain"})
        if path == "/changing/feed.xml":
            feed = f"""<?xml version="1.0"?><rss version="2.0"><channel><title>Changing</title><link>{self.server.base_url}/</link>
<description>x</description><item><title>Patrol boat news</title><link>{self.server.base_url}/changing/story.html</link></item></channel></rss>"""
            return self.reply(200, feed.encode(), {"Content-Type": "application/rss+xml"})
        if path == "/changing/story.html":
            return self.reply(200, story(self.server.story_version), {"Content-Type": "text/html; charset=utf-8"})
        if path.startswith("/sitemaps/"):
            file = SITE / path.lstrip("/")
            if not file.is_file():
                return self.reply(404, b"not found")
            data = file.read_bytes()
            if file.suffix == ".gz":
                data = gzip.compress(self.fill(gzip.decompress(data)))
                if file.name == "encoded.xml.gz":  # a server that declares the gzip: Scrapy inflates it
                    return self.reply(200, data, {"Content-Type": "application/xml", "Content-Encoding": "gzip"})
                return self.reply(200, data, {"Content-Type": "application/x-gzip"})
            return self.reply(200, self.fill(data), {"Content-Type": "application/xml"})
        return super().send_head()


@pytest.fixture
def herald():
    server = SiteServer(SITE, handler=HeraldHandler)
    server.httpd.story_version = 1  # type: ignore[attr-defined]
    server.httpd.user_agents = []  # type: ignore[attr-defined]
    with server:
        yield server


def write_config(path: Path, sources: list[dict], **crawl) -> Path:
    settings = {"db": "x.db", "download_delay": 0, "concurrency_per_domain": 8, "extraction_workers": 1, **crawl}
    lines = ["[crawl]"] + [f"{k} = {v!r}".replace("'", '"') for k, v in settings.items()]
    for source in sources:
        lines.append("\n[[sources]]")
        lines += [f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}".replace("'", '"') for k, v in source.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def health(db) -> dict[str, dict]:
    return {h["source"]: h for h in rows(db, "select * from source_health")}


# -- documents, parsed without a crawl ------------------------------------------------------


def test_every_feed_format_keeps_title_date_and_summary():
    base = "http://127.0.0.1:1"

    def read(name):
        return parse_feed((SITE / name).read_bytes().replace(b"{{BASE}}", base.encode()), f"{base}/{name}").entries

    rss091, rss1, jsonfeed, atom = read("feeds/rss091.xml"), read("feeds/rss1.xml"), read("feeds/feed.json"), read("feeds/atom-home.xml")
    assert rss091[0].title == "Poland signs deal for 180 more K2 tanks from South Korea"
    assert rss091[0].summary == "Warsaw expands its largest arms deal."
    assert rss1[0].link == f"{base}/news/2026/03/06/city-council-approves-new-tram-line.html"
    assert rss1[0].published.startswith("2026-03-06") and rss1[0].summary == "Construction starts next spring."
    assert jsonfeed[0].title == "Egypt orders thirty more Rafale fighter jets from France"
    assert jsonfeed[0].published.startswith("2026-03-07") and jsonfeed[0].author == "Desk"
    assert atom[0].published.startswith("2026-03-08") and atom[0].summary == "A garden for readers."


def test_sitemap_parser_refuses_entities_and_bombs():
    xxe = b"""<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>http://a.example/&x;</loc></url></urlset>"""
    parsed = parse_sitemap(xxe, "http://a.example/sitemap.xml")
    assert all("root:" not in e.link for e in parsed.entries)

    laughs = b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">' + b"".join(
        f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">'.encode() for i in range(1, 10)
    ) + b']><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>http://a.example/&lol9;</loc></url></urlset>'
    started = time.monotonic()
    parsed = parse_sitemap(laughs, "http://a.example/sitemap.xml")
    assert time.monotonic() - started < 2
    assert all(len(e.link) < 1000 for e in parsed.entries)

    bomb = gzip.compress(b"<urlset>" + b" " * 60_000_000 + b"</urlset>")
    assert len(bomb) < 100_000
    with pytest.raises(SitemapError, match="larger than"):
        parse_sitemap(bomb, "http://a.example/sitemap.xml.gz")
    assert gunzip_bounded(gzip.compress(b"<urlset/>")) == b"<urlset/>"


def test_sitemap_window_drops_old_items_and_old_child_sitemaps():
    base = b"http://127.0.0.1:1"
    since = datetime.now(timezone.utc) - timedelta(days=30)
    index = parse_sitemap((SITE / "sitemaps/index.xml").read_bytes().replace(b"{{BASE}}", base).replace(b"{{RECENT}}", RECENT.encode()), "x", since)
    assert [c.rsplit("/", 1)[1] for c in index.children] == ["news.xml", "news-extra.xml.gz"]
    news = parse_sitemap((SITE / "sitemaps/news.xml").read_bytes().replace(b"{{BASE}}", base).replace(b"{{RECENT}}", RECENT.encode()), "x", since)
    assert [e.title for e in news.entries] == ["Norway buys HIMARS launchers (sitemap title)", None]
    assert news.entries[0].published.startswith(RECENT) and news.skipped_old == 1


def test_listing_heuristics_find_headlines_not_navigation():
    base = "http://127.0.0.1:1"
    page = (SITE / "section/world.html").read_text().replace("{{BASE}}", base)
    listing = parse_listing(page, f"{base}/section/world.html")
    assert [e.link.split("/")[-1] for e in listing.entries] == [
        "norway-buys-himars-launchers.html",
        "harbour-festival-draws-record-crowds.html?utm_campaign=section",
        "rossiya-s400-cp1251.html",
    ]  # not the nav bar, the "most read" box, tags, authors, footer, another site
    assert listing.entries[0].title == "Norway buys HIMARS rocket launchers from the United States"
    assert listing.next_page == f"{base}/section/world-2.html"
    second = parse_listing((SITE / "section/world-2.html").read_text(), f"{base}/section/world-2.html")
    assert second.next_page == f"{base}/section/world-3.html"  # found by its text, "Next »"
    picks = parse_listing((SITE / "section/picks.html").read_text(), f"{base}/section/picks.html", "div.pick a.read")
    assert [e.link for e in picks.entries] == [f"{base}/news/2026/03/12/farmers-market-moves-to-the-old-square.html"]


def test_opml_import_prints_sources_or_appends_new_ones(herald, tmp_path):
    opml = tmp_path / "subs.opml"
    opml.write_text((SITE / "subscriptions.opml").read_text().replace("{{BASE}}", herald.base_url))
    printed = run_armswatch("sources", "import", str(opml))
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.count("[[sources]]") == 3  # nested folders included, duplicate and file: URL left out
    assert 'name = "Herald \\"JSON\\" feed"' in printed.stdout and 'section = "Defence / Asia"' in printed.stdout
    assert "file:///etc/passwd" in printed.stderr

    config = write_config(tmp_path / "a.toml", [{"name": "Gazette", "url": f"{herald.base_url}/feed.xml"}])
    appended = run_armswatch("sources", "import", str(opml), "--config", str(config))
    assert appended.returncode == 0, appended.stderr
    assert "2 feeds added" in appended.stdout
    text = config.read_text()
    assert text.count(f'"{herald.base_url}/feed.xml"') == 1 and text.count("[[sources]]") == 3
    again = run_armswatch("sources", "import", str(opml), "--config", str(config))
    assert "0 feeds added" in again.stdout and config.read_text() == text


# -- crawls ----------------------------------------------------------------------------------


def test_every_source_type_is_crawled_once_and_not_refetched(herald, tmp_path):
    b = herald.base_url
    config = write_config(tmp_path / "a.toml", [
        {"name": "rss091", "url": f"{b}/feeds/rss091.xml"},
        {"name": "rdf", "url": f"{b}/feeds/rss1.xml"},
        {"name": "json", "url": f"{b}/feeds/feed.json"},
        {"name": "announced", "url": f"{b}/home/", "type": "homepage"},
        {"name": "probed", "url": f"{b}/plainhome/", "type": "homepage"},
        {"name": "news sitemap", "url": f"{b}/sitemaps/index.xml", "type": "sitemap", "since_days": 30},
        {"name": "declared gzip", "url": f"{b}/sitemaps/encoded.xml.gz", "type": "sitemap"},
        {"name": "world", "url": f"{b}/section/world.html", "type": "page", "max_pages": 2},
        {"name": "picks", "url": f"{b}/section/picks.html", "type": "page", "selector": "div.pick a.read"},
    ])
    db = tmp_path / "x.db"
    result = run_armswatch("crawl", "--config", str(config))
    assert result.returncode == 0, result.stderr
    stored = {a["url"].replace(b, ""): a for a in rows(db, "select * from articles")}
    assert set(stored) == {
        "/news/2026/03/05/poland-signs-k2-tank-deal.html",  # RSS 0.91, and again as AMP in the JSON Feed
        "/news/2026/03/06/city-council-approves-new-tram-line.html",  # RSS 1.0
        "/news/2026/03/07/egypt-orders-more-rafale-jets.html",  # JSON Feed
        "/news/2026/03/08/library-opens-reading-garden.html",  # Atom feed announced by a homepage
        "/articles/iran-drones.html", "/articles/harvest-report.html",  # /feed.xml probed for a silent homepage
        "/news/2026/03/09/norway-buys-himars-launchers.html",  # news sitemap (also on the listing)
        "/news/2026/03/13/sitemap-only-story-about-ports.html",  # sitemap <lastmod>
        "/news/2026/03/14/gz-story-about-bridges.html",  # .gz child sitemap, served as raw gzip
        "/news/2026/03/15/encoded-gz-story-about-schools.html",  # .gz with Content-Encoding: gzip
        "/news/2026/03/10/harbour-festival-draws-record-crowds.html",  # listing page 1
        "/news/2026/03/16/rossiya-s400-cp1251.html",  # listing page 1, windows-1251
        "/news/2026/03/11/india-orders-scorpene-submarines.html",  # listing page 2
        "/news/2026/03/17/saudi-arabia-cp1256.html",  # listing page 2, windows-1256
        "/news/2026/03/12/farmers-market-moves-to-the-old-square.html",  # CSS selector
    }
    assert "второго полка зенитных ракетных комплексов" in stored["/news/2026/03/16/rossiya-s400-cp1251.html"]["text"]
    assert "صواريخ باتريوت" in stored["/news/2026/03/17/saudi-arabia-cp1256.html"]["title"]
    # the AMP copy is an alias of the same row, not a second article
    poland = stored["/news/2026/03/05/poland-signs-k2-tank-deal.html"]
    aliases = {r["url"].replace(b, "") for r in rows(db, "select url from article_urls where article_id = ?", [poland["id"]])}
    assert "/news/amp/poland-signs-k2-tank-deal.html" in aliases

    log = set(herald.request_log)
    assert "/sitemaps/archive-2015.xml" not in log  # older than the window
    assert not any("an-old-story" in p or "archived-story" in p for p in log)
    assert "/section/world-3.html" not in log  # max_pages = 2
    assert not any(p.startswith(("/tag/", "/author/", "/about")) or "most-read" in p or "navigation-bar" in p for p in log)
    assert {"/feed", "/rss", "/rss.xml", "/feed.xml"} <= log  # the probe stopped at the first feed
    assert "/atom.xml" not in log

    states = health(db)
    assert {name: h["status"] for name, h in states.items()} == {name: "ok" for name in states}
    assert states["news sitemap"]["items_seen"] == 3 and states["news sitemap"]["items_new"] >= 2  # Norway is also on "world"
    assert states["world"]["items_seen"] == 5 and states["world"]["last_new_article"]

    herald.request_log.clear()
    second = run_armswatch("crawl", "--config", str(config))
    assert second.returncode == 0, second.stderr
    assert "0 new articles" in second.stdout
    assert [p for p in herald.request_log if p.startswith(("/news/", "/articles/"))] == []
    assert rows(db, "select count(*) as n from articles")[0]["n"] == len(stored)


def test_health_names_each_failure_and_one_failure_does_not_hold_up_others(herald, tmp_path):
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(16)
    accepted: list[float] = []
    held: list[socket.socket] = []

    def accept_and_say_nothing():
        while True:
            try:
                conn, _ = hanging.accept()
            except OSError:
                return
            accepted.append(time.monotonic())
            held.append(conn)

    threading.Thread(target=accept_and_say_nothing, daemon=True).start()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()

    b = herald.base_url
    sources = [
        {"name": "hangs", "url": f"http://127.0.0.1:{hanging.getsockname()[1]}/feed.xml"},
        {"name": "refuses", "url": f"http://127.0.0.1:{refused_port}/feed.xml"},
        {"name": "breaks", "url": f"{b}/error500.xml"},
        {"name": "html", "url": f"{b}/feeds/not-a-feed.xml"},
        {"name": "private", "url": f"{b}/private/feed.xml"},
        {"name": "huge", "url": f"{b}/huge.xml"},
        {"name": "good", "url": f"{b}/feed.xml"},
    ]
    try:
        socket.getaddrinfo("nonexistent.invalid", 80)
    except socket.gaierror:
        sources.append({"name": "no such host", "url": "http://nonexistent.invalid/feed"})
    config = write_config(tmp_path / "a.toml", sources, download_timeout=2, max_page_bytes=1_000_000)
    db = tmp_path / "x.db"
    started = time.monotonic()
    try:
        result = run_armswatch("crawl", "--config", str(config))
    finally:
        hanging.close()
        for conn in held:
            conn.close()
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr

    states = health(db)
    assert states["hangs"]["status"] == "timeout"
    assert states["refuses"]["status"] == "refused"
    assert states["breaks"]["status"] == "HTTP 500" and states["breaks"]["http_status"] == 500
    assert states["html"]["status"] == "parse error"
    assert states["private"]["status"] == "robots denied"
    assert states["huge"]["status"] == "too large"  # [crawl].max_page_bytes
    assert "/private/feed.xml" not in herald.request_log
    if "no such host" in states:
        assert states["no such host"]["status"] == "DNS"
    assert all(h["consecutive_failures"] == 1 for name, h in states.items() if name != "good")
    assert states["good"]["status"] == "ok" and states["good"]["items_new"] == 2
    # the good source's articles were stored while the dead one was still timing out
    assert accepted, "the hanging server was never contacted"
    stored_at = max(a["fetched_at"] for a in rows(db, "select fetched_at from articles"))
    assert stored_at <= states["hangs"]["last_attempt"]
    assert elapsed < 30
    listing = run_armswatch("sources", "--db", str(db))
    for word in ("timeout", "refused", "HTTP 500", "parse error", "robots denied"):
        assert word in listing.stdout


def test_304_and_unchanged_feeds_are_cheap_and_logged(herald, tmp_path):
    b = herald.base_url
    config = write_config(tmp_path / "a.toml", [
        {"name": "validators", "url": f"{b}/etag/feed.xml"},
        {"name": "no validators", "url": f"{b}/atom.xml", "user_agent": "HeraldReader/1.0 (+https://example.org/contact)"},
    ], user_agent="armswatch-test/1.0 (+https://example.org/armswatch; ops@example.org)")
    db = tmp_path / "x.db"
    assert run_armswatch("crawl", "--config", str(config)).returncode == 0
    herald.request_log.clear()
    second = run_armswatch("crawl", "--config", str(config))
    assert second.returncode == 0, second.stderr
    states = health(db)
    assert states["validators"]["status"] == "not modified" and states["validators"]["http_status"] == 304
    assert states["no validators"]["status"] == "unchanged"
    assert sorted(herald.request_log) == ["/atom.xml", "/etag/feed.xml", "/robots.txt"]  # nothing else was fetched
    run = rows(db, "select * from crawl_runs order by id desc limit 1")[0]
    assert run["not_modified"] == 2 and run["pages_fetched"] == 0
    # the configured User-Agent, with its contact URL, on every request; a source may set its own
    assert set(herald.httpd.user_agents) == {
        "armswatch-test/1.0 (+https://example.org/armswatch; ops@example.org)", "HeraldReader/1.0 (+https://example.org/contact)"
    }


def test_refresh_records_changed_text_as_an_update(herald, tmp_path):
    config = write_config(tmp_path / "a.toml", [{"name": "changing", "url": f"{herald.base_url}/changing/feed.xml"}])
    db = tmp_path / "x.db"
    assert run_armswatch("crawl", "--config", str(config)).returncode == 0
    assert "commissioned" in rows(db, "select text from articles")[0]["text"]
    herald.httpd.story_version = 2
    refreshed = run_armswatch("crawl", "--config", str(config), "--refresh")
    assert refreshed.returncode == 0, refreshed.stderr
    articles = rows(db, "select id, text, updated_at from articles")
    assert len(articles) == 1 and "postponed" in articles[0]["text"] and articles[0]["updated_at"]
    updates = rows(db, "select * from article_updates")
    assert len(updates) == 1 and updates[0]["article_id"] == articles[0]["id"]
    assert rows(db, "select articles_updated, articles_stored from crawl_runs order by id desc limit 1")[0] == {
        "articles_updated": 1, "articles_stored": 0,
    }
