"""What a user sees from `extract_article`: the body of the story, once, without the page's noise."""

from __future__ import annotations

import gzip
import http.server
import json
import threading
from pathlib import Path

import pytest

from crawler.cleaning import comparison_key
from crawler.encoding import decode_html
from crawler.extraction import MAX_HTML_BYTES, article_report, extract_article, load_source
from crawler.urls import address_variants, canonical_url
from crawler.items import Article, FeedEntry
from tests.conftest import SEED_TEXTS

ROOT = Path(__file__).resolve().parents[1]
SEED_PAGES = ROOT / "crawler" / "demo_site" / "articles"
FIXTURES = Path(__file__).parent / "fixtures" / "extraction"
BASE = "http://127.0.0.1:8765"

# For each seed text: the 1-based line numbers that are noise (everything else non-blank is body),
# and strings that must not survive extraction.
SEEDS = {
    0: dict(
        file="000_ae635c7d7f31c170.txt",
        noise_lines={1, 3, 5, 6, 7},
        absent=["Home MONDE", "MONDE", "Lire aussi", "Caspienne", "Les plus lus", "cookies", "Suivez-nous", "newsletter"],
        language="fr",
        published="2024-01-18",
    ),
    1: dict(
        file="001_ec4bd792010e60b6.txt",
        noise_lines=set(range(1, 12)) | {13},
        absent=["UAH", "USD", "▼", "détecter e...", "À lire aussi", "intermédiaires tchèques", "Yoon"],
        language="fr",
        published="2024-08-30",
    ),
    2: dict(
        file="002_0140a4cf203c8984.txt",
        noise_lines={1},
        absent=["Lire aussi", "F-16", "Mots-clés", "Tous droits réservés"],
        language="fr",
        published="2024-02-07",
    ),
    3: dict(
        file="003_20acd37116a2ee7f.txt",
        noise_lines={1, 3},
        absent=["Incidents", "Lire aussi", "Fath-360", "Accepter"],
        language="fr",
        published="2024-11-09",
    ),
    4: dict(
        file="004_fcade4cba2916e83.txt",
        noise_lines={17, 18},
        absent=["Nerd televisivo", "Ninja di Twitter", "Leggi anche", "Fath-360", "Seguici", "newsletter"],
        language="it",
        published="2024-09-06",
    ),
}


def _seed_article(number: int) -> Article:
    url = f"{BASE}/articles/seed-{number:03d}.html"
    html = (SEED_PAGES / f"seed-{number:03d}.html").read_bytes().replace(b"{{BASE}}", BASE.encode())
    article = extract_article(html, url, {"content-type": "text/html; charset=utf-8"})
    assert article is not None
    return article


@pytest.mark.parametrize("number", sorted(SEEDS))
def test_seed_page_keeps_every_body_paragraph(number):
    spec = SEEDS[number]
    lines = (SEED_TEXTS / spec["file"]).read_text(encoding="utf-8").splitlines()
    body = [line for i, line in enumerate(lines, 1) if line.strip() and i not in spec["noise_lines"]]
    text_key = comparison_key(_seed_article(number).text)
    missing = [line for line in body if comparison_key(line) not in text_key]
    assert not missing


@pytest.mark.parametrize("number", sorted(SEEDS))
def test_seed_page_drops_the_noise_its_seed_lists(number):
    article = _seed_article(number)
    leftovers = [noise for noise in SEEDS[number]["absent"] if noise in article.text]
    assert not leftovers
    assert "0" not in article.text.split("\n\n"), "a lone counter survived"
    assert "AP" not in article.text.split("\n\n"), "an agency credit survived"


@pytest.mark.parametrize("number", sorted(SEEDS))
def test_seed_headline_appears_once_as_title_never_in_text(number):
    article = _seed_article(number)
    assert article.title
    assert comparison_key(article.title) not in comparison_key(article.text)
    assert article.text.split("\n\n")[0] != article.title


@pytest.mark.parametrize("number", sorted(SEEDS))
def test_seed_metadata(number):
    article = _seed_article(number)
    assert article.language == SEEDS[number]["language"]
    assert article.published.startswith(SEEDS[number]["published"])
    assert article.canonical_url == f"{BASE}/articles/seed-{number:03d}.html"
    assert article.site_name and article.author
    assert not article.summary_only
    assert article.missing == ()


def test_italian_key_points_bullets_are_kept_as_content():
    text = _seed_article(4).text
    assert "i punti principali:" in text
    assert "- Un funzionario statunitense ha affermato" in text


