"""A user gets each new arms story by email once, readable and safe, even when SMTP misbehaves.

Every test talks to a real SMTP server (aiosmtpd on 127.0.0.1) or writes real .eml files,
over a real SQLite database filled through ArticleStore.save_article.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from crawler.alerts import deliver_alerts, digest_slot
from crawler.config import AlertSettings, Config, Recipient, Source, load_config
from crawler.items import Article, Match, MatchedTerm, ProcessedArticle
from storage.store import ArticleStore
from tests.conftest import free_port, run_armswatch

RULE = "arms-procurement"
SNIPPET = "Officials said Iran delivered Shahed-136 drones to Russia last month."
HIGHLIGHTS = ((30, 40), (41, 47))  # "Shahed-136", "drones"


# -- a real SMTP server ---------------------------------------------------------------


class RecordingHandler:
    """Keeps every accepted message; refuses the addresses in `refuse` at RCPT time."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [m for rcpts, m in self.messages if address in rcpts]



@pytest.fixture
def smtp():
    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.port = controller.port
    yield handler
    controller.stop()


@pytest.fixture
def store(tmp_path):
    with ArticleStore(tmp_path / "alerts.db") as opened:
        yield opened


def make_config(tmp_path: Path, *recipients: Recipient, port: int | None = None, **alerts) -> Config:
    settings = AlertSettings(
        smtp_host="127.0.0.1" if port else None,
        smtp_port=port or 587,
        tls="none",
        sender="armswatch@example.org",
        outbox_dir=str(tmp_path / "outbox"),
        timeout=5,
        recipients=recipients,
        **alerts,
    )
    return Config(path=str(tmp_path / "armswatch.toml"), alerts=settings)


def add_story(store, config, title, slug, *, rule=RULE, published="2026-03-01T09:00:00+00:00", language="en",
              source="Example Wire", state=False, score=0.87, url=None):
    """Store an article with one match, queuing outbox rows exactly as the crawl does."""
    url = url or f"https://news.example.org/{slug}"
    article = Article(url=url, canonical_url=url, title=title, text=f"{title}. {SNIPPET}", published=published, language=language)
    match = Match(
        rule=rule, score=score, terms=(MatchedTerm("weapon.drone", "Shahed-136", 0, 10),), snippet=SNIPPET,
        highlights=HIGHLIGHTS, suppliers=("Iran",), recipients=("Russia",), weapons=("drones",),
    )
    processed = ProcessedArticle(page_url=url, source=source, article=article, matches=(match,), state_affiliated=state)

    def recipients_for_rule(name):
        return [(r.address, r.mode) for r in config.alerts.recipients if not r.rules or name in r.rules]

    return store.save_article(processed, recipients_for_rule).article_id


def parts(message):
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    return text.replace("\r\n", "\n"), html.replace("\r\n", "\n")


def outbox(store):
    return store.query("select * from outbox order by id")


def later(**delta) -> datetime:
    return datetime.now(timezone.utc) + timedelta(**delta)


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs.extend(attrs)


# -- the email ------------------------------------------------------------------------


