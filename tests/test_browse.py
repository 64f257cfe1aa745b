"""An analyst browses the archive in Datasette: search, facets, saved queries, Atom feed, chart.

Every test serves a real SQLite file written through ArticleStore.save_article, through
Datasette's own test client (the same ASGI app `armswatch browse` serves) or, once, the
real command on a loopback port.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path

import feedparser
import pytest

from crawler.browse import build_datasette
from crawler.clustering import assign_story
from crawler.config import Source
from crawler.items import Article, Match, MatchedTerm, ProcessedArticle
from storage.metadata import DATABASE_NAME, datasette_metadata, schema_problems
from storage.store import ArticleStore
from tests.conftest import ROOT, free_port, run_armswatch

HOSTILE = "<script>alert(1)</script>"
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def iso(delta: timedelta) -> str:
    return (NOW - delta).isoformat()


def processed(slug, title, text, *, source="wire", language="en", published=None, state=False, tags=None):
    """A ProcessedArticle as the extraction stage hands it over; `tags` = (suppliers, recipients, weapons)."""
    url = f"https://news.example/{slug}"
    article = Article(url=url, canonical_url=url, title=title, text=text, language=language, published=published)
    matches = ()
    if tags is not None:
        suppliers, recipients, weapons = tags
        snippet = text[:120]
        matches = (
            Match(
                rule="arms-transfer",
                score=2.5,
                terms=(MatchedTerm("acquire", text.split()[1], 0, 5),),
                snippet=snippet,
                highlights=((0, 5),),
                suppliers=suppliers,
                recipients=recipients,
                weapons=weapons,
            ),
        )
    return ProcessedArticle(page_url=url, source=source, article=article, matches=matches, state_affiliated=state)


# slug -> (article, how long ago it was flagged)
ARCHIVE = [
    (processed("iran-drones", "Iran delivered hundreds of Shahed drones to Russia, intelligence says",
               "Iran delivered hundreds of Shahed-136 attack drones to Russia over the summer, officials said.",
               published=iso(timedelta(hours=5))[:10], tags=(("Iran",), ("Russia",), ("drones",))),
     timedelta(hours=2)),
    (processed("coree-obus", "La Corée du Nord a livré des millions d'obus à la Russie",
               "La Corée du Nord a livré des millions d'obus d'artillerie à la Russie depuis l'an dernier.",
               source="quotidien", language="fr", published=iso(timedelta(days=3))[:10],
               tags=(("North Korea",), ("Russia",), ("artillery shells",))),
     timedelta(days=3)),
    (processed("missili", "L'Italia consegna nuovi missili all'Ucraina",
               "L'Italia consegna nuovi missili antiaerei all'Ucraina, conferma il ministero della difesa.",
               source="giornale", language="it", published=iso(timedelta(days=20))[:10],
               tags=(("Italy",), ("Ukraine",), ("missiles",))),
     timedelta(days=20)),
    (processed("su35", "Russia to deliver Su-35 fighter jets to Iran, state media says",
               "Russia will deliver Su-35 fighter jets to Iran this year, the agency reported.",
               source="state-agency", published=iso(timedelta(days=10))[:10], state=True,
               tags=(("Russia",), ("Iran",), ("combat aircraft",))),
     timedelta(days=10)),
    (processed("hostile", f"{HOSTILE} Drones for sale",
               "North Korea shipped drones and shells to Russia, the report says.",
               published=iso(timedelta(hours=1))[:10], tags=(("North Korea", "Iran"), ("Russia",), ("drones",))),
     timedelta(hours=1)),
    (processed("museo", "Il museo riapre dopo i restauri", "Il museo civico riapre al pubblico dopo due anni di lavori.",
               source="giornale", language="it", published=iso(timedelta(days=2))[:10]),
     None),
]

SOURCES = [
    Source(name="wire", url="https://news.example/feed.xml", language="en"),
    Source(name="quotidien", url="https://quotidien.example/rss", language="fr", country="FR"),
    Source(name="giornale", url="https://giornale.example/rss", language="it", country="IT"),
    Source(name="state-agency", url="https://agency.example/rss", state_affiliated=True),
    Source(name="dead-feed", url="https://dead.example/rss"),
]


def build_archive(path: Path) -> Path:
    """A realistic archive: flagged articles of various ages, one hostile title, source health."""
    with ArticleStore(path) as store:
        store.sync_sources(SOURCES)
        for item, flagged_ago in ARCHIVE:
            saved = store.save_article(item)
            if flagged_ago is not None:
                with store.transaction() as db:
                    db.execute("update matches set matched_at = ? where article_id = ?", [iso(flagged_ago), saved.article_id])
        for name in ("wire", "quotidien", "giornale", "state-agency"):
            store.record_source_result(name, ok=True, status="ok", http_status=200, items_seen=10)
        store.add_items_new("wire")
        store.add_items_new("quotidien")
        store.add_items_new("state-agency")
        for _ in range(3):
            store.record_source_result("dead-feed", ok=False, status="HTTP 500", http_status=500, error="Internal Server Error")
        with store.transaction() as db:  # giornale last gave something new long ago: silent
            db.execute("update source_health set last_new_article = ? where source = 'giornale'", [iso(timedelta(days=30))])
    return path


@pytest.fixture
def archive(tmp_path) -> Path:
    return build_archive(tmp_path / "archive.db")


def fetch(db: Path, *paths: str):
    """GET each path from a fresh Datasette over `db`; return the responses."""
    ds = build_datasette(db)

    async def run():
        return [await ds.client.get(path) for path in paths]

    return asyncio.run(run())


def get(db: Path, path: str):
    (response,) = fetch(db, path)
    assert response.status_code == 200, (path, response.status_code, response.text[:500])
    return response


def objects(db: Path, path: str) -> list[dict]:
    path, _, query = path.partition("?")
    return get(db, f"{path}.json?{query}&_shape=objects").json()["rows"]


# ---------------------------------------------------------------- metadata


def test_metadata_fits_the_schema(archive):
    conn = sqlite3.connect(archive)
    try:
        assert schema_problems(conn, datasette_metadata()) == []
    finally:
        conn.close()


def test_database_page_lists_titled_tables_and_hides_plumbing(archive):
    page = get(archive, f"/{DATABASE_NAME}").text
    assert "armswatch archive" in page
    assert "new matches (24 hours)" in page and "Source health: failing and silent sources first" in page
    tables = {t["name"]: t for t in get(archive, f"/{DATABASE_NAME}.json").json()["tables"]}
    for plumbing in ("migrations", "article_urls", "articles_fts", "articles_fts_data"):
        assert tables[plumbing]["hidden"], plumbing
    assert not tables["articles"]["hidden"] and not tables["matches"]["hidden"]
    # the hidden tables are not linked from the page a user sees
    assert f'href="/{DATABASE_NAME}/article_urls"' not in page and f'href="/{DATABASE_NAME}/migrations"' not in page


def test_tables_open_newest_first_with_descriptions(archive):
    rows = objects(archive, f"/{DATABASE_NAME}/match_view")
    assert [r["title"] for r in rows][:2] == [f"{HOSTILE} Drones for sale", ARCHIVE[0][0].article.title]
    matched = [r["matched_at"] for r in rows]
    assert matched == sorted(matched, reverse=True)
    published = [r["published"] for r in objects(archive, f"/{DATABASE_NAME}/articles")]
    assert published == sorted(published, reverse=True)
    page = get(archive, f"/{DATABASE_NAME}/articles").text
    assert "Every article stored, once per canonical URL" in page
    assert "Publication date given by the source" in page  # column description


def test_matches_show_the_article_title_as_label(archive):
    data = get(archive, f"/{DATABASE_NAME}/matches.json?_labels=on&_shape=objects").json()
    labels = {row["article_id"]["label"] for row in data["rows"]}
    assert "Iran delivered hundreds of Shahed drones to Russia, intelligence says" in labels


# ---------------------------------------------------------------- full-text search


def test_search_finds_an_article_stored_after_the_index_was_built(archive):
    with ArticleStore(archive) as store:
        store.save_article(processed("late", "Late report on Geran-2 deliveries", "Shipments of Geran-2 loitering munitions resumed."))
    rows = objects(archive, f"/{DATABASE_NAME}/articles?_search=geran")
    assert [r["title"] for r in rows] == ["Late report on Geran-2 deliveries"]
    page = get(archive, f"/{DATABASE_NAME}/articles?_search=geran").text
    assert 'name="_search"' in page and "Late report on Geran-2 deliveries" in page
    # words are ANDed; punctuation in a user's query is not FTS syntax on the table page
    assert objects(archive, f"/{DATABASE_NAME}/articles?_search=drones+russia") != []
    assert objects(archive, f'/{DATABASE_NAME}/articles?_search=%22unbalanced') == []


def test_search_follows_a_refreshed_text_and_a_story_assignment(archive):
    with ArticleStore(archive) as store:
        saved = store.save_article(processed("late", "Late report", "Shipments of Geran-2 loitering munitions resumed."))
        assign_story(store, saved.article_id)  # joining a story changes the row, not the text
        assert objects(archive, f"/{DATABASE_NAME}/articles?_search=geran")[0]["title"] == "Late report"
        store.save_article(processed("late", "Late report", "Shipments of Lancet drones resumed instead."), refresh=True)
    assert [r["title"] for r in objects(archive, f"/{DATABASE_NAME}/articles?_search=lancet")] == ["Late report"]
    assert objects(archive, f"/{DATABASE_NAME}/articles?_search=geran") == []


def test_search_query_ranks_articles_and_shows_an_excerpt(archive):
    rows = objects(archive, f"/{DATABASE_NAME}/search?q=shahed")
    assert len(rows) == 1
    assert rows[0]["link"] == "https://news.example/iran-drones"
    assert "[Shahed" in rows[0]["excerpt"] and rows[0]["flagged_by"] == "arms-transfer"
    both = objects(archive, f"/{DATABASE_NAME}/search?q=obus+OR+missili")
    assert {r["source"] for r in both} == {"quotidien", "giornale"}
    # the unflagged museum story is found too: search covers every article
    assert [r["flagged_by"] for r in objects(archive, f"/{DATABASE_NAME}/search?q=museo")] == [None]
    assert objects(archive, f"/{DATABASE_NAME}/search?q=") == []  # empty form: no error, no rows
    page = get(archive, f"/{DATABASE_NAME}/search?q=drones").text
    assert "Search articles" in page and 'name="q"' in page


# ---------------------------------------------------------------- facets


def facet_counts(data: dict, name: str) -> dict:
    return {r["value"]: r["count"] for r in data["facet_results"][name]["results"]}


def test_matches_facet_on_rule_and_on_tags_as_arrays(archive):
    data = get(archive, f"/{DATABASE_NAME}/matches.json").json()
    assert facet_counts(data, "rule") == {"arms-transfer": 5}
    assert facet_counts(data, "suppliers") == {"Iran": 2, "North Korea": 2, "Italy": 1, "Russia": 1}
    assert facet_counts(data, "recipients")["Russia"] == 3
    assert facet_counts(data, "weapons")["drones"] == 2
    assert data["facet_results"]["matched_at"]["type"] == "date"
    # a facet value is a working filter: North Korean stories only
    rows = objects(archive, f"/{DATABASE_NAME}/match_view?suppliers__arraycontains=North+Korea")
    assert {r["url"].rsplit("/", 1)[1] for r in rows} == {"coree-obus", "hostile"}


def test_articles_facet_on_source_language_state_and_date(archive):
    data = get(archive, f"/{DATABASE_NAME}/articles.json").json()
    assert facet_counts(data, "source") == {"wire": 2, "giornale": 2, "quotidien": 1, "state-agency": 1}
    assert facet_counts(data, "language") == {"en": 3, "it": 2, "fr": 1}
    assert facet_counts(data, "state_affiliated") == {0: 5, 1: 1}
    assert data["facet_results"]["published"]["type"] == "date"
    page = get(archive, f"/{DATABASE_NAME}/match_view").text
    for facet in ("source", "language", "suppliers", "recipients", "weapons", "published"):
        assert f'data-column="{facet}"' in page, facet


# ---------------------------------------------------------------- saved queries


def test_new_matches_in_the_last_24_hours_and_7_days(archive):
    day = objects(archive, f"/{DATABASE_NAME}/new_matches_24h")
    assert [r["title"] for r in day] == [f"{HOSTILE} Drones for sale", ARCHIVE[0][0].article.title]
    assert set(day[0]) == {"title", "source", "date", "rule", "tags", "snippet", "link"}
    assert day[1]["tags"] == "from Iran; to Russia; drones"
    assert day[1]["link"] == "https://news.example/iran-drones"
    week = objects(archive, f"/{DATABASE_NAME}/new_matches_7d")
    assert [r["link"].rsplit("/", 1)[1] for r in week] == ["hostile", "iran-drones", "coree-obus"]
    page = get(archive, f"/{DATABASE_NAME}/new_matches_7d").text
    assert "New matches, last 7 days" in page
    assert '<a href="https://news.example/coree-obus">' in page  # links are clickable


def test_matches_by_supplier_and_month(archive):
    rows = objects(archive, f"/{DATABASE_NAME}/matches_by_supplier_month")
    totals = {}
    for row in rows:
        totals[row["supplier"]] = totals.get(row["supplier"], 0) + row["matches"]
        assert len(row["month"]) == 7 and row["month"][4] == "-"
    assert totals == {"Iran": 2, "North Korea": 2, "Italy": 1, "Russia": 1}
    only = objects(archive, f"/{DATABASE_NAME}/matches_by_supplier_month?supplier=North+Korea")
    assert {r["supplier"] for r in only} == {"North Korea"} and sum(r["matches"] for r in only) == 2
    assert 'name="supplier"' in get(archive, f"/{DATABASE_NAME}/matches_by_supplier_month").text


def test_source_health_lists_failing_then_silent_sources_first(archive):
    rows = objects(archive, f"/{DATABASE_NAME}/source_health")
    assert [(r["source"], r["state"]) for r in rows][:2] == [("dead-feed", "failing"), ("giornale", "silent")]
    assert rows[0]["failures"] == 3 and rows[0]["http_status"] == 500
    assert {r["state"] for r in rows[2:]} == {"ok"}
    assert "failing and silent sources first" in get(archive, f"/{DATABASE_NAME}/source_health").text


@pytest.mark.parametrize(
    "query",
    ["new_matches_24h", "new_matches_7d", "matches_by_supplier_month", "source_health", "search",
     "matches_per_week", "new_matches_feed"],
)
def test_every_saved_query_has_a_page_and_a_json_api(archive, query):
    page, api = fetch(archive, f"/{DATABASE_NAME}/{query}?q=drones", f"/{DATABASE_NAME}/{query}.json?q=drones")
    assert page.status_code == 200 and api.status_code == 200
    assert datasette_metadata()["databases"][DATABASE_NAME]["queries"][query]["title"] in page.text
    assert api.json()["ok"] and api.json()["rows"], query
    assert f'href="/{DATABASE_NAME}/{query}"' in get(archive, f"/{DATABASE_NAME}").text


# ---------------------------------------------------------------- Atom feed


def test_atom_feed_of_new_matches(archive):
    response = get(archive, f"/{DATABASE_NAME}/new_matches_feed.atom")
    assert response.headers["content-type"].startswith("application/xml")
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.bozo_exception
    assert feed.feed.title == "armswatch: new matches"
    titles = [e.title for e in feed.entries]
    assert len(titles) == 5 and set(titles) == {item.article.title for item, ago in ARCHIVE if ago}
    by_link = {e.link: e for e in feed.entries}
    drones = by_link["https://news.example/iran-drones"]
    assert "from Iran; to Russia; drones" in drones.summary and "Source: wire" in drones.summary
    ids = [e.id for e in feed.entries]
    assert len(set(ids)) == len(ids)
    # the hostile title is text in the feed, never markup
    assert b"<script>" not in response.content and b"&lt;script&gt;" in response.content
    assert f'href="/{DATABASE_NAME}/new_matches_feed.atom"' in get(archive, f"/{DATABASE_NAME}").text


def test_atom_feed_is_valid_before_anything_matched(tmp_path):
    db = tmp_path / "empty.db"
    ArticleStore(db).close()
    feed = feedparser.parse(get(db, f"/{DATABASE_NAME}/new_matches_feed.atom").content)
    assert not feed.bozo
    assert [e.title for e in feed.entries] == ["No matches yet"]


# ---------------------------------------------------------------- chart


def svg_texts(svg: bytes) -> list[str]:
    root = ET.fromstring(svg)  # well-formed XML, or this raises
    return ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]


def test_chart_of_matches_per_week_by_supplier(archive):
    rows = objects(archive, f"/{DATABASE_NAME}/matches_per_week")
    assert {r["supplier"] for r in rows} == {"Iran", "North Korea", "Italy", "Russia"}
    assert all(datetime.fromisoformat(r["week"]).weekday() == 0 for r in rows)  # weeks start on Monday
    response = get(archive, f"/{DATABASE_NAME}/matches_per_week.svg")
    assert response.headers["content-type"].startswith("image/svg+xml")
    texts = svg_texts(response.content)
    assert {"Iran (2)", "North Korea (2)", "Italy (1)", "Russia (1)"} <= set(texts)
    root = ET.fromstring(response.content)
    bars = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.find("{http://www.w3.org/2000/svg}title") is not None]
    assert len(bars) == len(rows)
    # the saved query's page shows the chart above the data, drawn by the server (no script)
    page = get(archive, f"/{DATABASE_NAME}/matches_per_week").text
    assert f'<img src="/{DATABASE_NAME}/matches_per_week.svg"' in page


def test_chart_escapes_labels_and_draws_an_empty_archive(archive, tmp_path):
    with ArticleStore(archive) as store:
        store.save_article(processed("odd", "Odd tag", "Odd supplier tag text here.", tags=((f"{HOSTILE}&co",), (), ())))
    response = get(archive, f"/{DATABASE_NAME}/matches_per_week.svg")
    assert b"<script>" not in response.content
    assert HOSTILE not in get(archive, f"/{DATABASE_NAME}/match_view").text  # nor in the tag column
    assert any(t.startswith(f"{HOSTILE}&co"[:24]) for t in svg_texts(response.content))
    empty = tmp_path / "empty.db"
    ArticleStore(empty).close()
    assert "No matches yet" in svg_texts(get(empty, f"/{DATABASE_NAME}/matches_per_week.svg").content)


# ---------------------------------------------------------------- escaping


@pytest.mark.parametrize(
    "path",
    ["/armswatch/match_view", "/armswatch/matches?_labels=on", "/armswatch/articles", "/armswatch/new_matches_24h",
     "/armswatch/search?q=drones", "/armswatch/articles/5"],
)
def test_hostile_title_is_shown_as_text(archive, path):
    page = get(archive, path).text
    assert HOSTILE not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# ---------------------------------------------------------------- the command



def wait_for(url: str, timeout: float = 20) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def start_browse(db: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "crawler.cli", "browse", "--db", str(db), "--port", str(port)],
        cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_browse_serves_the_live_database_on_loopback(archive):
    port = free_port()
    server = start_browse(archive, port)
    try:
        base = f"http://127.0.0.1:{port}/{DATABASE_NAME}"
        rows = json.loads(wait_for(f"{base}/match_view.json?_shape=objects"))["rows"]
        assert len(rows) == 5
        # a crawl writing meanwhile: the new article shows up without restarting (not immutable)
        with ArticleStore(archive) as store:
            store.save_article(processed("fresh", "Fresh: Iran ships more drones", "Iran ships more drones to Russia.",
                                         tags=(("Iran",), ("Russia",), ("drones",))))
        rows = json.loads(wait_for(f"{base}/match_view.json?_shape=objects"))["rows"]
        assert rows[0]["title"] == "Fresh: Iran ships more drones"
        # bound to loopback only
        listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout if Path("/usr/bin/ss").exists() else ""
        if listening:
            ours = [line for line in listening.splitlines() if f":{port} " in line]
            assert ours and all("127.0.0.1:" in line for line in ours), ours
    finally:
        server.terminate()
        out, err = server.communicate(timeout=10)
    assert f"http://127.0.0.1:{port}/armswatch" in out


def test_browse_refuses_a_missing_database(tmp_path):
    result = run_armswatch("browse", "--db", str(tmp_path / "nope.db"))
    assert result.returncode == 2
    assert "nope.db: no such database" in result.stderr
    assert not (tmp_path / "nope.db").exists()


def test_tag_lists_read_as_text_in_pages_and_stay_json_in_the_api(archive):
    page = get(archive, f"/{DATABASE_NAME}/match_view").text
    assert "North Korea, Iran" in page and '[&#34;North Korea&#34;' not in page
    assert "delivered (acquire)" in get(archive, f"/{DATABASE_NAME}/matches").text
    rows = objects(archive, f"/{DATABASE_NAME}/match_view?suppliers__arraycontains=Iran")
    assert json.loads(rows[0]["suppliers"]) == ["North Korea", "Iran"]


def test_pages_work_offline_with_no_cdn(archive):
    import re

    for path in (f"/{DATABASE_NAME}/matches", f"/{DATABASE_NAME}/matches_per_week", f"/{DATABASE_NAME}/search"):
        page = get(archive, path).text
        assets = re.findall(r'<script[^>]+src="([^"]+)"', page) + re.findall(r'<link[^>]+rel="stylesheet"[^>]+href="([^"]+)"', page)
        assert assets and all(url.startswith("/") for url in assets), assets
        for url in assets:
            get(archive, url)  # served by this Datasette, so it works without a network


def test_a_crawled_archive_is_browsable(site, tmp_path):
    db = tmp_path / "crawled.db"
    result = run_armswatch("crawl", "--feed", f"{site.base_url}/feed.xml", "--feed", f"{site.base_url}/atom.xml", "--db", str(db))
    assert result.returncode == 0, result.stderr
    flagged = objects(db, f"/{DATABASE_NAME}/match_view")
    assert "Iran delivered hundreds of Shahed drones to Russia, intelligence says" in {r["title"] for r in flagged}
    assert [r["link"].rsplit("/", 1)[1] for r in objects(db, f"/{DATABASE_NAME}/search?q=obus")] == ["coree-obus.html"]
    feed = feedparser.parse(get(db, f"/{DATABASE_NAME}/new_matches_feed.atom").content)
    assert len(feed.entries) == len(flagged)
    assert {r["state"] for r in objects(db, f"/{DATABASE_NAME}/source_health")} == {"ok"}


def test_crawled_stories_are_browsable_with_their_facets(site, tmp_path):
    db = tmp_path / "crawled.db"
    result = run_armswatch("crawl", "--feed", f"{site.base_url}/feed.xml", "--feed", f"{site.base_url}/atom.xml", "--db", str(db))
    assert result.returncode == 0, result.stderr
    data = get(db, f"/{DATABASE_NAME}/stories.json").json()
    articles = objects(db, f"/{DATABASE_NAME}/articles")
    assert sum(r["article_count"] for r in objects(db, f"/{DATABASE_NAME}/stories")) == len(articles)
    assert {"en", "fr"} <= set(facet_counts(data, "languages"))
    assert "Iran" in facet_counts(data, "suppliers")
    links = get(db, f"/{DATABASE_NAME}/story_links.json").json()
    assert sum(facet_counts(links, "method").values()) == len(articles)
    tables = {t["name"]: t for t in get(db, f"/{DATABASE_NAME}.json").json()["tables"]}
    assert tables["story_keys"]["hidden"] and not tables["stories"]["hidden"]
