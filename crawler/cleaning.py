"""Strip the noise trafilatura leaves around an article: tickers, counters, credits, prompts, read-also links.

Every line of noise is a false alert waiting to happen (a "read also: Iran delivers drones to Russia"
link under an unrelated story), so it goes before rules see the text. The patterns live in
boilerplate.toml; this module only applies them, in two places: page elements whose class/id name
them as furniture are removed before extraction (prune_boilerplate), and whole lines are removed
from the extracted text afterwards (clean_text). Both are conservative: long paragraphs stay.
"""

from __future__ import annotations

import bisect
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lxml import etree
from lxml.html import HtmlElement

BOILERPLATE_FILE = Path(__file__).with_name("boilerplate.toml")

_WORD = re.compile(r"\w+")
# runs of blanks, except the single plain spaces that need no replacing (most of them)
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u202f\u205f\u3000]{2,}|[\t\u00a0\u2000-\u200b\u202f\u205f\u3000]")
_BULLETS = ("- ", "• ", "* ", "– ", "— ")
_CLASS_AND_ID = etree.XPath("//@class | //@id")  # smart strings: each knows its element
_SENTENCE_END = re.compile(r"""[.!?…;]["'»”’)\]]*$""")


@dataclass(frozen=True)
class _LineFamily:
    name: str
    pattern: re.Pattern[str]  # the whole line
    contains: re.Pattern[str] | None  # anywhere in the line
    max_chars: int

    def matches(self, line: str, lowered: str) -> bool:
        if len(line) > self.max_chars:
            return False
        return bool(self.pattern.match(line) or (self.contains is not None and self.contains.search(lowered)))


@dataclass(frozen=True)
class _Rules:
    """boilerplate.toml, compiled once per process."""

    html_furniture: re.Pattern[str]
    keep_tags: frozenset[str]
    max_text_chars: int
    max_text_share: float
    families: tuple[_LineFamily, ...]
    # (max line length, every family's whole-line patterns, every family's "contains"), shortest
    # limit first: one regex call tells most lines apart from noise before the families are tried
    family_screens: tuple[tuple[int, re.Pattern[str], re.Pattern[str] | None], ...]
    read_also_line: re.Pattern[str]
    read_also_alone: re.Pattern[str]
    read_also_max_chars: int
    block_max_lines: int
    block_line_max_chars: int
    tags_line: re.Pattern[str]
    tags_alone: re.Pattern[str]
    tags_max_chars: int
    inline_suffixes: tuple[str, ...]
    bio_heading: re.Pattern[str]
    bio_tail_max_lines: int
    bio_tail_max_chars: int
    epithet_quotes: tuple[str, ...]
    epithet_max_chars: int
    epithet_min_fragments: int
    epithet_max_words: int
    breadcrumb_root: re.Pattern[str]
    breadcrumb_separator: re.Pattern[str]
    label_max_words: int
    teaser_ellipses: tuple[str, ...]
    teaser_min_chars: int


def _alternation(patterns: Iterable[str]) -> str:
    return "|".join(f"(?:{p})" for p in patterns)


def _whole_line(patterns: Iterable[str]) -> re.Pattern[str]:
    return re.compile(rf"^(?:{_alternation(patterns)})$", re.IGNORECASE)


_BACKREFERENCE = re.compile(r"\\[1-9]|\(\?P=")


def _family_screens(families: Sequence[_LineFamily]) -> tuple[tuple[int, re.Pattern[str], re.Pattern[str] | None], ...]:
    """For each length limit, all families that accept lines that long, merged into two patterns."""
    screens = []
    for limit in sorted({family.max_chars for family in families}):
        members = [family for family in families if family.max_chars >= limit]
        contains = [family.contains.pattern for family in members if family.contains is not None]
        screens.append(
            (
                limit,
                re.compile("|".join(f"(?:{family.pattern.pattern})" for family in members), re.IGNORECASE),
                re.compile(_alternation(contains)) if contains else None,
            )
        )
    return tuple(screens)


