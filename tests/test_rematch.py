"""After editing a rule file, `armswatch rematch` brings the archive's flags up to date."""

from __future__ import annotations

import sqlite3

import pytest

from crawler import rematch
from crawler.config import load_config
from tests.conftest import SEED_TEXTS, run_armswatch


def flagged(db):
    conn = sqlite3.connect(db)
    try:
        return sorted(
            (url.rsplit("/", 1)[1], rule)
            for url, rule in conn.execute("select a.url, m.rule from matches m join articles a on a.id = m.article_id")
        )
    finally:
        conn.close()


def rematch_in_process(config, monkeypatch) -> str:
    """The command's work without the command, reading one article at a time: an archive larger
    than one read must be matched to its last article."""
    monkeypatch.chdir(config.parent)
    monkeypatch.setattr(rematch, "READ_BATCH", 1)
    added, removed = rematch.rematch_store(load_config(config), echo=lambda line: None)
    return f"rematch: {added} matches added, {removed} removed"


def rematch_command(config, monkeypatch) -> str:
    result = run_armswatch("rematch", "--config", str(config))
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("run_rematch", [rematch_command, rematch_in_process])
def test_rematch_adds_and_removes_flags_after_a_rule_edit(site, tmp_path, monkeypatch, run_rematch):
    config = tmp_path / "armswatch.toml"
    config.write_text(f'[crawl]\ndb = "x.db"\n\n[[sources]]\nname = "Gazette"\nurl = "{site.base_url}/feed.xml"\n\n'
                      f'[[sources]]\nname = "Europe"\nurl = "{site.base_url}/atom.xml"\n')
    assert run_armswatch("crawl", "--config", str(config)).returncode == 0
    db = tmp_path / "x.db"
    assert flagged(db) == [("coree-obus.html", "arms-procurement"), ("iran-drones.html", "arms-procurement")]

    # the user narrows arms-procurement to North Korea and adds a harvest rule
    (tmp_path / "mine.toml").write_text(
        '[concepts.korea]\nen = ["north korea"]\nfr = ["coree du nord"]\n\n'
        '[concepts.harvest]\nen = ["harvest*"]\n\n'
        '[rules.arms-procurement]\nwhen = "korea"\n\n'
        '[rules.harvest-watch]\nwhen = "harvest"\n'
    )
    config.write_text(config.read_text().replace('db = "x.db"', 'db = "x.db"\nrules = ["mine.toml"]'))
    assert "1 matches added, 1 removed" in run_rematch(config, monkeypatch)
    assert flagged(db) == [
        ("coree-obus.html", "arms-procurement"),
        ("harvest-report.html", "harvest-watch"),
    ]
    # old news newly flagged is not queued as an alert
    conn = sqlite3.connect(db)
    assert conn.execute("select count(*) from outbox").fetchone()[0] == 0
    conn.close()


def test_match_command_explains_a_flag_for_a_text_and_an_html_file(tmp_path):
    from pathlib import Path

    text_file = next(SEED_TEXTS.glob("001_*.txt"))
    result = run_armswatch("match", str(text_file))
    assert result.returncode == 0, result.stderr
    assert "arms-procurement" in result.stdout
    assert "North Korea" in result.stdout and "Russia" in result.stdout

    page = Path(__file__).resolve().parents[1] / "crawler" / "demo_site" / "articles" / "seed-004.html"
    result = run_armswatch("match", str(page))
    assert result.returncode == 0, result.stderr
    assert "arms-procurement" in result.stdout and "North Korea" in result.stdout

    calm = tmp_path / "calm.txt"
    calm.write_text("The city council approved a new park with a playground and a lake.")
    result = run_armswatch("match", str(calm))
    assert result.returncode == 0
    assert "arms-procurement" not in result.stdout


@pytest.mark.parametrize("encoding", ["cp1251", "koi8_r", "utf-16"])
def test_match_command_reads_a_text_file_in_a_legacy_charset(tmp_path, encoding):
    story = tmp_path / "story.txt"
    story.write_text("Россия получила новую партию иранских беспилотников Shahed, сообщила разведка Украины. " * 3,
                     encoding=encoding)
    result = run_armswatch("match", str(story))
    assert result.returncode == 0, result.stderr
    assert "arms-procurement" in result.stdout
