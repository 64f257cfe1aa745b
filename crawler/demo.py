"""`armswatch demo`: the whole product on the bundled offline news site, in one command.

Serves crawler/demo_site from 127.0.0.1 on a free port, crawls it into a fresh
database, writes alert emails as .eml files (no SMTP needed), and prints where
everything is. The crawl runs in a subprocess, exactly as the scheduler runs it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import click

from crawler.demo_server import SiteServer, demo_site_path

# One source of every type, so the demo shows each at work; articles listed by several
# sources are fetched and stored once.
DEMO_SOURCES = [
    ("Demo Wire (RSS 2.0)", "feed.xml", "feed", ""),
    ("Europa Rundschau (Atom)", "atom.xml", "feed", ""),
    ("Demo Wire (RSS 1.0)", "rss1.xml", "feed", ""),
    ("Demo Wire (JSON Feed)", "feed.json", "feed", ""),
    ("Demo Wire (news sitemap)", "sitemap.xml", "sitemap", ""),
    ("Demo Wire world section", "section/world.html", "page", "max_pages = 2"),
    ("Demo Wire homepage", "index.html", "homepage", ""),
]


def demo_config_text(base_url: str, out_dir: Path) -> str:
    """A config file for the demo site, as a user would write it."""
    lines = [
        "# armswatch demo config, written by `armswatch demo`",
        "[crawl]",
        f'db = "{(out_dir / "armswatch.db").resolve()}"',
        "download_delay = 0",
        "",
        "[alerts]",
        "# no smtp_host: alert emails are written as .eml files",
        f'outbox_dir = "{(out_dir / "outbox").resolve()}"',
        "",
        "[[alerts.recipients]]",
        'address = "analyst@example.org"',
        'mode = "instant"',
        "",
    ]
    for name, path, kind, extra in DEMO_SOURCES:
        lines += ["[[sources]]", f'name = "{name}"', f'url = "{base_url}/{path}"', f'type = "{kind}"', extra, ""]
    return "\n".join(lines)


def run_demo(out_dir: Path) -> None:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    with SiteServer(demo_site_path()) as server:
        config_path = out_dir / "demo.toml"
        config_path.write_text(demo_config_text(server.base_url, out_dir), encoding="utf-8")
        click.echo(f"demo site: {server.base_url}/ (serving {demo_site_path()})")
        result = subprocess.run(
            [sys.executable, "-m", "crawler.cli", "crawl", "--config", str(config_path), "--trigger", "demo"],
            timeout=600,
        )
    db = out_dir / "armswatch.db"
    from storage.store import ArticleStore

    with ArticleStore(db) as store:
        articles = store.query("select count(*) as n from articles")[0]["n"]
        flagged = store.query(
            "select a.title, a.language, m.suppliers, m.recipients, m.weapons from matches m"
            " join articles a on a.id = m.article_id order by m.id"
        )
    click.echo(f"\n{articles} articles stored, {len(flagged)} flagged as arms-procurement stories:")
    for row in flagged:
        click.echo(f"  [{row['language']}] {row['title']}  suppliers={row['suppliers']} recipients={row['recipients']} weapons={row['weapons']}")
    click.echo(f"\ndatabase: {db.resolve()}")
    click.echo(f"config:   {config_path.resolve()}")
    click.echo(f"browse:   armswatch browse --db {db}")
    if result.returncode != 0:
        raise SystemExit(result.returncode)