def test_instant_email_says_what_was_found_and_why(tmp_path, store, smtp):
    config = make_config(tmp_path, Recipient("analyst@example.org"), port=smtp.port)
    add_story(store, config, "Iran sends Shahed drones to Russia", "old", published="2026-03-01T08:00:00+00:00")
    add_story(store, config, "Moscou reçoit des drones iraniens", "new", published="2026-03-02T08:00:00+00:00",
              language="fr", source="State TV", state=True, score=0.5)

    report = deliver_alerts(config, store)

    assert report.emails == 1 and report.alerts == 2 and report.ok
    [message] = smtp.to("analyst@example.org")
    assert message["Subject"] == "armswatch: 2 new stories for arms-procurement"
    assert message["To"] == "analyst@example.org"
    text, html = parts(message)
    # newest first, with source, state-media label, date, language, rule, score, tags
    assert text.index("Moscou reçoit") < text.index("Iran sends Shahed")
    assert "State TV (state media) | 2026-03-02 | FR | arms-procurement, score 0.50" in text
    assert "supplier: Iran · recipient: Russia · weapon: drones" in text
    assert "https://news.example.org/new" in text
    assert "Iran delivered **Shahed-136** **drones** to Russia" in text
    assert "2 stories · 2 matches · 1 rule" in text
    assert '<a href="https://news.example.org/new"' in html
    assert re.search(r"<mark[^>]*>Shahed-136</mark> <mark[^>]*>drones</mark>", html)
    assert "state media" in html and "weapon: drones" in html
    assert 'name="viewport"' in html and "max-width:640px" in html
    # the outbox says what went out, under the Message-ID the server received
    rows = outbox(store)
    assert [r["status"] for r in rows] == ["sent", "sent"]
    assert {r["message_id"] for r in rows} == {message["Message-ID"]}
    assert re.fullmatch(r"<armswatch\.[0-9a-f]{40}@example\.org>", message["Message-ID"])

    assert deliver_alerts(config, store).emails == 0
    assert len(smtp.messages) == 1


def test_daily_digest_waits_for_its_time_and_groups_by_rule(tmp_path, store, smtp):
    config = make_config(tmp_path, Recipient("desk@example.org", mode="daily", at="08:00"), port=smtp.port)
    add_story(store, config, "Drones for Russia", "a", published="2026-03-01T10:00:00+00:00")
    add_story(store, config, "Shells for Russia", "b", published="2026-03-03T10:00:00+00:00")
    add_story(store, config, "Frigates for Egypt", "c", rule="naval", published="2026-03-02T10:00:00+00:00")

    assert deliver_alerts(config, store).emails == 0  # before tomorrow 08:00 nothing goes
    assert smtp.messages == [] and {r["status"] for r in outbox(store)} == {"pending"}

    tomorrow_0830 = later(days=1).replace(hour=8, minute=30)
    report = deliver_alerts(config, store, now=tomorrow_0830)
    assert report.emails == 1 and report.alerts == 3
    [message] = smtp.to("desk@example.org")
    assert message["Subject"] == "armswatch daily digest: 3 new stories for arms-procurement, naval"
    text, html = parts(message)
    assert text.startswith("Daily digest: 3 new stories")
    assert text.index("== arms-procurement (2) ==") < text.index("Shells for Russia") < text.index("Drones for Russia")
    assert text.index("Drones for Russia") < text.index("== naval (1) ==") < text.index("Frigates for Egypt")
    assert html.count("<mark") == 6

    # a story found after today's digest waits for tomorrow's
    add_story(store, config, "Missiles for Belarus", "d")
    assert deliver_alerts(config, store, now=tomorrow_0830 + timedelta(hours=3)).emails == 0
    assert deliver_alerts(config, store, now=tomorrow_0830 + timedelta(days=1)).alerts == 1
    assert len(smtp.messages) == 2


def test_digest_slots_for_hourly_daily_and_weekly():
    now = datetime(2026, 3, 4, 7, 30, tzinfo=timezone.utc)  # a Wednesday
    utc = timezone.utc
    from zoneinfo import ZoneInfo

    assert digest_slot(Recipient("a@x", mode="instant"), now, ZoneInfo("UTC")) is None
    assert digest_slot(Recipient("a@x", mode="hourly"), now, ZoneInfo("UTC")) == datetime(2026, 3, 4, 7, 0, tzinfo=utc)
    assert digest_slot(Recipient("a@x", mode="daily", at="08:00"), now, ZoneInfo("UTC")) == datetime(2026, 3, 3, 8, 0, tzinfo=utc)
    assert digest_slot(Recipient("a@x", mode="weekly", at="06:00", weekday="wed"), now, ZoneInfo("UTC")) == datetime(2026, 3, 4, 6, 0, tzinfo=utc)
    assert digest_slot(Recipient("a@x", mode="weekly", at="08:00", weekday="wed"), now, ZoneInfo("UTC")) == datetime(2026, 2, 25, 8, 0, tzinfo=utc)
    # `at` is read in the configured time zone: 08:00 in Berlin is 07:00 UTC in March
    assert digest_slot(Recipient("a@x", mode="daily", at="08:00"), now, ZoneInfo("Europe/Berlin")) == datetime(2026, 3, 4, 7, 0, tzinfo=utc)


