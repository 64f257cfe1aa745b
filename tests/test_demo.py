"""`armswatch demo`: a new user sees the whole product work offline in one command."""

from __future__ import annotations

import email
import re
import sqlite3
from email import policy
from pathlib import Path

from tests.conftest import run_armswatch

DEMO_README = Path(__file__).resolve().parent.parent / "crawler" / "demo_site" / "README.md"


def demo_pages_by_verdict() -> dict[str, set[str]]:
    """The demo site's own table: which pages must be flagged ("**yes**") and which not ("**no**")."""
    verdicts: dict[str, set[str]] = {"yes": set(), "no": set()}
    for line in DEMO_README.read_text(encoding="utf-8").splitlines():
        page = re.match(r"\| `articles/([^`]+)` \|", line)
        verdict = re.search(r"\| \*\*(yes|no)\*\* \|", line)
        if page and verdict:
            verdicts[verdict.group(1)].add(page.group(1))
    return verdicts


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
    verdicts = demo_pages_by_verdict()
    assert len(verdicts["yes"]) >= 10 and len(verdicts["no"]) >= 6
    assert flagged == verdicts["yes"]  # every arms story flagged, no trap page flagged
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
