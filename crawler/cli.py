"""The `armswatch` command: a thin layer over documented Python functions.

Each command parses options, calls one function of the module that owns the work,
and prints. Errors users can fix (bad config, unusable database) exit non-zero with a
message naming the file and line; nothing here holds logic of its own.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from crawler.config import Config, ConfigError, Source, config_from_sources, default_sources_path, load_config
from crawler.safe_text import shown
from storage.store import StoreError


def echo(text: object = "", err: bool = False, nl: bool = True) -> None:
    """Print what may quote the web (a title, a server's answer, a URL): its control characters
    are shown as escapes, not obeyed by the terminal (crawler.safe_text)."""
    click.echo(shown(text), err=err, nl=nl)


def fail(message: str, code: int = 2) -> None:
    echo(f"armswatch: error: {message}", err=True)
    sys.exit(code)


def counted(n: int, noun: str) -> str:
    """'1 article', '3 articles'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def resolve_config(config_path: str | None, feeds=(), sitemaps=(), pages=(), db: str | None = None) -> Config:
    """The config a command works on: --config FILE, ad-hoc --feed/--sitemap/--page URLs, or the default list."""
    try:
        if config_path:
            config = load_config(config_path)
        elif not (feeds or sitemaps or pages):
            config = load_config(default_sources_path())
            config = config_from_sources(list(config.sources), db=db or "armswatch.db", base=config)
        else:
            config = Config(path="<command line>")
    except ConfigError as exc:
        fail(str(exc))
    adhoc: list[Source] = []
    for kind, urls in (("feed", feeds), ("sitemap", sitemaps), ("page", pages)):
        for url in urls:
            from crawler.urls import url_problem, without_password

            problem = url_problem(url)
            if problem:
                fail(f"--{kind} {without_password(url)!r} cannot be crawled: {problem}")
            adhoc.append(Source(name=url, url=url, type=kind))
    if adhoc:
        config = config_from_sources(list(config.sources) + adhoc, db=db, base=config)
    elif db:
        config = config_from_sources(list(config.sources), db=db, base=config)
    return config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="armswatch")
def cli() -> None:
    """armswatch: monitor news sources for arms-transfer stories."""


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file (default: the shipped source list).")
@click.option("--feed", "feeds", multiple=True, help="An RSS/Atom/JSON feed URL to crawl (repeatable).")
@click.option("--sitemap", "sitemaps", multiple=True, help="A (news) sitemap URL to crawl (repeatable).")
@click.option("--page", "pages", multiple=True, help="A section/listing page URL to crawl (repeatable).")
@click.option("--db", help="SQLite database (default: the config's [crawl].db).")
@click.option("--refresh", is_flag=True, help="Refetch known articles and record changed text as updates.")
@click.option("--source", "source_names", multiple=True, help="Crawl only this source of the config (repeatable).")
@click.option("--trigger", default="manual", help="Who started the run, recorded in crawl_runs (manual, cron, schedule).")
@click.option("--lock-wait", type=float, help="Seconds to wait for another crawl of the same database (default: [crawl].lock_wait).")
@click.option("-v", "--verbose", is_flag=True, help="Log every request; default is quiet (cron-friendly).")
def crawl(config_path, feeds, sitemaps, pages, db, refresh, source_names, trigger, lock_wait, verbose) -> None:
    """Crawl the configured sources once and store new articles and matches."""
    config = resolve_config(config_path, feeds, sitemaps, pages, db)
    from crawler.scheduling import ScheduleError, select_sources

    try:
        config = select_sources(config, source_names)
    except ScheduleError as exc:
        fail(str(exc))
    if not config.enabled_sources:
        fail(f"{config.path}: no enabled sources to crawl")
    from crawler.rules import RuleFileError, load_rules

    try:
        load_rules(config.crawl.rules)  # a broken rule file stops the run before anything is written
    except RuleFileError as exc:
        fail(str(exc))
    from crawler.extraction_server import start_extraction_server
    from crawler.locking import LockError, LockHeld, crawl_lock
    from storage.store import ArticleStore

    try:
        # One crawl per database at a time; the kernel drops the lock if this process dies.
        with crawl_lock(config.crawl.db, config.crawl.lock_wait if lock_wait is None else lock_wait):
            with ArticleStore(config.crawl.db) as store:  # unusable database: fail before Scrapy starts
                store.abandon_runs("killed")  # rows left 'running' by a crawl that was killed
            start_extraction_server()  # loads the extraction stack while Scrapy is imported and started
            from crawler.crawl import run_crawl

            summary = run_crawl(config, trigger=trigger, refresh=refresh, verbose=verbose)
    except LockHeld as exc:
        fail(str(exc), code=75)  # EX_TEMPFAIL: try again later
    except (LockError, StoreError) as exc:
        fail(str(exc))
    echo(summary.one_line(config.crawl.db))
    deliver_after_crawl(config)
    if not summary.completed:
        sys.exit(1)


