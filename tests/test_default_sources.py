"""The shipped default source list: every entry is usable as written, and its provenance rules hold.

Runs over every [[sources]] table automatically, so a source added to the list cannot skip these checks.
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from urllib.parse import urlsplit

import courlan
import py3langid.langid
import pytest

from crawler.config import SOURCE_TYPES, default_sources_path, load_config, parse_duration
from crawler.urls import is_fetchable_url

PATH = default_sources_path()
SOURCES: list[dict] = tomllib.loads(PATH.read_text(encoding="utf-8"))["sources"]
AGGREGATOR_HOSTS = {"news.google.com"}
STATE_MEDIA_NAME = re.compile(r"\b(TASS|RIA|IRNA|Tasnim)\b")

# Section A of real-sources.md, per language: nothing may be dropped silently.
SECTION_A_LANGUAGES = {"en": 24, "uk": 7, "ru": 6, "fr": 4, "de": 4, "it": 3, "es": 3, "ko": 2, "fa": 3, "ar": 4}

# Section C: checked and rejected; these must never come back as defaults.
REJECTED_URLS = [
    "https://en.yna.co.kr/RSS/northkorea.xml",
    "https://kyivindependent.com/feed",
    "https://kyivindependent.com/rss/",
    "https://www.middleeasteye.net/rss",
    "https://kcnawatch.org/feed/",
    "https://www.mehrnews.com/rss",
    "https://www.janes.com/defence/rss",
]
REJECTED_HOSTS = {"feeds.reuters.com", "xml2.corriereobjects.it", "www.meta-defense.fr", "meta-defense.fr"}


def detectable_languages() -> set[str]:
    """ISO 639-1 codes the project's language detector (py3langid) can return."""
    py3langid.langid.classify("warm-up")
    return {code for code in py3langid.langid.IDENTIFIER.nb_classes if len(code) == 2}


def same_feed_key(url: str) -> str:
    """Lenient normalisation: host case, default port, fragment. Feed queries are kept (they select the feed)."""
    return courlan.normalize_url(url, strict=False)


def is_aggregator(source: dict) -> bool:
    return urlsplit(source["url"]).hostname in AGGREGATOR_HOSTS


@pytest.fixture(scope="module")
def languages() -> set[str]:
    return detectable_languages()


@pytest.mark.parametrize("source", SOURCES, ids=[s.get("name", "?") for s in SOURCES])
def test_every_source_is_well_formed(source: dict, languages: set[str]) -> None:
    valid, parts = courlan.validate_url(source["url"])
    assert valid and parts.scheme in ("http", "https"), source["url"]
    assert is_fetchable_url(source["url"])
    assert source["type"] in SOURCE_TYPES
    assert source["language"] in languages, f"{source['language']!r} is not a language armswatch can detect"
    assert re.fullmatch(r"[A-Z]{2}", source["country"]) and source["country"] != "UK", "ISO 3166-1: GB, not UK"
    assert source["section"].strip()
    assert isinstance(source["state_affiliated"], bool) and isinstance(source["enabled"], bool)
    assert source["notes"].startswith("evidence:"), "say who saw this URL working, and when"
    if "user_agent" in source:
        assert source["user_agent"].startswith("Mozilla/5.0") and "armswatch" in source["user_agent"]
    if "max_items" in source:
        assert isinstance(source["max_items"], int) and source["max_items"] >= 1
    if "interval" in source:
        assert 300 <= parse_duration(source["interval"]) <= 86400
    if "sitemap" in source["url"]:
        assert source["type"] == "sitemap"


def test_names_and_urls_are_unique() -> None:
    names = Counter(s["name"] for s in SOURCES)
    urls = Counter(same_feed_key(s["url"]) for s in SOURCES)
    assert [n for n, c in names.items() if c > 1] == []
    assert [u for u, c in urls.items() if c > 1] == []


def test_every_section_a_source_ships_enabled_grouped_by_language() -> None:
    own_feeds = [s for s in SOURCES if not is_aggregator(s)]
    assert all(s["enabled"] for s in own_feeds)
    assert Counter(s["language"] for s in own_feeds) == SECTION_A_LANGUAGES
    order = [s["language"] for s in own_feeds]
    blocks = [lang for i, lang in enumerate(order) if i == 0 or order[i - 1] != lang]
    assert len(blocks) == len(set(blocks)), f"languages are not grouped: {blocks}"


def test_aggregator_fallbacks_ship_disabled_and_nothing_else_is_disabled() -> None:
    fallbacks = [s["name"] for s in SOURCES if is_aggregator(s)]
    disabled = [s["name"] for s in SOURCES if not s["enabled"]]
    assert len(fallbacks) == 3
    assert disabled == fallbacks
    text = PATH.read_text(encoding="utf-8")
    for name in fallbacks:
        table = text[text.index(f'name = "{name}"') :].split("[[sources]]")[0]
        assert re.search(r"^enabled = false\s+#\s*\S", table, re.M), f"{name}: say why it is disabled"


def test_state_media_are_flagged() -> None:
    named = [s for s in SOURCES if STATE_MEDIA_NAME.search(s["name"])]
    assert len(named) == 6  # TASS en/ru, RIA Novosti, IRNA en/fa, Tasnim
    assert all(s["state_affiliated"] for s in named)
    dsca = next(s for s in SOURCES if s["url"].startswith("https://www.dsca.mil/"))
    assert dsca["state_affiliated"], "an official government feed is state-affiliated"
    assert not next(s for s in SOURCES if s["name"] == "Kyiv Independent")["state_affiliated"]


def test_high_volume_agency_feeds_are_capped_and_blocking_hosts_get_a_user_agent() -> None:
    by_name = {s["name"]: s for s in SOURCES}
    for name in ("TASS", "RIA Novosti"):
        assert by_name[name]["max_items"] <= 200
    for name in ("TASS", "TASS (English)", "Breaking Defense"):
        assert "user_agent" in by_name[name], f"{name} returns 403 to library user agents"


def test_rejected_sources_are_not_shipped() -> None:
    shipped = {same_feed_key(s["url"]) for s in SOURCES}
    assert not shipped & {same_feed_key(u) for u in REJECTED_URLS}
    assert not {urlsplit(s["url"]).hostname for s in SOURCES} & REJECTED_HOSTS


def test_the_config_loader_accepts_the_list_as_shipped() -> None:
    config = load_config(PATH)
    assert [s.name for s in config.sources] == [s["name"] for s in SOURCES]
    assert len(config.enabled_sources) == sum(SECTION_A_LANGUAGES.values())
    tass = next(s for s in config.sources if s.name == "TASS")
    assert tass.state_affiliated and tass.max_items == 100 and tass.interval == 900.0
