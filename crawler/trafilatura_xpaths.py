"""Python matchers that select what trafilatura's pruning and body XPath expressions select, faster.

trafilatura removes boilerplate and looks for the article body with XPath expressions over every
element of the page, most of them with `re:test()` predicates: lxml answers each one by calling
back into Python's `re` for every element and attribute. Those passes cost a third of an
extraction (bench/extraction.py).
The same selections written as one loop over the elements, with the very regular expressions
read from the expressions' text, return the same elements in the same order about three times
faster, so the extraction workers install them in place of the expressions.

A matcher replaces its expression only when the expression, its regular expressions aside, is
the one the matcher was written for (`SKELETONS`): a trafilatura release that changes an
expression's structure keeps its own XPath, slower but right. A release that only changes the
vocabulary inside `re:test()` keeps the speed-up, since the patterns come from the expression.
tests/test_trafilatura_xpaths.py checks every matcher against its expression.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from lxml import etree
from trafilatura import xpaths

LOGGER = logging.getLogger(__name__)

Predicate = Callable[[etree._Element], bool]
Test = Callable[[str | None], bool]
Build = Callable[[str], tuple[tuple, Predicate]]  # expression text -> (tag filter, predicate)

# re:test(ATTRIBUTES, 'PATTERN'[, 'FLAGS']): the patterns the matchers take from the expressions
_RE_TEST = re.compile(r"re:test\((@[\w|@-]+), '((?:[^'])*)'(?:, '(\w*)')?\)")
ELEMENTS = etree.Element  # as a tag filter: elements only, as XPath's `*`


class XPathMatcher:
    """Called like the lxml XPath it stands for: tree -> the matching descendants, in document order."""

    def __init__(self, xpath: etree.XPath, tags: tuple, predicate: Predicate):
        self.xpath = xpath
        self.path = xpath.path
        self.tags = tags
        self.predicate = predicate

    def __call__(self, tree: etree._Element) -> list[etree._Element]:
        keep = self.predicate
        return [element for element in tree.iterdescendants(*self.tags) if keep(element)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({' '.join(self.path.split())[:60]!r}...)"


class FirstMatch(XPathMatcher):
    """For the expressions trafilatura only asks for their first element in document order (the
    article body's candidates, `next(iter(expression(tree)))`): that element alone, found without
    walking the rest of the tree."""

    def __call__(self, tree: etree._Element) -> list[etree._Element]:
        keep = self.predicate
        for element in tree.iterdescendants(*self.tags):
            if keep(element):
                return [element]
        return []


def skeleton(path: str) -> str:
    """An expression's structure: whitespace normalised, the patterns of re:test() masked, hashed."""
    masked = _RE_TEST.sub(lambda m: f"re:test({m.group(1)}, '')", " ".join(path.split()))
    return hashlib.sha256(masked.encode()).hexdigest()[:16]


def regex_tests(path: str) -> list[Test]:
    """One test per re:test() of the expression, in order: value (None: no attribute) -> bool.

    As in lxml's EXSLT support: Python's re.search, IGNORECASE for the flag "i", and an absent
    attribute tested as the empty string."""
    tests = []
    for _, pattern, flags in _RE_TEST.findall(path):
        search = re.compile(pattern, re.IGNORECASE if "i" in (flags or "") else 0).search
        tests.append(_test(search, search("") is not None))
    return tests


def _test(search: Callable, matches_empty: bool) -> Test:
    if matches_empty:
        return lambda value: value is None or search(value) is not None
    return lambda value: value is not None and search(value) is not None


def first_of(element: etree._Element, first: str, second: str) -> str | None:
    """XPath's string value of `@first|@second`: the one of the two that comes first in the tag."""
    a, b = element.get(first), element.get(second)
    if a is None or b is None:
        return b if a is None else a
    for name in element.keys():
        if name == first:
            return a
        if name == second:
            return b
    return a


def _id_or_class(element: etree._Element, id_test: Test, class_test: Test) -> bool:
    """re:test(@id, ...) or re:test(@class, ...): the pair most expressions test."""
    return id_test(element.get("id")) or class_test(element.get("class"))


def _contains_translated(value: str | None, source: str, target: str, needle: str) -> bool:
    """contains(translate(@attr, source, target), needle) for one-letter translations."""
    return value is not None and needle in value.replace(source, target)


# -- one predicate per expression, written from its text ------------------------------------------


def _overall_discard(path: str) -> tuple[tuple, Predicate]:
    first_test, id_test, class_test = regex_tests(path)

    def predicate(element: etree._Element) -> bool:
        get = element.get
        return (
            get("data-lp-replacement-content") is not None
            or _contains_translated(get("role"), "N", "n", "nav")
            or "MostPopularStories" in (get("data-component") or "")
            or first_test(first_of(element, "id", "class"))
            or id_test(get("id"))
            or class_test(get("class"))
        )

    return ("div", "item", "list", "p", "section", "span"), predicate


def _overall_discard_hidden(path: str) -> tuple[tuple, Predicate]:
    hidden_test, id_test, class_test = regex_tests(path)

    without_attributes = hidden_test(None) or id_test(None) or class_test(None)

    def predicate(element: etree._Element) -> bool:
        if not element.attrib:
            return without_attributes
        get = element.get
        style = get("style")
        return (
            get("class") == "comments-title"
            or (first_of(element, "id", "class") or "").startswith("reply-")
            or hidden_test(first_of(element, "id", "style"))
            or (style is not None and ("display:none" in style or "display: none" in style))
            or id_test(get("id"))
            or class_test(get("class"))
            or get("aria-hidden") == "true"
        )

    return (ELEMENTS,), predicate


def _raw_tree_prune(path: str) -> tuple[tuple, Predicate]:
    id_test, class_test, own_id_test, own_class_test = regex_tests(path)

    def predicate(element: etree._Element) -> bool:
        return _id_or_class(element, id_test, class_test) and (
            next(element.iterdescendants("h1"), None) is None or _id_or_class(element, own_id_test, own_class_test)
        )

    return ("div", "section", "aside"), predicate


def _raw_tree_share_buttons(path: str) -> tuple[tuple, Predicate]:
    def predicate(element: etree._Element) -> bool:
        return "elementor-share-buttons" in (element.get("class") or "")

    return ("div", "section", "aside"), predicate


def _comments_and_lists(path: str) -> tuple[tuple, Predicate]:
    id_test, class_test, list_id_test, list_class_test = regex_tests(path)

    def predicate(element: etree._Element) -> bool:
        return _id_or_class(element, id_test, class_test) and (
            element.tag not in ("ol", "ul") or _id_or_class(element, list_id_test, list_class_test)
        )

    return ("div", "list", "section", "details", "ol", "ul"), predicate


def _comments(path: str) -> tuple[tuple, Predicate]:
    id_test, class_test = regex_tests(path)

    def predicate(element: etree._Element) -> bool:
        return _id_or_class(element, id_test, class_test)

    return ("div", "list", "section", "details"), predicate


def _precision_discard(path: str) -> tuple[tuple, Predicate]:
    bottom_test, link_test = regex_tests(path)

    def predicate(element: etree._Element) -> bool:
        first = first_of(element, "id", "class")
        return bottom_test(first) or link_test(first) or "border" in (element.get("style") or "")

    return ("div", "item", "list", "p", "section", "span"), predicate


def _teaser_discard(path: str) -> tuple[tuple, Predicate]:
    def predicate(element: etree._Element) -> bool:
        get = element.get
        return _contains_translated(get("id"), "T", "t", "teaser") or _contains_translated(get("class"), "T", "t", "teaser")

    return ("div", "item", "list", "p", "section", "span"), predicate


def _caption_discard(path: str) -> tuple[tuple, Predicate]:
    def predicate(element: etree._Element) -> bool:
        return "caption" in (element.get("id") or "") or "caption" in (element.get("class") or "")

    return ("div", "item", "list", "p", "section", "span"), predicate


# -- the article body's candidates, in trafilatura's order of preference ----------------------------

BODY_TAGS = ("article", "div", "main", "section")


def _body_by_name(path: str) -> tuple[tuple, Predicate]:
    id_test, class_test = regex_tests(path)

    def predicate(element: etree._Element) -> bool:
        get = element.get
        css = get("class")
        return (
            css in ("post", "entry")
            or get("itemprop") == "articleBody"
            or get("id") == "articleContent"
            or id_test(get("id"))
            or class_test(css)
        )

    return BODY_TAGS, predicate


def _first_article(path: str) -> tuple[tuple, Predicate]:
    return ("article",), lambda element: True


def _body_by_story_name(path: str) -> tuple[tuple, Predicate]:
    id_test, fulltext_test, class_test = regex_tests(path)

    def predicate(element: etree._Element) -> bool:
        get = element.get
        css, ident = get("class"), get("id")
        return (
            get("role") == "article"
            or ident in ("article", "story")
            or css in ("postarea", "art-postcontent", "text", "cell", "story")
            or id_test(ident)
            or fulltext_test(css)
            or class_test(css)
        )

    return BODY_TAGS, predicate


def _body_by_content_name(path: str) -> tuple[tuple, Predicate]:
    id_test, class_test = regex_tests(path)

    def predicate(element: etree._Element) -> bool:
        get = element.get
        css, ident = get("class"), get("id")
        return (
            ident == "content"
            or css == "content"
            or id_test(ident)
            or class_test(css)
            or (ident is not None and "main-content" in ident.replace("C", "c").replace("M", "m"))
            or (css is not None and "main-content" in css.replace("C", "c").replace("M", "m"))
            or (css is not None and "page-content" in css.replace("C", "c").replace("P", "p"))
        )

    return BODY_TAGS, predicate


def _body_by_main(path: str) -> tuple[tuple, Predicate]:
    def predicate(element: etree._Element) -> bool:
        if element.tag == "main":
            return True  # the union's (.//main)[1]
        get = element.get
        return any((get(name) or "").startswith("main") for name in ("class", "id", "role"))

    return BODY_TAGS, predicate


# (list in trafilatura.xpaths, index, skeleton of the expression it was written for, builder)
SKELETONS: tuple[tuple[str, int, str, Build], ...] = (
    ("OVERALL_DISCARD_XPATH", 0, "1c1c2b99b7a02c90", _overall_discard),
    ("OVERALL_DISCARD_XPATH", 1, "28cd141c5fe12c68", _overall_discard_hidden),
    ("RAW_TREE_PRUNE_XPATH", 0, "4b56d6a6629a6fc3", _raw_tree_prune),
    ("RAW_TREE_PRUNE_XPATH", 1, "3c7afe92279543d5", _raw_tree_share_buttons),
    ("REMOVE_COMMENTS_AND_LISTS_XPATH", 0, "51400288b537b551", _comments_and_lists),
    ("REMOVE_COMMENTS_XPATH", 0, "b0533f616b8fa80c", _comments),
    ("PRECISION_DISCARD_XPATH", 1, "e54896b0b7df0c12", _precision_discard),
    ("TEASER_DISCARD_XPATH", 0, "50f9c0568a62e759", _teaser_discard),
    ("DISCARD_IMAGE_ELEMENTS", 0, "271b5ef29bbc5bf0", _caption_discard),
    ("BODY_XPATH", 0, "a65a414efc88490e", _body_by_name),
    ("BODY_XPATH", 1, "dffd8931d1ae8060", _first_article),
    ("BODY_XPATH", 2, "2c294efb186b1de7", _body_by_story_name),
    ("BODY_XPATH", 3, "be8e6cb35c7e5382", _body_by_content_name),
    ("BODY_XPATH", 4, "bb974cd913d2443b", _body_by_main),
)
FIRST_MATCH_ONLY = ("BODY_XPATH",)  # trafilatura takes only the first element these select


def matchers() -> Iterator[tuple[list, int, XPathMatcher]]:
    """(trafilatura's list, index, matcher) for every expression a matcher was written for."""
    for name, index, expected, build in SKELETONS:
        expressions = getattr(xpaths, name, None)
        if not isinstance(expressions, list) or index >= len(expressions):
            LOGGER.debug("trafilatura has no %s[%d]: its pruning stays as it is", name, index)
            continue
        xpath = expressions[index]
        if isinstance(xpath, XPathMatcher):
            xpath = xpath.xpath
        path = getattr(xpath, "path", "")
        if skeleton(path) != expected:
            LOGGER.debug("trafilatura's %s[%d] changed: its own XPath stays", name, index)
            continue
        tags, predicate = build(path)
        kind = FirstMatch if name in FIRST_MATCH_ONLY else XPathMatcher
        yield expressions, index, kind(xpath, tags, predicate)


def install() -> int:
    """Put the matchers in trafilatura's expression lists (shared by every module that imported
    them); returns how many were installed. Idempotent."""
    installed = 0
    for expressions, index, matcher in matchers():
        expressions[index] = matcher
        installed += 1
    return installed


@contextmanager
def trafilatura_own_xpaths() -> Iterator[None]:
    """trafilatura as it ships, for a while: every installed matcher put back to its expression
    (to compare with, in tests and benchmarks)."""
    replaced = []
    for name, index, *_ in SKELETONS:
        expressions = getattr(xpaths, name, [])
        if index < len(expressions) and isinstance(expressions[index], XPathMatcher):
            replaced.append((expressions, index, expressions[index]))
            expressions[index] = expressions[index].xpath
    try:
        yield
    finally:
        for expressions, index, matcher in replaced:
            expressions[index] = matcher
