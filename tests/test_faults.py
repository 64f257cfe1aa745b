"""Fault suite: a hostile web and a crash mid-run. Nothing lost, nothing doubled, nothing leaked.

One crawl attacks everything at once (tests/hostile_web.py); the crash test kills a crawl
with SIGKILL at several points and checks that the next run ends where an uninterrupted
crawl would have.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from crawler.demo_server import SiteHandler, SiteServer
from tests.conftest import ROOT, free_port, rows as query, run_armswatch
from tests.hostile_web import GOOD_ARTICLES, PASSWD_MARKER, HostileServer, article_html




HOSTILE_FEEDS = {
    "good": ("/good.xml", "feed"),
    "busy": ("/503.xml", "feed"),
    "broken": ("/500.xml", "feed"),
    "missing": ("/missing.xml", "feed"),
    "gone": ("/410.xml", "feed"),
    "hanging": ("/hang.xml", "feed"),
    "malformed": ("/malformed.xml", "feed"),
    "html": ("/html-as-feed.xml", "feed"),
    "wrong-charset": ("/wrong-charset.xml", "feed"),
    "xxe": ("/xxe.xml", "feed"),
    "laughs": ("/laughs.xml", "feed"),
    "garbage": ("/garbage.xml", "feed"),
    "xz": ("/xz.xml", "feed"),
    "bad-gzip": ("/bad-gzip.xml", "feed"),
    "credentials": ("/credentials.xml", "feed"),
    "laughs-sitemap": ("/laughs-sitemap.xml", "sitemap"),
    "xxe-sitemap": ("/xxe-sitemap.xml", "sitemap"),
}


@pytest.fixture(scope="module")
def hostile_crawl(tmp_path_factory):
    """One crawl of the hostile web; returns what a user can inspect afterwards."""
    tmp = tmp_path_factory.mktemp("hostile")
    with HostileServer() as server:
        base = server.base_url
        sources = "".join(
            f'[[sources]]\nname = "{name}"\nurl = "{base}{path}"\ntype = "{kind}"\n\n'
            for name, (path, kind) in HOSTILE_FEEDS.items()
        )
        sources += f'[[sources]]\nname = "refused"\nurl = "http://127.0.0.1:{free_port()}/feed.xml"\n\n'
        config = tmp / "hostile.toml"
        config.write_text(
            "[crawl]\n"
            'db = "hostile.db"\n'
            "download_timeout = 3\n"
            "download_delay = 0\n"
            "max_page_bytes = 5_000_000\n"
            "allow_private_addresses = false\n\n"
            "[alerts]\n"
            f'outbox_dir = "{tmp / "outbox"}"\n\n'
            '[[alerts.recipients]]\naddress = "desk@example.org"\nmode = "instant"\n\n' + sources
        )
        started = time.monotonic()
        result = run_armswatch("crawl", "--config", str(config), timeout=240, measure_memory=True)
        elapsed = time.monotonic() - started
        yield {
            "result": result,
            "db": tmp / "hostile.db",
            "outbox": tmp / "outbox",
            "elapsed": elapsed,
            "peak_rss_mb": result.peak_rss_mb,
            "log": list(server.log),
            "huge_bytes_sent": server.huge_bytes_sent,
        }


def test_hostile_crawl_completes_in_time(hostile_crawl):
    result = hostile_crawl["result"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert hostile_crawl["elapsed"] < 120
    runs = query(hostile_crawl["db"], "select exit_reason from crawl_runs")
    assert [r["exit_reason"] for r in runs] == ["finished"]


def test_every_good_article_is_stored_exactly_once(hostile_crawl):
    rows = query(hostile_crawl["db"], "select url, title, text from articles")
    paths = sorted(r["url"].split("/", 3)[3] for r in rows)
    expected = sorted([f"articles/{slug}.html" for slug in GOOD_ARTICLES] + ["articles/cp1251.html"])
    assert paths == expected
    cp1251 = next(r for r in rows if r["url"].endswith("cp1251.html"))
    assert "Росія отримала від Ірану" in cp1251["text"]


def test_every_bad_source_has_a_health_row_naming_its_error(hostile_crawl):
    health = {h["source"]: h for h in query(hostile_crawl["db"], "select * from source_health")}
    expected = {
        "busy": "HTTP 503",
        "broken": "HTTP 500",
        "missing": "HTTP 404",
        "gone": "HTTP 410",
        "hanging": "timeout",
        "malformed": "parse error",
        "html": "parse error",
        "refused": "refused",
        "garbage": "bad response",
        "xz": "bad response",
        "bad-gzip": "bad response",
        "credentials": "forbidden url",
    }
    for name, status in expected.items():
        assert health[name]["status"] == status, (name, health[name])
        assert health[name]["consecutive_failures"] == 1
        assert health[name]["error"]
    good = health["good"]  # its feed was read, some of its articles could not be: partial, not failing
    assert good["status"] == "partial" and good["consecutive_failures"] == 0 and good["last_success"]
    assert "more problems this run" in good["error"]
    assert "s3cretPW" not in health["credentials"]["error"]  # a password a redirect carried is not recorded


def test_bad_article_pages_are_recorded_not_stored(hostile_crawl):
    errors = {e["url"].rsplit("/", 1)[1]: e for e in query(hostile_crawl["db"], "select * from fetch_errors where url like '%/articles/%' or url like '%/private/%'")}
    for page in ["reset.html", "truncated.html", "bomb.html", "huge.html", "to-file.html", "empty.html", "error.html",
                 "hang.html", "secret.html", "loop.html"]:
        assert page in errors, (page, sorted(errors))
    assert errors["loop.html"]["error_class"] == "redirect loop"
    assert errors["to-file.html"]["error_class"] == "forbidden url"
    assert "file:///etc/passwd" in errors["to-file.html"]["message"]
    assert errors["error.html"]["error_class"] == "HTTP 500"
    assert errors["hang.html"]["error_class"] == "timeout"
    assert errors["secret.html"]["error_class"] == "robots denied"
    assert errors["huge.html"]["error_class"] == "too large" and "(limit 5,000,000 bytes)" in errors["huge.html"]["message"]
    assert errors["bomb.html"]["error_class"] == "too large"
    assert errors["reset.html"]["error_class"] == "connection lost"
    assert errors["empty.html"]["error_class"] == "no article"
    refused = query(hostile_crawl["db"], "select url, error_class from fetch_errors where url like 'http://127.0.0.2:%'")
    assert [r["error_class"] for r in refused] == ["forbidden url"]


def test_no_local_file_or_private_address_is_read(hostile_crawl):
    db = hostile_crawl["db"]
    everything = json.dumps(query(db, "select * from articles")) + json.dumps(query(db, "select * from fetch_errors"))
    assert PASSWD_MARKER not in everything
    assert not any(p.startswith("javascript") or p.startswith("data:") for p in hostile_crawl["log"])
    assert "/private/secret.html" not in hostile_crawl["log"]
    for eml in hostile_crawl["outbox"].glob("*.eml"):
        assert PASSWD_MARKER not in eml.read_text(errors="replace")


def test_memory_stays_bounded_and_huge_pages_are_not_held(hostile_crawl):
    # the 50 MB page is abandoned early (Content-Length over the limit), and the 60 MB
    # gzip bomb is cut at the size limit while inflating
    assert hostile_crawl["huge_bytes_sent"] < 20_000_000
    assert hostile_crawl["peak_rss_mb"] < 400


def test_hostile_title_is_escaped_in_alert_emails(hostile_crawl):
    emails = list(hostile_crawl["outbox"].glob("*.eml"))
    if not emails:
        pytest.skip("no alert emails were written")
    import email
    from email import policy

    for path in emails:
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        html_part = message.get_body(("html",))
        if html_part is None:
            continue
        html = html_part.get_content()
        assert "<script>alert" not in html


# -- crash safety ---------------------------------------------------------------------

ARMS = [
    ("Iran", "Shahed drones"), ("North Korea", "152 mm artillery shells"), ("Belarus", "armoured vehicles"),
    ("Myanmar", "ammunition"), ("Iran", "ballistic missiles"), ("North Korea", "KN-23 missiles"),
]


def crash_site_articles() -> dict[str, tuple[str, str]]:
    articles = {}
    for i in range(24):
        if i % 2 == 0:
            supplier, weapon = ARMS[i // 2 % len(ARMS)]
            title = f"{supplier} delivers {weapon} to Russia, report {i}"
            body = (f"{supplier} has delivered a new consignment of {weapon} to Russia, officials said on day {i}. "
                    f"Moscow is seeking to buy more {weapon} from {supplier} for its war in Ukraine.")
        else:
            title = f"City council approves new park plan {i}"
            body = f"The city council approved plan number {i} for a new park with playgrounds and a lake, officials said."
        articles[f"a{i}"] = (title, body)
    return articles


class SlowSiteHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    articles = crash_site_articles()

    def log_message(self, *args):
        pass

    def do_GET(self):
        base = self.server.base_url
        if self.path == "/feed.xml":
            items = "".join(
                f"<item><title>{t}</title><link>{base}/{slug}.html</link></item>" for slug, (t, _) in self.articles.items()
            )
            body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>s</title>{items}</channel></rss>'.encode()
        elif self.path.endswith(".html") and self.path[1:-5] in self.articles:
            time.sleep(0.15)
            title, text = self.articles[self.path[1:-5]]
            body = article_html(title, text).encode()
        else:
            body = b""
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "text/html" if self.path.endswith(".html") else "application/rss+xml")
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def slow_site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowSiteHandler)
    server.daemon_threads = True
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def crash_config(tmp: Path, base: str) -> Path:
    config = tmp / "crash.toml"
    config.write_text(
        '[crawl]\ndb = "crash.db"\ndownload_delay = 0\nconcurrency_per_domain = 2\n\n'
        '[[alerts.recipients]]\naddress = "desk@example.org"\nmode = "daily"\n\n'
        f'[[sources]]\nname = "slow"\nurl = "{base}/feed.xml"\n'
    )
    return config


def outcome(db: Path) -> dict:
    return {
        "articles": sorted((r["url"].rsplit("/", 1)[1], r["title"], r["content_hash"]) for r in query(db, "select * from articles")),
        "matches": sorted(
            (r["url"].rsplit("/", 1)[1], r["rule"])
            for r in query(db, "select a.url, m.rule from matches m join articles a on a.id = m.article_id")
        ),
        "outbox": sorted(
            (r["url"].rsplit("/", 1)[1], r["recipient"], r["status"])
            for r in query(db, "select a.url, o.recipient, o.status from outbox o join matches m on m.id = o.match_id join articles a on a.id = m.article_id")
        ),
    }


def test_crash_at_any_point_then_rerun_equals_an_uninterrupted_crawl(slow_site, tmp_path):
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    assert run_armswatch("crawl", "--config", str(crash_config(clean_dir, slow_site.base_url))).returncode == 0
    expected = outcome(clean_dir / "crash.db")
    assert len(expected["articles"]) == 24 and len(expected["matches"]) == 12
    assert len(expected["outbox"]) == 12

    for kill_after in (1.5, 3.0, 4.5):
        work = tmp_path / f"kill-{kill_after}"
        work.mkdir()
        config = crash_config(work, slow_site.base_url)
        process = subprocess.Popen(
            [sys.executable, "-m", "crawler.cli", "crawl", "--config", str(config)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(kill_after)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        partial = outcome(work / "crash.db") if (work / "crash.db").exists() else {"articles": []}
        rerun = run_armswatch("crawl", "--config", str(config))
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        assert outcome(work / "crash.db") == expected, f"killed after {kill_after}s with {len(partial['articles'])} articles stored"
        integrity = query(work / "crash.db", "pragma integrity_check")
        assert integrity == [{"integrity_check": "ok"}]


# -- mail faults ----------------------------------------------------------------------


class SilentSmtpServer:
    """Accepts TCP connections and never says a word: the SMTP client must time out."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self.accept, daemon=True)
        self.thread.start()

    def accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


