"""Page bytes -> Article: trafilatura for the body, page metadata for the rest, cleaning for the noise.

Runs inside a process-pool worker, so everything heavy (the boilerplate patterns, the language
model) is built once at import and extract_article is a plain module-level function. It never
raises on hostile input: a page that yields nothing falls back to the feed entry's summary, and
a page that yields nothing at all gives None.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import threading
import unicodedata
import urllib.error
from collections.abc import Callable, Mapping
from dataclasses import asdict
from functools import lru_cache
from datetime import datetime
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import lxml.html
import py3langid
import trafilatura
from htmldate import find_date
from lxml import etree
from lxml.html import HtmlComment, HtmlElement, HtmlEntity, HtmlProcessingInstruction
from tld import get_fld
from trafilatura.external import SANITIZED_XPATH  # the elements that send trafilatura to jusText
from trafilatura.utils import repair_faulty_html

from crawler.cleaning import clean_text, normalize_space, prune_boilerplate
from crawler.dates import plausible_iso
from crawler.direct_fetch import Refused, RobotsRules, fetch
from crawler.encoding import decode_html
from crawler.items import Article, FeedEntry
from crawler.language_model import install as install_language_model
from crawler.language_model import share_language_model
from crawler.safe_text import one_line, without_controls
from crawler.settings import USER_AGENT
from crawler.trafilatura_backup import install as install_lean_tree_preparation
from crawler.trafilatura_xpaths import install as install_xpath_matchers
from crawler.urls import canonical_url

__all__ = ["MAX_HTML_BYTES", "article_report", "decode_html", "extract_article", "load_source"]

LOGGER = logging.getLogger(__name__)

MAX_HTML_BYTES = 5 * 1024 * 1024
# measured on the 181-page benchmark (bench/extraction.py): precision mode is cleaner and loses
# little; when it finds nothing, the balanced mode gets a second chance
TRAFILATURA_OPTIONS = {"favor_precision": True, "include_comments": False, "include_tables": True}
FALLBACK_OPTIONS = {"favor_precision": False, "include_comments": False, "include_tables": True}
# below this many characters a precision-mode result is treated as "nothing found"
MIN_BODY_CHARS = 250
# trafilatura's comparison with readability and jusText costs as much as its own extractor and
# changes its result only when that result is short, a small share of the page, or structurally
# odd (its rules: readability wins when over twice as long, or when ours has no paragraphs or is
# table-dominated; jusText when ours is short or holds page furniture). So the fast extraction
# runs first and the comparison only on such pages: on the 181-page benchmark it ran on 32 pages
# and every page came out as with the comparison everywhere (bench/extraction.py).
CONFIDENT_BODY_CHARS = 1000
CONFIDENT_PAGE_SHARE = 0.2
_FURNITURE = etree.XPath(SANITIZED_XPATH)
# language identification needs little text; more only costs time
LANG_SAMPLE_CHARS = 300
FETCH_TIMEOUT = 20
MAX_FIELD_CHARS = 1000  # of a title, an author, a site name: a headline is never longer
FETCH_MAX_BYTES = MAX_HTML_BYTES

_TITLE_SPLIT = re.compile(r"\s+[|–—-]\s+|\s+[:·•]\s+(?=[^:]*$)")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
# <head> only: a canonical link in the body is as likely to belong to an embedded story
_CANONICAL_LINKS = etree.XPath('/html/head/link[@rel="canonical"]/@href', smart_strings=False)
_AMP_LINKS = etree.XPath('/html/head/link[@rel="amphtml"]/@href', smart_strings=False)

# trafilatura's own parser settings, but every element is a plain HtmlElement: lxml.html's default
# lookup calls back into Python for each element lxml hands out (form fields get their own
# classes), and trafilatura walks the tree many times; no stage here or there uses form classes
_HTML_PARSER = etree.HTMLParser(
    collect_ids=False, default_doctype=False, encoding="utf-8", remove_comments=True, remove_pis=True
)
_HTML_PARSER.set_element_class_lookup(
    etree.ElementDefaultClassLookup(
        element=HtmlElement, comment=HtmlComment, pi=HtmlProcessingInstruction, entity=HtmlEntity
    )
)

# elements that never hold article text: trafilatura drops them too, but only after copying the
# tree three times and running its XPath passes and readability over them. JSON-LD stays: trafilatura
# reads article bodies from it when the page's own markup fails.
_TEXTLESS_ELEMENTS = etree.XPath(
    "//script[not(@type='application/ld+json')] | //style | //svg | //template | //link | //iframe"
)
# XML forbids the C0 controls but tab, LF and CR, and U+FFFE/U+FFFF (libxml2 stops at them)
_XML_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_XML_FORBIDDEN_BYTES = bytes(code for code in range(0x20) if code not in (0x09, 0x0A, 0x0D))
_REPAIR_WINDOW_CHARS = 4096 + 512

install_language_model()  # py3langid's model mapped from the cache: only what is read is resident
py3langid.classify("warm up")  # loads the model now (py3langid's own, without a cache), not in the first worker call
share_language_model()
install_xpath_matchers()  # trafilatura's pruning passes, same selections, a third of the time
install_lean_tree_preparation()  # no copy of the cleaned page that a fast extraction never reads
get_fld("http://example.co.uk/", fail_silently=True)  # and the public-suffix list


# --- metadata from the page head ----------------------------------------------------------------


def _meta_tags(tree: HtmlElement) -> dict[str, str]:
    """<meta property|name|itemprop=... content=...>, first value of each, keys lower-cased."""
    found: dict[str, str] = {}
    for meta in tree.iter("meta"):
        key = meta.get("property") or meta.get("name") or meta.get("itemprop")
        content = meta.get("content")
        if key and content and content.strip():
            found.setdefault(key.strip().lower(), normalize_space(content))
    return found


def _json_ld_objects(tree: HtmlElement) -> list[dict]:
    """Every JSON-LD object on the page, @graph members included; broken JSON is skipped."""
    objects: list[dict] = []
    for script in tree.iter("script"):
        if (script.get("type") or "").strip().lower() != "application/ld+json":
            continue
        try:
            data = json.loads(script.text or "")
        except (ValueError, TypeError):
            continue
        pending = data if isinstance(data, list) else [data]
        while pending:
            item = pending.pop(0)
            if isinstance(item, dict):
                objects.append(item)
                graph = item.get("@graph")
                if isinstance(graph, list):
                    pending.extend(graph)
    return objects


def _json_ld_article(objects: list[dict]) -> dict:
    """The first object that describes an article (NewsArticle, BlogPosting, ...)."""
    for obj in objects:
        kind = obj.get("@type")
        kinds = kind if isinstance(kind, list) else [kind]
        if any(isinstance(k, str) and (k.endswith("Article") or k in ("BlogPosting", "Report")) for k in kinds):
            return obj
    return {}


def _names(value: object) -> list[str]:
    """Author names from JSON-LD: a string, an object with a name, or a list of either."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return _names(value.get("name"))
    if isinstance(value, list):
        return [name for item in value for name in _names(item)]
    return []


