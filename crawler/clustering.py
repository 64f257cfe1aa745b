"""One story, one alert: which story cluster a newly stored article belongs to, and why.

An article joins the story of an earlier article when
- its text is a near-duplicate (wire copy, same text under another URL, other boilerplate),
- or a lightly edited copy (some text overlap and a similar headline),
- or, across languages and outlets, the same event: rule tags agreeing on weapon category and
  supplier or recipient, and enough shared designations, figures and names, within a few days.
Otherwise it starts a new story. Candidates come from an index in SQLite (LSH band keys and
evidence keys, see crawler.fingerprints), so the cost per article does not grow with the archive.
Every decision is stored in `story_links` with the signals that made it.

The thresholds and the names that carry no evidence live in crawler/clustering.toml.
"""

from __future__ import annotations

import json
import logging
import re
import tomllib
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from crawler.dates import moment_of
from crawler.fingerprints import (
    Fingerprint,
    fingerprint,
    fold,
    signature_similarity,
    shared_names,
    title_similarity,
)

SETTINGS_FILE = Path(__file__).with_name("clustering.toml")
LOGGER = logging.getLogger(__name__)

NEW_STORY = "new-story"
NEAR_DUPLICATE = "near-duplicate"
EDITED_COPY = "edited-copy"
SAME_EVENT = "same-event"
_RANK = {NEAR_DUPLICATE: 3, EDITED_COPY: 2, SAME_EVENT: 1}


@dataclass(frozen=True)
class ClusterSettings:
    window_days: float = 7
    same_event_days: float = 3
    near_duplicate_jaccard: float = 0.5
    edited_jaccard: float = 0.2
    edited_title: float = 0.6
    min_shared: int = 3
    min_strong: int = 1
    names_only_min_shared: int = 4
    no_actor_min_shared: int = 3
    no_actor_min_strong: int = 2
    untagged_min_shared: int = 5
    untagged_min_strong: int = 2
    min_overlap: float = 0.4
    per_key_limit: int = 50
    per_band_limit: int = 10
    max_candidates: int = 60
    bands_suffice_jaccard: float = 0.8
    ignore_names: frozenset[str] = field(default_factory=frozenset)
    dictionary_languages: frozenset[str] = frozenset({"de"})


@lru_cache(maxsize=4)
def load_settings(path: str | Path = SETTINGS_FILE) -> ClusterSettings:
    """The TOML's values over the dataclass defaults (one place holds each default)."""
    with open(path, "rb") as handle:
        data = tomllib.load(handle)
    window, near, edited, event, index, names = (
        data.get(k, {}) for k in ("window", "near_duplicate", "edited_copy", "same_event", "index", "names")
    )
    d = ClusterSettings()
    return ClusterSettings(
        window_days=float(window.get("days", d.window_days)),
        same_event_days=float(window.get("same_event_days", d.same_event_days)),
        near_duplicate_jaccard=float(near.get("jaccard", d.near_duplicate_jaccard)),
        edited_jaccard=float(edited.get("jaccard", d.edited_jaccard)),
        edited_title=float(edited.get("title", d.edited_title)),
        **{key: int(event.get(key, getattr(d, key))) for key in (
            "min_shared", "min_strong", "names_only_min_shared", "no_actor_min_shared", "no_actor_min_strong",
            "untagged_min_shared", "untagged_min_strong")},
        min_overlap=float(event.get("min_overlap", d.min_overlap)),
        per_key_limit=int(index.get("per_key_limit", d.per_key_limit)),
        per_band_limit=int(index.get("per_band_limit", d.per_band_limit)),
        max_candidates=int(index.get("max_candidates", d.max_candidates)),
        bands_suffice_jaccard=float(index.get("bands_suffice_jaccard", d.bands_suffice_jaccard)),
        ignore_names=frozenset(fold(n) for n in names.get("ignore", [])),
        dictionary_languages=frozenset(names.get("dictionary_languages", d.dictionary_languages)),
    )


@dataclass(frozen=True)
class StoryDecision:
    """Where an article went and why; `signals` is what `story_links.signals` stores."""

    article_id: int
    story_id: int
    method: str  # new-story | near-duplicate | edited-copy | same-event
    is_new_story: bool
    joined_via: int | None = None  # the earlier article that matched
    score: float | None = None
    signals: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Item:
    """One side of a comparison: a fingerprint with its date, language and rule tags."""

    article_id: int
    seen: datetime
    language: str | None
    tags: dict[str, list[str]]
    fp: Fingerprint
    story_id: int | None = None