@lru_cache(maxsize=None)
def load_rules(path: Path = BOILERPLATE_FILE) -> _Rules:
    """Parse and compile the boilerplate file; a bad pattern fails loudly, naming the file and the key."""
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    html = data["html"]
    # a word or phrase counts only as whole "-"/"_"-separated parts of a class or id token
    # (written with look-arounds so that re can skip ahead on the first letters: this runs on every
    # class and id of every page)
    names = sorted((re.escape(w.lower()).replace("\\-", "[-_]+") for w in html["words"] + html["phrases"]), key=len)
    furniture = re.compile(rf"(?<![^\s_-])(?:{'|'.join(reversed(names))})(?![^\s_-])")
    families = []
    for name, family in data["lines"].items():
        try:
            contains = family.get("contains")
            for pattern in family["patterns"] + (contains or []):
                if _BACKREFERENCE.search(pattern):  # merged with other patterns, group numbers shift
                    raise re.error(f"backreferences are not supported: {pattern!r}")
            families.append(
                _LineFamily(
                    name,
                    _whole_line(family["patterns"]),
                    re.compile(_alternation(contains)) if contains else None,  # run on lower-cased lines
                    int(family["max_chars"]),
                )
            )
        except re.error as err:
            raise ValueError(f"{path}: [lines.{name}] has a bad pattern: {err}") from err
    read_also = data["read_also"]
    strong, weak = _alternation(read_also["strong_markers"]), _alternation(read_also["weak_markers"])
    label = _alternation(read_also["label_markers"])
    separator = r"\s*[:|\-–—»>]"
    tags = data["tags_block"]
    bio = data["author_bio"]
    head = data["headline"]
    return _Rules(
        html_furniture=furniture,
        keep_tags=frozenset(html["keep_tags"]),
        max_text_chars=int(html["max_text_chars"]),
        max_text_share=float(html["max_text_share"]),
        families=tuple(families),
        family_screens=_family_screens(families),
        read_also_line=re.compile(
            rf"^(?:(?:{strong})(?:{separator}|\s)|(?:{weak}|{label}){separator}).*$", re.IGNORECASE
        ),
        read_also_alone=re.compile(rf"^(?:(?:{strong}|{weak})\s*[:.…]*|(?:{label})\s*:)\s*$", re.IGNORECASE),
        read_also_max_chars=int(read_also["max_chars"]),
        block_max_lines=int(read_also["block_max_lines"]),
        block_line_max_chars=int(read_also["block_line_max_chars"]),
        tags_line=re.compile(rf"^(?:{_alternation(tags['headers'])})\s*:.*$", re.IGNORECASE),
        tags_alone=re.compile(rf"^(?:{_alternation(tags['headers'])})\s*:?$", re.IGNORECASE),
        tags_max_chars=int(tags["max_chars"]),
        inline_suffixes=tuple(s.lower() for s in data["inline"]["strip_suffixes"]),
        bio_heading=re.compile(rf"^(?:{_alternation(bio['headings'])})\s*:?$", re.IGNORECASE),
        bio_tail_max_lines=int(bio["tail_max_lines"]),
        bio_tail_max_chars=int(bio["tail_max_chars"]),
        epithet_quotes=tuple(bio["epithet_quotes"]),
        epithet_max_chars=int(bio["epithet_max_chars"]),
        epithet_min_fragments=int(bio["epithet_min_fragments"]),
        epithet_max_words=int(bio["epithet_max_words"]),
        breadcrumb_root=re.compile(rf"^(?:{_alternation(head['breadcrumb_roots'])})(?!\w)", re.IGNORECASE),
        breadcrumb_separator=re.compile(head["breadcrumb_separators"]),
        label_max_words=int(head["label_max_words"]),
        teaser_ellipses=tuple(head["teaser_ellipses"]),
        teaser_min_chars=int(head["teaser_min_chars"]),
    )


RULES = load_rules()


# --- before extraction: page furniture named by class/id -------------------------------------


def _paragraph_chars(element: HtmlElement) -> int:
    return sum(map(len, element.xpath(".//p//text()")))


