"""One story, one alert: copies and translations of a story join one cluster, different
stories with the same actors stay apart, and every decision says why."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from bench.clusters import cluster_devset, load_devset, pairwise, store_article, tag_matches
from crawler.clustering import (
    also_reported,
    assign_story,
    assign_unassigned,
    mark_story_alerted,
    story_already_alerted,
)
from crawler.items import Match
from storage.schema import _stories
from storage.store import ArticleStore


@pytest.fixture
def store(tmp_path):
    with ArticleStore(tmp_path / "armswatch.db") as opened:
        yield opened


@pytest.fixture(scope="module")
def devset():
    return {a.id: a for a in load_devset()}


@pytest.fixture(scope="module")
def clustered(tmp_path_factory, devset):
    """The whole devset clustered once, with the labelled rule tags (independent of rule changes)."""
    articles = list(devset.values())
    with ArticleStore(tmp_path_factory.mktemp("devset") / "devset.db") as opened:
        stories = cluster_devset(opened, articles, tags="labelled")
        links = {row["url"].rsplit("/", 1)[1]: row for row in opened.query(
            "select a.url, l.* from story_links l join articles a on a.id = l.article_id")}
        story_rows = {row["id"]: row for row in opened.query("select * from stories")}
    return articles, stories, links, story_rows


def _save(store, devset, article_id, url=None, source=None, text=None):
    article = devset[article_id]
    return store_article(store, url or f"https://{article.source}.example/{article.id}", source or article.source,
                         article.language, article.published, article.title, text or article.text,
                         tag_matches(article, "labelled"))


def test_devset_precision_and_recall_gate(clustered):
    articles, stories, _, _ = clustered
    assert len(articles) >= 60 and len({a.group for a in articles}) >= 20
    counts = pairwise(articles, stories)["counts"]
    assert counts["all"].precision >= 0.95, pairwise(articles, stories)["errors"]
    assert counts["same-language"].recall >= 0.85
    assert counts["cross-language"].recall >= 0.70


def test_different_north_korea_stories_in_one_week_stay_apart(clustered, devset):
    _, stories, _, _ = clustered
    north_korea = ["g01-en-wire", "g02-en", "g03-en", "g04-en", "g05-en", "g20-en"]
    assert {devset[i].tags["suppliers"][0] for i in north_korea} == {"North Korea"}
    assert len({stories[i] for i in north_korea}) == len(north_korea)
    # ... while each of them gathers its own copies and translations
    assert stories["g01-en-wire"] == stories["g01-de"] == stories["g01-uk"] == stories["g01-en-copy"]


def test_same_actors_same_weapon_same_days_but_another_event_stays_apart(clustered):
    _, stories, _, _ = clustered
    assert stories["g06-en"] != stories["g08-en"]  # Iran's Fath-360 transfer / Iran's denial of it
    assert stories["g07-en"] != stories["g22-en"]  # Shahed production leak / a night of Shahed attacks


def test_every_decision_is_stored_with_its_signals(clustered):
    _, stories, links, story_rows = clustered
    copy = links["g01-en-copy"]
    assert copy["method"] == "near-duplicate"
    assert json.loads(copy["signals"])["jaccard"] >= 0.5
    translation = links["g06-it"]
    assert translation["method"] == "same-event"
    signals = json.loads(translation["signals"])
    assert "fath-360" in signals["designations"] and "120" in signals["numbers"]
    assert signals["weapons"] == ["missiles"] and "Iran" in signals["actors"]
    story = story_rows[stories["g06-en"]]
    assert story["headline"] == "US says Iran has delivered Fath-360 ballistic missiles to Russia"
    assert story["article_count"] == 7
    assert set(json.loads(story["languages"])) == {"en", "fr", "it", "uk", "es"}
    assert json.loads(story["tags"])["suppliers"] == ["Iran"]


def test_verbatim_copy_under_another_url_joins_the_story(store, devset):
    first = _save(store, devset, "g09-en")
    original = devset["g09-en"].text
    copy = _save(store, devset, "g09-en", url="https://mirror.example/2024/09/19/sudan-drones",
                 source="mirror", text="Mirror News - World\n\n" + original + "\n\nShare on social media.")
    decision_first = assign_story(store, first)
    decision_copy = assign_story(store, copy)
    assert decision_first.is_new_story
    assert decision_copy.story_id == decision_first.story_id and decision_copy.method == "near-duplicate"
    assert decision_copy.joined_via == first
    row = store.query("select story_id from articles where id = ?", [copy])[0]
    assert row["story_id"] == decision_first.story_id
    story = store.query("select article_count, source_count from stories where id = ?", [decision_first.story_id])[0]
    assert story == {"article_count": 2, "source_count": 2}


def test_a_wire_story_copied_by_many_outlets_stays_one_story(store, devset):
    """More copies than the index reads per band key: each still joins, and the story row counts
    every copy, every outlet and the languages of its translations."""
    article = devset["g06-en"]
    first = _save(store, devset, "g06-en")
    story_id = assign_story(store, first).story_id
    for n in range(15):
        copy = _save(store, devset, "g06-en", url=f"https://outlet{n}.example/fath-360", source=f"outlet{n}")
        decision = assign_story(store, copy)
        assert (decision.story_id, decision.method) == (story_id, "near-duplicate")
    translation = assign_story(store, _save(store, devset, "g06-fr"))
    assert (translation.story_id, translation.method) == (story_id, "same-event")
    story = store.query("select * from stories where id = ?", [story_id])[0]
    assert (story["article_count"], story["source_count"]) == (17, 17)
    assert set(json.loads(story["languages"])) == {"en", "fr"}
    assert json.loads(story["sources"]) == sorted({article.source, devset["g06-fr"].source} | {f"outlet{n}" for n in range(15)})
    assert story["first_seen"] <= story["last_seen"]


def test_copy_outside_the_time_window_starts_a_new_story(store, devset):
    first = _save(store, devset, "g09-en")
    late = store_article(store, "https://late.example/sudan", "late", "en", "2024-10-15T08:00:00Z",
                         devset["g09-en"].title, devset["g09-en"].text)
    assert assign_story(store, first).story_id != assign_story(store, late).story_id


def test_assigning_twice_keeps_the_story_and_unassigned_articles_are_caught_up(store, devset):
    ids = [_save(store, devset, i) for i in ("g06-en", "g06-fr", "g08-en")]
    assert assign_unassigned(store) == 3
    assert assign_unassigned(store) == 0
    again = assign_story(store, ids[1])
    assert not again.is_new_story and again.method == "same-event"
    stories = [r["story_id"] for r in store.query("select story_id from articles order by id")]
    assert stories[0] == stories[1] != stories[2]


def _match_id(store, article_id):
    return store.query("select id from matches where article_id = ?", [article_id])[0]["id"]


def test_article_joining_an_alerted_story_is_not_alerted_again_but_listed(store, devset):
    first = _save(store, devset, "g01-en-wire")
    assign_story(store, first)
    assert not story_already_alerted(store, _match_id(store, first))
    assert mark_story_alerted(store, _match_id(store, first))
    assert not mark_story_alerted(store, _match_id(store, first))  # the first alert wins
    # other recipients of the alerted article itself still get it
    assert not story_already_alerted(store, _match_id(store, first))

    later = _save(store, devset, "g01-de")
    assert assign_story(store, later).method == "same-event"
    assert story_already_alerted(store, _match_id(store, later))

    other = _save(store, devset, "g02-en")  # another North Korea story the same week
    assign_story(store, other)
    assert not story_already_alerted(store, _match_id(store, other))

    story_id = store.query("select story_id from articles where id = ?", [first])[0]["story_id"]
    listed = also_reported(store, story_id)
    assert [(r["source"], r["language"], r["method"]) for r in listed] == [("zeitung-de", "de", "same-event")]
    assert "1000000" in listed[0]["signals"]["numbers"]


def test_articles_without_rule_tags_join_only_on_text_or_strong_evidence(store, devset):
    """An unflagged article cannot join a translation on names alone."""
    first = store_article(store, "https://a.example/1", "a", "en", "2024-09-13T07:30:00Z",
                          devset["g04-en"].title, devset["g04-en"].text)
    second = store_article(store, "https://b.example/1", "b", "fr", "2024-09-13T11:00:00Z",
                           devset["g04-fr"].title, devset["g04-fr"].text)
    assert assign_story(store, first).story_id != assign_story(store, second).story_id


def test_rule_tags_naming_different_weapons_keep_stories_apart(store, devset):
    article = devset["g15-en"]
    tanks = Match("arms-procurement", 1.0, (), "", (), ("France",), ("Serbia",), ("tanks",))
    first = _save(store, devset, "g15-fr")
    second = store_article(store, "https://x.example/rafale", "x", "en", article.published, article.title,
                           article.text, (tanks,))
    assert assign_story(store, first).story_id != assign_story(store, second).story_id


def test_stories_command_assigns_and_lists_clusters(tmp_path, devset):
    from tests.conftest import run_armswatch

    db = tmp_path / "armswatch.db"
    with ArticleStore(db) as opened:
        for article_id in ("g12-fr", "g12-en", "g12-ru", "g11-de"):
            _save(opened, devset, article_id)
    result = run_armswatch("stories", "--db", str(db), "--assign")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "stories: 4 articles assigned"
    caesar = next(line for line in lines if "CAESAR" in line)
    assert "3 articles, 3 sources [en, fr, ru]" in caesar
    assert any("1 article, 1 source [de]" in line and "Leopard" in line for line in lines)


def test_story_assignment_can_share_the_article_save_transaction(store, devset):
    """How the storage pipeline calls it: a crash between save and assignment loses neither."""
    with store.transaction():
        first = _save(store, devset, "g16-en")
        decision = assign_story(store, first)
    with pytest.raises(RuntimeError), store.transaction():
        second = _save(store, devset, "g16-de")
        assign_story(store, second)
        raise RuntimeError("crash before commit")
    assert store.query("select count(*) as n from articles")[0]["n"] == 1
    assert store.query("select count(*) as n from story_keys where article_id != ?", [first])[0]["n"] == 0
    assert store.query("select story_id from articles")[0]["story_id"] == decision.story_id


def test_an_archive_stored_before_the_compact_key_index_keeps_its_stories(tmp_path, devset):
    """Migration 0007 rewrites `story_keys` (ISO times in a rowid table, then Unix seconds in one
    B-tree): every key survives with its time, and a translation stored after the upgrade
    still joins the story of an article stored before it."""
    db = tmp_path / "armswatch.db"
    with ArticleStore(db) as store:
        first = _save(store, devset, "g12-en")
        story = assign_story(store, first).story_id
        keys = {tuple(row.values()) for row in store.query("select key, seen, article_id from story_keys")}
        _rewrite_story_keys_as_before_0007(store)
    with ArticleStore(db) as upgraded:
        assert {tuple(row.values()) for row in upgraded.query("select key, seen, article_id from story_keys")} == keys
        second = _save(upgraded, devset, "g12-fr")
        assert assign_story(upgraded, second).story_id == story


def _rewrite_story_keys_as_before_0007(store):
    rows = store.query("select key, seen, article_id from story_keys")
    store.db.execute("drop table story_keys")
    _stories(store.db)  # migration 0005 makes the table again in its first shape
    with store.transaction():
        store.db.conn.executemany(
            "insert into story_keys (key, article_id, seen_at) values (?, ?, ?)",
            [(r["key"], r["article_id"], datetime.fromtimestamp(r["seen"], timezone.utc).isoformat()) for r in rows],
        )
        store.db.execute("delete from migrations where name = '0007_compact_story_keys'")


# -- end to end: a crawl with the same story from two outlets ----------------------------

WIRE_STORY = (
    "North Korea has shipped another consignment of 152 mm artillery shells and KN-23 ballistic missiles"
    " to Russia, South Korea's defence ministry said on Thursday, citing satellite images of the port of Rajin.",
    "The ministry estimated that more than 20,000 containers of munitions have crossed the border since"
    " the summer, and said Pyongyang is receiving oil and military technology in return.",
    "Officials in Seoul said the latest train left the port on Monday night and that the shipment was the"
    " largest this year; Moscow and Pyongyang have denied any arms trade between them.",
)


def outlet_page(outlet: str, slug: str, title: str, paragraphs: tuple[str, ...]) -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title} | {outlet}</title>'
        f'<meta property="article:published_time" content="2026-03-05T08:30:00Z">'
        f'<link rel="canonical" href="{{{{BASE}}}}/{slug}.html"></head><body>'
        f'<nav><a href="/">{outlet}</a> <a href="/world">World</a></nav>'
        f"<article><h1>{title}</h1>{body}</article><footer>© 2026 {outlet}</footer></body></html>"
    )


def test_a_story_carried_by_two_outlets_is_alerted_once_and_lists_the_other(tmp_path):
    from crawler.demo_server import SiteServer
    from tests.conftest import run_armswatch

    root = tmp_path / "site"
    root.mkdir()
    pages = {
        "herald-shells": ("Daily Herald", "North Korea ships more shells and KN-23 missiles to Russia", WIRE_STORY),
        "courier-shells": ("Morning Courier", "Seoul: North Korea sends more shells and missiles to Russia",
                           WIRE_STORY[:2] + ("Analysts expect further deliveries before the winter.",)),
        "herald-drones": ("Daily Herald", "Iran delivered hundreds of Shahed drones to Russia, intelligence says", (
            "Iran has delivered several hundred Shahed-136 attack drones to Russia since August, according to a"
            " Western intelligence assessment, and Moscow is seeking to buy ballistic missiles from Tehran.",
            "The shipments were flown from Iranian airfields to southern Russia, the assessment says.",
        )),
    }
    feeds: dict[str, list[str]] = {}
    for slug, (outlet, title, paragraphs) in pages.items():
        (root / f"{slug}.html").write_text(outlet_page(outlet, slug, title, paragraphs), encoding="utf-8")
        feeds.setdefault(outlet, []).append(f"<item><title>{title}</title><link>{{{{BASE}}}}/{slug}.html</link>"
                                            "<pubDate>Thu, 05 Mar 2026 08:30:00 GMT</pubDate></item>")
    sources = ""
    for outlet, items in feeds.items():
        name = outlet.replace(" ", "-").lower()
        (root / f"{name}.xml").write_text(
            f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>{outlet}</title>'
            "<link>{{BASE}}/</link><description>d</description>" + "".join(items) + "</channel></rss>",
            encoding="utf-8",
        )
        sources += f'[[sources]]\nname = "{outlet}"\nurl = "{{base}}/{name}.xml"\n\n'
    config = tmp_path / "armswatch.toml"
    with SiteServer(root) as server:
        config.write_text(
            '[crawl]\ndb = "crawl.db"\ndownload_delay = 0\n\n'
            f'[alerts]\noutbox_dir = "{tmp_path / "outbox"}"\nsender = "armswatch@example.org"\n\n'
            '[[alerts.recipients]]\naddress = "analyst@example.org"\nmode = "instant"\n\n'
            + sources.format(base=server.base_url),
            encoding="utf-8",
        )
        result = run_armswatch("crawl", "--config", str(config))
    assert result.returncode == 0, result.stderr

    [eml] = (tmp_path / "outbox").glob("*.eml")
    import email as email_lib
    from email import policy

    message = email_lib.message_from_bytes(eml.read_bytes(), policy=policy.default)
    text = message.get_body(("plain",)).get_content()
    assert message["Subject"] == "armswatch: 2 new stories for arms-procurement"
    assert text.count("North Korea") >= 1 and text.count("Shahed") >= 1
    shell_titles = [t for t in (pages["herald-shells"][1], pages["courier-shells"][1]) if t in text]
    assert len(shell_titles) == 1  # one alert for the shells story, not two
    other = "Morning Courier" if pages["herald-shells"][1] in text else "Daily Herald"
    assert f"Also reported by: {other} (EN)" in text

    with ArticleStore(tmp_path / "crawl.db") as db:
        outbox = db.query("select status from outbox order by id")
        stories = db.query("select count(*) as n from stories")[0]["n"]
    assert sorted(r["status"] for r in outbox) == ["sent", "sent", "suppressed"]
    assert stories == 2

    listed = run_armswatch("stories", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    assert "2 articles" in listed.stdout


def test_an_article_with_a_placeholder_date_is_clustered_by_when_it_was_fetched(store, devset):
    article = devset["g16-en"]
    article_id = store_article(store, "https://odd.example/a", "odd", article.language, "0001-01-01T00:00:00Z",
                               article.title, article.text, tag_matches(article, "labelled"))
    decision = assign_story(store, article_id)
    seen = store.query("select seen_at from story_fingerprints where article_id = ?", [article_id])[0]["seen_at"]
    assert decision.is_new_story and seen[:4] == store.query("select fetched_at from articles")[0]["fetched_at"][:4]


def test_later_copies_of_an_alerted_story_reach_digests_and_opted_in_readers_only(tmp_path, store, devset):
    import email as email_lib
    from datetime import datetime, timedelta, timezone
    from email import policy

    from crawler.alerts import deliver_alerts
    from crawler.config import AlertSettings, Config, Recipient
    from crawler.items import Article, ProcessedArticle, text_hash

    readers = (Recipient("desk@example.org"), Recipient("follow@example.org", story_updates=True),
               Recipient("editor@example.org", mode="daily", at="08:00"))
    config = Config(path=str(tmp_path / "armswatch.toml"), alerts=AlertSettings(
        outbox_dir=str(tmp_path / "outbox"), sender="armswatch@example.org", recipients=readers))

    def crawl(article_id):
        a = devset[article_id]
        url = f"https://{a.source}.example/{a.id}"
        article = Article(url=url, canonical_url=url, title=a.title, text=a.text, published=a.published,
                          language=a.language, site_name=a.source)
        saved = store.save_article(ProcessedArticle(url, a.source, article, tag_matches(a, "labelled"),
                                                    content_hash=text_hash(a.text)),
                                   lambda rule: [(r.address, r.mode) for r in readers])
        assign_story(store, saved.article_id)

    def inbox(address):
        found = []
        for path in sorted((tmp_path / "outbox").glob("*.eml"), key=lambda f: f.stat().st_mtime_ns):
            message = email_lib.message_from_bytes(path.read_bytes(), policy=policy.default)
            if message["To"] == address:
                found.append(message.get_body(("plain",)).get_content())
        return found

    now = datetime.now(timezone.utc)
    crawl("g01-en-wire")
    deliver_alerts(config, store, now)
    crawl("g01-de")  # the German report of the same shells story, after the alert
    deliver_alerts(config, store, now + timedelta(minutes=5))

    assert len(inbox("desk@example.org")) == 1  # no second alert for the same story
    first, update = inbox("follow@example.org")
    assert "Also reported (stories alerted before)" in update and "zeitung-de (DE" in update
    assert inbox("editor@example.org") == []  # waits for 08:00

    deliver_alerts(config, store, now + timedelta(days=1))
    [digest] = inbox("editor@example.org")
    assert devset["g01-en-wire"].title in digest
    assert digest.count("zeitung-de") == 1 and "Also reported by: zeitung-de (DE)" in digest

    crawl("g01-fr")  # a day after the digest: listed in the next one, not alerted
    deliver_alerts(config, store, now + timedelta(days=1, minutes=5))
    deliver_alerts(config, store, now + timedelta(days=2))
    assert len(inbox("desk@example.org")) == 1
    digest2 = inbox("editor@example.org")[1]
    assert "Also reported (stories alerted before)" in digest2 and "journal-fr (FR" in digest2
    assert devset["g01-fr"].title in digest2
    statuses = store.query("select status, count(*) as n from outbox group by status")
    assert {r["status"]: r["n"] for r in statuses}.get("pending", 0) == 0


def test_signatures_keep_the_stored_format_datasketch_defines(devset):
    """Signatures stored by earlier versions (datasketch's MinHash, scheme "affine32") and new ones
    compare equal for the same text: the fingerprint computes the very same values."""
    import numpy as np
    from datasketch import MinHash

    from crawler.fingerprints import NUM_PERM, SCHEME, shingles, text_signature

    texts = ["", "Two words", "Iran delivered Shahed-136 drones to Russia."] + [a.text for a in devset.values()][:20]
    for text in texts:
        reference = MinHash(num_perm=NUM_PERM, scheme=SCHEME)
        reference.update_batch([shingle.encode("utf-8") for shingle in shingles(text)])
        assert text_signature(text) == np.asarray(reference.hashvalues, dtype="<u4").tobytes(), text[:60]


def test_the_fingerprint_reads_title_and_text_as_each_reader_does_alone(devset):
    """One pass over the article feeds the shingles, designations, figures and names: what it
    finds is what each reader finds in the title and text on its own."""
    from crawler.fingerprints import designations, fingerprint, names, numbers, text_signature

    stop = frozenset({"reuters"})
    cases = [(a.title, a.text) for a in devset.values()] + [
        ("Shahed-136 drones", ""),  # no text: the title is what is signed
        (None, "Iran sent 1,5 Millionen Schuss, MiG-29s and 300.000 shells on 12 September, Reuters said."),
        ("Pjöngjang liefert", "Der Vertrag mit Pjöngjang\n\numfasst KN-23 Raketen für 2,5 Mrd. Euro."),
        ("", "x1 B52 v2.5 -40 1.234.567 ٣٠٠ drones; a20,000 and 20,000 more"),
    ]
    for title, text in cases:
        body = f"{title or ''}\n\n{text or ''}"
        for language in (None, "de"):
            fp = fingerprint(title, text, stop, language)
            assert fp.signature == text_signature(text or title or ""), (title, language)
            assert fp.designations == designations(body), title
            assert fp.numbers == numbers(body), title
            assert fp.names == names(body, stop, language), (title, language)


def test_figures_are_read_in_every_format_and_dates_years_and_parts_of_words_are_not():
    from crawler.fingerprints import numbers

    text = ("Iran sent 1,5 Millionen Schuss and 300.000 shells, 2 400 drones, un million de dollars "
            "and 45% of its stock on 12 September 2024; MiG-29 v2.5 B52 x1,000 7 boats.")
    assert numbers(text) == {"1500000", "300000", "2400", "1000000", "45%"}


def test_in_german_the_dictionary_tells_nouns_from_names():
    from crawler.fingerprints import fold, name_key, names

    sentence = "Sie unterzeichneten den Vertrag mit Schoigu über Granaten."
    assert names(sentence, language="de") == {name_key(fold("Schoigu"))}
    assert name_key(fold("Vertrag")) in names(sentence)  # without the dictionary, a capitalised noun passes