def test_hostile_titles_urls_and_snippets_are_escaped(tmp_path, store, smtp):
    config = make_config(tmp_path, Recipient("analyst@example.org"), port=smtp.port)
    add_story(store, config, "<script>alert(1)</script> drones", "one")
    add_story(store, config, '"><img src=x onerror=alert(2)> shells\r\nBcc: victim@example.org', "two")
    add_story(store, config, "Missiles", "three", url="javascript:alert(3)//news.example.org/three")

    deliver_alerts(config, store)

    [message] = smtp.to("analyst@example.org")
    assert message["Bcc"] is None
    text, html = parts(message)
    collector = TagCollector()
    collector.feed(html)
    assert collector.tags <= {"html", "head", "meta", "title", "body", "div", "h1", "h2", "a", "span", "p", "mark", "br", "strong"}
    assert "script" not in collector.tags and "img" not in collector.tags
    assert not any(name.startswith("on") for name, _ in collector.attrs)
    hrefs = [value for name, value in collector.attrs if name == "href"]
    assert len(hrefs) == 2 and all(h.startswith("https://news.example.org/") for h in hrefs)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; drones" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    assert "not a web link: javascript:alert(3)" in html and "not a web link: javascript:alert(3)" in text
    # a line break in a title cannot start a new line (or header) in the text part
    assert '"><img src=x onerror=alert(2)> shells Bcc: victim@example.org' in text


# -- once and only once ---------------------------------------------------------------


def test_server_down_then_up_delivers_every_alert_exactly_once(tmp_path, store):
    port = free_port()  # nothing listens here yet
    config = make_config(tmp_path, Recipient("a@example.org"), Recipient("b@example.org"), port=port)
    for n in range(3):
        add_story(store, config, f"Story {n}", f"s{n}")

    down = deliver_alerts(config, store)
    assert down.emails == 0 and {a for a, _ in down.failures} == {"a@example.org", "b@example.org"}
    assert all("cannot reach smtp://127.0.0.1" in error for _, error in down.failures)
    rows = outbox(store)
    assert len(rows) == 6 and {r["status"] for r in rows} == {"pending"}
    assert {r["attempts"] for r in rows} == {1} and all(r["error"] and r["next_attempt_at"] for r in rows)
    first_retry = min(r["next_attempt_at"] for r in rows)

    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        assert deliver_alerts(config, store).emails == 0  # backoff: not before next_attempt_at
        assert handler.messages == []
        retry_time = datetime.fromisoformat(first_retry) + timedelta(seconds=1)
        up = deliver_alerts(config, store, now=retry_time)
        assert up.emails == 2 and up.alerts == 6 and up.ok
        deliver_alerts(config, store, now=retry_time + timedelta(hours=1))
    finally:
        controller.stop()

    for address in ("a@example.org", "b@example.org"):
        bodies = [parts(m)[0] for m in handler.to(address)]
        assert len(bodies) == 1
        for n in range(3):
            assert sum(body.count(f"* Story {n}\n") for body in bodies) == 1
    assert {r["status"] for r in outbox(store)} == {"sent"}


