"""Read a rule file (TOML) into concepts, rules and tagging roles, with errors that name file:line.

The file format is documented in README.md ("Rule files"); `crawler/rulesets/arms-procurement.toml`
is the worked example.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from crawler.rules_text import TermIndex, parse_term


class RuleFileError(ValueError):
    """A rule file that cannot be used; the message reads "file:line: what is wrong"."""


CONCEPT_KEYS = {"tag", "weight", "except", "description", "language_specific"}
RULE_KEYS = {"when", "min_score", "description"}
TAGGING_KEYS = {"weapons", "parties", "acquire", "supply", "source", "source_after_weapon", "target", "neutral", "origin",
                "joins", "agent"}
TOP_KEYS = {"about", "concepts", "rules", "tagging"}
LANG_KEY_RE = re.compile(r"^(any|[a-z]{2})$")
OPERATORS = {"AND", "OR", "NOT", "SENTENCE"}
NEAR_RE = re.compile(r"^NEAR/(\d+)$")
SENTENCE_RE = re.compile(r"^SENTENCE(?:/(\d+))?$")
EXPR_TOKEN_RE = re.compile(r"\s*(\(|\)|[^\s()]+)")


@dataclass(frozen=True)
class Concept:
    name: str
    tag: str | None
    weight: float
    language_specific: bool
    languages: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Tagging:
    """Which concepts play which part when tags are read off a flagged text (concept indices)."""

    weapons: frozenset[int] = frozenset()
    parties: frozenset[int] = frozenset()
    acquire: frozenset[int] = frozenset()
    supply: frozenset[int] = frozenset()
    source: frozenset[int] = frozenset()
    source_after_weapon: frozenset[int] = frozenset()
    target: frozenset[int] = frozenset()
    neutral: frozenset[int] = frozenset()
    origin: frozenset[int] = frozenset()
    joins: frozenset[int] = frozenset()
    agent: frozenset[int] = frozenset()  # passive "by": the party does what the verb before it says


@dataclass(frozen=True)
class Rule:
    name: str
    expr: tuple
    min_score: float
    tagging: Tagging
    description: str = ""
    source: str = ""


@dataclass
class Compiled:
    """Everything a RuleSet needs; plain data, so it pickles into worker processes."""

    concepts: list[Concept] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    terms: list[tuple[tuple, tuple]] = field(default_factory=list)  # (pattern, (concept, language, is_except))
    index: TermIndex = field(default_factory=TermIndex)  # terms of concepts the rules name
    tag_index: TermIndex = field(default_factory=TermIndex)  # terms only tagging needs

    def finalize(self) -> None:
        """Split the terms into two indexes, so articles no rule flags are never scanned for markers."""
        used: set[int] = set()

        def walk(node: tuple) -> None:
            if node[0] == "concept":
                used.update(node[1])
            else:
                for child in node[1:]:
                    if isinstance(child, tuple):
                        walk(child)

        for rule in self.rules:
            walk(rule.expr)
        self.index, self.tag_index = TermIndex(), TermIndex()
        for pattern, payload in self.terms:
            (self.index if payload[0] in used else self.tag_index).add(pattern, payload)


def find_line(source: str, table: tuple[str, ...], key: str | None = None, needle: str | None = None) -> int:
    """Line number (1-based) of `key` inside table `[a.b]` (or of `needle` after it); 1 if unknown."""
    lines = source.splitlines()
    current: tuple[str, ...] = ()
    table_line = key_line = 0
    for number, line in enumerate(lines, 1):
        header = re.match(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$", line)
        if header:
            current = tuple(a or b or c for a, b, c in re.findall(r'"([^"]*)"|\'([^\']*)\'|([^.\s"\']+)', header.group(1)))
            if current == table and not table_line:
                table_line = number
            continue
        if current == table and key is not None and not key_line:
            if re.match(rf'^\s*("{re.escape(key)}"|\'{re.escape(key)}\'|{re.escape(key)})\s*=', line):
                key_line = number
    if not key_line and key is not None and table_line == 0 and table[:1]:
        table_line = find_line(source, table[:-1]) if len(table) > 1 else 0
    start = key_line or table_line
    if needle and start:
        for number in range(start, len(lines) + 1):
            if needle in lines[number - 1]:
                return number
    return start or 1


def load_file(path: Path, compiled: Compiled) -> None:
    """Parse one rule file and add its concepts and rules to `compiled`."""
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleFileError(f"{path}:1: cannot read rule file: {exc}") from exc
    try:
        data = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        raise RuleFileError(f"{path}:{line.group(1) if line else 1}: TOML syntax error: {exc}") from exc

    def fail(message: str, table: tuple[str, ...] = (), key: str | None = None, needle: str | None = None) -> None:
        raise RuleFileError(f"{path}:{find_line(source, table, key, needle)}: {message}")

    for key in data:
        if key not in TOP_KEYS:
            fail(f"unknown key {key!r} (expected one of: {', '.join(sorted(TOP_KEYS))})", (), None, key)
    concepts = data.get("concepts", {})
    rules = data.get("rules", {})
    if not isinstance(concepts, dict) or not concepts:
        fail("a rule file needs at least one [concepts.NAME] table", (), None, "concepts")
    if not isinstance(rules, dict) or not rules:
        fail("a rule file needs at least one [rules.NAME] table", (), None, "rules")

    local: dict[str, int] = {}
    for name, spec in concepts.items():
        local[name] = _add_concept(compiled, name, spec, lambda msg, key=None, needle=None, n=name: fail(msg, ("concepts", n), key, needle))

    def resolve(name: str, table: tuple[str, ...], key: str) -> frozenset[int]:
        if name in local:
            return frozenset({local[name]})
        members = frozenset(i for n, i in local.items() if n.startswith(name + "."))
        if not members:
            fail(f"unknown concept {name!r} (no [concepts.{name}] or [concepts.{name}.*])", table, key, name)
        return members

    tagging_spec = data.get("tagging", {})
    roles: dict[str, frozenset[int]] = {}
    for key, value in tagging_spec.items():
        if key not in TAGGING_KEYS:
            fail(f"unknown key {key!r} in [tagging] (expected one of: {', '.join(sorted(TAGGING_KEYS))})", ("tagging",), key)
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            fail(f"[tagging] {key} must be a concept name or a list of them", ("tagging",), key)
        roles[key] = frozenset().union(*(resolve(n, ("tagging",), key) for n in names))
    tagging = Tagging(**roles)

    known = {r.name for r in compiled.rules}
    for name, spec in rules.items():
        table = ("rules", name)
        if not isinstance(spec, dict):
            fail(f"rules.{name} must be a table", table)
        if name in known:
            fail(f"rule {name!r} is defined twice", table)
        for key in spec:
            if key not in RULE_KEYS:
                fail(f"unknown key {key!r} in rule {name!r} (expected one of: {', '.join(sorted(RULE_KEYS))})", table, key)
        when = spec.get("when")
        if not isinstance(when, str) or not when.strip():
            fail(f"rule {name!r} needs a `when` expression", table, "when" if "when" in spec else None)
        min_score = spec.get("min_score", 0)
        if not isinstance(min_score, (int, float)) or isinstance(min_score, bool):
            fail(f"min_score of rule {name!r} must be a number", table, "min_score")
        try:
            expr = ExpressionParser(when, lambda n: resolve(n, table, "when")).parse()
        except ValueError as exc:
            fail(f"rule {name!r}: {exc}", table, "when")
        compiled.rules.append(Rule(name, expr, float(min_score), tagging, str(spec.get("description", "")), str(path)))


def _add_concept(compiled: Compiled, name: str, spec: object, fail) -> int:
    if not isinstance(spec, dict):
        fail(f"concepts.{name} must be a table")
    if not re.fullmatch(r"[a-z][a-z0-9_.\-]*", name):
        fail(f"concept name {name!r} must be lower-case letters, digits, '_', '-' or '.'")
    for key in spec:
        if key not in CONCEPT_KEYS and not LANG_KEY_RE.match(key):
            fail(f"unknown key {key!r} in concept {name!r} (a language code like 'en', 'any', or one of: {', '.join(sorted(CONCEPT_KEYS))})", key)
    weight = spec.get("weight", 1.0)
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight <= 0:
        fail(f"weight of concept {name!r} must be a positive number", "weight")
    tag = spec.get("tag")
    if tag is not None and not isinstance(tag, str):
        fail(f"tag of concept {name!r} must be a string", "tag")
    index = len(compiled.concepts)
    languages = frozenset(k for k in spec if LANG_KEY_RE.match(k) and k != "any")
    compiled.concepts.append(Concept(name, tag, float(weight), bool(spec.get("language_specific", False)), languages))
    terms = 0
    for key, value in spec.items():
        if key in CONCEPT_KEYS and key != "except":
            continue
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            fail(f"{key} of concept {name!r} must be a list of strings", key)
        for term in value:
            pattern = parse_term(term)
            if isinstance(pattern, str):
                fail(pattern, key, term)
            negative = key == "except"
            compiled.terms.append((pattern, (index, "any" if negative else key, negative)))
            terms += not negative
    if not terms:
        fail(f"concept {name!r} has no terms (add e.g. en = [\"...\"])")
    return index


class ExpressionParser:
    """`when` expressions: NAME, ( ), NOT x, x AND y, x OR y, x NEAR/N y (within N words, same paragraph),
    x SENTENCE y (same sentence), x SENTENCE/N y (both), and NOT before any proximity operator
    (x NOT NEAR/N y: hits of x with no y within N words, across paragraphs too).  Binding, tightest first: NOT, proximity, AND, OR."""

    def __init__(self, text: str, resolve) -> None:
        self.tokens = EXPR_TOKEN_RE.findall(text)
        self.pos = 0
        self.resolve = resolve

    def parse(self) -> tuple:
        if not self.tokens:
            raise ValueError("empty expression")
        node = self._or()
        if self.pos < len(self.tokens):
            token = self.tokens[self.pos]
            self._check_operator(token)
            raise ValueError(f"unexpected {token!r} (expected AND, OR, NEAR/N, SENTENCE or ')')")
        return node

    @staticmethod
    def _check_operator(token: str) -> None:
        """Name the mistake when a word looks like an operator but is not one."""
        if token.upper() in OPERATORS and token != token.upper():
            raise ValueError(f"operator {token!r} must be written in capitals: {token.upper()}")
        if re.fullmatch(r"[A-Z][A-Z/0-9_]*", token) and token not in OPERATORS:
            raise ValueError(f"bad operator {token!r} (operators: AND, OR, NOT, NEAR/N, SENTENCE, SENTENCE/N)")

    def _peek(self, ahead: int = 0) -> str | None:
        i = self.pos + ahead
        return self.tokens[i] if i < len(self.tokens) else None

    def _or(self) -> tuple:
        node = self._and()
        while self._peek() == "OR":
            self.pos += 1
            node = ("or", node, self._and())
        return node

    def _and(self) -> tuple:
        node = self._prox()
        while self._peek() == "AND":
            self.pos += 1
            node = ("and", node, self._prox())
        return node

    def _prox(self) -> tuple:
        node = self._unary()
        while True:
            token, negated = self._peek(), False
            ahead = self._peek(1)
            if token == "NOT" and ahead is not None and (ahead.startswith("SENTENCE") or ahead.startswith("NEAR")):
                negated, token = True, ahead
                self.pos += 1
            if token is not None and token.startswith("SENTENCE"):
                sentence = SENTENCE_RE.match(token)
                if not sentence:
                    raise ValueError(f"bad operator {token!r} (write SENTENCE or SENTENCE/N)")
                self.pos += 1
                limit = int(sentence.group(1)) if sentence.group(1) else -1
                node = ("notsent" if negated else "sent", limit, node, self._unary())
            elif token is not None and token.startswith("NEAR"):
                near = NEAR_RE.match(token)
                if not near:
                    raise ValueError(f"bad operator {token!r} (write NEAR/N, N a number of words)")
                self.pos += 1
                node = ("notnear" if negated else "near", int(near.group(1)), node, self._unary())
            else:
                return node

    def _unary(self) -> tuple:
        token = self._peek()
        if token is None:
            raise ValueError("expression ends where a concept or '(' was expected")
        self.pos += 1
        if token == "NOT":
            return ("not", self._unary())
        if token == "(":
            node = self._or()
            if self._peek() != ")":
                raise ValueError("missing ')'")
            self.pos += 1
            return node
        if token in OPERATORS or token == ")" or token.startswith("NEAR") or token.startswith("SENTENCE"):
            raise ValueError(f"operator {token!r} where a concept or '(' was expected")
        self._check_operator(token)
        return ("concept", self.resolve(token))
