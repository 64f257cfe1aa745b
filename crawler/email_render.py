"""Compose an alert email: subject, plain-text part and HTML part.

Everything crawled (titles, snippets, URLs, source names) is untrusted: it is stripped of
control and bidi characters here, HTML-escaped by Jinja's autoescape in the HTML part, and
only http(s) URLs ever become links. Layout lives in crawler/templates, not in code.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, StrictUndefined

TITLE_LIMIT = 300
SNIPPET_LIMIT = 800
_SPACES = re.compile(r"\s+")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
# Characters that reorder or hide text (bidi overrides, zero-width): a title must read as it is.
_INVISIBLE = {0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0xFEFF, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


@dataclass(frozen=True)
class StoryView:
    """One flagged story as an email shows it; every string already cleaned."""

    outbox_id: int
    article_id: int
    rule: str
    score: float
    title: str
    url: str
    link: str | None  # the URL when it is http(s), else None (shown, never linked)
    source: str
    state_media: bool
    date: str
    language: str
    suppliers: tuple[str, ...]
    recipients: tuple[str, ...]
    weapons: tuple[str, ...]
    snippet: tuple[tuple[str, bool], ...]  # (text, highlighted) segments
    sort_key: str
    also_reported: tuple[str, ...] = ()  # other outlets of the same story (story clustering)
    update_of: str = ""  # headline of the already-alerted story this article joined

    @property
    def tag_line(self) -> str:
        groups = (("supplier", self.suppliers), ("recipient", self.recipients), ("weapon", self.weapons))
        return " · ".join(f"{name}: {', '.join(tags)}" for name, tags in groups if tags)

    @property
    def link_line(self) -> str:
        return self.link or f"(not a web link: {self.url or 'no URL'})"

    @property
    def snippet_text(self) -> str:
        return "".join(f"**{text}**" if marked else text for text, marked in self.snippet)


@dataclass(frozen=True)
class NoticeView:
    """A source-health event: a source started failing / went silent, or recovered."""

    source: str
    kind: str  # failing | silent
    event: str  # problem | recovered
    detail: str
    at: str

    @property
    def headline(self) -> str:
        if self.event == "recovered":
            return f"{self.source}: recovered ({'fetching again' if self.kind == 'failing' else 'new articles again'})"
        return f"{self.source}: {'failing' if self.kind == 'failing' else 'silent'}"


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str
    stories: int = 0
    notices: int = 0
    rules: tuple[str, ...] = field(default_factory=tuple)


def clean(value: Any, limit: int | None = None) -> str:
    """Untrusted text on one line: no control, bidi or zero-width characters, spaces collapsed."""
    if value is None:
        return ""
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in str(value) if ord(c) not in _INVISIBLE)
    text = _SPACES.sub(" ", text).strip()
    if limit and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def web_link(url: str | None) -> str | None:
    """The URL if it is an absolute http(s) URL with a host; anything else is never linked."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    if any(unicodedata.category(c) in ("Cc", "Zs") for c in url):
        return None
    return url


def snippet_segments(snippet: str | None, highlights: Any) -> tuple[tuple[str, bool], ...]:
    """Split a snippet at its highlight offsets (invalid or overlapping spans are repaired)."""
    text = snippet or ""
    spans: list[tuple[int, int]] = []
    for span in _json_list(highlights):
        try:
            start, end = int(span[0]), int(span[1])
        except (TypeError, ValueError, IndexError, KeyError):
            continue
        start, end = max(0, start), min(len(text), end)
        if start < end:
            spans.append((start, end))
    spans.sort()
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    segments: list[tuple[str, bool]] = []
    position = 0
    for start, end in merged:
        segments.append((text[position:start], False))
        segments.append((text[start:end], True))
        position = end
    segments.append((text[position:], False))
    cleaned = []
    budget = SNIPPET_LIMIT
    for part, marked in segments:
        part = _clean_inline(part)
        if not part or budget <= 0:
            continue
        if len(part) > budget:
            part = part[:budget] + "…"
        budget -= len(part)
        cleaned.append((part, marked))
    return tuple(cleaned)


def story_from_row(row: dict[str, Any]) -> StoryView:
    """A StoryView from an ArticleStore.due_alerts row."""
    published = clean(row.get("published"))
    fetched = clean(row.get("fetched_at"))
    date_source = published if _ISO_DATE.match(published) else fetched
    url = clean(row.get("url"), 2000)
    return StoryView(
        outbox_id=int(row["outbox_id"]),
        article_id=int(row["article_id"]),
        rule=clean(row.get("rule"), 100),
        score=float(row.get("score") or 0.0),
        title=clean(row.get("title"), TITLE_LIMIT) or "(no title)",
        url=url,
        link=web_link(url),
        source=clean(row.get("source"), 200) or "unknown source",
        state_media=bool(row.get("state_affiliated")),
        date=date_source[:10] if _ISO_DATE.match(date_source) else "date unknown",
        language=clean(row.get("language"), 10).upper() or "??",
        suppliers=_tags(row.get("suppliers")),
        recipients=_tags(row.get("tag_recipients")),
        weapons=_tags(row.get("weapons")),
        snippet=snippet_segments(row.get("snippet"), row.get("highlights")),
        sort_key=published if _ISO_DATE.match(published) else fetched,
        also_reported=tuple(clean(s, 200) for s in row.get("also_reported") or ()),
        update_of=clean(row.get("story_headline"), TITLE_LIMIT),
    )


