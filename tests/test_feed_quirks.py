"""Source documents as real servers and readers send them: feeds with lying charsets, a BOM,
no items, a cut-off end, JSON of the wrong types, FeedBurner proxies; sitemap indexes without
dates; listing pages full of menus; OPML exports in every letter case."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlsplit

import pytest

from spiders.feeds import FeedParseError, parse_feed
from spiders.listings import ListingError, parse_listing
from spiders.sitemaps import parse_sitemap
from tests.conftest import run_armswatch

BASE = "http://127.0.0.1:1/feed.xml"
TITLE = "Минобороны закупает беспилотники у Ирана"


def rss(items: str, declaration: str = '<?xml version="1.0" encoding="utf-8"?>') -> str:
    return f'{declaration}<rss version="2.0"><channel><title>Вести</title><link>http://127.0.0.1:1/</link>{items}</channel></rss>'


def item(title: str, link: str = "http://127.0.0.1:1/a.html", extra: str = "") -> str:
    return f"<item><title>{title}</title><link>{link}</link>{extra}</item>"


@pytest.mark.parametrize(
    "body, headers",
    [
        # windows-1251 bytes the XML declaration calls UTF-8
        (rss(item(TITLE)).encode("cp1251"), {}),
        # UTF-8 bytes the declaration calls windows-1251
        (rss(item(TITLE), '<?xml version="1.0" encoding="windows-1251"?>').encode("utf-8"), {}),
        # no declaration; the charset is in the Content-Type header only
        (rss(item(TITLE), "").encode("cp1251"), {"content-type": "application/rss+xml; charset=windows-1251"}),
    ],
    ids=["cp1251-declared-utf8", "utf8-declared-cp1251", "charset-in-header"],
)
def test_a_cyrillic_feed_reads_as_cyrillic_whatever_its_charset_claims(body, headers):
    entries = parse_feed(body, BASE, headers).entries
    assert [e.title for e in entries] == [TITLE]


def test_a_feed_with_no_items_is_an_empty_feed_not_a_broken_one():
    parsed = parse_feed(rss("").encode(), BASE)
    assert parsed.entries == [] and parsed.damage is None


def test_a_plain_text_title_keeps_what_lies_between_angle_brackets():
    entries = parse_feed(rss(item("Exports &lt; 5% of output, imports &gt; 10%")).encode(), BASE).entries
    assert entries[0].title == "Exports < 5% of output, imports > 10%"


def test_feedburner_proxies_give_way_to_the_original_link():
    body = rss(item("Deal", "http://127.0.0.1:1/~r/gone/~3/abc/",
                    "<feedburner:origLink>http://127.0.0.1:1/news/deal.html</feedburner:origLink>"))
    body = body.replace("<rss ", '<rss xmlns:feedburner="http://rssnamespace.org/feedburner/ext/1.0" ')
    assert [e.link for e in parse_feed(body.encode(), BASE).entries] == ["http://127.0.0.1:1/news/deal.html"]


def test_a_cut_off_feed_keeps_its_items_and_says_it_was_cut():
    whole = rss(item("One", "http://127.0.0.1:1/1.html") + item("Two", "http://127.0.0.1:1/2.html")).encode()
    parsed = parse_feed(whole[: whole.rindex(b"<item>") + 30], BASE)
    assert [e.title for e in parsed.entries] == ["One"]
    assert parsed.damage and "cut off" in parsed.damage
    assert parse_feed(whole, BASE).damage is None
    # a stray ampersand is ill-formed too, but feedparser reads the whole feed: no damage to report
    assert parse_feed(whole.replace(b"<title>Two", b"<title>Tom & Jerry"), BASE).damage is None


def test_a_json_feed_with_a_bom_odd_types_and_offset_dates_is_read_item_by_item():
    body = """{"version": "https://jsonfeed.org/version/1.1", "title": "Desk", "items": [
      {"url": "http://127.0.0.1:1/1.html", "title": ["a", "list"], "date_published": 1709900000},
      {"url": "http://127.0.0.1:1/2.html", "title": "Kyiv < Moscow?", "date_published": "2024-03-08T10:00:00.123-05:00"},
      {"url": "http://127.0.0.1:1/3.html", "content_text": "Plain", "date_published": "yesterday"}]}"""
    entries = parse_feed("\ufeff".encode() + body.encode(), BASE).entries
    assert [e.link[-6:] for e in entries] == ["1.html", "2.html", "3.html"]
    assert [e.title for e in entries] == [None, "Kyiv < Moscow?", None]
    assert [e.published for e in entries] == [None, "2024-03-08T15:00:00.123000+00:00", None]
    assert entries[2].summary == "Plain"
    with pytest.raises(FeedParseError, match="JSON"):
        parse_feed(b'{"version": "https://jsonfeed.org/version/1", "items": [1,]}', BASE)


def sitemap_index(children: list[str]) -> bytes:
    listed = "".join(f"<sitemap><loc>{url}</loc></sitemap>" for url in children)
    return f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{listed}</sitemapindex>'.encode()


def test_an_index_without_lastmod_is_read_newest_month_first():
    months = [f"http://127.0.0.1:1/sitemap-{year}-{month:02d}.xml" for year in (2024, 2025, 2026) for month in range(1, 13)]
    children = parse_sitemap(sitemap_index(["http://127.0.0.1:1/sitemap-pages.xml", *months]), BASE).children
    assert children[:2] == months[-1:-3:-1]
    assert children[-1] == "http://127.0.0.1:1/sitemap-pages.xml"  # no date at all: after the dated ones


def test_a_cut_off_sitemap_keeps_its_entries_and_says_it_was_damaged():
    urls = "".join(f"<url><loc>http://127.0.0.1:1/{i}.html</loc></url>" for i in range(5))
    body = f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'.encode()
    parsed = parse_sitemap(body[: int(len(body) * 0.55)], BASE, datetime(2000, 1, 1, tzinfo=timezone.utc))
    assert 0 < len(parsed.entries) < 5 and parsed.damage
    assert parse_sitemap(body, BASE).damage is None


LISTING = """<html><body>
<div class="site-menu"><a href="/world/">World</a> <a href="/sections/">More</a>
  <a href="/terms-and-conditions-of-use/">Terms and conditions of use</a></div>