class DropAfterDataHandler:
    """Takes the whole message, then drops the connection instead of answering 250."""

    async def handle_DATA(self, server, session, envelope):
        server.transport.close()
        return "421 closing"


def queue_three_alerts(tmp_path, port):
    from dataclasses import replace

    from crawler.config import Recipient
    from storage.store import ArticleStore
    from tests.test_alerts import add_story, make_config

    config = make_config(tmp_path, Recipient("desk@example.org"), port=port)
    config = replace(config, alerts=replace(config.alerts, timeout=2))
    store = ArticleStore(tmp_path / "mail.db")
    for i, supplier in enumerate(["Iran", "North Korea", "Belarus"]):
        add_story(store, config, f"{supplier} delivers weapons to Russia ({i})", f"story-{i}")
    return config, store


@pytest.mark.parametrize("fault", ["refused", "timeout", "dropped after DATA", "one recipient refused"])
def test_every_alert_is_delivered_once_when_the_mail_server_comes_back(tmp_path, fault):
    from dataclasses import replace

    from aiosmtpd.controller import Controller

    from crawler.alerts import deliver_alerts
    from crawler.config import Recipient
    from tests.test_alerts import RecordingHandler, free_port, later

    port = free_port()
    config, store = queue_three_alerts(tmp_path, port)
    if fault == "one recipient refused":
        config = replace(config, alerts=replace(config.alerts, recipients=(Recipient("desk@example.org"), Recipient("bad@example.org"))))
        from tests.test_alerts import add_story

        add_story(store, config, "Myanmar buys drones from Russia", "story-extra")
    broken = None
    if fault == "timeout":
        broken = SilentSmtpServer()
        config = replace(config, alerts=replace(config.alerts, smtp_port=broken.port))
    elif fault == "dropped after DATA":
        broken = Controller(DropAfterDataHandler(), hostname="127.0.0.1", port=port)
        broken.start()
    good = RecordingHandler()
    if fault == "one recipient refused":
        good.refuse = {"bad@example.org"}
        server = Controller(good, hostname="127.0.0.1", port=port)
        server.start()
        deliver_alerts(config, store)
        server.stop()
        # the refused recipient's alerts stay queued; the other got everything once
        assert len(good.to("desk@example.org")) == 1
        assert good.to("bad@example.org") == []
        pending = store.query("select count(*) as n from outbox where recipient = 'bad@example.org' and status != 'sent'")
        assert pending[0]["n"] >= 1
        return
    report = deliver_alerts(config, store)
    assert store.query("select count(*) as n from outbox where status = 'sent'")[0]["n"] == 0, report
    errors = store.query("select error from outbox")
    assert all(e["error"] for e in errors)
    if fault == "timeout":
        broken.close()
        config = replace(config, alerts=replace(config.alerts, smtp_port=port))
    elif broken is not None:
        broken.stop()

    server = Controller(good, hostname="127.0.0.1", port=port)
    server.start()
    try:
        deliver_alerts(config, store, now=later(days=2))
        deliver_alerts(config, store, now=later(days=3))  # nothing left: nothing sent twice
    finally:
        server.stop()
    delivered = good.to("desk@example.org")
    assert len(delivered) == 1
    body = delivered[0].get_body(("plain",)).get_content()
    for supplier in ["Iran", "North Korea", "Belarus"]:
        assert body.count(f"{supplier} delivers weapons to Russia") == 1
    assert store.query("select count(*) as n from outbox where status = 'sent'")[0]["n"] == 3


