"""A user points armswatch at feeds and finds every article in SQLite, once."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

from crawler.demo_server import SiteServer
from storage.store import ArticleStore
from tests.conftest import ROOT, rows, run_armswatch


def test_crawl_feeds_stores_every_article_once(site, tmp_path):
    db = tmp_path / "x.db"
    result = run_armswatch("crawl", "--feed", f"{site.base_url}/feed.xml", "--feed", f"{site.base_url}/atom.xml", "--db", str(db))
    assert result.returncode == 0, result.stderr
    assert "4 new articles" in result.stdout

    articles = rows(db, "select url, title, text, language, published, source from articles order by url")
    assert [a["url"].rsplit("/", 1)[1] for a in articles] == [
        "coree-obus.html", "harvest-report.html", "iran-drones.html", "museo-apertura.html"
    ]
    by_name = {a["url"].rsplit("/", 1)[1]: a for a in articles}
    drones = by_name["iran-drones.html"]
    assert drones["title"] == "Iran delivered hundreds of Shahed drones to Russia, intelligence says"
    assert "Shahed-136 attack drones" in drones["text"]
    assert "All rights reserved" not in drones["text"]
    assert drones["language"] == "en"
    assert drones["published"].startswith("2026-03-01")
    assert by_name["coree-obus.html"]["language"] == "fr"
    # tracking parameters and fragments are not part of the stored URL
    assert all("utm_" not in a["url"] and "#" not in a["url"] for a in articles)
    # the javascript: link was never fetched nor stored
    assert not any(p.startswith("javascript") for p in site.request_log)

    runs = rows(db, "select * from crawl_runs")
    assert len(runs) == 1 and runs[0]["exit_reason"] == "finished"
    assert runs[0]["articles_stored"] == 4 and runs[0]["pages_fetched"] == 4


def test_second_run_fetches_and_stores_nothing_again(site, tmp_path):
    db = tmp_path / "x.db"
    args = ("crawl", "--feed", f"{site.base_url}/feed.xml", "--feed", f"{site.base_url}/atom.xml", "--db", str(db))
    assert run_armswatch(*args).returncode == 0
    first_article_requests = [p for p in site.request_log if p.startswith("/articles/")]
    assert len(first_article_requests) == 4
    site.request_log.clear()

    second = run_armswatch(*args)
    assert second.returncode == 0, second.stderr
    assert "0 new articles" in second.stdout
    assert [p for p in site.request_log if p.startswith("/articles/")] == []
    assert rows(db, "select count(*) as n from articles")[0]["n"] == 4
    runs = rows(db, "select articles_stored, pages_fetched from crawl_runs order by id")
    assert runs[1] == {"articles_stored": 0, "pages_fetched": 0}


def test_arms_story_is_flagged_and_harvest_is_not(site, tmp_path):
    db = tmp_path / "x.db"
    assert run_armswatch("crawl", "--feed", f"{site.base_url}/feed.xml", "--feed", f"{site.base_url}/atom.xml", "--db", str(db)).returncode == 0
    flagged = rows(db, "select a.url, m.rule, m.suppliers, m.recipients from matches m join articles a on a.id = m.article_id")
    names = sorted(f["url"].rsplit("/", 1)[1] for f in flagged)
    assert names == ["coree-obus.html", "iran-drones.html"]
    drones = next(f for f in flagged if f["url"].endswith("iran-drones.html"))
    assert "Iran" in drones["suppliers"] and "Russia" in drones["recipients"]


def test_source_health_records_a_dead_feed_without_stopping_others(site, tmp_path):
    db = tmp_path / "x.db"
    result = run_armswatch("crawl", "--feed", f"{site.base_url}/missing.xml", "--feed", f"{site.base_url}/feed.xml", "--db", str(db))
    assert result.returncode == 0, result.stderr
    health = {h["source"]: h for h in rows(db, "select * from source_health")}
    dead = health[f"{site.base_url}/missing.xml"]
    assert dead["status"] == "HTTP 404" and dead["consecutive_failures"] == 1
    assert health[f"{site.base_url}/feed.xml"]["status"] == "ok"
    assert rows(db, "select count(*) as n from articles")[0]["n"] == 2
    listing = run_armswatch("sources", "--db", str(db))
    assert "HTTP 404" in listing.stdout
    assert listing.stdout.splitlines()[-1] == "2 sources: 1 failing (1 HTTP 404)"


def test_config_file_crawl_and_bad_config_errors(site, tmp_path):
    config = tmp_path / "armswatch.toml"
    config.write_text(
        f'[crawl]\ndb = "x.db"\n\n[[sources]]\nname = "Gazette"\nurl = "{site.base_url}/feed.xml"\ntype = "feed"\nlanguage = "en"\n'
    )
    result = run_armswatch("crawl", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert rows(tmp_path / "x.db", "select source from articles")[0]["source"] == "Gazette"

    config.write_text('[[sources]]\nname = "Gazette"\nurl = "ftp://example.org/feed"\n')
    bad = run_armswatch("crawl", "--config", str(config))
    assert bad.returncode != 0
    assert f"{config}:3:" in bad.stderr and "http(s)" in bad.stderr


def test_scrapy_crawl_runs_the_same_spider(site, tmp_path):
    config = tmp_path / "armswatch.toml"
    config.write_text(f'[crawl]\ndb = "{tmp_path / "x.db"}"\ndownload_delay = 0\n\n'
                      f'[[sources]]\nname = "Gazette"\nurl = "{site.base_url}/feed.xml"\n')
    result = subprocess.run(
        [sys.executable, "-m", "scrapy", "crawl", "sources", "-a", f"config={config}"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    stored = rows(tmp_path / "x.db", "select url from articles order by url")
    assert [r["url"].rsplit("/", 1)[1] for r in stored] == ["harvest-report.html", "iran-drones.html"]


def test_an_article_the_database_refuses_is_recorded_and_its_batch_is_kept(site, tmp_path):
    db = tmp_path / "x.db"
    ArticleStore(db).close()  # the schema, then a database that refuses one article (a broken constraint)
    conn = sqlite3.connect(db)
    conn.execute(
        "create trigger refuse_drones before insert on articles when new.url like '%iran-drones%'"
        " begin select raise(abort, 'refused by the test'); end"
    )
    conn.commit()
    conn.close()

    result = run_armswatch("crawl", "--feed", f"{site.base_url}/feed.xml", "--feed", f"{site.base_url}/atom.xml", "--db", str(db))
    assert result.returncode == 0, result.stderr
    stored = sorted(r["url"].rsplit("/", 1)[1] for r in rows(db, "select url from articles"))
    assert stored == ["coree-obus.html", "harvest-report.html", "museo-apertura.html"]
    errors = rows(db, "select url, error_class, message from fetch_errors where error_class = 'storage'")
    assert len(errors) == 1 and errors[0]["url"].endswith("iran-drones.html")
    assert "refused by the test" in errors[0]["message"]

    # once the database takes it, the next run stores it, though the feeds have not changed
    conn = sqlite3.connect(db)
    conn.execute("drop trigger refuse_drones")
    conn.commit()
    conn.close()
    again = run_armswatch("crawl", "--feed", f"{site.base_url}/feed.xml", "--feed", f"{site.base_url}/atom.xml", "--db", str(db))
    assert again.returncode == 0, again.stderr
    assert "iran-drones.html" in {r["url"].rsplit("/", 1)[1] for r in rows(db, "select url from articles")}


def _page(title: str, head_extra: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>{head_extra}</head>"
            f"<body><article><h1>{title}</h1>{body}</article></body></html>")


def test_a_moved_article_is_followed_through_its_meta_refresh(tmp_path):
    """Pages that moved say so in their head (<meta http-equiv=refresh>): the article is stored
    under its new address. The tag counts within the page's first 4,096 characters, as Scrapy
    reads them: in Cyrillic that is more than 4,096 bytes."""
    story = ("<p>Russia received a new batch of Shahed drones from Iran this week, according to"
             " Ukrainian military intelligence, which tracked the deliveries by rail.</p>") * 6
    filler = "<p>" + "Архивная заметка без значения. " * 40 + "</p>"
    refresh = '<meta http-equiv="refresh" content="0; url={}">'
    pages = {
        "moved.html": _page("Moved", refresh.format("/new/drones.html"), filler * 30),
        # 3,000 Cyrillic characters (6,000 bytes) come before the tag
        "moved-ru.html": _page("Перенесено", "<meta name='x' content='" + "я" * 3000 + "'>" + refresh.format("/new/shells.html"), filler * 30),
        "moved-upper.html": _page("Moved", refresh.upper().format("/new/mines.html"), ""),
        "new/drones.html": _page("Iran sends more Shahed drones to Russia", "", story),
        "new/shells.html": _page("North Korea ships artillery shells to Russia", "", story.replace("Shahed drones from Iran", "shells from North Korea")),
        "new/mines.html": _page("Iran supplies anti-tank mines to Russia", "", story.replace("Shahed drones", "anti-tank mines")),
    }
    for name, html in pages.items():
        (tmp_path / "web" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "web" / name).write_text(html, encoding="utf-8")
    assert len(pages["moved.html"].encode()) > 20_000
    items = "".join(f"<item><title>{n}</title><link>{{base}}/{n}</link></item>"
                    for n in ("moved.html", "moved-ru.html", "moved-upper.html"))
    with SiteServer(tmp_path / "web") as server:
        (tmp_path / "web" / "feed.xml").write_text(
            '<?xml version="1.0"?><rss version="2.0"><channel><title>Moves</title><link>{base}/</link>'
            f"<description>d</description>{items}</channel></rss>".format(base=server.base_url), encoding="utf-8"
        )
        result = run_armswatch("crawl", "--feed", f"{server.base_url}/feed.xml", "--db", str(tmp_path / "x.db"))
    assert result.returncode == 0, result.stderr
    stored = rows(tmp_path / "x.db", "select url, title from articles order by url")
    assert [(r["url"].split("/", 3)[3], r["title"]) for r in stored] == [
        ("new/drones.html", "Iran sends more Shahed drones to Russia"),
        ("new/mines.html", "Iran supplies anti-tank mines to Russia"),
        ("new/shells.html", "North Korea ships artillery shells to Russia"),
    ]


def test_a_feed_longer_than_the_per_site_allowance_is_crawled_whole(tmp_path):
    """Articles wait in the frontier and go out a few at a time (4 per concurrent request):
    with one request per site at a time, 30 articles need every answer to let the next one out."""
    root = tmp_path / "web"
    (root / "news").mkdir(parents=True)
    for i in range(30):
        paragraphs = "".join(
            f"<p>Report {i}, part {k}: the ministry published figures on grain exports, rail freight and "
            f"port traffic for district {i * 7 + k}, with comparisons to the previous season.</p>"
            for k in range(4)
        )
        (root / "news" / f"story-{i}.html").write_text(_page(f"Story {i}", "", paragraphs), encoding="utf-8")
    with SiteServer(root) as server:
        items = "".join(
            f"<item><title>Story {i}</title><link>{server.base_url}/news/story-{i}.html</link></item>" for i in range(30)
        )
        # the same article twice more: under a tracking parameter, and in a second feed
        items += f"<item><title>Story 0 again</title><link>{server.base_url}/news/story-0.html?utm_source=rss</link></item>"
        (root / "feed.xml").write_text(f'<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>{items}</channel></rss>')
        (root / "other.xml").write_text(
            f'<?xml version="1.0"?><rss version="2.0"><channel><title>Other</title><item><title>Story 5</title>'
            f"<link>{server.base_url}/news/story-5.html</link></item></channel></rss>")
        config = tmp_path / "one-at-a-time.toml"
        config.write_text(
            f'[crawl]\ndb = "{tmp_path / "x.db"}"\nconcurrency_per_domain = 1\ndownload_delay = 0\n\n'
            f'[[sources]]\nname = "wire"\nurl = "{server.base_url}/feed.xml"\n\n'
            f'[[sources]]\nname = "other"\nurl = "{server.base_url}/other.xml"\n'
        )
        result = run_armswatch("crawl", "--config", str(config))
        fetched = [p for p in server.request_log if p.startswith("/news/")]

    assert result.returncode == 0, result.stderr[-3000:]
    assert "30 new articles" in result.stdout
    assert "still waiting when Scrapy went idle" not in result.stderr  # each answer let the next one out
    assert sorted(fetched) == sorted(f"/news/story-{i}.html" for i in range(30))  # each page once
    stored = rows(tmp_path / "x.db", "select url from articles")
    assert sorted(r["url"].rsplit("/", 1)[1] for r in stored) == sorted(f"story-{i}.html" for i in range(30))
    assert rows(tmp_path / "x.db", "select exit_reason from crawl_runs") == [{"exit_reason": "finished"}]


def test_a_json_feed_item_with_a_lone_surrogate_still_gets_its_article(tmp_path):
    """JSON Feed's "\\ud800" escape decodes to a character UTF-8 cannot encode: the item's
    article is fetched and stored all the same, and the feed is not reported broken."""
    root = tmp_path / "web"
    (root / "news").mkdir(parents=True)
    story = "<p>Russia received more Shahed drones from Iran this week, officials said of the deliveries.</p>" * 5
    for i in range(2):
        (root / "news" / f"s{i}.html").write_text(_page(f"Story {i}", "", story), encoding="utf-8")
    with SiteServer(root) as server:
        (root / "feed.json").write_text(
            '{"version": "https://jsonfeed.org/version/1.1", "title": "J", "items": ['
            f'{{"id": "0", "url": "{server.base_url}/news/s0.html", "title": "Broken \\ud800 title",'
            ' "content_text": "summary \\udfff here"},'
            f'{{"id": "1", "url": "{server.base_url}/news/s1.html", "title": "Fine"}}]}}', encoding="utf-8")
        result = run_armswatch("crawl", "--feed", f"{server.base_url}/feed.json", "--db", str(tmp_path / "x.db"))

    assert result.returncode == 0, result.stderr[-3000:]
    stored = rows(tmp_path / "x.db", "select title from articles order by title")
    assert [r["title"] for r in stored] == ["Story 0", "Story 1"]
    assert rows(tmp_path / "x.db", "select * from fetch_errors") == []