def test_one_refused_recipient_of_two(tmp_path, store, smtp):
    config = make_config(tmp_path, Recipient("ok@example.org"), Recipient("gone@example.org"), port=smtp.port, max_attempts=2)
    smtp.refuse.add("gone@example.org")
    add_story(store, config, "Shells for Russia", "x")

    report = deliver_alerts(config, store)
    assert report.emails == 1 and report.failures == [("gone@example.org", "recipient refused: 550 5.1.1 mailbox unavailable")]
    assert len(smtp.to("ok@example.org")) == 1 and smtp.to("gone@example.org") == []
    by_address = {r["recipient"]: r for r in outbox(store)}
    assert by_address["ok@example.org"]["status"] == "sent"
    gone = by_address["gone@example.org"]
    assert gone["status"] == "pending" and gone["attempts"] == 1 and "550" in gone["error"]

    retry = deliver_alerts(config, store, now=later(hours=1))  # second and last attempt
    assert retry.given_up == 1 and "gave up on 1" in retry.failure_lines()[-1]
    assert len(smtp.to("ok@example.org")) == 1  # the accepted recipient is not mailed again
    gone = {r["recipient"]: r for r in outbox(store)}["gone@example.org"]
    assert gone["status"] == "failed" and gone["attempts"] == 2 and gone["next_attempt_at"] is None
    assert deliver_alerts(config, store, now=later(days=2)).emails == 0


def test_starttls_required_but_not_offered_keeps_alerts_pending(tmp_path, store, smtp):
    config = make_config(tmp_path, Recipient("a@example.org"), port=smtp.port)
    config = replace(config, alerts=replace(config.alerts, tls="starttls"))
    add_story(store, config, "Shells", "x")
    report = deliver_alerts(config, store)
    assert report.failures and "STARTTLS" in report.failures[0][1]
    assert smtp.messages == [] and outbox(store)[0]["status"] == "pending"


def test_story_filter_seam_suppresses_rows(tmp_path, store, smtp):
    config = make_config(tmp_path, Recipient("a@example.org"), port=smtp.port)
    add_story(store, config, "First report", "first")
    add_story(store, config, "Same story, other outlet", "copy")

    report = deliver_alerts(config, store, alert_filter=lambda row, _store: row["title"] != "Same story, other outlet")
    assert report.suppressed == 1 and report.alerts == 1
    assert "Same story" not in parts(smtp.messages[0][1])[0]
    assert [r["status"] for r in outbox(store)] == ["sent", "suppressed"]


# -- no SMTP configured ---------------------------------------------------------------


