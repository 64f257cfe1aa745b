"""trafilatura's pruning and body XPaths, answered by Python matchers: same elements, same articles."""

from __future__ import annotations

import gzip
from dataclasses import asdict
from pathlib import Path

import lxml.html
import pytest
import trafilatura
from lxml import etree
from trafilatura import xpaths

from crawler.extraction import extract_article
from crawler.trafilatura_xpaths import SKELETONS, FirstMatch, XPathMatcher, install, matchers, trafilatura_own_xpaths

ROOT = Path(__file__).resolve().parents[1]
MATCHERS_WRITTEN_FOR = "2.3.1"  # the trafilatura release whose expressions SKELETONS hash
PAGES = sorted(
    [*(ROOT / "tests" / "fixtures" / "extraction").glob("*.htm*"), *(ROOT / "crawler" / "demo_site").rglob("*.html"),
     *(ROOT / "tests" / "fixtures" / "site").rglob("*.html")]
)

# One page that takes every branch of every expression: attribute order (re:test(@id|@class) reads
# the first of the two in the tag), absent attributes, case, trafilatura's own <list>/<item> tags.
TRICKY = """<html><body>
<div id="cookie-notice" class="a">1</div>
<div class="cookie" id="a">2</div>
<div id="a" class="cookie">3</div>
<span role="Navigation">4</span><span role="main">4b</span>
<p data-component="MostPopularStories-x">5</p>
<section data-lp-replacement-content="">6</section>
<div style="display: none">7</div><div style="display:none">7b</div>
<div class="x" id="hidden-y">8</div>
<div style="color: red" id="hiddenish">9</div>
<b aria-hidden="true">10</b><b aria-hidden="false">10b</b>
<a id="reply-1" class="x">11</a><a class="reply-2" id="x">11b</a><a class="x" id="reply-3">11c</a>
<div class="comments-title">12</div>
<ol id="comments"><li>13</li></ol>
<ul class="x" id="disqus_thread"><li>14</li></ul>
<div id="commentary">15</div><div id="Comment-block">15b</div>
<section class="article-comments">16</section><details class="comment-x">16b</details>
<aside class="infinite-scroll"><h1>17</h1></aside>
<aside class="infinite-scroll"><p>18</p></aside>
<div class="mvp-post-add-box"><h1>19</h1></div>
<div class="elementor-share-buttons">20</div>
<list class="Footer"><item class="tag-list">21</item></list>
<div class="Teaser">22</div><div id="TeaserBox">22b</div>
<div id="photo-caption">23</div><p class="caption">23b</p>
<div style="border: 1px solid">24</div><div class="bottom-bar">25</div><div class="padding-bottom-3">25b</div>
<div class="link">26</div><div class="permalink">26b</div><header>27</header>
<main class="x"><div class="ARTICLE FULLTEXT">28</div></main>
<div class="Main-Content">29</div><div class="x Page-Content">29b</div><div id="content">30</div>
<article class="post">31</article><div itemprop="articleBody">32</div><div class="story">33</div>
<div class="maincol">34</div><section id="primary-col">35</section><div class="text">36</div>
<div class="article-body">37</div><div id="articleContent">38</div>
</body></html>"""


def trees() -> list[tuple[str, etree._Element]]:
    found = [("tricky", lxml.html.document_fromstring(TRICKY))]
    for page in PAGES:
        data = page.read_bytes()
        found.append((page.name, lxml.html.document_fromstring(gzip.decompress(data) if page.suffix == ".gz" else data)))
    return found


@pytest.mark.skipif(trafilatura.__version__ != MATCHERS_WRITTEN_FOR, reason="another trafilatura release: "
                    "its changed expressions run as they ship (see test_a_changed_expression_keeps_trafilatura_own)")
def test_every_expression_armswatch_knows_is_answered_by_its_matcher():
    """With the trafilatura release the matchers were written for, every one of them is installed
    (a failure here means the speed-up is lost, not the articles)."""
    install()
    assert len(list(matchers())) == len(SKELETONS)
    for name, index, *_ in SKELETONS:
        assert isinstance(getattr(xpaths, name)[index], XPathMatcher), f"{name}[{index}]"


@pytest.mark.parametrize("label, tree", trees(), ids=lambda value: value if isinstance(value, str) else "")
def test_each_matcher_selects_what_its_xpath_selects(label, tree):
    for _, _, matcher in matchers():
        expected = matcher.xpath(tree)
        if isinstance(matcher, FirstMatch):
            expected = expected[:1]  # all trafilatura reads from these
        assert matcher(tree) == expected, f"{label}: {matcher!r}"


def test_the_tricky_page_has_both_kept_and_pruned_elements_for_every_matcher():
    """So that the comparison above means something: each matcher drops some elements of the
    tricky page and keeps others."""
    tree = lxml.html.document_fromstring(TRICKY)
    every_element = len(list(tree.iterdescendants(etree.Element)))
    for _, _, matcher in matchers():
        if isinstance(matcher, FirstMatch):
            assert len(matcher(tree)) == 1, repr(matcher)
        else:
            assert 0 < len(matcher(tree)) < every_element, repr(matcher)


def test_attribute_order_decides_what_an_id_or_class_test_reads():
    """re:test(@id|@class, 'cookie') reads whichever attribute comes first in the tag."""
    overall = next(matcher for _, _, matcher in matchers() if matcher.path == xpaths.OVERALL_DISCARD_XPATH[0].path)
    tree = lxml.html.document_fromstring(
        '<html><body><div class="cookie" id="a">x</div><div id="a" class="cookie">y</div></body></html>'
    )
    assert [element.text for element in overall(tree)] == ["x"] == [element.text for element in overall.xpath(tree)]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_articles_come_out_exactly_as_with_trafilatura_own_xpaths(page):
    data = page.read_bytes()
    html = gzip.decompress(data) if page.suffix == ".gz" else data
    url = "http://127.0.0.1/" + page.name
    install()
    fast = extract_article(html, url, {}, None)
    with trafilatura_own_xpaths():
        assert not isinstance(xpaths.OVERALL_DISCARD_XPATH[0], XPathMatcher)
        slow = extract_article(html, url, {}, None)
    assert (asdict(fast) if fast else None) == (asdict(slow) if slow else None)


def test_a_changed_expression_keeps_trafilatura_own():
    """A trafilatura release that rewrites an expression gets no matcher for it."""
    changed = etree.XPath(".//*[self::div][contains(@class, 'something-else')]")
    original = xpaths.OVERALL_DISCARD_XPATH[0]
    xpaths.OVERALL_DISCARD_XPATH[0] = changed
    try:
        paths = [matcher.path for _, _, matcher in matchers()]
        install()
        assert xpaths.OVERALL_DISCARD_XPATH[0] is changed
    finally:
        xpaths.OVERALL_DISCARD_XPATH[0] = original
    assert changed.path not in paths
    assert len(paths) == len(SKELETONS) - 1