@pytest.mark.parametrize(
    ("name", "headers", "expected"),
    [
        ("uk-windows-1251.html", None, "Ґрунтовні докази їхнього походження"),
        ("ru-koi8-r.html", None, "баллистических ракет малой дальности"),
        ("ru-koi8-r.html", {"content-type": "text/html; charset=KOI8-R"}, "Каспийское море"),
        ("ru-windows-1251-undeclared.html", None, "баллистических ракет малой дальности"),
        ("ru-windows-1251-undeclared.html", {"content-type": "text/html; charset=windows-1251"}, "Каспийское море"),
        ("ar-windows-1256.html", None, "الصواريخ الباليستية قصيرة المدى"),
        ("fr-utf8-declared-latin1.html", None, "d’obtenir des armes de l’Iran"),
        ("fr-utf8-declared-latin1.html", {"content-type": "text/html; charset=windows-1251"}, "déclaré le représentant"),
        ("fr-utf8-no-charset.html", None, "livraisons de missiles balistiques"),
    ],
)
def test_legacy_and_mislabelled_encodings_give_correct_text(name, headers, expected):
    article = extract_article((FIXTURES / name).read_bytes(), "https://news.example.org/a", headers)
    assert article is not None
    assert expected in article.text
    assert "\ufffd" not in article.text


def test_decode_html_prefers_the_bytes_over_a_lying_declaration():
    page = '<meta charset="iso-8859-1"><p>Münitions: l’Iran</p>'.encode()
    assert "Münitions: l’Iran" in decode_html(page, {})
    assert decode_html("Снаряды".encode("cp1251"), {"content-type": "text/html; charset=windows-1251"}) == "Снаряды"


PAYWALL = b"""<html lang="en"><head><title>Iran ships drones to Russia | Paper</title>
<meta property="og:title" content="Iran ships drones to Russia"></head>
<body><div class="paywall"><p>Subscribe to continue reading.</p></div></body></html>"""
SUMMARY = "Iran has shipped more Shahed drones to Russia across the Caspian Sea, officials said on Tuesday."


def test_paywalled_page_falls_back_to_the_feed_summary():
    entry = FeedEntry(link="https://paper.example/a", title="Iran ships drones to Russia", summary=SUMMARY,
                      published="2024-03-12T07:45:00+01:00", author="Desk")
    article = extract_article(PAYWALL, "https://paper.example/a", {}, entry)
    assert article.summary_only is True
    assert article.text == SUMMARY
    assert article.title == "Iran ships drones to Russia"
    assert article.published == "2024-03-12T07:45:00+01:00"
    assert article.language == "en"


def test_empty_page_with_summary_is_summary_only_and_without_summary_is_none():
    entry = FeedEntry(link="https://paper.example/a", title="Drones", summary=SUMMARY)
    article = extract_article(b"", "https://paper.example/a", None, entry)
    assert article.summary_only and article.text == SUMMARY
    assert extract_article(b"", "https://paper.example/a") is None
    assert extract_article(b"\x00\xff\xfe garbage \x81\x8d", "https://paper.example/a") is None


def test_page_with_a_title_but_no_text_is_no_article():
    page = b"<html><head><title>Only a headline</title></head><body><nav>Home</nav></body></html>"
    assert extract_article(page, "https://paper.example/a") is None


@pytest.mark.parametrize(
    "page",
    [
        b'<?xml version="1.0"?><!DOCTYPE html [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b"<html><body><article><p>&e; Iran delivered drones to Russia, officials said on Monday in Kyiv.</p>"
        b"</article></body></html>",
        b"<html><body><p>" + b"<div>" * 5000 + b"Unclosed nesting about drones and missiles" + b"</p>",
        b"\xef\xbb\xbf<html><body><p>" + "Снаряды КНДР для России. ".encode("cp1251") * 30 + b"</p></body></html>",
    ],
)
def test_hostile_pages_never_raise_and_never_resolve_entities(page):
    article = extract_article(page, "https://paper.example/a")
    assert article is None or "root:" not in article.text


def test_oversized_page_is_truncated_not_fatal():
    article_html = (SEED_PAGES / "seed-002.html").read_bytes()
    huge = article_html.replace(b"</body>", b"<!--" + b"x" * (MAX_HTML_BYTES + 1024) + b"--></body>")
    article = extract_article(huge, "https://paper.example/a")
    assert article is not None and "Lukashenko" in article.text