def prune_boilerplate(tree: HtmlElement, rules: _Rules = RULES) -> int:
    """Remove elements whose class or id names page furniture (share bars, tickers, read-also boxes...).

    Elements holding much of the page's paragraph text are kept whatever their name, so a site that
    labels its article container "post-share-enabled" loses nothing. Returns how many elements were removed.
    """
    # attribute values come back from libxml2 in one call, in document order (containers before
    # what they contain); pages repeat the same class names, so each distinct value is tested once
    values = _CLASS_AND_ID(tree)
    search = rules.html_furniture.search
    furniture = {value for value in set(values) if search(value.lower())}
    if not furniture:
        return 0
    removed: list[HtmlElement] = []
    removed_set: set[HtmlElement] = set()
    page_chars: int | None = None
    for value in [value for value in values if value in furniture]:
        element = value.getparent()
        if element.tag in rules.keep_tags or element in removed_set:
            continue
        if removed_set and any(ancestor in removed_set for ancestor in element.iterancestors()):
            continue
        chars = _paragraph_chars(element)
        if chars:
            if page_chars is None:
                page_chars = _paragraph_chars(tree)
            if chars > rules.max_text_chars or chars > rules.max_text_share * page_chars:
                continue
        removed.append(element)
        removed_set.add(element)
    for element in removed:
        if element.getparent() is not None:
            element.drop_tree()
    return len(removed)


# --- after extraction: lines of noise ----------------------------------------------------------