def seen_time(published: str | None, fetched_at: str | None) -> datetime:
    """The article's date for the time window: published when plausible, else fetched."""
    fetched = _parse(fetched_at) or datetime.now(timezone.utc)
    published_dt = _parse(published)
    # a placeholder ("0001-01-01") or a future date says nothing about when the story ran
    if published_dt is not None and fetched - timedelta(days=365 * 30) <= published_dt <= fetched + timedelta(days=1):
        return published_dt
    return fetched


def _parse(value: str | None) -> datetime | None:
    moment = moment_of(value)
    return moment.astimezone(timezone.utc) if moment else None


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat()


def compare(new: _Item, old: _Item, settings: ClusterSettings) -> tuple[str, float, dict[str, Any]] | None:
    """Are two articles the same story? (method, score, signals) when they are, else None."""
    days = abs((new.seen - old.seen).total_seconds()) / 86400
    if days > settings.window_days:
        return None
    jaccard = round(signature_similarity(new.fp.signature, old.fp.signature), 3)
    base = {"days_apart": round(days, 2), "jaccard": jaccard, "languages": [new.language, old.language]}
    if jaccard >= settings.near_duplicate_jaccard:
        return NEAR_DUPLICATE, jaccard, base
    if jaccard >= settings.edited_jaccard:
        title = round(title_similarity(new.fp.title, old.fp.title), 3)
        if title >= settings.edited_title:
            return EDITED_COPY, round((jaccard + title) / 2, 3), {**base, "title_similarity": title}
    if days > settings.same_event_days:
        return None
    event = same_event(new, old, settings)
    if event is None:
        return None
    return SAME_EVENT, event["overlap"], {**base, **event}


def same_event(new: _Item, old: _Item, settings: ClusterSettings) -> dict[str, Any] | None:
    """The evidence that two differently worded articles report the same event, or None.

    Rule tags must not disagree on the weapon category; actors are compared regardless of
    their role (who supplies and who receives is the part rules get wrong most often). Then
    the articles must share enough designations, figures and names; more of them when the
    tags cannot vouch for the pair.
    """
    new_weapons, old_weapons = set(new.tags.get("weapons", ())), set(old.tags.get("weapons", ()))
    weapons = sorted(new_weapons & old_weapons)
    if new_weapons and old_weapons and not weapons:
        return None  # the rules say: different kinds of weapons
    if new.tags.get("rules") and old.tags.get("rules") and not set(new.tags["rules"]) & set(old.tags["rules"]):
        return None
    actors = sorted(_actors(new.tags) & _actors(old.tags))
    designations = sorted(new.fp.designations & old.fp.designations)
    if new.fp.designations and old.fp.designations and not designations:
        return None  # both name weapon systems, and not the same ones
    numbers = sorted(new.fp.numbers & old.fp.numbers)
    strong = len(designations) + len(numbers)
    if not weapons and strong < settings.untagged_min_strong:
        return None  # cheap exit before comparing names
    names = shared_names(new.fp.names, old.fp.names)
    shared = strong + len(names)
    smaller = min(
        len(new.fp.designations) + len(new.fp.numbers) + len(new.fp.names),
        len(old.fp.designations) + len(old.fp.numbers) + len(old.fp.names),
    )
    overlap = round(shared / smaller, 3) if smaller else 0.0
    if overlap < settings.min_overlap:
        return None
    if not weapons:  # one side was not flagged by the rules: only strong evidence counts
        enough = shared >= settings.untagged_min_shared and strong >= settings.untagged_min_strong
    elif actors:
        enough = (shared >= settings.min_shared and strong >= settings.min_strong) or (
            len(names) >= settings.names_only_min_shared
        )
    else:
        enough = shared >= settings.no_actor_min_shared and strong >= settings.no_actor_min_strong
    if not enough:
        return None
    return {"weapons": weapons, "actors": actors, "designations": designations, "numbers": numbers,
            "names": names, "overlap": overlap}


def _actors(tags: dict[str, list[str]]) -> set[str]:
    return set(tags.get("suppliers", ())) | set(tags.get("recipients", ()))


def _item_from_row(row: dict[str, Any]) -> _Item:
    fp = Fingerprint(
        signature=row["minhash"],
        title=row["title"] or "",
        designations=frozenset(json.loads(row["designations"] or "[]")),
        numbers=frozenset(json.loads(row["numbers"] or "[]")),
        names=frozenset(json.loads(row["names"] or "[]")),
    )
    return _Item(row["article_id"], _parse(row["seen_at"]), row["language"], json.loads(row["tags"] or "{}"), fp,
                 row["story_id"])


