"""`armswatch demo`: a new user sees the whole product work offline in one command."""

from __future__ import annotations

import email
import sqlite3
from email import policy

from tests.conftest import run_armswatch

EXPECTED_FLAGGED = {
    "seed-000.html", "seed-001.html", "seed-002.html", "seed-003.html", "seed-004.html",
    "shahed-lieferungen-kaspisches-meer.html", "kndr-snariady-rosiia.html", "argentina-f16-dinamarca.html",
    "iran-ballisticheskie-rakety.html", "serbian-shells-third-countries.html",
}


def test_demo_serves_crawls_flags_and_alerts(tmp_path):
    out = tmp_path / "demo"
    result = run_armswatch("demo", "--dir", str(out), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "19 articles stored" in result.stdout
    assert str((out / "armswatch.db").resolve()) in result.stdout

    conn = sqlite3.connect(out / "armswatch.db")
    articles = {url.rsplit("/", 1)[1]: (title, text) for url, title, text in conn.execute("select url, title, text from articles")}
    flagged = {row[0].rsplit("/", 1)[1] for row in conn.execute("select a.url from matches m join articles a on a.id = m.article_id")}
    health = dict(conn.execute("select source, status from source_health"))
    conn.close()

    assert len(articles) == 19
    assert "draft.html" not in articles  # disallowed by robots.txt
    assert EXPECTED_FLAGGED <= flagged
    assert set(health.values()) == {"ok"} and len(health) == 7  # one source of every type
    # the seeds' noise is gone from what users read
    ticker_seed = articles["seed-001.html"][1]
    assert "UAH ▼" not in ticker_seed and "41.68" not in ticker_seed
    assert articles["seed-000.html"][1].count("Les services de renseignement ont nommé") == 0

    emails = list((out / "outbox").glob("*.eml"))
    assert emails, "the demo writes its alert emails as .eml files"
    message = email.message_from_bytes(emails[0].read_bytes(), policy=policy.default)
    html = message.get_body(("html",)).get_content()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