<h2 class="section-title"><a href="/world/">World</a></h2>
<article class="card"><a class="kicker" href="/europe/">Europe</a>
  <h3><a href="/world/poland-signs-k2-tank-deal">Poland signs K2 tank deal</a></h3></article>
<a class="card" href="/world/ukraine-gets-air-defence"><img src="x.jpg"><h2>Ukraine gets air defence</h2></a>
<ul><li><a href="/news/12345-iran-ships-drones">Iran ships drones</a></li>
    <li><a href="/20261123/drony-1234567890.html">Дроны</a></li>
    <li><a href="/weather/">Weather</a></li></ul>
<div class="pagination"><a href="/page/2/">{next}</a></div>
</body></html>"""


@pytest.mark.parametrize("label", ["« Older Entries", "Следующая страница", "Page suivante ›"])
def test_a_listing_yields_its_stories_not_its_sections_menus_or_legal_pages(label):
    parsed = parse_listing(LISTING.format(next=label), "http://127.0.0.1:1/world/")
    assert [urlsplit(e.link).path for e in parsed.entries] == [
        "/world/poland-signs-k2-tank-deal",
        "/world/ukraine-gets-air-defence",  # the card's link wraps its headline
        "/news/12345-iran-ships-drones",
        "/20261123/drony-1234567890.html",
    ]
    assert parsed.next_page == "http://127.0.0.1:1/page/2/"  # not the menu's "More"


def test_opml_feeds_are_found_whatever_the_attribute_case_and_a_broken_file_names_its_line(tmp_path):
    opml = tmp_path / "subs.opml"
    opml.write_text("""<?xml version="1.0"?>
<opml version="1.0"><body><outline text="News">
  <outline text="Upper" XMLURL="http://127.0.0.1:1/upper.xml"/>
  <outline text="Camel" xmlURL="http://127.0.0.1:1/camel.xml"/>
  <outline text="Plain url" type="rss" url="http://127.0.0.1:1/url.xml"/>
  <outline text="A web page" type="link" url="http://127.0.0.1:1/page.html"/>
  <outline text="No address" type="rss" xmlUrl=""/>
  <outline text="Upper again" xmlUrl="http://127.0.0.1:1/upper.xml"/>