# -- dead hosts among many sources ------------------------------------------------------------


class Tarpit:
    """Listening sockets on many loopback addresses that accept connections and never answer."""

    def __init__(self, hosts: int):
        self.sockets = []
        for i in range(1, hosts + 1):
            sock = socket.socket()
            sock.bind((f"127.0.1.{i}", 0))
            sock.listen(16)
            sock.setblocking(False)
            self.sockets.append(sock)
        self.accepted: dict[str, list[float]] = {}  # host -> when each connection came
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    @property
    def urls(self) -> list[str]:
        return [f"http://{host}:{port}/feed.xml" for host, port in (s.getsockname() for s in self.sockets)]

    def serve(self) -> None:
        while not self.stop.is_set():
            for sock in self.sockets:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    continue
                self.held.append(conn)
                self.accepted.setdefault(sock.getsockname()[0], []).append(time.monotonic())
            time.sleep(0.01)

    def __enter__(self) -> Tarpit:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        for sock in self.sockets + self.held:
            sock.close()


class TimedSiteHandler(SiteHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.server.times.setdefault(self.path, time.monotonic())  # type: ignore[attr-defined]
        super().do_GET()


def test_twenty_dead_hosts_do_not_hold_up_a_healthy_source(tmp_path):
    """Each dead host holds a download place for a timeout, and is asked once: the healthy
    source listed after them is fetched at once, not when their timeouts run out."""
    timeout = 6
    with Tarpit(20) as tarpit, SiteServer(ROOT / "tests" / "fixtures" / "site", handler=TimedSiteHandler) as site:
        site.httpd.times = {}  # type: ignore[attr-defined]
        sources = [(f"dead {i}", url) for i, url in enumerate(tarpit.urls, 1)] + [("healthy", f"{site.base_url}/feed.xml")]
        config = tmp_path / "armswatch.toml"
        config.write_text(f'[crawl]\ndb = "x.db"\ndownload_timeout = {timeout}\n\n' + "".join(
            f'[[sources]]\nname = "{name}"\nurl = "{url}"\n\n' for name, url in sources))
        result = run_armswatch("crawl", "--config", str(config), timeout=120)
        assert result.returncode == 0, result.stderr
        warnings = result.stderr.splitlines()  # what cron mails: one line a dead source, no traceback
        assert len(warnings) == 20 and all("robots.txt unreachable (timeout)" in line for line in warnings), result.stderr
        first_contact = min(times[0] for times in tarpit.accepted.values())
        assert site.httpd.times["/feed.xml"] - first_contact < timeout / 2  # type: ignore[attr-defined]
        assert {host: len(times) for host, times in tarpit.accepted.items()} == {
            f"127.0.1.{i}": 1 for i in range(1, 21)}  # robots.txt, not retried; the feed not asked without it
    health = {row["source"]: row for row in query(tmp_path / "x.db", "select * from source_health")}
    assert health["healthy"]["status"] == "ok" and health["healthy"]["items_new"] > 0
    assert {health[f"dead {i}"]["status"] for i in range(1, 21)} == {"timeout"}


# -- config faults --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("missing file", None, "config file not found"),
        ("TOML syntax error", '[crawl]\ndb = "x.db\n', ":2: TOML syntax error"),
        ("unknown key", '[crawl]\ndb = "x.db"\nconcurency = 3\n', ":3: unknown key 'concurency'"),
        ("bad URL", '[crawl]\ndb = "x.db"\n\n[[sources]]\nname = "a"\nurl = "file:///etc/passwd"\n',
         ":6: [[sources]] #1: url 'file:///etc/passwd' cannot be crawled: not an absolute http(s) URL"),
        ("password in URL", '[crawl]\ndb = "x.db"\n\n[[sources]]\nname = "a"\nurl = "http://ann:s3cret@127.0.0.1:9/feed"\n',
         ":6: [[sources]] #1: url 'http://***@127.0.0.1:9/feed' cannot be crawled: it carries a user name or password"),
        ("control characters in a name", '[crawl]\ndb = "x.db"\n\n[[sources]]\nname = "Good\\rEvil"\nurl = "http://127.0.0.1:9/feed"\n',
         ":5: [[sources]] #1: name must be one line without control characters, got 'Good\\rEvil'"),
        ("no concurrency", '[crawl]\ndb = "x.db"\nconcurrency_per_domain = 0\n', ":3: [crawl]: concurrency_per_domain must be at least 1"),
        ("negative timeout", '[crawl]\ndb = "x.db"\n\ndownload_timeout = -5\n', ":4: [crawl]: download_timeout must be more than 0"),
        ("no size limit", '[crawl]\nmax_page_bytes = 0\ndb = "x.db"\n', ":2: [crawl]: max_page_bytes must be more than 0"),
        ("anonymous", '[crawl]\ndb = "x.db"\nuser_agent = ""\n', ":3: [crawl]: user_agent must not be empty"),
        ("unknown concept", '[crawl]\ndb = "x.db"\nrules = ["bad-rules.toml"]\n\n[[sources]]\nname = "a"\nurl = "http://127.0.0.1:9/feed"\n', "bad-rules.toml:5:"),
    ],
)
def test_config_faults_name_file_and_line_and_write_nothing(tmp_path, name, text, expected):
    config = tmp_path / "armswatch.toml"
    if text is not None:
        config.write_text(text)
    (tmp_path / "bad-rules.toml").write_text(
        '[concepts.weapon]\nen = ["drone"]\n\n[rules.bad]\nwhen = "weapon AND no_such_concept"\n'
    )
    result = run_armswatch("crawl", "--config", str(config), timeout=60)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr
    if name == "unknown concept":
        assert "unknown concept 'no_such_concept'" in result.stderr
    assert str(config) in result.stderr or "bad-rules.toml" in result.stderr
    assert "s3cret" not in result.stderr
    assert not (tmp_path / "x.db").exists()
