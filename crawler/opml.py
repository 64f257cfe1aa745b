"""OPML (an RSS reader's export) -> [[sources]] entries for the TOML config.

Readers nest feeds in folders; every outline with an `xmlUrl` (in any letter case, or a `url`
on an outline typed rss or atom) is a feed, at any depth. The file must be well-formed XML:
a reader that recovered from a stray `&` or a cut-off file would drop feeds without a word, so
the error names the line instead.
The output is TOML text a user can read before it goes into the config: when a config
file is given, feeds whose URL it already lists are skipped, names are kept unique, and
the file is only written if it still loads afterwards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from crawler.config import ConfigError, load_config
from crawler.safe_text import one_line
from crawler.urls import canonical_url, url_problem, without_password

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
FEED_TYPES = {"rss", "atom", "feed"}


class OpmlError(ValueError):
    """The file is not an OPML document we can read."""


@dataclass(frozen=True)
class OpmlFeed:
    name: str
    url: str  # "" for a feed outline that names no URL
    folder: str | None = None


@dataclass(frozen=True)
class OpmlImport:
    toml: str  # the [[sources]] tables for the new feeds ("" when none)
    added: tuple[OpmlFeed, ...]
    skipped: tuple[tuple[str, str], ...]  # (url, reason)


def parse_opml(data: bytes) -> list[OpmlFeed]:
    """Every feed outline (an outline with xmlUrl), depth first, with its folder path."""
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        line = f"line {exc.lineno}: " if exc.lineno else ""
        raise OpmlError(f"{line}not well-formed XML, nothing imported ({exc.msg})") from None
    if root is None or root.tag != "opml":
        raise OpmlError("not an OPML file (no <opml> root element)")
    feeds: list[OpmlFeed] = []

    def walk(element: etree._Element, folders: tuple[str, ...]) -> None:
        for outline in element.iterchildren("outline"):
            attributes = {name.lower(): value for name, value in outline.attrib.items()}
            label = one_line(attributes.get("title") or attributes.get("text") or "")  # an OPML title is the web's text too
            typed_feed = attributes.get("type", "").lower() in FEED_TYPES
            is_feed = "xmlurl" in attributes or typed_feed
            url = (attributes.get("xmlurl") or "").strip()
            if not url and typed_feed:
                url = (attributes.get("url") or "").strip()
            if is_feed:
                feeds.append(OpmlFeed(name=label or url, url=url, folder=" / ".join(folders) or None))
            walk(outline, folders + ((label,) if label and not is_feed else ()))

    body = root.find("body")
    walk(body if body is not None else root, ())
    return feeds


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes); keep non-ASCII readable.
    return json.dumps(value, ensure_ascii=False)


def sources_toml(feeds: list[OpmlFeed]) -> str:
    blocks = []
    for feed in feeds:
        lines = ["[[sources]]", f"name = {_toml_string(feed.name)}", f"url = {_toml_string(feed.url)}", 'type = "feed"']
        if feed.folder:
            lines.append(f"section = {_toml_string(feed.folder)}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def import_opml(opml_path: str | Path, config_path: str | Path | None = None) -> OpmlImport:
    """Turn an OPML file into [[sources]] TOML; with a config, skip what it has and append the rest."""
    feeds = parse_opml(Path(opml_path).read_bytes())
    names: set[str] = set()
    urls: set[str] = set()
    if config_path is not None and Path(config_path).exists():
        config = load_config(config_path)
        names = {s.name for s in config.sources}
        urls = {canonical_url(s.url) for s in config.sources}
    added: list[OpmlFeed] = []
    skipped: list[tuple[str, str]] = []
    listed: set[str] = set()
    for feed in feeds:
        if not feed.url:
            skipped.append((feed.name or "(an outline without a name)", "a feed outline without xmlUrl"))
            continue
        problem = url_problem(feed.url)
        if problem:
            skipped.append((without_password(feed.url), problem))
            continue
        address = canonical_url(feed.url)  # one feed however it is spelt: "/лента" or "/%D0%BB%D0%B5…"
        if address in listed:
            skipped.append((feed.url, "listed twice in the file"))
            continue
        listed.add(address)
        if address in urls:
            skipped.append((feed.url, "already a source"))
            continue
        name, n = feed.name, 2
        while name in names:
            name, n = f"{feed.name} ({n})", n + 1
        names.add(name)
        urls.add(address)
        added.append(OpmlFeed(name=name, url=feed.url, folder=feed.folder))
    text = sources_toml(added)
    if config_path is not None and added:
        _append(Path(config_path), text)
    return OpmlImport(toml=text, added=tuple(added), skipped=tuple(skipped))


def _append(path: Path, text: str) -> None:
    """Append to the config, and put the old text back if the result would not load."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    separator = "" if not old else ("\n" if old.endswith("\n") else "\n\n")
    path.write_text(old + separator + "# imported from OPML\n" + text, encoding="utf-8")
    try:
        load_config(path)
    except ConfigError:
        path.write_text(old, encoding="utf-8")
        raise