class CandidateCache:
    """Parsed fingerprints of recently stored articles, for a process that assigns many stories.

    A story's articles are candidates for every later copy, so a crawl would read and parse the
    same rows again and again. Stored fingerprints never change (an article's story is set once),
    so entries stay valid; the oldest are dropped past `size`. An entry costs about 7 KB (its
    names' strings and sets): 512 of them hold a story's recent articles for a crawl's burst of
    new copies, and an article that fell out is read again (one row), not lost.
    """

    def __init__(self, size: int = 512):
        self.size = size
        self._items: OrderedDict[int, _Item] = OrderedDict()

    def items(self, store: Any, article_ids: list[int]) -> list[_Item]:
        missing = [article_id for article_id in article_ids if article_id not in self._items]
        for row in store.story_fingerprints(missing) if missing else ():
            self.add(_item_from_row(row))
        found = []
        for article_id in article_ids:
            item = self._items.get(article_id)
            if item is not None:
                self._items.move_to_end(article_id)
                found.append(item)
        return found

    def add(self, item: _Item) -> None:
        self._items[item.article_id] = item
        self._items.move_to_end(item.article_id)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


def article_fingerprint(
    title: str | None, text: str | None, source: str | None, site_name: str | None, language: str | None,
    settings: ClusterSettings | None = None,
) -> Fingerprint:
    """What clustering compares, for one article. CPU-bound: the crawl computes it in the
    extraction workers, so the process that writes to SQLite only looks up candidates."""
    settings = settings or load_settings()
    # The outlet's own name ("Daily Herald" in a copyright line) says nothing about the event.
    own_names = {fold(w) for w in re.findall(r"[^\W\d_]+", f"{source or ''} {site_name or ''}")}
    dictionary = language if language in settings.dictionary_languages else None
    return fingerprint(title, text, settings.ignore_names | own_names, dictionary)


_Verdict = tuple[str, float, dict[str, Any], _Item]  # method, score, signals, the earlier article
_CANDIDATES_PER_READ = 8


def _best(
    new: _Item, candidate_ids: list[int], verdicts: dict[int, _Verdict | None], store: Any,
    cache: CandidateCache, settings: ClusterSettings,
) -> _Verdict | None:
    """The strongest verdict among the candidates (the first of equals); `verdicts` keeps those
    already compared, so a candidate seen in an earlier lookup is not compared again.

    Candidates are read in order, a few at a time: an identical text (the same story's wire copy,
    the most common case of all) cannot be beaten, so reading stops there."""
    best = None
    for start in range(0, len(candidate_ids), _CANDIDATES_PER_READ):
        chunk = candidate_ids[start : start + _CANDIDATES_PER_READ]
        missing = [candidate for candidate in chunk if candidate not in verdicts]
        found = cache.items(store, missing)
        verdicts.update(dict.fromkeys(missing))  # stored without a story yet: nothing to compare
        for old in found:
            verdict = compare(new, old, settings)
            verdicts[old.article_id] = None if verdict is None else (*verdict, old)
        for candidate in chunk:
            verdict = verdicts.get(candidate)
            if verdict is not None and (best is None or (_RANK[verdict[0]], verdict[1]) > (_RANK[best[0]], best[1])):
                best = verdict
        if _copy_at_least(best, 1.0):
            break
    return best


def _copy_at_least(verdict: _Verdict | None, jaccard: float) -> bool:
    """A near-duplicate verdict whose text overlap reaches `jaccard`."""
    return verdict is not None and verdict[0] == NEAR_DUPLICATE and verdict[1] >= jaccard


def _ranked(counts: dict[int, int], most: int) -> list[int]:
    """Candidate ids by shared index keys, most first (ties in lookup order), at most `most`."""
    return sorted(counts, key=lambda article_id: -counts[article_id])[:most]