def deliver_after_crawl(config: Config) -> None:
    """Instant alerts and due digests after a crawl; a delivery problem never changes the crawl's exit status."""
    from crawler.alerts import deliver_alerts, stop_between_emails
    from storage.store import ArticleStore

    with stop_between_emails() as stop:
        try:
            with ArticleStore(config.crawl.db) as store:
                report = deliver_alerts(config, store, stop_requested=stop)
        except Exception as exc:  # the crawl's data is safe in the outbox; `alerts send` retries
            echo(f"armswatch: alerts not delivered: {type(exc).__name__}: {exc}", err=True)
            return
    if report.emails or report.suppressed:
        for line in report.lines():
            echo(line)
    for line in report.failure_lines():
        echo(line, err=True)
    if stop.signum is not None:
        sys.exit(128 + stop.signum)


@cli.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="TOML config file.")
@click.option("--max-runs", type=click.IntRange(min=1), help="Stop after this many crawl runs (for a trial).")
@click.option("--until", "until", type=float, help="Stop after this many seconds (after the current run).")
def schedule(config_path, max_runs, until) -> None:
    """Run crawls on the configured intervals until SIGTERM/SIGINT, one subprocess per run."""
    from crawler.scheduling import ScheduleError, run_scheduler

    config = resolve_config(config_path)
    if not config.enabled_sources:
        fail(f"{config.path}: no enabled sources to schedule")
    try:
        code = run_scheduler(config, max_runs=max_runs, until=until)
    except (ScheduleError, StoreError) as exc:
        fail(str(exc))
    sys.exit(code)


@cli.command()
@click.option("--dir", "out_dir", default="demo-output", show_default=True, help="Where the demo database and outbox go.")
def demo(out_dir: str) -> None:
    """Serve the bundled demo news site on 127.0.0.1, crawl it into a fresh database, summarise."""
    from crawler.demo import run_demo

    run_demo(Path(out_dir))


@cli.command()
@click.argument("file_or_url")
@click.option("--json", "as_json", is_flag=True, help="Print the article as JSON.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file: its [crawl].user_agent is sent.")
def extract(file_or_url: str, as_json: bool, config_path: str | None) -> None:
    """Extract and clean the article of an HTML file or http(s) URL."""
    from crawler.extraction import article_report, extract_article, load_source
    from crawler.settings import USER_AGENT

    crawl = resolve_config(config_path).crawl if config_path else None
    try:
        body, url, headers = load_source(
            file_or_url,
            user_agent=crawl.user_agent if crawl else USER_AGENT,
            obey_robots=crawl.obey_robots if crawl else True,
            warn=lambda message: echo(f"armswatch: warning: {message}", err=True),
        )
    except (OSError, ValueError) as exc:
        fail(str(exc))
    article = extract_article(body, url, headers)
    if article is None:
        fail(f"{file_or_url}: no article text found", code=1)
    echo(article_report(article, as_json))


@cli.command()
@click.argument("file", type=click.File("rb"))
@click.option("--rules", "rule_specs", multiple=True, help="Rule set name or TOML file (default: arms-procurement).")
@click.option("--json", "as_json", is_flag=True)
def match(file, rule_specs, as_json: bool) -> None:
    """Show which rules flag a text or HTML file (or - for standard input), and why."""
    from crawler.rules import DEFAULT_RULE_SETS, RuleFileError, format_matches, load_rules

    data = file.read()
    try:
        rules = load_rules(rule_specs or DEFAULT_RULE_SETS)
    except RuleFileError as exc:
        fail(str(exc))
    from crawler.encoding import decode_html  # a text file saved as windows-1251 or UTF-16 too

    title, text, language = None, decode_html(data), None
    if data.lstrip()[:1] == b"<":
        from crawler.extraction import extract_article

        article = extract_article(data, f"file://{getattr(file, 'name', 'stdin')}")
        if article is not None:
            title, text, language = article.title, article.text, article.language
    echo(format_matches(rules.match(title, text, language), as_json))


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False))
@click.option("--db", help="SQLite database.")
@click.option("--rule", "rule_names", multiple=True, help="Only re-run this rule (repeatable).")
def rematch(config_path, db, rule_names) -> None:
    """Re-run the rules over every stored article after a rule edit; print what changed."""
    from crawler.rematch import rematch_store

    config = resolve_config(config_path, db=db) if config_path else config_from_sources([], db=db or "armswatch.db")
    try:
        added, removed = rematch_store(config, rule_names, echo=echo)
    except StoreError as exc:
        fail(str(exc))
    echo(f"rematch: {added} matches added, {removed} removed")


@cli.group(invoke_without_command=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False))
@click.option("--db", help="SQLite database.")
@click.pass_context
def sources(ctx, config_path, db) -> None:
    """The health of every source (last success, errors, new items)."""
    ctx.obj = {"config_path": config_path, "db": db}
    if ctx.invoked_subcommand is None:
        from crawler.health import health_table

        config = resolve_config(config_path, db=db)
        echo(health_table(config.crawl.db))