def test_without_smtp_host_emails_become_eml_files(tmp_path, store):
    config = make_config(tmp_path, Recipient("analyst@example.org"))
    add_story(store, config, "Iran sends drones", "x")

    report = deliver_alerts(config, store)

    assert report.emails == 1 and report.destination == str(tmp_path / "outbox")
    assert report.lines()[0] == f"alerts: 1 email written to {tmp_path / 'outbox'} (1 alert, 0 health notices)"
    [path] = (tmp_path / "outbox").glob("*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["To"] == "analyst@example.org" and "1 new story" in message["Subject"]
    assert "Iran sends drones" in parts(message)[1]
    assert outbox(store)[0]["status"] == "sent"


# -- source health ----------------------------------------------------------------------


def test_failing_and_silent_sources_are_reported_once_and_on_recovery(tmp_path, store, smtp):
    config = make_config(tmp_path, Recipient("a@example.org"), port=smtp.port, health_failures=2)
    source = Source(name="Flaky Wire", url="https://flaky.example.org/feed.xml")
    quiet = Source(name="Quiet Gazette", url="https://quiet.example.org/feed.xml", silent_after=3 * 86400)
    config = replace(config, sources=(source, quiet))
    store.sync_sources(config.sources)
    store.record_source_result("Quiet Gazette", ok=True, status="ok")
    for _ in range(2):
        store.record_source_result("Flaky Wire", ok=False, status="HTTP 503", http_status=503)

    first = deliver_alerts(config, store)
    assert first.emails == 1 and first.notices == 1
    message = smtp.messages[-1][1]
    assert message["Subject"] == "armswatch: 1 source health notice"
    assert "Flaky Wire: failing (" in parts(message)[0] and "2 failed runs in a row; last: HTTP 503" in parts(message)[0]

    store.record_source_result("Flaky Wire", ok=False, status="HTTP 503", http_status=503)
    assert deliver_alerts(config, store).emails == 0  # still failing: not reported again

    # a story and the recovery travel together
    store.record_source_result("Flaky Wire", ok=True, status="ok")
    add_story(store, config, "Shells for Russia", "x")
    second = deliver_alerts(config, store)
    assert second.emails == 1 and second.alerts == 1 and second.notices == 1
    text = parts(smtp.messages[-1][1])[0]
    assert "Flaky Wire: recovered" in text and "Shells for Russia" in text

    # four days later without a new article the quiet source is reported silent, once
    in_four_days = later(days=4)
    assert deliver_alerts(config, store, now=in_four_days).notices == 1
    assert "Quiet Gazette: silent" in parts(smtp.messages[-1][1])[0]
    assert deliver_alerts(config, store, now=in_four_days + timedelta(hours=1)).emails == 0
    assert len(smtp.messages) == 3


# -- the command line -------------------------------------------------------------------


def write_config(tmp_path: Path, alerts: str) -> Path:
    path = tmp_path / "armswatch.toml"
    path.write_text(f'[crawl]\ndb = "alerts.db"\n\n[alerts]\n{alerts}\n', encoding="utf-8")
    return path


def test_alerts_send_command_writes_eml_and_says_where(tmp_path, store):
    config_path = write_config(tmp_path, 'outbox_dir = "mail"\n\n[[alerts.recipients]]\naddress = "a@example.org"\n')
    config = load_config(config_path)
    add_story(store, config, "Iran sends drones", "x")

    result = run_armswatch("alerts", "send", "--config", str(config_path))

    assert result.returncode == 0, result.stderr
    assert f"alerts: 1 email written to {tmp_path / 'mail'}" in result.stdout
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 1
    again = run_armswatch("alerts", "send", "--config", str(config_path))
    assert again.stdout.strip() == "alerts: nothing due"


def test_alerts_test_command_reaches_the_server(tmp_path, smtp):
    config_path = write_config(
        tmp_path, f'smtp_host = "127.0.0.1"\nsmtp_port = {smtp.port}\ntls = "none"\nsender = "armswatch@example.org"\n'
    )
    result = run_armswatch("alerts", "test", "--config", str(config_path), "--to", "me@example.org")
    assert result.returncode == 0, result.stderr
    assert f"test message to me@example.org sent via smtp://127.0.0.1:{smtp.port}" in result.stdout
    [message] = smtp.to("me@example.org")
    assert message["Subject"] == "armswatch: test message"

    smtp.refuse.add("me@example.org")
    refused = run_armswatch("alerts", "test", "--config", str(config_path), "--to", "me@example.org")
    assert refused.returncode == 1 and "550" in refused.stderr


# -- end to end ---------------------------------------------------------------------------


def test_crawl_sends_instant_alerts_and_survives_a_dead_smtp_server(site, tmp_path):
    port = free_port()  # the mail server is down for the first crawl
    config_path = tmp_path / "armswatch.toml"
    config_path.write_text(
        "[crawl]\ndb = \"crawl.db\"\ndownload_delay = 0\n\n"
        f"[alerts]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\ntls = \"none\"\nsender = \"armswatch@example.org\"\n"
        "timeout = 5\nretry_after = 0\n\n"
        "[[alerts.recipients]]\naddress = \"analyst@example.org\"\nmode = \"instant\"\n\n"
        f"[[sources]]\nname = \"Test Gazette\"\nurl = \"{site.base_url}/feed.xml\"\n\n"
        f"[[sources]]\nname = \"Test Atom\"\nurl = \"{site.base_url}/atom.xml\"\n",
        encoding="utf-8",
    )
    first = run_armswatch("crawl", "--config", str(config_path))
    assert first.returncode == 0, first.stderr
    assert "alerts: not delivered to analyst@example.org: cannot reach smtp://127.0.0.1" in first.stderr
    with ArticleStore(tmp_path / "crawl.db") as db:
        queued = db.query("select status, attempts from outbox")
    assert len(queued) == 2 and {(r["status"], r["attempts"]) for r in queued} == {("pending", 1)}

    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        second = run_armswatch("crawl", "--config", str(config_path))
        assert second.returncode == 0, second.stderr
        assert "0 new articles" in second.stdout
        assert f"alerts: 1 email sent via smtp://127.0.0.1:{port} without TLS (2 alerts" in second.stdout
        again = run_armswatch("alerts", "send", "--config", str(config_path))
        assert again.returncode == 0 and again.stdout.strip() == "alerts: nothing due"
    finally:
        controller.stop()

    [message] = handler.to("analyst@example.org")
    assert message["Subject"] == "armswatch: 2 new stories for arms-procurement"
    text, html = parts(message)
    assert "Iran delivered hundreds of Shahed drones to Russia, intelligence says" in text
    assert f'href="{site.base_url}/articles/iran-drones.html"' in html
    assert "<mark" in html and "**" in text


def test_two_deliveries_at_once_send_each_alert_once(tmp_path, smtp):
    """A crawl's delivery and `armswatch alerts send` may overlap; the lock serialises them."""
    import asyncio
    import threading

    accept = smtp.handle_DATA

    async def slow_data(server, session, envelope):
        await asyncio.sleep(0.5)
        return await accept(server, session, envelope)

    smtp.handle_DATA = slow_data
    config = make_config(tmp_path, Recipient("a@example.org"), port=smtp.port)
    with ArticleStore(tmp_path / "alerts.db") as setup:
        add_story(setup, config, "Shells for Russia", "x")

    def deliver():
        with ArticleStore(tmp_path / "alerts.db") as own:
            deliver_alerts(config, own)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(smtp.messages) == 1


def test_login_uses_the_password_from_the_environment(tmp_path, store, monkeypatch):
    from aiosmtpd.smtp import AuthResult

    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cret", handled=False)

    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), authenticator=authenticator,
                            auth_require_tls=False, auth_exclude_mechanism=["LOGIN"])
    controller.start()
    try:
        config = make_config(tmp_path, Recipient("a@example.org"), port=controller.port,
                             smtp_user="bot", password_env="ARMSWATCH_TEST_SMTP_PASSWORD")
        add_story(store, config, "Shells for Russia", "x")
        monkeypatch.delenv("ARMSWATCH_TEST_SMTP_PASSWORD", raising=False)
        missing = deliver_alerts(config, store)
        assert "ARMSWATCH_TEST_SMTP_PASSWORD" in missing.failures[0][1] and logins == []

        monkeypatch.setenv("ARMSWATCH_TEST_SMTP_PASSWORD", "wrong")
        wrong = deliver_alerts(config, store, now=later(hours=1))
        assert "535" in wrong.failures[0][1] and handler.messages == []

        monkeypatch.setenv("ARMSWATCH_TEST_SMTP_PASSWORD", "s3cret")
        assert deliver_alerts(config, store, now=later(hours=3)).emails == 1
    finally:
        controller.stop()
    assert logins[-1] == (b"bot", b"s3cret") and len(handler.messages) == 1
    assert outbox(store)[0]["attempts"] == 3