def test_canonical_from_another_site_is_ignored_and_language_follows_the_text():
    page = (FIXTURES / "fr-utf8-no-charset.html").read_bytes().replace(
        b"<head>", b'<head><link rel="canonical" href="https://evil.example/steal">'
    ).replace(b'lang="fr"', b'lang="en"')
    article = extract_article(page, "https://www.paper.co.uk/a")
    assert article.canonical_url == "https://www.paper.co.uk/a"
    assert article.language == "fr"
    same_site = page.replace(b"https://evil.example/steal", b"https://news.paper.co.uk/canonical")
    assert extract_article(same_site, "https://www.paper.co.uk/a").canonical_url == "https://news.paper.co.uk/canonical"
    other_site = page.replace(b"https://evil.example/steal", b"https://paper.com.au/canonical")
    assert extract_article(other_site, "https://www.paper.co.uk/a").canonical_url == "https://www.paper.co.uk/a"


def test_missing_lists_what_the_page_does_not_say():
    article = extract_article((FIXTURES / "fr-utf8-no-charset.html").read_bytes(), "https://paper.example/a")
    assert set(article.missing) == {"author", "published"}


def test_report_shows_headline_metadata_and_text():
    article = _seed_article(3)
    report = article_report(article, as_json=False)
    assert report.startswith(article.title + "\n")
    assert "Published:  2024-11-09" in report and "Language:   fr" in report
    assert report.count(article.title) == 1
    as_json = json.loads(article_report(article, as_json=True))
    assert as_json["title"] == article.title and as_json["text"] == article.text


def test_load_source_reads_files_and_names_what_failed(tmp_path):
    page = tmp_path / "page.html"
    page.write_bytes(b"<html><body><p>x</p></body></html>")
    body, url, headers = load_source(str(page))
    assert body.startswith(b"<html>") and url.startswith("file://") and headers == {}
    with pytest.raises(ValueError, match="missing.html"):
        load_source(str(tmp_path / "missing.html"))
    with pytest.raises(ValueError, match="ftp://"):
        load_source("ftp://example.org/x.html")


def test_load_source_fetches_http_from_a_local_server():
    page = (FIXTURES / "uk-windows-1251.html").read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server API)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=windows-1251")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/a.html"
        body, final_url, headers = load_source(url)
        assert body == page and final_url == url
        assert "windows-1251" in headers["content-type"]
        article = extract_article(body, final_url, headers)
        assert "Пхеньян також передав балістичні ракети" in article.text
        with pytest.raises(ValueError, match="could not download"):
            load_source(f"http://127.0.0.1:{server.server_address[1] + 1 if server.server_address[1] < 65535 else 1}/")
    finally:
        server.shutdown()
        server.server_close()


def test_a_placeholder_publication_date_gives_way_to_the_feed_date():
    body = " ".join(["Officials said the shipment of artillery shells left the port on Monday night."] * 8)
    page = (
        '<html><head><script type="application/ld+json">{"@type": "NewsArticle",'
        ' "datePublished": "0001-01-01T00:00:00Z"}</script><title>Shells shipped</title></head>'
        f"<body><article><h1>Shells shipped</h1><p>{body}</p><p>{body}</p></article></body></html>"
    ).encode()
    entry = FeedEntry(link="https://paper.example/b", title="Shells shipped", published="2026-03-05T08:30:00+00:00")
    article = extract_article(page, "https://paper.example/b", {}, entry)
    assert article.published == "2026-03-05T08:30:00+00:00"


@pytest.mark.parametrize(
    "name, url, opening",
    [
        ("br-short-news-in-page-furniture.html.gz",
         "http://jaraguadosul.com.br/news/servi-o-de-atendimento-domiciliar-registra-arrombamento-em-dois-ve-culos",
         "A equipe do Serviço de Atendimento Domiciliar (SAD), do bairro Amizade, registrou"),
        ("am-readability-finds-the-article.html.gz", "http://www.panarmenian.net/eng/news/275221/",
         "Verified video footage, eyewitness testimony from people on the ground"),
    ],
)
def test_pages_that_need_the_readability_comparison_still_get_their_story(name, url, opening):
    article = extract_article(gzip.decompress((FIXTURES / name).read_bytes()), url)
    assert article is not None
    assert opening in article.text[:400]
    assert len(article.text) < 3000  # the story, not the page around it


