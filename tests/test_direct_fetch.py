"""The commands that fetch on the spot, without Scrapy (`armswatch extract URL`, `armswatch
sources check`, through crawler.direct_fetch), are as polite and as careful as the crawl: the
crawler's User-Agent, robots.txt, and compressed answers read within the size limit."""

from __future__ import annotations

import gzip
import re
import zlib

import pytest

from crawler import direct_fetch
from crawler.settings import USER_AGENT
from tests.conftest import run_armswatch
from tests.test_source_check import CRAWLER_UA, counting_site, gzip_bomb

STORY_BODY = " ".join(["The ministry confirmed that the country will buy 40 more air defence systems from its supplier."] * 6)
STORY = (
    "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Ministry buys air defence systems</title></head>"
    f"<body><article><h1>Ministry buys air defence systems</h1><p>{STORY_BODY}</p><p>{STORY_BODY}</p></article></body></html>"
).encode()
HTML = {"Content-Type": "text/html; charset=utf-8"}


def test_extract_sends_the_crawlers_user_agent_and_warns_when_robots_txt_forbids_the_page(tmp_path):
    routes = {
        "/robots.txt": (200, b"User-agent: testbot\nDisallow: /\n", {"Content-Type": "text/plain"}),
        "/story.html": (200, STORY, HTML),
    }
    config = tmp_path / "c.toml"
    config.write_text(f'[crawl]\nuser_agent = "{CRAWLER_UA}"\n')
    with counting_site(routes) as site:
        url = f"{site.base_url}/story.html"
        default = run_armswatch("extract", url, timeout=60)
        by_default = {ua for _, ua, *_ in site.requests}
        site.requests.clear()
        configured = run_armswatch("extract", "--config", str(config), url, timeout=60)
    # without a config: the default User-Agent, with its contact URL; the rules are for testbot only
    assert default.returncode == 0, default.stderr
    assert by_default == {USER_AGENT} and "warning" not in default.stderr
    # with one: its User-Agent, and robots.txt's refusal said, though the page asked for is shown
    assert configured.returncode == 0, configured.stderr
    assert {ua for _, ua, *_ in site.requests} == {CRAWLER_UA}
    assert f"armswatch: warning: robots.txt forbids {url}; fetched anyway" in configured.stderr
    assert "Ministry buys air defence systems" in configured.stdout


def test_extract_reads_a_gzipped_page_and_stops_a_gzip_bomb_at_its_size_limit():
    routes = {
        "/gz.html": (200, gzip.compress(STORY), {**HTML, "Content-Encoding": "gzip"}),
        "/bomb.html": (200, gzip_bomb(1000), {**HTML, "Content-Encoding": "gzip"}),
    }
    with counting_site(routes) as site:
        gzipped = run_armswatch("extract", f"{site.base_url}/gz.html", timeout=60)
        bomb = run_armswatch("extract", f"{site.base_url}/bomb.html", timeout=60, measure_memory=True)
    assert gzipped.returncode == 0, gzipped.stderr
    assert "Ministry buys air defence systems" in gzipped.stdout
    assert bomb.returncode == 2
    assert f"too large: {site.base_url}/bomb.html is larger than 5,242,880 bytes once decompressed (gzip)" in bomb.stderr
    assert bomb.peak_rss_mb < 400, bomb.peak_rss_mb  # inflated whole, it would be 1 GB


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    "coding, body",
    [
        ("gzip", gzip.compress(STORY)),
        ("x-gzip", gzip.compress(STORY)),
        ("deflate", zlib.compress(STORY)),  # as the standard says: zlib-wrapped
        ("deflate", raw_deflate(STORY)),  # as some servers send it
        ("gzip", gzip.compress(STORY[:1000]) + gzip.compress(STORY[1000:])),  # two members
    ],
)
def test_a_page_sent_compressed_although_identity_was_asked_comes_back_as_the_page(coding, body):
    with counting_site({"/p": (200, body, {**HTML, "Content-Encoding": coding})}) as site:
        fetched = direct_fetch.fetch(f"{site.base_url}/p", USER_AGENT, 5, 1_000_000)
    assert fetched.body == STORY


@pytest.mark.parametrize(
    "coding, body, error",
    [
        ("gzip", b"this is not gzip data at all", "cannot be decompressed (gzip)"),
        ("gzip", gzip.compress(STORY)[:-30], "the compressed data ends early"),
        ("br", b"\x1b\x00", "Content-Encoding 'br', which cannot be read here"),
        ("gzip", gzip.compress(b"x" * 200_000), "too large"),
    ],
)
def test_a_compressed_answer_that_cannot_be_read_is_an_error_naming_the_url(coding, body, error):
    with counting_site({"/p": (200, body, {"Content-Encoding": coding})}) as site:
        with pytest.raises(direct_fetch.Refused, match=re.escape(error)) as raised:
            direct_fetch.fetch(f"{site.base_url}/p", USER_AGENT, 5, 100_000)
    assert site.base_url + "/p" in str(raised.value)
    assert isinstance(raised.value, direct_fetch.TooLarge) == (error == "too large")


def test_extract_and_sources_check_ask_for_non_ascii_and_spaced_addresses_as_the_crawl_does(tmp_path):
    """urllib refuses an address with Cyrillic letters or a space; the crawl percent-encodes them
    (as browsers do), and so now do `extract` and `sources check`."""
    feed = (200, b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>x</title>'
                 b"<link>http://127.0.0.1/x</link></item></channel></rss>", {"Content-Type": "application/rss+xml"})
    routes = {
        "/%D0%BD%D0%BE%D0%B2%D0%BE%D1%81%D1%82%D0%B8/story.html": (200, STORY, HTML),
        "/a%20b.html": (200, STORY, HTML),
        "/%D0%BB%D0%B5%D0%BD%D1%82%D0%B0.xml": feed,
    }
    with counting_site(routes) as site:
        cyrillic = run_armswatch("extract", f"{site.base_url}/новости/story.html", timeout=60)
        spaced = run_armswatch("extract", f"{site.base_url}/a b.html", timeout=60)
        config = tmp_path / "c.toml"
        config.write_text(f'[[sources]]\nname = "lenta"\nurl = "{site.base_url}/лента.xml"\n')
        checked = run_armswatch("sources", "--config", str(config), "check", timeout=60)
    for result in (cyrillic, spaced):
        assert result.returncode == 0, result.stderr
        assert "Ministry buys air defence systems" in result.stdout
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines()[-1] == "1 ok"