@sources.command("check")
@click.option("--timeout", default=15.0, show_default=True, help="Seconds per source.")
@click.option("--stale-days", default=14.0, show_default=True, help="Newest item older than this: stale.")
@click.pass_context
def sources_check(ctx, timeout: float, stale_days: float) -> None:
    """Fetch every configured source once and print whether it is alive (exits 0 even offline)."""
    from crawler.source_check import check_sources, check_table

    config = resolve_config(ctx.obj["config_path"], db=ctx.obj["db"])
    results = check_sources(config.enabled_sources, config.crawl.user_agent, timeout, stale_days,
                            per_host=config.crawl.concurrency_per_domain, obey_robots=config.crawl.obey_robots,
                            download_delay=config.crawl.download_delay)
    echo(check_table(results))


@sources.command("import")
@click.argument("opml_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Append the new feeds to this config (skips URLs it has).")
@click.pass_context
def sources_import(ctx, opml_file: str, config_path: str | None) -> None:
    """Turn an RSS reader's OPML export into [[sources]]: print them, or append them to --config."""
    from crawler.opml import OpmlError, import_opml

    config_path = config_path or ctx.obj["config_path"]
    try:
        result = import_opml(opml_file, config_path)
    except (OpmlError, OSError) as exc:
        fail(f"{opml_file}: {exc}")
    except ConfigError as exc:
        fail(str(exc))
    for url, reason in result.skipped:
        echo(f"# skipped {url}: {reason}", err=True)
    if config_path:
        echo(f"armswatch: {len(result.added)} feeds added to {config_path}, {len(result.skipped)} skipped")
    else:
        echo(result.toml, nl=False)


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file (its [crawl].db is served).")
@click.option("--db", help="SQLite database to browse (default: the config's [crawl].db).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on; keep it on loopback.")
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
def browse(config_path, db, host, port) -> None:
    """Browse the archive in Datasette: search, facets, saved queries, Atom feed, chart."""
    from crawler.browse import is_loopback, serve

    db = db or (resolve_config(config_path).crawl.db if config_path else "armswatch.db")
    if not is_loopback(host):
        echo(f"armswatch: warning: serving on {host} makes the archive readable by anyone who can reach it", err=True)
    try:
        serve(db, host=host, port=port, echo=echo)
    except (FileNotFoundError, StoreError) as exc:
        fail(str(exc))


@cli.group()
def alerts() -> None:
    """Alert emails: send what is pending and due, or check the SMTP settings."""


@alerts.command("send")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file with [alerts].")
@click.option("--db", help="SQLite database (default: the config's [crawl].db).")
def alerts_send(config_path, db) -> None:
    """Send pending alerts that are due (instant ones, digests at their time); retry failed sends."""
    from crawler.alerts import AlertConfigError, deliver_alerts, stop_between_emails, validate_alert_settings
    from crawler.locking import LockError
    from storage.store import ArticleStore

    config = resolve_config(config_path, db=db)
    with stop_between_emails() as stop:
        try:
            validate_alert_settings(config.alerts)
            with ArticleStore(config.crawl.db) as store:
                report = deliver_alerts(config, store, stop_requested=stop)
        except (AlertConfigError, StoreError, LockError) as exc:
            fail(str(exc))
    for line in report.lines():
        echo(line)
    for line in report.failure_lines():
        echo(line, err=True)
    if stop.signum is not None:
        sys.exit(128 + stop.signum)
    if not report.ok:
        sys.exit(1)


@alerts.command("test")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False), help="TOML config file with [alerts].")
@click.option("--to", "to", help="Send to this address instead of every configured recipient.")
def alerts_test(config_path, to) -> None:
    """Send a test message to check the [alerts] settings."""
    from crawler.alerts import AlertConfigError, send_test_message
    from crawler.mailer import DeliveryError

    config = resolve_config(config_path)
    try:
        places = send_test_message(config, to)
    except AlertConfigError as exc:
        fail(str(exc))
    except DeliveryError as exc:
        fail(f"test message not delivered: {exc}", code=1)
    for address, place in places:
        verb = "sent via" if place.startswith("smtp://") else "written to"
        echo(f"alerts: test message to {address} {verb} {place}")


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML config file (its [crawl].db).")
@click.option("--db", help="SQLite database (default: the config's [crawl].db).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="How many recent stories to list.")
@click.option("--assign", is_flag=True, help="First put stored articles that have no story yet into stories.")
def stories(config_path, db, limit, assign) -> None:
    """Recent story clusters: how many articles, outlets and languages report each."""
    from crawler.clustering import assign_unassigned, recent_stories
    from storage.store import ArticleStore

    config = resolve_config(config_path, db=db) if config_path else config_from_sources([], db=db or "armswatch.db")
    try:
        with ArticleStore(config.crawl.db) as store:
            if assign:
                echo(f"stories: {assign_unassigned(store)} articles assigned")
            for row in recent_stories(store, limit):
                alerted = " alerted" if row["alerted_at"] else ""
                echo(f"#{row['id']} {row['first_seen']} {counted(row['article_count'], 'article')},"
                           f" {counted(row['source_count'], 'source')} [{', '.join(row['languages'])}]{alerted}:"
                           f" {shown(row['headline'] or '', inline=True)}")
    except StoreError as exc:
        fail(str(exc))


def main() -> None:
    cli(prog_name="armswatch")


if __name__ == "__main__":
    main()