def _first_text(tree: HtmlElement, xpath: str) -> str | None:
    for element in tree.xpath(xpath):
        text = normalize_space(element.text_content())
        if text:
            return text
    return None


def _title_candidates(tree: HtmlElement, meta: dict[str, str], ld: dict) -> list[str]:
    """Every form the headline takes on the page, best first; all of them are stripped from the text."""
    h1 = _first_text(tree, "//h1")
    og = meta.get("og:title") or meta.get("twitter:title")
    headline = ld.get("headline") if isinstance(ld.get("headline"), str) else None
    html_title = _first_text(tree, "/html/head/title")
    candidates: list[str] = []
    # h1 is the cleanest when the other sources confirm it; og/<title> often carry the site name
    if h1 and any(h1.casefold() in (c or "").casefold() for c in (og, headline, html_title)):
        candidates.append(h1)
    for value in (og, headline):
        if value:
            candidates.append(normalize_space(value))
    if html_title:
        parts = _TITLE_SPLIT.split(html_title)
        candidates.append(max(parts, key=len) if len(parts) > 1 else html_title)
        candidates.append(html_title)
    if h1:
        candidates.append(h1)
    return list(dict.fromkeys(c for c in candidates if c))


def _published(tree: HtmlElement, meta: dict[str, str], ld: dict) -> str | None:
    """The publication timestamp the page states in its metadata (JSON-LD, Open Graph), if any."""
    for value in (ld.get("datePublished"), meta.get("article:published_time"), meta.get("datepublished")):
        if isinstance(value, str) and _ISO_DATE.match(value.strip()) and plausible_iso(value.strip()[:10]):
            value = value.strip()
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
                return value
            except ValueError:
                return value[:10]
    return None


