"""Unattended runs are boring: on time, never two at once, no hang that blocks later runs."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from crawler.config import Config, ScheduleSettings, Source, load_config
from crawler.demo_server import SiteHandler, SiteServer
from crawler.locking import LockHeld, crawl_lock
from crawler.polling import PollResult, format_duration, next_interval
from crawler.scheduling import ScheduleError, cron_trigger, group_sources, select_sources
from storage.store import ArticleStore
from tests.conftest import FIXTURES, ROOT, rows, run_armswatch

SCHEDULE = ScheduleSettings(interval=1800, min_interval=600, max_interval=86400)



def rows_if_ready(db, sql):
    """rows(), or [] while the database is still being created by another process."""
    try:
        return rows(db, sql) if Path(db).exists() else []
    except sqlite3.OperationalError:
        return []


def write_config(tmp_path: Path, base_url: str, crawl: str = "", schedule: str = "") -> Path:
    config = tmp_path / "armswatch.toml"
    config.write_text(
        f'[crawl]\ndb = "x.db"\nextraction_workers = 1\ndownload_delay = 0\n{crawl}\n'
        f"[schedule]\n{schedule}\n"
        f'[[sources]]\nname = "Gazette"\nurl = "{base_url}/feed.xml"\n\n'
        f'[[sources]]\nname = "Atom"\nurl = "{base_url}/atom.xml"\n'
    )
    return config


def armswatch_process(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "crawler.cli", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def stop_daemon(daemon: subprocess.Popen) -> tuple[str, str]:
    """SIGTERM, as systemd sends it; the daemon's (stdout, stderr)."""
    daemon.send_signal(signal.SIGTERM)
    return daemon.communicate(timeout=60)