</outline></body></opml>""")
    result = run_armswatch("sources", "import", str(opml))
    assert result.returncode == 0, result.stderr
    assert [line.split('"')[1].rsplit("/", 1)[1] for line in result.stdout.splitlines() if line.startswith("url =")] == [
        "upper.xml", "camel.xml", "url.xml",
    ]
    assert "No address: a feed outline without xmlUrl" in result.stderr and "listed twice in the file" in result.stderr

    opml.write_text('<?xml version="1.0"?>\n<opml version="1.0"><body>\n<outline text="Tom & Jerry" xmlUrl="http://127.0.0.1:1/a.xml"/>\n</body></opml>')
    broken = run_armswatch("sources", "import", str(opml))
    assert broken.returncode != 0 and f"{opml}: line 3: not well-formed XML, nothing imported" in broken.stderr
    assert "[[sources]]" not in broken.stdout


def test_a_listing_source_that_serves_json_is_a_parse_error_not_an_empty_listing():
    with pytest.raises(ListingError, match="no links"):
        parse_listing('{"items": [{"url": "http://127.0.0.1:1/a.html"}]}', "http://127.0.0.1:1/section/")


def test_a_western_feed_without_a_charset_is_read_as_windows_1252():
    body = rss(item("Exército português compra blindados à Alemanha"), '<?xml version="1.0"?>').replace("Вести", "Diário")
    body = body.encode("cp1252")
    assert parse_feed(body, BASE).entries[0].title == "Exército português compra blindados à Alemanha"


def test_an_html_title_keeps_a_bare_less_than_and_a_cache_comment_is_no_cut():
    title = "Q&amp;amp;A: exports &lt; 5% of output, imports &gt; 10%"
    body = rss(item(title)) + "\n<!-- Performance optimized by W3 Total Cache -->\n"
    parsed = parse_feed(body.encode(), BASE)
    assert parsed.entries[0].title == "Q&A: exports < 5% of output, imports > 10%"
    assert parsed.damage is None


def test_white_space_before_the_xml_declaration_of_a_sitemap_is_no_damage():
    body = b'\n\n  <?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">' \
           b"<url><loc>http://127.0.0.1:1/a.html</loc></url></urlset>"
    parsed = parse_sitemap(body, BASE)
    assert [e.link for e in parsed.entries] == ["http://127.0.0.1:1/a.html"] and parsed.damage is None


def test_layout_classes_on_body_and_wrappers_do_not_hide_the_stories():
    page = """<html><body class="home right-sidebar nav-float-right"><div class="content-sidebar-wrap">
    <div class="nav-tabs-content has-menu-overlay"><h2><a href="/world/poland-signs-k2-tank-deal">Poland signs K2 deal</a></h2></div>
    </div><a href="/?page=2">Load more</a></body></html>"""
    parsed = parse_listing(page, "http://127.0.0.1:1/")
    assert [urlsplit(e.link).path for e in parsed.entries] == ["/world/poland-signs-k2-tank-deal"]
    assert parsed.next_page == "http://127.0.0.1:1/?page=2"


@pytest.mark.parametrize("label", ["Далі →", "← Попередні записи", "← Предыдущие записи", "Articoli meno recenti", "Avanti",
                                   "Ältere Artikel", "Suivante »", "Anteriores"])
def test_a_pager_without_rel_next_is_followed_in_the_languages_armswatch_reads(label):
    stories = "".join(
        f'<article><h2><a href="/news/2026/11/30/story-{i}-about-drones.html">Story {i} about the drones</a></h2></article>'
        for i in range(3)
    )
    page = f'<html><body><main>{stories}</main><div class="pager"><a href="/news/?p=2">{label}</a></div></body></html>'
    assert parse_listing(page, "http://127.0.0.1:1/news/", None).next_page == "http://127.0.0.1:1/news/?p=2"


def test_a_sitemap_over_the_protocols_50000_urls_is_read_to_the_limit_and_says_so():
    urls = "".join(f"<url><loc>http://127.0.0.1:1/a/{i}.html</loc></url>" for i in range(50_001))
    parsed = parse_sitemap(f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'.encode(), BASE)
    assert len(parsed.entries) == 50_000 and "50000 URLs" in parsed.damage


def test_an_opml_feed_spelt_two_ways_is_imported_once(tmp_path):
    """A reader's export may list one feed as "/лента.xml" and "/%D0%BB%D0%B5%D0%BD%D1%82%D0%B0.xml",
    and a config may hold the other spelling: one feed, one source."""
    opml = tmp_path / "subs.opml"
    opml.write_text(
        '<?xml version="1.0"?><opml version="2.0"><body>'
        '<outline text="Лента" type="rss" xmlUrl="http://127.0.0.1:9/лента.xml"/>'
        '<outline text="Lenta" type="rss" xmlUrl="http://127.0.0.1:9/%d0%bb%d0%b5%d0%bd%d1%82%d0%b0.xml"/>'
        "</body></opml>", encoding="utf-8")
    printed = run_armswatch("sources", "import", str(opml))
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.count("[[sources]]") == 1
    config = tmp_path / "c.toml"
    config.write_text('[[sources]]\nname = "lenta"\nurl = "http://127.0.0.1:9/%D0%BB%D0%B5%D0%BD%D1%82%D0%B0.xml"\n')
    appended = run_armswatch("sources", "import", str(opml), "--config", str(config))
    assert appended.returncode == 0, appended.stderr
    assert "0 feeds added" in appended.stdout and config.read_text().count("[[sources]]") == 1
