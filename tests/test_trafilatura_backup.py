"""trafilatura without the backup copy its fast mode never reads: same articles, and its own step
wherever its code is not the code the lean step was written against."""

from __future__ import annotations

import gzip
from dataclasses import asdict

import pytest
import trafilatura
import trafilatura.core as core

from crawler import trafilatura_backup
from crawler.extraction import extract_article
from tests.test_trafilatura_xpaths import MATCHERS_WRITTEN_FOR, PAGES


def extractions(html: bytes, url: str) -> list:
    """The article armswatch stores, then what trafilatura gives in every mode a caller may use."""
    article = extract_article(html, url, {}, None)
    found: list = [asdict(article) if article else None]
    for fast in (True, False):
        for comments in (False, True):
            document = trafilatura.bare_extraction(html, url=url, fast=fast, include_comments=comments,
                                                   favor_precision=True, output_format="python")
            found.append((document.text, document.comments, document.title) if document else None)
    return found


# A forum thread: trafilatura re-reads the backup when it captures its posts as comments.
FORUM = ("""<html><head><script type="application/ld+json">{"@context": "https://schema.org",
"@type": "DiscussionForumPosting", "headline": "Drones for Russia"}</script></head><body><article>
<h1>Drones for Russia</h1><p>"""
         + "Iran shipped another batch of Shahed drones to Russia across the Caspian Sea, officials said. " * 6
         + """</p></article><div id="comments" class="comments">"""
         + "".join(f'<div class="comment"><p>Post {n}: a reader thinks the shipments will go on all winter.</p></div>'
                   for n in range(8))
         + "</div></body></html>").encode()


@pytest.mark.parametrize("page", [*PAGES, "forum"], ids=lambda page: getattr(page, "name", page))
def test_articles_come_out_exactly_as_with_trafilatura_own_step(page):
    if page == "forum":
        html, url = FORUM, "http://127.0.0.1/forum/thread-1"
    else:
        data = page.read_bytes()
        html, url = gzip.decompress(data) if page.suffix == ".gz" else data, "http://127.0.0.1/" + page.name
    assert trafilatura_backup.install() or trafilatura.__version__ != MATCHERS_WRITTEN_FOR
    lean = extractions(html, url)
    trafilatura_backup.uninstall()
    try:
        assert core._prepare_tree is not trafilatura_backup.lean_prepare_tree
        shipped = extractions(html, url)
    finally:
        trafilatura_backup.install()
    assert lean == shipped


@pytest.mark.skipif(trafilatura.__version__ != MATCHERS_WRITTEN_FOR, reason="another trafilatura release keeps its own step")
def test_the_workers_extract_with_the_lean_step():
    """Installed by crawler.extraction, which the workers load: a failure means the speed-up is lost."""
    assert core._prepare_tree is trafilatura_backup.lean_prepare_tree


def test_a_changed_backup_code_keeps_trafilatura_own_step(monkeypatch):
    """A release whose code reads the backup elsewhere (here: one more caller) gets no lean step."""
    trafilatura_backup.uninstall()
    try:
        shipped_sequence = core.trafilatura_sequence

        def trafilatura_sequence(*args, **kwargs):  # another release's code, reading the backup anew
            return shipped_sequence(*args, **kwargs)

        monkeypatch.setattr(core, "trafilatura_sequence", trafilatura_sequence)
        assert not trafilatura_backup.install()
        assert core._prepare_tree is trafilatura_backup._SHIPPED
    finally:
        monkeypatch.undo()
        trafilatura_backup.install()
