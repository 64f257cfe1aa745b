"""A source's text never takes over the terminal, the health table or the Atom feed.

A feed title, a page's <title>, a redirect's Location and a reason phrase are the web's words:
an escape sequence in them must not retitle or clear the terminal of whoever reads `armswatch
sources`, a carriage return must not overwrite a failing source's row with "ok", a newline must
not forge a row, and a NUL must not break the Atom feed of matches for every subscriber.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sqlite3

import pytest

from crawler.browse import build_datasette
from crawler.demo_server import SiteHandler, SiteServer
from storage.metadata import DATABASE_NAME
from storage.store import ArticleStore
from tests.conftest import rows, run_armswatch

PAYLOAD = "\x1b]0;pwned\x07\x1b[2J\x1b[H"  # retitle the terminal, clear it, cursor home
# what no output line may hold: C0 controls but tab and newline, DEL, C1, bidi overrides
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
TEXT = (
    "Pakistan has ordered a batch of Chinese VT-4 main battle tanks and Shahed attack drones from Iran, "
    "the defence ministry in Islamabad said on Tuesday, with deliveries of the drones expected next year. "
) * 3


def page(title: str = "", site_name: str = "") -> bytes:
    head = f"<title>{title}</title>" if title else ""
    head += f'<meta property="og:site_name" content="{site_name}">' if site_name else ""
    return (f"<html lang='en'><head>{head}</head><body><article><p>{TEXT}</p><p>{TEXT.upper()}</p>"
            "</article></body></html>").encode()


class HostileHandler(SiteHandler):
    """Feeds and answers whose words carry control characters."""

    def do_GET(self) -> None:  # noqa: N802
        base = self.server.base_url  # type: ignore[attr-defined]
        if self.path == "/titles.json":
            items = [
                {"id": "1", "url": f"{base}/no-title.html", "title": f"Pakistan orders tanks{PAYLOAD}\r OVERWRITTEN\x00NUL",
                 "content_text": TEXT},
                {"id": "2", "url": f"{base}/forged.html", "title": "India buys howitzers", "content_text": TEXT},
            ]
            self.answer(200, "application/feed+json", json.dumps(
                {"version": "https://jsonfeed.org/version/1.1", "title": "Hostile", "items": items}).encode())
        elif self.path == "/no-title.html":
            self.answer(200, "text/html", page())
        elif self.path == "/forged.html":
            self.answer(200, "text/html", page("India buys howitzers\n#99 2026-01-01 9 articles: FORGED ROW",
                                               "Site\u202emoc.live"))
        elif self.path == "/redirect.xml":
            self.send_response(302)
            self.send_header("Location", f"ftp://127.0.0.1/feed{PAYLOAD}")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/forbidden.xml":
            self.send_response(403, f"Forbidden{PAYLOAD}\rok")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.answer(404, "text/plain", b"not found")

    def answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def crawled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("untrusted")
    with SiteServer(folder, handler=HostileHandler) as server:
        config = folder / "armswatch.toml"
        config.write_text(
            '[crawl]\ndb = "hostile.db"\ndownload_timeout = 10\n\n'
            + "".join(f'[[sources]]\nname = "{name}"\nurl = "{server.base_url}/{path}"\n\n'
                      for name, path in [("titles", "titles.json"), ("redirect", "redirect.xml"),
                                         ("forbidden", "forbidden.xml")])
        )
        crawl = run_armswatch("crawl", "--config", str(config), timeout=120)
        assert crawl.returncode == 0, crawl.stderr
        check = run_armswatch("sources", "--config", str(config), "check", timeout=60)
    yield {"folder": folder, "config": config, "db": folder / "hostile.db", "crawl": crawl, "check": check}


def assert_no_raw_controls(output: str) -> None:
    found = RAW_CONTROL.findall(output)
    assert not found, f"raw control characters {found!r} in:\n{output!r}"


def test_stored_titles_are_one_line_without_control_characters(crawled):
    articles = {row["url"].rsplit("/", 1)[1]: row for row in rows(crawled["db"], "select url, title, site_name from articles")}
    assert articles["no-title.html"]["title"] == "Pakistan orders tanks ]0;pwned [2J [H OVERWRITTEN NUL"
    assert articles["forged.html"]["title"] == "India buys howitzers #99 2026-01-01 9 articles: FORGED ROW"
    assert articles["forged.html"]["site_name"] == "Sitemoc.live"  # a bidi override joins nothing


def test_the_health_table_shows_a_hostile_error_without_obeying_it(crawled):
    table = run_armswatch("sources", "--config", str(crawled["config"]))
    assert table.returncode == 0, table.stderr
    assert_no_raw_controls(table.stdout)
    assert "redirects to ftp://127.0.0.1/feed\\x1b]0;pwned\\x07" in table.stdout  # visible, as the server sent it
    assert_no_raw_controls(crawled["crawl"].stderr)  # the crawl's warnings, mailed by cron


def test_stories_print_one_line_each_whatever_the_titles(crawled):
    stories = run_armswatch("stories", "--config", str(crawled["config"]))
    assert stories.returncode == 0, stories.stderr
    assert_no_raw_controls(stories.stdout)
    lines = stories.stdout.splitlines()
    assert len(lines) == 2 and all(line.startswith("#") for line in lines), stories.stdout
    assert not any(line.startswith("#99") for line in lines)


def test_sources_check_shows_a_hostile_reason_phrase_as_text(crawled):
    assert_no_raw_controls(crawled["check"].stdout)
    forbidden = next(line for line in crawled["check"].stdout.splitlines() if line.startswith("forbidden"))
    assert "blocked (Forbidden\\x1b]0;pwned\\x07" in forbidden and "\\rok" in forbidden


def atom_feed(db):
    datasette = build_datasette(db)

    async def get():
        return await datasette.client.get(f"/{DATABASE_NAME}/new_matches_feed.atom")

    return asyncio.run(get())


def test_the_atom_feed_of_matches_survives_a_hostile_title(crawled):
    response = atom_feed(crawled["db"])
    assert response.status_code == 200, response.text[:500]
    assert "Pakistan orders tanks" in response.text


def test_extract_refuses_a_redirect_to_ftp_and_says_so(tmp_path):
    """`armswatch extract URL` follows redirects like the crawl: to http(s) only. urllib alone
    would connect to the ftp:// target and send it a login."""
    with socket.socket() as ftp:
        ftp.bind(("127.0.0.1", 0))
        ftp.listen()
        ftp.settimeout(0.5)

        class Redirecting(SiteHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(302)
                self.send_header("Location", f"ftp://127.0.0.1:{ftp.getsockname()[1]}/x.html")
                self.send_header("Content-Length", "0")
                self.end_headers()

        with SiteServer(tmp_path, handler=Redirecting) as server:
            result = run_armswatch("extract", f"{server.base_url}/story.html", timeout=60)
        with pytest.raises(TimeoutError):
            ftp.accept()  # nobody came
    assert result.returncode == 2
    assert "redirect to a non-http(s) URL refused: ftp://127.0.0.1" in result.stderr


def test_a_feed_url_with_a_password_is_refused_without_showing_it(tmp_path):
    result = run_armswatch("crawl", "--feed", "http://ann:s3cret@127.0.0.1:9/feed.xml", "--db", str(tmp_path / "x.db"))
    assert result.returncode == 2
    assert "--feed 'http://***@127.0.0.1:9/feed.xml' cannot be crawled: it carries a user name or password" in result.stderr
    assert "s3cret" not in result.stderr and not (tmp_path / "x.db").exists()


def test_opml_titles_are_imported_as_one_line_and_odd_urls_are_skipped_with_the_reason(tmp_path):
    opml = tmp_path / "subs.opml"
    opml.write_text(
        '<?xml version="1.0"?><opml version="2.0"><body>'
        '<outline text="Good feed&#13;Evil feed&#x202E;" xmlUrl="http://127.0.0.1:9/good.xml"/>'
        '<outline text="Secret" xmlUrl="http://ann:s3cret@127.0.0.1:9/private.xml"/>'
        '<outline text="Script" xmlUrl="javascript:alert(1)"/>'
        '<outline xmlUrl="http://127.0.0.1:9/&#x202E;lmx.deef"/>'  # no title: its URL would be its name
        "</body></opml>"
    )
    config = tmp_path / "armswatch.toml"
    result = run_armswatch("sources", "import", str(opml), "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert_no_raw_controls(result.stdout + result.stderr)
    assert "# skipped http://***@127.0.0.1:9/private.xml: it carries a user name or password" in result.stderr
    assert "# skipped javascript:alert(1): not an absolute http(s) URL" in result.stderr
    assert "# skipped http://127.0.0.1:9/\\u202elmx.deef: it holds control characters" in result.stderr
    assert 'name = "Good feed Evil feed"' in config.read_text() and "s3cret" not in config.read_text()


@pytest.mark.parametrize("address", ["me@example.org\r\nBcc: all@example.org", "not an address"])
def test_a_test_email_to_a_forged_or_odd_address_is_refused(tmp_path, address):
    config = tmp_path / "armswatch.toml"
    config.write_text('[crawl]\ndb = "x.db"\n\n[alerts]\nsender = "bot@example.org"\noutbox_dir = "outbox"\n')
    result = run_armswatch("alerts", "test", "--config", str(config), "--to", address, timeout=60)
    assert result.returncode == 2
    assert f"--to {address!r} is not an email address" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "outbox").exists()


def test_an_archive_written_before_the_cleaning_gets_its_feed_back(crawled, tmp_path):
    """Titles stored raw by an older armswatch are cleaned when the archive is next opened."""
    old = tmp_path / "old.db"
    old.write_bytes(crawled["db"].read_bytes())
    raw_title = f"Pakistan orders tanks{PAYLOAD}\x00"
    with sqlite3.connect(old) as db:
        db.execute("update articles set title = ? where url like '%no-title.html'", [raw_title])
        db.execute("update stories set headline = ?", ["two\nlines"])
        forged = "Is\x00\x1b\x07\x9b\u202ead"  # as long as "Islamabad": the highlights keep their places
        db.execute("update matches set snippet = replace(snippet, 'Islamabad', ?)", [forged])
        db.execute("delete from migrations where name = '0008_web_text_on_one_line'")
    with ArticleStore(old):
        pass
    assert {row["title"] for row in rows(old, "select title from articles")} >= {"Pakistan orders tanks ]0;pwned [2J [H"}
    assert {row["headline"] for row in rows(old, "select headline from stories")} == {"two lines"}
    snippets = rows(old, "select snippet, highlights from matches")
    assert any("Is" + " " * 5 + "ad" in match["snippet"] for match in snippets)
    for match in snippets:  # the highlights still mark the terms
        marked = [match["snippet"][start:end] for start, end in json.loads(match["highlights"])]
        assert marked and all(term.strip() == term and term for term in marked), marked
    response = atom_feed(old)
    assert response.status_code == 200 and "Pakistan orders tanks" in response.text