def notice_from_row(row: dict[str, Any]) -> NoticeView:
    """A NoticeView from an ArticleStore.due_health_notices row."""
    return NoticeView(
        source=clean(row.get("source"), 200),
        kind=clean(row.get("kind")),
        event=clean(row.get("event")),
        detail=clean(row.get("detail"), 500),
        at=clean(row.get("noticed_at"))[:16].replace("T", " "),
    )


def render_alert(
    stories: Sequence[StoryView],
    notices: Sequence[NoticeView] = (),
    *,
    mode: str = "instant",
    crawl_time: str | None = None,
    updates: Sequence[StoryView] = (),
) -> RenderedEmail:
    """Subject, text and HTML of one email: stories grouped by rule, newest first, then the
    articles that joined stories alerted before ("also reported"), then notices."""
    updates = list({u.article_id: u for u in sorted(updates, key=lambda u: u.sort_key, reverse=True)}.values())
    by_rule: dict[str, list[StoryView]] = {}
    for story in stories:
        by_rule.setdefault(story.rule, []).append(story)
    groups = [(rule, sorted(items, key=lambda s: s.sort_key, reverse=True)) for rule, items in sorted(by_rule.items())]
    story_count = len({s.article_id for s in stories})
    rules = tuple(rule for rule, _ in groups)
    subject = _subject(story_count, rules, len(notices), mode, len(updates))
    footer = _footer(story_count, len(stories), len(rules), len(notices), crawl_time)
    context = {
        "subject": subject,
        "groups": groups,
        "notices": list(notices),
        "updates": updates,
        "footer": footer,
        "heading": _heading(story_count, mode),
    }
    return RenderedEmail(
        subject=subject,
        text=_env(False).get_template("alert.txt").render(context),
        html=_env(True).get_template("alert.html").render(context),
        stories=story_count,
        notices=len(notices),
        rules=rules,
    )


def render_test(smtp_desc: str) -> RenderedEmail:
    """The `armswatch alerts test` message: proves the settings reach an inbox."""
    context = {"smtp": clean(smtp_desc), "subject": "armswatch: test message"}
    return RenderedEmail(
        subject="armswatch: test message",
        text=_env(False).get_template("test.txt").render(context),
        html=_env(True).get_template("test.html").render(context),
    )


def build_message(rendered: RenderedEmail, sender: str, to: str, message_id: str) -> EmailMessage:
    """A multipart/alternative message (text first, HTML preferred by mail clients)."""
    message = EmailMessage()
    message["Subject"] = clean(rendered.subject, 250)
    message["From"] = sender
    message["To"] = to
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message["X-Armswatch-Stories"] = str(rendered.stories)
    message.set_content(rendered.text, subtype="plain", charset="utf-8")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8")
    return message


def _subject(stories: int, rules: Iterable[str], notices: int, mode: str, updates: int = 0) -> str:
    prefix = "armswatch" if mode == "instant" else f"armswatch {mode} digest"
    parts = []
    if stories:
        parts.append(f"{stories} new {'story' if stories == 1 else 'stories'} for {', '.join(rules)}")
    if updates:
        parts.append(f"{updates} also reported")
    if notices:
        parts.append(f"{notices} source health {'notice' if notices == 1 else 'notices'}")
    return f"{prefix}: {'; '.join(parts) or 'nothing new'}"


def _heading(stories: int, mode: str) -> str:
    count = f"{stories} new {'story' if stories == 1 else 'stories'}"
    return count if mode == "instant" else f"{mode.capitalize()} digest: {count}"


def _footer(stories: int, matches: int, rules: int, notices: int, crawl_time: str | None) -> str:
    parts = [f"{stories} {'story' if stories == 1 else 'stories'}", f"{matches} {'match' if matches == 1 else 'matches'}"]
    parts.append(f"{rules} {'rule' if rules == 1 else 'rules'}")
    if notices:
        parts.append(f"{notices} source {'notice' if notices == 1 else 'notices'}")
    when = clean(crawl_time)[:16].replace("T", " ")
    parts.append(f"last crawl {when} UTC" if when else "no crawl recorded")
    return " · ".join(parts) + " · sent by armswatch"


def _clean_inline(text: str) -> str:
    """Like clean(), but keeps a leading/trailing space so snippet segments still join as words."""
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text if ord(c) not in _INVISIBLE)
    return _SPACES.sub(" ", text)


def _json_list(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    if not value:
        return []
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return []
    return parsed if isinstance(parsed, list) else []


def _tags(value: Any) -> tuple[str, ...]:
    return tuple(t for t in (clean(v, 80) for v in _json_list(value) if isinstance(v, str)) if t)


@lru_cache(maxsize=2)
def _env(html: bool) -> Environment:
    """HTML templates autoescape everything; text templates must not (a text part has no markup)."""
    return Environment(
        loader=PackageLoader("crawler", "templates"),
        autoescape=html,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