def test_a_canonical_naming_the_homepage_or_a_section_is_not_the_article():
    page = (FIXTURES / "fr-utf8-no-charset.html").read_bytes()

    def canonical_of(href: str, url: str) -> str:
        tagged = page.replace(b"<head>", f'<head><link rel="canonical" href="{href}">'.encode())
        return extract_article(tagged, url).canonical_url

    story = "https://paper.example/news/2026/11/story.html"
    assert canonical_of("https://paper.example/", story) == story  # a CMS slip: every article would be one row
    assert canonical_of("/news/", story) == story
    assert canonical_of("https://paper.example/news/story-main.html?utm_source=amp#top",
                        "https://paper.example/news/amp/story.html") == "https://paper.example/news/story-main.html"
    assert canonical_of("/news/story", "https://paper.example/news/story/amp") == "https://paper.example/news/story"
    assert canonical_of("/story/", "https://paper.example/story/print") == "https://paper.example/story/"
    assert canonical_of("/news/123", "https://paper.example/news/123/some-slug") == "https://paper.example/news/123"


@pytest.mark.parametrize(
    "link, canonical",
    [
        ("https://Paper.example:443/view.php?cid=101&utm_source=rss#comments", "https://paper.example/view.php?cid=101"),
        ("https://paper.example/event?eid=5&fbclid=x&gclid=y", "https://paper.example/event?eid=5"),
        ("https://paper.example/photo?gallery=8&_ga=1&mc_eid=3", "https://paper.example/photo?gallery=8"),
        ("https://paper.example/a?p=4&id=7&ref=home", "https://paper.example/a?id=7&p=4"),
        ("https://paper.example/index.php?12345", "https://paper.example/index.php?12345"),  # a bare id
        ("https://paper.example/find?q=%D0%E0&utm_medium=rss", "https://paper.example/find?q=%D0%E0"),  # windows-1251 bytes
    ],
)
def test_parameters_that_name_the_article_survive_and_trackers_do_not(link, canonical):
    assert canonical_url(link) == canonical


@pytest.mark.parametrize(
    "text, charset, label",
    [
        ("Минобороны закупает беспилотники у Ирана, сообщает источник в правительстве. ", "cp1251", "iso-8859-1"),
        ("Минобороны закупает беспилотники у Ирана, сообщает источник в правительстве. ", "cp1251", "windows-1256"),
        ("وقعت المملكة العربية السعودية صفقة لشراء صواريخ باتريوت من الولايات المتحدة. ", "cp1256", "iso-8859-1"),
        ("وقعت المملكة العربية السعودية صفقة لشراء صواريخ باتريوت من الولايات المتحدة. ", "cp1256", "windows-1251"),
        ("Le ministère a commandé des obus à l'étranger. À Paris, Élysée déclare: ça coûte très cher. ", "cp1252", "iso-8859-1"),
        ("Die Bundeswehr bestellt größere Stückzahlen Munition über fünf Jahre. Ärger über Öl. ", "cp1252", "iso-8859-1"),
        ("ÚLTIMA HORA: ESPAÑA ANUNCIÓ LA ADQUISICIÓN DE AVIONES “EUROFIGHTER” ", "cp1252", "iso-8859-1"),
    ],
)
def test_a_charset_label_the_bytes_cannot_be_in_is_overruled(text, charset, label):
    """Every byte means something in windows-1251, -1252 or -1256: a wrong label decodes without
    error, into text no rule can match. Text that really is in the labelled charset keeps it."""
    page = f"<html><head><meta charset='{label}'></head><body><p>{text * 10}</p></body></html>".encode(charset)
    assert text in decode_html(page)
    assert text in decode_html(page, {"content-type": f"text/html; charset={label}"})


def test_a_title_is_one_line_of_at_most_a_thousand_characters():
    page = f"<html><head><title>Arms {'deal ' * 3000}</title></head><body><article><p>{'Text of the story. ' * 40}</p></article></body></html>"
    article = extract_article(page.encode(), "https://paper.example/long")
    assert article.title.startswith("Arms deal deal") and len(article.title) == 1000


STORY_RU = "Россия получила новую партию иранских беспилотников Shahed, сообщила разведка в понедельник. "
STYLE = "<style>" + ".site-header .nav-item a { color: #222; padding: 4px 8px; text-decoration: none; }\n" * 120 + "</style>"


def test_a_utf8_page_with_a_stray_byte_of_another_charset_is_still_read_as_utf8():
    """A CMS pasting one windows-1252 dash into a UTF-8 page must not turn the article into mojibake."""
    page = f"<html><head><meta charset='utf-8'>{STYLE}</head><body><p>{STORY_RU * 8}</p></body></html>".encode()
    page = page.replace("понедельник".encode(), "понедельник".encode() + b"\x96", 1)
    text = decode_html(page, {"content-type": "text/html; charset=utf-8"})
    assert STORY_RU in text and text.count("\ufffd") == 1
    french = "<p>Des obus nord-coréens livrés à la Russie lundi soir, selon Kyiv.</p>".encode() * 8
    french = french.replace(b"lundi ", b"lundi\xa0", 1)  # one windows-1252 no-break space
    assert "livrés à la Russie lundi soir" in decode_html(french)