def normalize_space(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def comparison_key(text: str) -> str:
    """Words only, case-folded: “d’acheter” and "d'acheter" compare equal, as do curly and straight quotes."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


def noise_family(line: str, rules: _Rules = RULES) -> str | None:
    """The name of the boilerplate family a single line belongs to, or None for content."""
    lowered = line.lower()
    screen = bisect.bisect_left(rules.family_screens, len(line), key=lambda entry: entry[0])
    if screen < len(rules.family_screens):
        _, whole, contains = rules.family_screens[screen]
        if whole.match(line) or (contains is not None and contains.search(lowered)):
            for family in rules.families:
                if family.matches(line, lowered):
                    return family.name
    if len(line) <= rules.read_also_max_chars and rules.read_also_line.match(line):
        return "read_also"
    if len(line) <= rules.tags_max_chars and rules.tags_line.match(line):
        return "tags"
    if len(line) <= 200 and rules.breadcrumb_root.match(line):
        # "Home" alone, or a trail "Home › World › Europe"
        rest = rules.breadcrumb_root.sub("", line, count=1).strip()
        if not rest or rules.breadcrumb_separator.match(rest):
            return "breadcrumbs"
    return None


def _is_link_title(line: str, rules: _Rules) -> bool:
    """A related-story title under a "Read also" heading: short and not a finished sentence."""
    if len(line) > rules.block_line_max_chars:
        return False
    if line.startswith(_BULLETS) or line.endswith("]"):
        return True
    if line[0].islower():
        return False  # the rest of a wrapped sentence, not a new title
    return not _SENTENCE_END.search(line)


def _drop_blocks(lines: list[str], rules: _Rules) -> list[str]:
    """Remove single noise lines, and heading-led blocks (read-also lists, tag lists)."""
    kept: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if rules.read_also_alone.match(line):
            i += 1
            taken = 0
            while i < len(lines) and taken < rules.block_max_lines and _is_link_title(lines[i], rules):
                i += 1
                taken += 1
            continue
        if rules.tags_alone.match(line):
            i += 1
            if i < len(lines) and len(lines[i]) <= rules.tags_max_chars and not _SENTENCE_END.search(lines[i]):
                i += 1
            continue
        family = noise_family(line, rules)
        i += 1
        if family is None:
            kept.append(line)
        elif family == "read_also":
            # "Related: X" followed by a bulleted list of more titles
            while i < len(lines) and lines[i].startswith(_BULLETS) and _is_link_title(lines[i], rules):
                i += 1
    return kept


def _is_epithet_bio(line: str, rules: _Rules) -> bool:
    """“Nerd televisivo. Ninja di Twitter. Evangelista della birra.” — a bio, not a sentence."""
    if len(line) > rules.epithet_max_chars:
        return False
    # quoted only: unquoted short sentences ("He said no. They left. ...") can end a real story
    if len(line) < 2 or not any(line[0] == q[0] and line[-1] == q[-1] for q in rules.epithet_quotes):
        return False
    fragments = [f for f in re.split(r"[.!]\s*", line[1:-1]) if f.strip()]
    return len(fragments) >= rules.epithet_min_fragments and all(
        len(f.split()) <= rules.epithet_max_words for f in fragments
    )


def _drop_tail(lines: list[str], rules: _Rules) -> list[str]:
    """Author bios at the end: an "About the author" block, or a quoted line of epithets."""
    start = max(0, len(lines) - rules.bio_tail_max_lines - 1)
    for i in range(start, len(lines)):
        if rules.bio_heading.match(lines[i]) and sum(len(x) for x in lines[i + 1 :]) <= rules.bio_tail_max_chars:
            lines = lines[:i]
            break
    while lines and _is_epithet_bio(lines[-1], rules):
        lines = lines[:-1]
    return lines


def _is_teaser(line: str, lines: Sequence[str], rules: _Rules) -> bool:
    """A lead cut off with "..." that a full paragraph further down repeats."""
    stripped = line.rstrip()
    for ellipsis in rules.teaser_ellipses:
        if stripped.endswith(ellipsis):
            stem = comparison_key(stripped[: -len(ellipsis)])
            # the last word is usually cut mid-way ("détecter e...")
            stem = stem.rsplit(" ", 1)[0] if " " in stem else stem
            if len(stem) >= rules.teaser_min_chars:
                return any(comparison_key(other).startswith(stem) for other in lines)
    return False


def _is_label(line: str, rules: _Rules) -> bool:
    """A section label or breadcrumb: a few words, no sentence punctuation ("Incidents", "Home > World")."""
    if rules.breadcrumb_separator.search(line) and rules.breadcrumb_root.match(line):
        return True
    return len(line.split()) <= rules.label_max_words and len(line) <= 40 and not re.search(r"[.!?:;]$", line)


def _drop_headline_repeats(lines: list[str], titles: Sequence[str], rules: _Rules) -> list[str]:
    """Before the first body paragraph: the headline (with glued breadcrumbs), labels above it, teasers."""
    title_keys = {k for k in (comparison_key(t) for t in titles if t) if len(k.split()) >= 2}
    drop: set[int] = set()
    last_title = -1
    for i, line in enumerate(lines[:15]):
        key = comparison_key(line)
        if key in title_keys:
            drop.add(i)
            last_title = i
            continue
        glued = next((t for t in title_keys if key.endswith(" " + t)), None)
        if glued is not None and len(key[: -len(glued)].split()) <= rules.label_max_words + 2:
            drop.add(i)
            last_title = i
            continue
        if _is_teaser(line, lines[i + 1 :], rules):
            drop.add(i)
            continue
        if len(line) > 150 or (_SENTENCE_END.search(line) and len(line.split()) >= 8):
            break  # the body has started
    # labels and breadcrumbs are furniture only when they sit above the headline
    for i in range(last_title):
        if i not in drop and _is_label(lines[i], rules):
            drop.add(i)
    return [line for i, line in enumerate(lines) if i not in drop]


def _strip_suffix(line: str, suffixes: Sequence[str]) -> str:
    lowered = line.lower()
    for suffix in suffixes:
        if lowered.endswith(suffix):
            return line[: -len(suffix)].rstrip()
    return line


def clean_text(text: str, titles: Sequence[str] = (), rules: _Rules = RULES) -> str:
    """Extracted text -> the article body alone, paragraphs separated by a blank line.

    `titles` are the page's headline candidates (h1, og:title...): they are removed from the top of
    the text, with anything glued to them, so the stored text never starts with the headline.
    """
    lines = []
    for raw in text.splitlines():
        line = normalize_space(raw)
        if line.lower().endswith(rules.inline_suffixes):
            line = _strip_suffix(line, rules.inline_suffixes)
        if line:
            lines.append(line)
    lines = _drop_blocks(lines, rules)
    lines = _drop_headline_repeats(lines, titles, rules)
    lines = _drop_tail(lines, rules)
    return "\n\n".join(lines)
