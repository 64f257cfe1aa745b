"""The `armswatch` command: a thin layer over documented Python functions.

Each command parses options, calls one function of the module that owns the work,
and prints. Errors users can fix (bad config, unusable database) exit non-zero with a
message naming the file and line; nothing here holds logic of its own.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

from crawler.config import Config, ConfigError, Source, config_from_sources, default_sources_path, load_config
from storage.store import StoreError


def fail(message: str, code: int = 2) -> None:
    click.echo(f"armswatch: error: {message}", err=True)
    sys.exit(code)


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
            from crawler.urls import is_fetchable_url

            if not is_fetchable_url(url):
                fail(f"--{kind} {url!r}: only absolute http(s) URLs can be crawled")
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
@click.option("--trigger", default="manual", hidden=True, help="Who started the run (manual, cron, schedule).")
@click.option("-v", "--verbose", is_flag=True, help="Log every request; default is quiet (cron-friendly).")
def crawl(config_path, feeds, sitemaps, pages, db, refresh, trigger, verbose) -> None:
    """Crawl the configured sources once and store new articles and matches."""
    from crawler.crawl import run_crawl

    config = resolve_config(config_path, feeds, sitemaps, pages, db)
    if not config.enabled_sources:
        fail(f"{config.path}: no enabled sources to crawl")
    try:
        summary = run_crawl(config, trigger=trigger, refresh=refresh, verbose=verbose)
    except StoreError as exc:
        fail(str(exc))
    click.echo(summary.one_line(config.crawl.db))
    if not summary.completed:
        sys.exit(1)


@cli.command()
@click.option("--dir", "out_dir", default="demo-output", show_default=True, help="Where the demo database and outbox go.")
def demo(out_dir: str) -> None:
    """Serve the bundled demo news site on 127.0.0.1, crawl it into a fresh database, summarise."""
    from crawler.demo import run_demo

    run_demo(Path(out_dir))


@cli.command()
@click.argument("file_or_url")
@click.option("--json", "as_json", is_flag=True, help="Print the article as JSON.")
def extract(file_or_url: str, as_json: bool) -> None:
    """Extract and clean the article of an HTML file or http(s) URL."""
    from crawler.extraction import article_report, extract_article, load_source

    try:
        body, url, headers = load_source(file_or_url)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    article = extract_article(body, url, headers)
    if article is None:
        fail(f"{file_or_url}: no article text found", code=1)
    click.echo(article_report(article, as_json))


@cli.command()
@click.argument("file", type=click.File("rb"))
@click.option("--rules", "rule_specs", multiple=True, help="Rule set name or TOML file (default: arms-procurement).")
@click.option("--json", "as_json", is_flag=True)
def match(file, rule_specs, as_json: bool) -> None:
    """Show which rules flag a text or HTML file (or - for standard input), and why."""
    from crawler.rules import RuleFileError, format_matches, load_rules

    data = file.read()
    try:
        rules = load_rules(rule_specs or ("arms-procurement",))
    except RuleFileError as exc:
        fail(str(exc))
    title, text, language = None, data.decode("utf-8", "replace"), None
    if data.lstrip()[:1] == b"<":
        from crawler.extraction import extract_article

        article = extract_article(data, f"file://{getattr(file, 'name', 'stdin')}")
        if article is not None:
            title, text, language = article.title, article.text, article.language
    click.echo(format_matches(rules.match(title, text, language), as_json))


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False))
@click.option("--db", help="SQLite database.")
@click.option("--rule", "rule_names", multiple=True, help="Only re-run this rule (repeatable).")
def rematch(config_path, db, rule_names) -> None:
    """Re-run the rules over every stored article after a rule edit; print what changed."""
    from crawler.rematch import rematch_store

    config = resolve_config(config_path, db=db) if config_path else config_from_sources([], db=db or "armswatch.db")
    try:
        added, removed = rematch_store(config, rule_names, echo=click.echo)
    except StoreError as exc:
        fail(str(exc))
    click.echo(f"rematch: {added} matches added, {removed} removed")


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
        click.echo(health_table(config.crawl.db))


@sources.command("check")
@click.option("--timeout", default=15.0, show_default=True, help="Seconds per source.")
@click.option("--stale-days", default=14.0, show_default=True, help="Newest item older than this: stale.")
@click.pass_context
def sources_check(ctx, timeout: float, stale_days: float) -> None:
    """Fetch every configured source once and print whether it is alive (exits 0 even offline)."""
    from crawler.source_check import check_sources, check_table

    config = resolve_config(ctx.obj["config_path"], db=ctx.obj["db"])
    results = check_sources(config.enabled_sources, config.crawl.user_agent, timeout, stale_days)
    click.echo(check_table(results))


def main() -> None:
    cli(prog_name="armswatch")


if __name__ == "__main__":
    main()
