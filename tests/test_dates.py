"""Publication dates as sources give them: Moscow and Central European times in feeds, dates
no article can have, date-only sitemap entries at the edge of a window, and a page whose only
date is its sidebar's."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from crawler.extraction import extract_article
from crawler.items import FeedEntry
from spiders.feeds import parse_feed
from spiders.sitemaps import parse_sitemap

BASE = "http://127.0.0.1:1/"


def rss_with_dates(dates: list[str]) -> bytes:
    items = "".join(
        f"<item><title>Story {i}</title><link>{BASE}a/{i}.html</link><pubDate>{date}</pubDate></item>"
        for i, date in enumerate(dates)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>{items}</channel></rss>'.encode()


def urlset(lastmods: dict[str, str]) -> bytes:
    urls = "".join(f"<url><loc>{BASE}{path}</loc><lastmod>{date}</lastmod></url>" for path, date in lastmods.items())
    return f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'.encode()


def test_feed_times_in_moscow_kyiv_and_central_european_zones_are_stored_in_utc():
    feed = rss_with_dates([
        "Tue, 03 Mar 2026 10:00:00 MSK",
        "Tue, 03 Mar 2026 10:00:00 EEST",
        "Tue, 03 Mar 2026 10:00:00 CET",
        "Tue, 03 Mar 2026 10:00:00 +0300",
        "Tue, 03 Mar 2026 10:00:00 EST",
        "Tue, 03 Mar 2026 10:00:00",  # no zone: read as UTC, as an ISO date without one is
    ])
    assert [entry.published for entry in parse_feed(feed, BASE).entries] == [
        "2026-03-03T07:00:00+00:00",
        "2026-03-03T07:00:00+00:00",
        "2026-03-03T09:00:00+00:00",
        "2026-03-03T07:00:00+00:00",
        "2026-03-03T15:00:00+00:00",
        "2026-03-03T10:00:00+00:00",
    ]


def test_a_feed_date_no_article_can_have_is_no_date():
    """A CMS placeholder of 1970, or a pinned item dated 2038, would top every newest-first view
    and make a dead feed look alive."""
    future = (datetime.now(timezone.utc) + timedelta(days=400)).strftime("%a, %d %b %Y 10:00:00 GMT")
    feed = rss_with_dates(["Thu, 01 Jan 1970 00:00:00 GMT", future, "Tue, 03 Mar 2026 10:00:00 GMT"])
    assert [entry.published for entry in parse_feed(feed, BASE).entries] == [None, None, "2026-03-03T10:00:00+00:00"]


def test_a_date_only_sitemap_entry_is_the_whole_day_for_the_date_window():
    """A story of yesterday 23:00 listed as "yesterday" is inside a one-day window run this morning."""
    now = datetime.now(timezone.utc)
    since = now - timedelta(days=1)
    yesterday = since.date().isoformat()
    parsed = parse_sitemap(
        urlset({"a/yesterday.html": yesterday, "a/last-year.html": f"{now.year - 1}-06", "a/old.html": "2017-01-01"}),
        BASE, since,
    )
    assert [(entry.link, entry.published) for entry in parsed.entries] == [(f"{BASE}a/yesterday.html", yesterday)]
    assert parsed.skipped_old == 2


def test_sitemap_entries_are_ordered_in_true_time_whatever_their_zones():
    parsed = parse_sitemap(urlset({
        "a/moscow.html": "2026-11-30T06:30:00+03:00",  # 03:30 UTC
        "a/utc.html": "2026-11-30T05:00:00Z",
        "a/rfc822.html": "Mon, 30 Nov 2026 08:00:00 GMT",
    }), BASE)
    assert [(entry.link[len(BASE):], entry.published) for entry in parsed.entries] == [
        ("a/rfc822.html", "2026-11-30T08:00:00+00:00"),
        ("a/utc.html", "2026-11-30T05:00:00+00:00"),
        ("a/moscow.html", "2026-11-30T03:30:00+00:00"),
    ]


def test_the_feeds_date_beats_a_date_guessed_from_the_pages_sidebar():
    body = " ".join(["Officials said the shipment of artillery shells left the port on Monday night."] * 8)
    sidebar = '<aside><h3>Read also</h3><ul><li><a href="/old">Old story</a> <time datetime="2024-08-30T09:00:00+03:00">30.08.2024</time></li></ul></aside>'
    page = (
        "<html><head><title>Shells shipped</title></head><body>"
        f"<article><h1>Shells shipped</h1><p>{body}</p><p>{body}</p></article>{sidebar}</body></html>"
    ).encode()
    entry = FeedEntry(link="https://paper.example/b", title="Shells shipped", published="2026-03-05T08:30:00+00:00")
    assert extract_article(page, "https://paper.example/b", {}, entry).published == "2026-03-05T08:30:00+00:00"
    # the page's own metadata still wins over the feed
    stated = page.replace(b"<title>", b'<meta property="article:published_time" content="2026-03-05T10:00:00+02:00"><title>')
    assert extract_article(stated, "https://paper.example/b", {}, entry).published == "2026-03-05T10:00:00+02:00"
