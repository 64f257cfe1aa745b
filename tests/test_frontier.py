"""A run names thousands of articles at once; the frontier lets them out a few per site at a time."""

from __future__ import annotations

import pytest

from crawler.config import Source
from crawler.items import FeedEntry
from spiders.frontier import ArticleFrontier

BIG = Source(name="big", url="http://big.example/feed.xml")
SMALL = Source(name="small", url="http://small.example/feed.xml")


def queue(frontier: ArticleFrontier, source: Source, host: str, count: int) -> None:
    for i in range(count):
        url = f"http://{host}/story-{i}.html"
        frontier.add(source, FeedEntry(link=url), url)


def urls(taken) -> list[str]:
    return [url for _site, (_source, _entry, url) in taken]


def test_a_site_with_a_long_backlog_leaves_room_for_the_others():
    frontier = ArticleFrontier(ahead_per_site=3)
    queue(frontier, BIG, "big.example", 1000)
    queue(frontier, SMALL, "small.example", 2)

    out = urls(frontier.take())

    assert out == [
        "http://big.example/story-0.html", "http://big.example/story-1.html", "http://big.example/story-2.html",
        "http://small.example/story-0.html", "http://small.example/story-1.html",
    ]
    assert len(frontier) == 997
    assert urls(frontier.take()) == []  # the big site has its three out


def test_each_finished_request_lets_the_next_article_of_its_site_out_in_feed_order():
    frontier = ArticleFrontier(ahead_per_site=2)
    queue(frontier, BIG, "big.example", 5)
    assert urls(frontier.take()) == ["http://big.example/story-0.html", "http://big.example/story-1.html"]

    frontier.finished("big.example")
    assert urls(frontier.take(["big.example"])) == ["http://big.example/story-2.html"]
    frontier.finished("big.example")
    frontier.finished("big.example")
    assert urls(frontier.take(["big.example"])) == ["http://big.example/story-3.html", "http://big.example/story-4.html"]
    assert len(frontier) == 0 and frontier.waiting == {}


def test_an_article_listed_twice_in_one_run_is_queued_once():
    frontier = ArticleFrontier(ahead_per_site=5)
    url = "http://big.example/story.html"
    assert frontier.add(BIG, FeedEntry(link=url), url) == "big.example"
    assert frontier.add(SMALL, FeedEntry(link=url + "?utm_source=x"), url) is None
    assert urls(frontier.take()) == [url]


def test_an_article_comes_out_as_its_feed_described_it():
    frontier = ArticleFrontier(ahead_per_site=1)
    url = "http://big.example/story.html"
    entry = FeedEntry(
        link=url + "?utm_source=rss", title="Иран поставляет «Шахеды»", published="2026-11-30T08:00:00+00:00",
        summary="Full text in the feed. " * 200, author="Редакция",
    )
    frontier.add(BIG, entry, url)

    [(site, (source, entry_out, url_out))] = frontier.take()

    assert (site, source, entry_out, url_out) == ("big.example", BIG, entry, url)


def test_a_lone_surrogate_in_a_feed_entry_does_not_lose_the_article():
    # JSON Feed's "\\ud800" escape decodes to a lone surrogate, which UTF-8 (and SQLite text) refuses
    frontier = ArticleFrontier(ahead_per_site=1)
    url = "http://big.example/story.html"
    entry = FeedEntry(link=url, title="broken \ud800 title", summary="and \udfff summary")
    assert frontier.add(BIG, entry, url) == "big.example"

    [(_site, (_source, entry_out, _url))] = frontier.take()

    assert entry_out == entry


def test_when_scrapy_is_idle_every_site_gets_its_full_allowance_again():
    frontier = ArticleFrontier(ahead_per_site=2)
    queue(frontier, BIG, "big.example", 4)
    assert len(urls(frontier.take())) == 2
    # two requests ended without a word to the frontier; Scrapy went idle
    frontier.nothing_out()
    assert urls(frontier.take()) == ["http://big.example/story-2.html", "http://big.example/story-3.html"]


def test_extra_finished_calls_never_let_more_than_the_allowance_out():
    frontier = ArticleFrontier(ahead_per_site=1)
    queue(frontier, BIG, "big.example", 3)
    frontier.finished("big.example")
    frontier.finished("big.example")
    assert len(urls(frontier.take())) == 1


def test_an_allowance_below_one_is_refused():
    with pytest.raises(ValueError, match="ahead_per_site"):
        ArticleFrontier(ahead_per_site=0)


def test_a_limit_in_all_bounds_the_pages_out_and_the_sites_take_turns():
    frontier = ArticleFrontier(ahead_per_site=2, ahead_in_all=3)
    for host in ("a.example", "b.example", "c.example"):
        queue(frontier, BIG, host, 4)
    assert urls(frontier.take()) == [
        "http://a.example/story-0.html", "http://a.example/story-1.html", "http://b.example/story-0.html"]
    assert urls(frontier.take()) == []  # three out in all

    frontier.finished("a.example")  # the room is the next site's turn, not a.example's again
    assert urls(frontier.take()) == ["http://c.example/story-0.html"]
    frontier.finished("b.example")  # then a.example's turn comes again, then b.example's
    assert urls(frontier.take()) == ["http://a.example/story-2.html"]
    frontier.finished("c.example")
    assert urls(frontier.take()) == ["http://b.example/story-1.html"]