def kill_if_running(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.communicate()


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# -- adaptive polling ------------------------------------------------------------------------


def test_quiet_source_backs_off_and_busy_source_is_polled_sooner():
    nothing_new = PollResult("ok", items_seen=20, items_new=0)
    assert next_interval(1800, nothing_new, SCHEDULE) == 2700
    assert next_interval(1800, PollResult("not modified"), SCHEDULE) == 2700
    all_new = PollResult("ok", items_seen=20, items_new=20)
    assert next_interval(1800, all_new, SCHEDULE) == 800
    assert next_interval(1800, PollResult("ok", items_seen=20, items_new=10), SCHEDULE) == 1200
    assert next_interval(1800, PollResult("ok", items_seen=20, items_new=4), SCHEDULE) == 1800


def test_interval_stays_within_bounds_and_ignores_failures_and_first_polls():
    assert next_interval(86400, PollResult("ok", 10, 0), SCHEDULE) == 86400
    assert next_interval(600, PollResult("ok", 10, 10), SCHEDULE) == 600
    assert next_interval(2700, PollResult("HTTP 500"), SCHEDULE) == 2700
    assert next_interval(1800, PollResult("ok", 10, 10), SCHEDULE, first_poll=True) == 1800
    interval = 1800.0
    for _ in range(30):  # a feed that never changes settles at the maximum
        interval = next_interval(interval, PollResult("unchanged"), SCHEDULE)
    assert interval == 86400
    assert [format_duration(s) for s in (45, 2700, 5400, 86400, None)] == ["45s", "45m", "1h30m", "1d", "-"]


# -- triggers and groups ---------------------------------------------------------------------


def test_cron_weekday_numbers_mean_what_crontab_says():
    saturday = datetime(2026, 3, 7, 12, 0).astimezone()
    weekdays = cron_trigger("0 8 * * 1-5").get_next_fire_time(None, saturday)
    assert weekdays.strftime("%A %H:%M") == "Monday 08:00"
    sundays = cron_trigger("30 6 * * 0").get_next_fire_time(None, saturday)
    assert sundays.strftime("%A %H:%M") == "Sunday 06:30"
    assert cron_trigger("0 6 * * 7").get_next_fire_time(None, saturday).strftime("%A") == "Sunday"
    with pytest.raises(ValueError):
        cron_trigger("0 8 * *")


def test_sources_due_together_share_one_job():
    config = Config(
        path="x.toml",
        sources=(
            Source("a", "http://a.example/feed"),
            Source("b", "http://b.example/feed"),
            Source("c", "http://c.example/feed", interval=300.0),
            Source("d", "http://d.example/feed", cron="0 */2 * * *"),
            Source("e", "http://e.example/feed", cron="0  */2 * * *"),
            Source("off", "http://f.example/feed", enabled=False),
        ),
    )
    groups = group_sources(config, {})
    assert groups == {
        ("interval", "1800"): ("a", "b"),
        ("interval", "300"): ("c",),
        ("cron", "0 */2 * * *"): ("d", "e"),
    }
    # an adaptive source that backed off moves to its own job
    assert group_sources(config, {"b": 2700.0})[("interval", "2700")] == ("b",)


def test_crawl_of_named_sources_only(tmp_path):
    config = load_config(write_config(tmp_path, "http://127.0.0.1:9"))
    assert [s.name for s in select_sources(config, ["Atom"]).sources] == ["Atom"]
    with pytest.raises(ScheduleError, match="no source named 'Nope'"):
        select_sources(config, ["Nope"])


def test_invalid_cron_expression_is_reported_at_start(tmp_path):
    config = tmp_path / "armswatch.toml"
    config.write_text('[[sources]]\nname = "A"\nurl = "http://127.0.0.1:9/feed.xml"\ncron = "61 * * * *"\n')
    result = run_armswatch("schedule", "--config", str(config), "--max-runs", "1", timeout=30)
    assert result.returncode != 0
    assert "source 'A': cron '61 * * * *'" in result.stderr


# -- the lock --------------------------------------------------------------------------------

HOLDER = """
import sys, time
from crawler.locking import crawl_lock
with crawl_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_lock_is_waited_for_then_refused_naming_the_holder(tmp_path):
    db = tmp_path / "x.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(LockHeld) as refused:
            crawl_lock(db, wait=0.5).acquire()
        assert time.monotonic() - started >= 0.5
        assert f"another crawl (pid {holder.pid}, started " in str(refused.value)
        assert str(refused.value).endswith(f"holds {db}.lock")

        holder.send_signal(signal.SIGKILL)  # dies without releasing anything
        holder.wait()
        lock = crawl_lock(db, wait=0).acquire()  # taken over at once: no stale lock
        assert lock.took_over and f"pid {holder.pid}" in lock.took_over
        lock.release()
    finally:
        holder.kill()
        holder.wait()


def test_killed_runs_left_running_are_closed(tmp_path):
    with ArticleStore(tmp_path / "x.db") as store:
        dead = store.start_run("cron", 2, pid=999_999)
        other = store.start_run("schedule", 2, pid=888_888)
        assert store.abandon_runs("timeout", pid=888_888) == [other]
        assert store.abandon_runs("killed") == [dead]
        reasons = {r["id"]: r["exit_reason"] for r in store.query("select * from crawl_runs")}
        ended = store.query("select count(*) as n from crawl_runs where ended_at is not null")[0]["n"]
    assert reasons == {dead: "killed", other: "timeout"} and ended == 2


def test_a_killed_runs_row_says_what_it_stored_and_when_it_last_wrote(tmp_path):
    """Not the time the next crawl found it dead, maybe hours later, and no empty counts."""
    from crawler.items import Article, ProcessedArticle

    with ArticleStore(tmp_path / "x.db") as store:
        killed = store.start_run("cron", 1, pid=999_999)
        for slug in ("one", "two"):
            url = f"https://news.example.org/{slug}"
            article = Article(url=url, canonical_url=url, title=slug, text=f"The {slug} story.", language="en")
            store.save_article(ProcessedArticle(page_url=url, source="wire", article=article), lambda rule: [])
        store.record_error(killed, "wire", "https://news.example.org/three", "timeout", "timed out")
        last_write = store.query_one("select max(at) as t from fetch_errors")["t"]
        time.sleep(1.1)  # the next crawl finds it later
        store.abandon_runs("killed")
        row = store.query_one("select * from crawl_runs where id = ?", [killed])
    assert (row["articles_stored"], row["errors"], row["exit_reason"]) == (2, 1, "killed")
    assert row["ended_at"] == last_write


# -- cron citizen ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["not sqlite", "directory"])
def test_crawl_refuses_an_unusable_database(site, tmp_path, kind):
    db = tmp_path / "x.db"
    if kind == "directory":
        db.mkdir()
    else:
        db.write_bytes(b"this is not a database, just text " * 200)
    result = run_armswatch("crawl", "--feed", f"{site.base_url}/feed.xml", "--db", str(db), timeout=60)
    assert result.returncode == 2
    assert "armswatch: error:" in result.stderr and str(db) in result.stderr
    assert not [p for p in site.request_log if p.startswith("/articles/")]


def test_crawl_is_quiet_and_exits_zero_when_a_source_fails(site, tmp_path):
    result = run_armswatch(
        "crawl", "--feed", f"{site.base_url}/feed.xml", "--feed", f"{site.base_url}/missing.xml",
        "--db", str(tmp_path / "x.db"), "--trigger", "cron",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("armswatch: 2 sources")
    # what is printed on stderr is about the failure, nothing else
    assert all("missing.xml" in line for line in result.stderr.splitlines()), result.stderr
    assert rows(tmp_path / "x.db", "select trigger from crawl_runs") == [{"trigger": "cron"}]


def test_crawl_waits_for_a_running_crawl_then_gives_up_with_a_message(site, tmp_path):
    db = tmp_path / "x.db"
    with crawl_lock(db):
        result = run_armswatch("crawl", "--feed", f"{site.base_url}/feed.xml", "--db", str(db), "--lock-wait", "1", timeout=60)
    assert result.returncode == 75
    assert f"another crawl (pid {os.getpid()}, started " in result.stderr and f"holds {db}.lock" in result.stderr
    assert site.request_log == []


def test_two_crawls_of_one_database_never_overlap(site, tmp_path):
    config = write_config(tmp_path, site.base_url, crawl="lock_wait = 60")
    first = armswatch_process("crawl", "--config", str(config), "--source", "Gazette")
    second = armswatch_process("crawl", "--config", str(config), "--source", "Atom")
    outputs = [p.communicate(timeout=120) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    runs = rows(tmp_path / "x.db", "select started_at, ended_at, exit_reason, pid from crawl_runs order by started_at")
    assert [r["exit_reason"] for r in runs] == ["finished", "finished"]
    assert runs[0]["ended_at"] <= runs[1]["started_at"]
    assert rows(tmp_path / "x.db", "select count(*) as n from articles")[0]["n"] == 4


# -- the daemon ------------------------------------------------------------------------------


def test_daemon_runs_on_schedule_shares_runs_and_stops_cleanly_on_sigterm(site, tmp_path):
    config = write_config(tmp_path, site.base_url, schedule="interval = 2\njitter = 0\nmin_interval = 1\nmax_interval = 8")
    db = tmp_path / "x.db"
    daemon = armswatch_process("schedule", "--config", str(config))
    try:
        finished = "select * from crawl_runs where exit_reason = 'finished' order by id"
        wait_for(lambda: len(rows_if_ready(db, finished)) >= 2, 90, "two scheduled runs")
        # stop it while a run is going, if we catch one: the run must still commit
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not rows(db, "select 1 from crawl_runs where exit_reason = 'running'"):
            time.sleep(0.05)
        out, err = stop_daemon(daemon)
    finally:
        kill_if_running(daemon)
    assert daemon.returncode == 0, err
    assert "stopping after the current run" in err and "stopped after" in err
    runs = rows(db, "select * from crawl_runs order by id")
    assert len(runs) >= 2 and all(r["exit_reason"] == "finished" for r in runs)
    assert all(r["trigger"] == "schedule" and r["sources"] == 2 for r in runs)  # due together, one run
    assert all(a["ended_at"] <= b["started_at"] for a, b in zip(runs, runs[1:]))
    assert rows(db, "select count(*) as n from articles")[0]["n"] == 4
    assert out.count("armswatch: 2 sources") == len(runs)  # each run's one-line summary
    # later polls found nothing new: both feeds backed off from 2 s (1.5x per run, at most 8 s)
    intervals = {r["poll_interval"] for r in rows(db, "select poll_interval from source_health")}
    assert len(intervals) == 1 and 3 <= intervals.pop() <= 8
    listing = run_armswatch("sources", "--db", str(db), timeout=60).stdout
    assert "poll every" in listing and f"{3 if len(runs) == 2 else 4}s" in listing


def test_daemon_takes_up_an_edited_config_and_survives_a_broken_one(site, tmp_path):
    config = tmp_path / "armswatch.toml"
    head = '[crawl]\ndb = "x.db"\nextraction_workers = 1\ndownload_delay = 0\n\n[schedule]\ninterval = 3600\n\n'
    gazette = f'[[sources]]\nname = "Gazette"\nurl = "{site.base_url}/feed.xml"\n\n'
    config.write_text(head + gazette)
    db = tmp_path / "x.db"
    daemon = armswatch_process("schedule", "--config", str(config))
    log: list[str] = []  # the daemon's stderr, read as it comes
    reader = threading.Thread(target=lambda: log.extend(iter(daemon.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        finished = "select * from crawl_runs where exit_reason = 'finished' order by id"
        wait_for(lambda: len(rows_if_ready(db, finished)) >= 1, 90, "the first run")
        config.write_text(head + gazette + "[[sources]]\nname = Atom without quotes\n")  # broken: kept running
        daemon.send_signal(signal.SIGHUP)  # read it now (after the current run); the fixed file is noticed by itself
        wait_for(lambda: any("config not reloaded" in line for line in log), 90, "the broken config to be refused")
        config.write_text(head + gazette + f'[[sources]]\nname = "Atom"\nurl = "{site.base_url}/atom.xml"\n')
        atom = "select * from source_health where source = 'Atom' and last_attempt is not null"
        wait_for(lambda: rows_if_ready(db, atom), 60, "the added source to be crawled")
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        kill_if_running(daemon)
    err = "".join(log)
    assert daemon.returncode == 0, err
    refused = next(line for line in log if "config not reloaded" in line)
    assert "keeping the running one" in refused and "armswatch.toml:" in refused
    assert "config reloaded from" in err
    runs = rows(db, "select sources from crawl_runs order by id")
    assert runs[0]["sources"] == 1 and runs[1]["sources"] == 2  # the new source joins its interval group
    assert rows(db, "select count(*) as n from articles where source = 'Atom'")[0]["n"] >= 1


class SlowArticleHandler(SiteHandler):
    """One article answers only when the test releases it: a crawl that hangs."""

    release = threading.Event()

    def send_head(self):  # type: ignore[override]
        if self.path.startswith("/articles/harvest-report.html"):
            self.release.wait(timeout=60)
        return super().send_head()

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the crawl that asked was killed meanwhile


@pytest.fixture
def slow_site():
    SlowArticleHandler.release = threading.Event()
    with SiteServer(FIXTURES / "site", handler=SlowArticleHandler) as server:
        yield server
        SlowArticleHandler.release.set()


def test_run_killed_by_timeout_leaves_a_consistent_database_the_next_run_completes(slow_site, tmp_path):
    config = write_config(
        tmp_path, slow_site.base_url, crawl="run_timeout = 8", schedule="jitter = 0\nkill_grace = 1"
    )
    db = tmp_path / "x.db"
    daemon = run_armswatch("schedule", "--config", str(config), "--max-runs", "1", timeout=90)
    assert daemon.returncode == 0, daemon.stderr
    assert "timed out" in daemon.stderr

    assert rows(db, "pragma integrity_check") == [{"integrity_check": "ok"}]
    run = rows(db, "select * from crawl_runs")
    assert len(run) == 1 and run[0]["exit_reason"] in ("timeout", "shutdown")
    stored = rows(db, "select a.url, a.text, a.title, (select count(*) from article_urls u where u.article_id = a.id) as aliases from articles a")
    assert 0 < len(stored) < 4  # cut short mid-run
    assert all(a["text"] and a["title"] and a["aliases"] >= 1 for a in stored)  # no half article
    assert not any(a["url"].endswith("harvest-report.html") for a in stored)

    SlowArticleHandler.release.set()
    again = run_armswatch("crawl", "--config", str(config), timeout=90)
    assert again.returncode == 0, again.stderr
    urls = sorted(r["url"].rsplit("/", 1)[1] for r in rows(db, "select url from articles"))
    assert urls == ["coree-obus.html", "harvest-report.html", "iran-drones.html", "museo-apertura.html"]
    assert rows(db, "pragma integrity_check") == [{"integrity_check": "ok"}]
    assert rows(db, "select count(*) as n from articles_fts")[0]["n"] == 4


def test_a_slot_missed_while_the_machine_slept_is_said_not_silently_skipped(tmp_path, caplog):
    from datetime import timedelta, timezone

    from crawler.scheduling import CrawlScheduler, _job_id

    config = Config(path=str(tmp_path / "x.toml"), sources=(Source("daily", "http://a.example/feed", cron="30 6 * * *"),))
    scheduler = CrawlScheduler(config)
    key = ("cron", "30 6 * * *")
    scheduler.groups = {key: ("daily",)}
    scheduler.scheduler.start()
    try:
        with caplog.at_level("WARNING", logger="crawler.scheduling"):
            scheduler.scheduler.add_job(scheduler.due, "date", run_date=datetime.now(timezone.utc) - timedelta(hours=3),
                                        args=[key], id=_job_id(key), misfire_grace_time=600)
            for _ in range(50):
                if "was missed" in caplog.text:
                    break
                time.sleep(0.1)
    finally:
        scheduler.scheduler.shutdown(wait=False)
    assert "daily: the run due at" in caplog.text and "was missed by more than misfire_grace_time" in caplog.text
    assert scheduler.pending == []  # skipped, as documented, not run late