def test_a_digest_reader_gets_health_notices_with_the_digest_not_at_once(tmp_path, store, smtp):
    config = make_config(tmp_path, Recipient("desk@example.org", mode="daily", at="08:00"), port=smtp.port, health_failures=1)
    config = replace(config, sources=(Source(name="Dead Wire", url="https://dead.example.org/feed.xml"),))
    store.sync_sources(config.sources)
    store.record_source_result("Dead Wire", ok=False, status="DNS", error="no such host")
    tomorrow_0830 = later(days=1).replace(hour=8, minute=30)
    deliver_alerts(config, store, now=tomorrow_0830 - timedelta(days=1, hours=1))  # notice noted, not mailed
    assert smtp.messages == []
    add_story(store, config, "Drones for Russia", "a")

    report = deliver_alerts(config, store, now=tomorrow_0830)

    assert report.emails == 1 and report.alerts == 1 and report.notices == 1
    text = parts(smtp.messages[0][1])[0]
    assert "Dead Wire: failing" in text and "DNS no such host" in text and "Drones for Russia" in text

    # after today's digest went out, the recovery waits for tomorrow's
    store.record_source_result("Dead Wire", ok=True, status="ok")
    assert deliver_alerts(config, store, now=tomorrow_0830 + timedelta(hours=1)).emails == 0
    assert len(smtp.messages) == 1
    assert deliver_alerts(config, store, now=tomorrow_0830 + timedelta(days=1)).notices == 1
    assert "Dead Wire: recovered" in parts(smtp.messages[-1][1])[0]