def _guessed_date(tree: HtmlElement, url: str) -> str | None:
    """htmldate's best guess from the page's text and markup: a sidebar's or a comment's date may
    win it, so a feed's or sitemap's own date for the article comes first."""
    try:
        return find_date(tree, url=url, extensive_search=False, original_date=True)
    except Exception:  # htmldate is best effort; a date is never worth losing the article
        return None


def _author(meta: dict[str, str], ld: dict) -> str | None:
    names = _names(ld.get("author"))
    if not names:
        for key in ("author", "article:author", "byl", "parsely-author", "dc.creator", "sailthru.author"):
            value = meta.get(key)
            if value and not value.startswith(("http://", "https://")):
                names = [re.sub(r"^(?:by|par|di|von|por)\s+", "", value, flags=re.IGNORECASE)]
                break
    names = list(dict.fromkeys(normalize_space(n) for n in names if n and n.strip()))
    return ", ".join(names) or None


def _site_name(meta: dict[str, str], ld: dict) -> str | None:
    publisher = ld.get("publisher")
    name = meta.get("og:site_name") or (publisher.get("name") if isinstance(publisher, dict) else None)
    return normalize_space(name) if isinstance(name, str) and name.strip() else None


def registered_domain(url: str) -> str | None:
    """example.co.uk for https://news.example.co.uk/x; the host itself for IPs and localhost."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return _registered_domain_of_host(host) if host else None


@lru_cache(maxsize=4096)
def _registered_domain_of_host(host: str) -> str:
    return get_fld(f"http://{host}/", fail_silently=True) or host


def _canonical(tree: HtmlElement, meta: dict[str, str], url: str) -> str:
    """rel=canonical or og:url in canonical form, when it can be this page's own address: on the
    same site (a page cannot claim another site's URL), and neither the site's root nor a section
    above the page, a CMS slip that would make every article of the site one row."""
    candidates = _CANONICAL_LINKS(tree) + [meta.get("og:url", "")]
    own_host = urlsplit(url).hostname
    for href in candidates:
        href = (href or "").strip()
        if not href:
            continue
        absolute = urljoin(url, href)
        try:
            parts = urlsplit(absolute)
        except ValueError:
            continue
        if parts.scheme not in ("http", "https") or not parts.hostname or not own_host:
            continue
        if parts.hostname == own_host or registered_domain(absolute) == registered_domain(url):
            if _root_or_section_above(parts.path, urlsplit(url).path):
                continue
            return canonical_url(absolute)
    return canonical_url(url)


def _amp_address(tree: HtmlElement, url: str) -> str | None:
    """The page's AMP version (rel=amphtml), in canonical form, when it is on the same site: a feed
    or sitemap that lists it later names this article, not a new one."""
    for href in _AMP_LINKS(tree)[:1]:
        absolute = urljoin(url, (href or "").strip())
        try:
            site = registered_domain(url)
            same_site = urlsplit(absolute).scheme in ("http", "https") and site is not None and registered_domain(absolute) == site
        except ValueError:
            return None
        return canonical_url(absolute) if same_site and absolute != url else None
    return None


_VARIANT_ENDINGS = ("amp", "amp.html", "amphtml", "print", "print.html", "full")  # /story/amp names the page /story
_SECTION_WORD = re.compile(r"[^\W\d_]+")  # "news", "world": no digits, no second word


def _root_or_section_above(candidate_path: str, page_path: str) -> bool:
    """True for "/" or "/news/" as the canonical of /news/2026/story.html; not for /story of
    /story/amp or /story/print, nor for /news/123 of /news/123/some-slug (an id is no section)."""
    candidate, page = candidate_path.rstrip("/"), page_path.rstrip("/")
    if not candidate:
        return True
    if not page.startswith(candidate + "/") or page[len(candidate) + 1 :].lower() in _VARIANT_ENDINGS:
        return False
    return _SECTION_WORD.fullmatch(candidate.rsplit("/", 1)[-1]) is not None


def _declared_language(tree: HtmlElement, meta: dict[str, str]) -> str | None:
    value = tree.get("lang") or meta.get("og:locale") or meta.get("content-language") or ""
    code = re.split(r"[-_]", value.strip().lower())[0]
    return code if re.fullmatch(r"[a-z]{2}", code) else None


def detect_language(text: str, declared: str | None) -> str | None:
    """The page's declared language when the text agrees (it is among py3langid's two best guesses)."""
    sample = text[:LANG_SAMPLE_CHARS]
    if len(sample) < 20:
        return declared
    ranked = [code for code, _ in py3langid.rank(sample)[:2]]
    if declared and declared in ranked:
        return declared
    return ranked[0] if ranked else declared


# --- the body ----------------------------------------------------------------------------------


def _extract_body(tree: HtmlElement, url: str) -> str:
    """trafilatura in precision mode; the balanced mode when precision finds (almost) nothing."""
    document = _bare_extraction(tree, url, TRAFILATURA_OPTIONS, fast=True)
    if document is None or _needs_comparison(document, tree):
        document = _bare_extraction(tree, url, TRAFILATURA_OPTIONS, fast=False)
    text = _normalized_text(document)
    if len(text) < MIN_BODY_CHARS:
        # rare, and the balanced mode's recall steps follow other rules: no fast path there
        balanced = _normalized_text(_bare_extraction(tree, url, FALLBACK_OPTIONS, fast=False))
        if len(balanced) > len(text):
            text = balanced
    return text


def _normalized_text(document) -> str:
    return unicodedata.normalize("NFC", document.text or "") if document is not None else ""


def _bare_extraction(tree: HtmlElement, url: str, options: dict, fast: bool):
    try:
        return trafilatura.bare_extraction(tree, url=url, output_format="python", fast=fast, **options)
    except Exception:  # trafilatura's own failures mean "no body", never a crash
        LOGGER.debug("trafilatura failed on %s", url, exc_info=True)
        return None


def _needs_comparison(document, tree: HtmlElement) -> bool:
    """Whether readability or jusText could replace this fast result (see CONFIDENT_BODY_CHARS)."""
    length = len(document.text or "")
    body = document.body
    if length < CONFIDENT_BODY_CHARS or body is None or _FURNITURE(body):
        return True
    paragraphs = body.findall(".//p")
    if not paragraphs or len(body.findall(".//table")) > len(paragraphs):
        return True
    return length < CONFIDENT_PAGE_SHARE * len(" ".join(tree.text_content().split()))


def _parse(html: bytes, headers: Mapping[str, str] | None) -> HtmlElement | None:
    """The page as trafilatura would parse it, only cheaper; None when it is not HTML."""
    try:
        text = decode_html(html[:MAX_HTML_BYTES], headers)
        try:
            tree = _parse_text(text)
        except Exception:  # lxml refused the bytes: trafilatura's own path decides
            tree = None
        if tree is not None:
            return tree
        return trafilatura.load_html(text)  # its detours for pages that are barely HTML
    except Exception:
        LOGGER.debug("unparsable page", exc_info=True)
        return None


def _parse_text(text: str) -> HtmlElement | None:
    """Parse UTF-8 bytes (libxml2's own encoding), repairing only where trafilatura's repairs can apply.

    trafilatura's load_html runs its repairs (characters XML forbids, a doctype libxml2 misreads,
    a self-closing <html/>) as regexes over the whole string; the forbidden characters are found
    with one C-level pass over the bytes instead, and the other two repairs look at the first
    lines only.
    """
    if "\ufffe" in text or "\uffff" in text:
        text = _XML_FORBIDDEN.sub("", text)
    raw = text.encode("utf-8", "replace")
    if len(raw.translate(None, _XML_FORBIDDEN_BYTES)) != len(raw):
        text = _XML_FORBIDDEN.sub("", text)
        raw = text.encode("utf-8", "replace")
    # the first lines, ending at a line end, and reaching past the 4096 characters trafilatura checks
    cut = text.find("\n", _REPAIR_WINDOW_CHARS) + 1 or len(text)
    head = text[:cut]
    beginning = head[:50].lower()
    repaired = repair_faulty_html(head, beginning)
    if repaired != head:
        raw = repaired.encode("utf-8", "replace") + raw[len(head.encode("utf-8", "replace")) :]
    tree = lxml.html.fromstring(raw, parser=_HTML_PARSER)
    # trafilatura's test for "is this HTML at all"
    if tree is None or len(tree) < (1 if "html" in beginning else 2):
        return None
    return tree


def extract_article(
    html: bytes,
    url: str,
    headers: Mapping[str, str] | None = None,
    entry: FeedEntry | None = None,
) -> Article | None:
    """bytes of a page -> cleaned Article; None when neither the page nor the feed entry yields text.

    Input beyond MAX_HTML_BYTES is cut before parsing. Never raises on bad HTML or encodings.
    """
    if isinstance(html, str):  # tolerate callers that already decoded the page
        html = html.encode("utf-8", errors="replace")
    try:
        return _extract(html or b"", url, headers, entry)
    except Exception:  # a worker must survive any page; log it and keep what the feed said
        LOGGER.exception("extraction failed for %s", url)
        return entry_article(url, entry)


def _extract(html: bytes, url: str, headers: Mapping[str, str] | None, entry: FeedEntry | None) -> Article | None:
    tree = _parse(html, headers)
    if tree is None:
        return entry_article(url, entry)
    meta = _meta_tags(tree)
    ld = _json_ld_article(_json_ld_objects(tree))
    titles = _title_candidates(tree, meta, ld)
    if entry is not None and entry.title:
        titles.append(normalize_space(entry.title))
    published = _published(tree, meta, ld) or (entry.published if entry else None) or _guessed_date(tree, url)
    author = _author(meta, ld)
    declared_language = _declared_language(tree, meta)
    canonical = _canonical(tree, meta, url)
    amp = _amp_address(tree, url)
    site_name = _site_name(meta, ld)

    for element in _TEXTLESS_ELEMENTS(tree):
        element.drop_tree()
    prune_boilerplate(tree)
    text = clean_text(_extract_body(tree, url), titles)
    summary_only = False
    if entry is not None and entry.summary and len(text) < MIN_BODY_CHARS:
        # an empty or paywalled page: the feed's summary says more than the page showed
        summary = clean_text(entry.summary, titles)
        if len(summary) > len(text):
            text, summary_only = summary, True
    if not text:
        return None
    title = titles[0] if titles else None
    return _article(
        url=url,
        canonical_url=canonical,
        title=title,
        text=text,
        author=author or (entry.author if entry else None),
        published=published,
        site_name=site_name,
        language=detect_language(text, declared_language),
        summary_only=summary_only,
        other_addresses=(amp,) if amp else (),
    )


def entry_article(url: str, entry: FeedEntry | None) -> Article | None:
    """What the feed said, when the page itself cannot be read."""
    if entry is None or not (entry.summary or "").strip():
        return None
    text = clean_text(entry.summary or "", [entry.title or ""])
    if not text:
        return None
    return _article(
        url=url,
        canonical_url=url,
        title=entry.title,
        text=text,
        author=entry.author,
        published=entry.published,
        site_name=None,
        language=detect_language(text, None),
        summary_only=True,
    )


def _article(**fields: object) -> Article:
    """The Article as stored: its one-line fields and its text without control or bidi-override
    characters, whichever part of the page or the feed they came from (crawler.safe_text)."""
    for name in ("title", "author", "site_name"):
        fields[name] = (one_line(fields[name]) or "")[:MAX_FIELD_CHARS] or None  # type: ignore[arg-type]
    fields["text"] = without_controls(fields["text"])  # type: ignore[arg-type]
    missing = tuple(
        name for name in ("title", "author", "published", "language", "text") if not fields.get(name)
    )
    return Article(missing=missing, **fields)  # type: ignore[arg-type]


# --- the CLI's view ------------------------------------------------------------------------------


def article_report(article: Article, as_json: bool) -> str:
    """What `armswatch extract` prints: the headline, one line per metadata field, then the text."""
    if as_json:
        return json.dumps(asdict(article), ensure_ascii=False, indent=2)
    lines = [article.title or "(no title)", "=" * min(len(article.title or "(no title)"), 80)]
    for label, value in (
        ("URL", article.url),
        ("Canonical", article.canonical_url if article.canonical_url != article.url else None),
        ("Site", article.site_name),
        ("Author", article.author),
        ("Published", article.published),
        ("Language", article.language),
        ("Body", "feed summary only (the page gave no text)" if article.summary_only else None),
        ("Not found", ", ".join(article.missing) if article.missing else None),
    ):
        if value:
            lines.append(f"{label + ':':<11} {value}")
    lines += ["", article.text or "(no text)"]
    return "\n".join(lines)


def _warning_robots_check(user_agent: str, warn: Callable[[str], None]) -> Callable[[str], None]:
    """A robots.txt check that warns instead of refusing: a page asked for by hand is still shown."""
    robots = RobotsRules(user_agent, FETCH_TIMEOUT)

    def check(url: str) -> None:
        try:
            robots.check(url)
        except Refused as refusal:
            warn(f"{refusal}; fetched anyway, as asked (a crawl would not fetch it)")

    return check


def load_source(
    file_or_url: str,
    user_agent: str = USER_AGENT,
    obey_robots: bool = True,
    warn: Callable[[str], None] | None = None,
) -> tuple[bytes, str, dict]:
    """(body, url, headers) from a local file or an http(s) URL; errors name what could not be read.

    A URL is fetched with `user_agent` (the crawler's, with its contact URL). It is a page the
    user asked for by hand, so robots.txt does not stop it; but when robots.txt (read as the
    crawl reads it) forbids it, or a redirect target, or cannot be read, `warn` is told why:
    the crawl would not fetch that page. robots.txt is read beside the page, not before it, so
    a dead host costs one timeout, not two.

    Raises ValueError for anything else (ftp:, file:, a missing file, a failed download).
    """
    scheme = urlsplit(file_or_url).scheme.lower()
    if scheme in ("http", "https"):
        robots_check = _warning_robots_check(user_agent, warn) if obey_robots and warn is not None else None
        asked = threading.Thread(target=robots_check, args=(file_or_url,), daemon=True) if robots_check else None
        if asked is not None:
            asked.start()
        try:
            fetched = fetch(file_or_url, user_agent, FETCH_TIMEOUT, FETCH_MAX_BYTES, robots_check)
        except (urllib.error.URLError, TimeoutError, OSError, ValueError, http.client.HTTPException) as err:
            raise ValueError(f"could not download {file_or_url}: {err}") from err
        finally:
            if asked is not None:
                asked.join()
        return fetched.body, fetched.url, fetched.headers
    if scheme and len(scheme) > 1:  # "c:" is a Windows drive, not a scheme
        raise ValueError(f"{file_or_url}: only local files and http(s) URLs can be extracted")
    path = Path(file_or_url)
    try:
        with path.open("rb") as handle:
            body = handle.read(FETCH_MAX_BYTES + 1)
    except OSError as err:
        raise ValueError(f"could not read {path}: {err.strerror or err}") from err
    return body[:FETCH_MAX_BYTES], path.resolve().as_uri(), {}
