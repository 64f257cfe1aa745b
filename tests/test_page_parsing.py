"""The cheap parsing path of extract_article: what it must still do that trafilatura's own loader did."""

from __future__ import annotations

import json

import pytest

from crawler.extraction import extract_article

PARAGRAPH = (
    "Die Bundesregierung hat der Ukraine weitere Luftabwehrsysteme vom Typ IRIS-T zugesagt, "
    "teilte das Verteidigungsministerium am Montag in Berlin mit. "
)
XHTML_DOCTYPE = (
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
    '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">'
)


def _page(article_html: str, *, minified: bool) -> bytes:
    menu = "\n".join(f'<li><a href="/section/{i}">Section {i}</a></li>' for i in range(300))
    page = f"{XHTML_DOCTYPE}\n<html><head><title>IRIS-T</title></head>\n<body><ul>{menu}</ul>\n{article_html}\n</body></html>"
    return (page.replace("\n", "") if minified else page).encode("utf-8")


@pytest.mark.parametrize("minified", [False, True], ids=["lines", "one-line"])
def test_characters_xml_forbids_never_reach_the_text(minified):
    # a NUL, a form feed and U+FFFF inside a sentence, far down the page
    article_html = (
        f"<article><p>{PARAGRAPH}Die erste\x00 Lieferung\x0c kommt im Mai\uffff. {PARAGRAPH * 3}</p>"
        f"<p>{PARAGRAPH * 2}</p></article>"
    )
    article = extract_article(_page(article_html, minified=minified), "https://zeitung.example/iris-t")
    assert article is not None
    assert "Die erste Lieferung kommt im Mai." in article.text
    assert not any(char in article.text for char in "\x00\x0c\uffff\ufffd")


def test_body_only_in_json_ld_is_found_and_scripts_styles_svg_stay_out():
    body = (
        "Poland signed a contract for 96 Apache attack helicopters with the United States on Tuesday, "
        "the defence ministry said in Warsaw. "
    ) * 4
    ld = json.dumps({"@context": "https://schema.org", "@type": "NewsArticle", "headline": "Poland buys Apaches", "articleBody": body})
    page = (
        '<html><head><title>Poland buys Apaches</title><script type="application/ld+json">' + ld + "</script>"
        "<script>var tracking = 'Poland buys Apaches';</script><style>p { color: red }</style></head>"
        '<body><div id="app"><svg><title>Site logo</title></svg><h1>Poland buys Apaches</h1></div>'
        "<script>window.__STATE__ = {};</script></body></html>"
    )
    article = extract_article(page.encode("utf-8"), "https://news.example/apache")
    assert article is not None
    assert article.text.startswith("Poland signed a contract for 96 Apache attack helicopters")
    for noise in ("tracking", "color: red", "Site logo", "__STATE__"):
        assert noise not in article.text


def test_page_whose_charset_declaration_disagrees_with_its_decoding_keeps_its_text():
    # windows-1251 bytes, declared in a <meta> that the bytes were decoded with; the parser must
    # not decode the re-encoded text a second time because of that declaration
    text = "Министерство обороны закупило беспилотники у Турции, сообщили в ведомстве. " * 5
    page = f'<html><head><meta charset="windows-1251"><title>Тест</title></head><body><article><p>{text}</p></article></body></html>'
    article = extract_article(page.encode("cp1251"), "https://gazeta.example/a")
    assert article is not None
    assert "закупило беспилотники у Турции" in article.text