def assign_story(
    store: Any, article_id: int, settings: ClusterSettings | None = None, precomputed: Fingerprint | None = None,
    cache: CandidateCache | None = None,
) -> StoryDecision:
    """Put a stored article into a story (an existing one or a new one) and record why.

    Call it right after `ArticleStore.save_article` for a new article, with the article's
    `article_fingerprint` when it was computed elsewhere, and a CandidateCache when one
    process assigns many articles in a row. Idempotent: an article that already has a
    story keeps it.
    """
    settings = settings or load_settings()
    article = store.article_for_story(article_id)
    if article is None:
        raise KeyError(f"no article {article_id}")
    if article["story_id"] is not None:
        link = store.story_link(article_id) or {}
        return StoryDecision(article_id, article["story_id"], link.get("method", "assigned"), False,
                             link.get("joined_via"), link.get("score"), json.loads(link.get("signals") or "{}"))
    tags = store.article_tags(article_id)
    fp = precomputed or article_fingerprint(article["title"], article["text"], article["source"],
                                            article["site_name"], article["language"], settings)
    seen = seen_time(article["published"], article["fetched_at"])
    new = _Item(article_id, seen, article["language"], tags, fp)
    bands, evidence = fp.band_keys(), fp.evidence_keys()
    window = timedelta(days=settings.window_days)
    since, until = seen - window, seen + window
    cache = cache if cache is not None else CandidateCache()  # one article: a cache for this call only
    verdicts: dict[int, _Verdict | None] = {}
    # A copy is found through its text alone: when the band keys already lead to a close copy,
    # the event evidence could not add a better candidate (a text closer still shares a band
    # with near certainty), so its costlier lookup is skipped.
    counts = store.story_key_counts(bands, since, until, article_id, settings.per_band_limit)
    candidate_ids = _ranked(counts, settings.max_candidates)
    best = _best(new, candidate_ids, verdicts, store, cache, settings)
    if not _copy_at_least(best, settings.bands_suffice_jaccard):
        band_set = set(bands)
        more = store.story_key_counts([key for key in evidence if key not in band_set], since, until, article_id,
                                      settings.per_key_limit)
        for candidate, count in more.items():
            counts[candidate] = counts.get(candidate, 0) + count
        candidate_ids = _ranked(counts, settings.max_candidates)
        best = _best(new, candidate_ids, verdicts, store, cache, settings)
    fingerprint_row = {
        "seen_at": _iso(seen),
        "language": article["language"],
        "title": fp.title,
        "minhash": fp.signature,
        "designations": json.dumps(sorted(fp.designations), ensure_ascii=False),
        "numbers": json.dumps(sorted(fp.numbers)),
        "names": json.dumps(sorted(fp.names), ensure_ascii=False),
        "tags": json.dumps(tags, ensure_ascii=False),
    }
    if best is None:
        signals = {"candidates": len(candidate_ids)}
        story_id = store.save_story_link(article_id, fingerprint_row, bands + evidence, None, NEW_STORY, None, None,
                                         signals)
        decision = StoryDecision(article_id, story_id, NEW_STORY, True, None, None, signals)
    else:
        method, score, signals, old = best
        signals = {**signals, "candidates": len(candidate_ids), "joined_article": old.article_id}
        story_id = store.save_story_link(article_id, fingerprint_row, bands + evidence, old.story_id, method,
                                         old.article_id, score, signals)
        decision = StoryDecision(article_id, story_id, method, False, old.article_id, score, signals)
    if cache is not None:
        # as a candidate it is only compared: its index keys (40% of it) are not kept
        cache.add(_Item(article_id, seen, article["language"], tags, replace(fp, bands=(), evidence=()), story_id))
    return decision


def assign_unassigned(store: Any, settings: ClusterSettings | None = None, limit: int = 10_000) -> int:
    """Cluster articles stored without a story (older databases, an interrupted run); returns how many."""
    done = 0
    for article_id in store.unassigned_articles(limit):
        try:
            with store.transaction():
                assign_story(store, article_id, settings)
        except Exception:  # one bad article must not stop a crawl from starting
            LOGGER.exception("story clustering failed for article %s", article_id)
            continue
        done += 1
    return done


# -- the alerts seam ----------------------------------------------------------------------


def story_already_alerted(store: Any, match_id: int) -> bool:
    """True when this match's story was already alerted through another article.

    The article that triggered the alert is not "already alerted" for its other recipients
    or rules; only later articles joining the story are.
    """
    story = store.story_of_match(match_id)
    if story is None or story["alerted_at"] is None:
        return False
    return story["alerted_article_id"] != story["match_article_id"]


def mark_story_alerted(store: Any, match_id: int) -> bool:
    """Record that an alert for this match was sent; the first one wins."""
    return store.mark_story_alerted(match_id)


def also_reported(store: Any, story_id: int, shown_article_id: int | None = None) -> list[dict[str, Any]]:
    """The story's articles other than the one shown (by default the one alerted or, before any
    alert, the first), for an email's "also reported by"; each with its source, language, link
    and why it joined."""
    lead = shown_article_id
    if lead is None:
        story = store.query_one("select alerted_article_id, first_article_id from stories where id = ?", [story_id])
        if story is None:
            return []
        lead = story["alerted_article_id"] or story["first_article_id"]
    rows = []
    for row in store.story_articles(story_id):
        if row["article_id"] == lead:
            continue
        row["signals"] = json.loads(row["signals"] or "{}")
        rows.append(row)
    return rows


def recent_stories(store: Any, limit: int = 20) -> list[dict[str, Any]]:
    """The stories seen last, newest first, with their languages and sources as lists."""
    rows = store.query("select * from stories order by coalesce(last_seen, first_seen) desc, id desc limit ?", [limit])
    for row in rows:
        row["languages"] = json.loads(row["languages"] or "[]")
        row["sources"] = json.loads(row["sources"] or "[]")
    return rows