@pytest.mark.parametrize("charset, meta", [("cp1251", "windows-1251"), ("koi8_r", "koi8-r")])
def test_a_server_default_latin1_header_yields_to_the_charset_the_page_declares(charset, meta):
    """Old servers label everything iso-8859-1; a page that says it is windows-1251 behind 5 KB of
    styles (all ASCII letters, which hid the misreading) is read as what it says."""
    page = f"<html><head><meta charset='{meta}'>{STYLE}</head><body><p>{STORY_RU * 3}</p></body></html>".encode(charset)
    assert STORY_RU in decode_html(page, {"content-type": "text/html; charset=iso-8859-1"})


def test_percent_escapes_are_stored_one_way_and_rows_stored_the_sites_way_are_still_found():
    assert canonical_url("https://paper.example/%d0%bd%d0%be-%7e1") == "https://paper.example/%D0%BD%D0%BE-~1"
    # a row an earlier version stored as the site wrote it, in lower case, is found by the lookup
    assert "https://paper.example/%d0%bd%d0%be" in address_variants(canonical_url("https://paper.example/%D0%BD%D0%BE"))


@pytest.mark.parametrize(
    "meta, header",
    [("", None), ("<meta charset='windows1251'>", None), ("", {"content-type": "text/html; charset=utf-8"})],
    ids=["undeclared", "label-python-does-not-know", "header-says-utf8"],
)
def test_a_windows_1251_page_nothing_right_declares_is_read_as_windows_1251(meta, header):
    """Detection took such a page for cp866 (box-drawing signs for capitals): the article was
    stored as junk and not flagged. A reading with signs in place of letters is not taken."""
    page = f"<html><head>{meta}<title>Новости</title>{STYLE}</head><body><p>{STORY_RU * 2}</p></body></html>"
    assert STORY_RU in decode_html(page.encode("cp1251"), header)


LEGACY_STORIES = {
    "es": "Rusia recibió drones iraníes a finales del verano, según funcionarios ucranianos. Las entregas se "
          "realizaron por vía marítima a través del mar Caspio, señala la investigación.",
    "it": "La Russia ha ricevuto droni iraniani alla fine dell'estate, secondo funzionari ucraini. Le consegne "
          "sono state effettuate via mare attraverso il Mar Caspio, si legge nell'inchiesta: così l'Europa è più vulnerabile.",
    "cs": "Rusko podle úředníků obdrželo koncem léta íránské drony. Dodávky byly uskutečněny po moři přes "
          "Kaspické moře, uvádí vyšetřování; odborníci hovoří o dělostřelecké munici.",
    "pl": "Rosja otrzymała irańskie drony pod koniec lata, według urzędników. Dostawy zostały zrealizowane "
          "drogą morską przez Morze Kaspijskie, podaje śledztwo; eksperci mówią o amunicji.",
}


@pytest.mark.parametrize(
    "language, charset, where",
    [("es", "cp1252", "html"), ("it", "cp1252", "html"), ("cs", "cp1250", "html"), ("pl", "cp1250", "html"),
     ("pl", "iso8859_2", "html"), ("es", "cp1252", "header")],
)
def test_an_undeclared_page_is_read_in_the_legacy_charset_of_the_language_it_names(language, charset, where):
    """No charset anywhere, bytes that are not UTF-8: detection alone read Spanish as windows-1250
    ("recibiу"), Italian as windows-1258 and Czech as windows-1252, every accent a wrong letter.
    The language the page (`<html lang>`) or its server names chooses among its legacy charsets,
    as browsers do by locale."""
    story = LEGACY_STORIES[language]
    lang = f" lang='{language}'" if where == "html" else ""
    headers = {"content-language": language} if where == "header" else None
    page = f"<html{lang}><head><title>{story[:30]}</title></head><body><article><p>{story}</p>" * 1
    page += f"<p>{story}</p></article></body></html>"
    article = extract_article(page.encode(charset), "https://news.example.org/a", headers)
    assert article is not None and story in article.text


def test_a_language_the_page_names_wrongly_does_not_misread_it():
    """A template's `lang="en"` on a windows-1251 Russian page: the Latin reading is refused."""
    page = f"<html lang='en'><head><title>Новости</title>{STYLE}</head><body><p>{STORY_RU * 2}</p></body></html>"
    assert STORY_RU in decode_html(page.encode("cp1251"))