CRASH_AFTER_SENT = """
import os, sys
from storage.store import ArticleStore
from tests.test_alerts import Recipient, deliver_alerts, make_config
from pathlib import Path
recorded = ArticleStore.mark_email_sent
def record_then_die(self, *args, **kwargs):
    recorded(self, *args, **kwargs)
    os._exit(137)  # killed right after the email was recorded sent, as SIGKILL may
ArticleStore.mark_email_sent = record_then_die
config = make_config(Path(sys.argv[1]), Recipient("desk@example.org"), port=int(sys.argv[2]))
with ArticleStore(Path(sys.argv[1]) / "alerts.db") as store:
    deliver_alerts(config, store)
"""


def test_a_crash_right_after_an_email_is_recorded_sent_never_alerts_its_story_again(tmp_path, smtp):
    import subprocess
    import sys

    from crawler.clustering import assign_story
    from tests.conftest import ROOT

    config = make_config(tmp_path, Recipient("desk@example.org"), port=smtp.port)
    title = "Iran delivered hundreds of Shahed drones to Russia"
    with ArticleStore(tmp_path / "alerts.db") as setup:
        assign_story(setup, add_story(setup, config, title, "first"))
    crashed = subprocess.run([sys.executable, "-c", CRASH_AFTER_SENT, str(tmp_path), str(smtp.port)], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert crashed.returncode == 137, crashed.stderr[-2000:]
    assert len(smtp.messages) == 1
    with ArticleStore(tmp_path / "alerts.db") as store:  # a copy of the story arrives with the next crawl
        assign_story(store, add_story(store, config, title, "copy", source="Other Wire"))
        deliver_alerts(config, store)
        assert [r["status"] for r in outbox(store)] == ["sent", "suppressed"]
    assert len(smtp.messages) == 1


def test_sigterm_during_a_delivery_finishes_the_email_being_sent_and_leaves_the_rest_for_later(tmp_path, store, smtp):
    """A service manager's stop or a run timeout must not kill a send half-way (a duplicate next
    time) nor be ignored: the email on the wire is finished and recorded, the others wait."""
    import asyncio
    import signal
    import subprocess
    import sys
    import threading
    import time

    from tests.conftest import ROOT

    accept, sending = smtp.handle_DATA, threading.Event()

    async def slow_data(server, session, envelope):
        sending.set()
        await asyncio.sleep(2)
        return await accept(server, session, envelope)

    smtp.handle_DATA = slow_data
    config_path = write_config(tmp_path, f'smtp_host = "127.0.0.1"\nsmtp_port = {smtp.port}\ntls = "none"\n'
                                         'sender = "armswatch@example.org"\n\n[[alerts.recipients]]\naddress = "a@example.org"\n\n'
                                         '[[alerts.recipients]]\naddress = "b@example.org"\n')
    add_story(store, load_config(config_path), "Iran sends drones", "x")
    delivery = subprocess.Popen([sys.executable, "-m", "crawler.cli", "alerts", "send", "--config", str(config_path)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert sending.wait(60)
    delivery.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    delivery.send_signal(signal.SIGINT)  # an impatient second signal must not leave mid-send either
    out, err = delivery.communicate(timeout=60)
    assert delivery.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "stopping after the email being sent" in err
    assert "1 left for the next delivery (stopped by a signal)" in out
    assert len(smtp.messages) == 1
    assert sorted(r["status"] for r in outbox(store)) == ["pending", "sent"]
    assert run_armswatch("alerts", "send", "--config", str(config_path)).returncode == 0
    assert sorted(rcpts[0] for rcpts, _ in smtp.messages) == ["a@example.org", "b@example.org"]
