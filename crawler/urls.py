"""URL policy: which URLs may be fetched, and the canonical form an article is stored under.

courlan does the normalising (lower-cased host, default port and fragment dropped), so the
same article reached through two links is one row. The query is cleaned here: courlan's
tracker pattern is unanchored and also drops parameters that name the article (`cid`, `eid`,
`uid`, `gallery`, `source`), which would make different articles one row and fetch the
wrong page.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import courlan

# what no URL holds: a browser drops tabs and line breaks from one, not these (nor the bidi
# overrides that show a URL's host backwards)
_CONTROL_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def url_problem(url: str | None) -> str | None:
    """Why a URL is never fetched, or None. Only absolute http(s) URLs with a host and a valid
    port are (no file:, data:, javascript:, nor a port such as 99999 that Scrapy would refuse
    mid-crawl), and none carrying a user name or password: the URL names its source in the
    health table, the log and Datasette, which would show the password to all who read them."""
    if not url or not isinstance(url, str):
        return "no URL"
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018  raises ValueError when out of range or not a number
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an absolute http(s) URL"
    if parts.username is not None or parts.password is not None:
        return "it carries a user name or password"
    if _CONTROL_CHARACTER.search(url):
        return "it holds control characters"
    return None


def is_fetchable_url(url: str | None) -> bool:
    return url_problem(url) is None


def without_password(url: str) -> str:
    """The URL to show in a message: any user name and password replaced by ***."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()


# Parameters that only say how a reader arrived (campaigns, click ids, share widgets)
TRACKING_PARAMETER = re.compile(
    r"^(?:utm_|ns_|at_|pk_|mtm_|itm_|hsa_|vero_|oly_|mc_|_hs)"
    r"|^(?:fbclid|gclid|gclsrc|dclid|msclkid|yclid|twclid|ttclid|igshid|wbraid|gbraid|_ga|_gl|mkt_tok|ocid"
    r"|cmpid|icid|xtor|ref|ref_src|ref_url|referrer|spm|sr_share|s_cid|wt_mc|wt\.mc_id|smid|smtyp"
    r"|fb_action_ids|fb_action_types|fb_source|fb_ref|soc_src|soc_trk)$",
    re.IGNORECASE,
)


def canonical_url(url: str) -> str:
    """The form an article URL is stored and deduplicated under: courlan's normal form, the
    query sorted and without tracking parameters, no fragment."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        # bytes that are not UTF-8 (a windows-1251 "%D0%E0") go back out as they came
        query = parse_qs(parts.query, errors="surrogateescape")
        normalized = courlan.normalize_url(urlunsplit(parts._replace(query="", fragment="")))
    except (ValueError, AttributeError):
        return url
    if parts.query and "=" not in parts.query and "&" not in parts.query:
        cleaned = parts.query  # a bare id, as in index.php?12345
    else:
        kept = {name: query[name] for name in sorted(query) if not TRACKING_PARAMETER.search(name)}
        cleaned = urlencode(kept, doseq=True, errors="surrogateescape")
    normal = urlsplit(normalized)
    return urlunsplit(normal._replace(path=_normal_escapes(normal.path), query=cleaned, fragment=""))


_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _normal_escapes(path: str) -> str:
    """Percent-escapes as RFC 3986, 6.2.2 writes them: upper case ("%d0%bd" is "%D0%BD", as
    WordPress and others list their slugs in lower case), and none for letters, digits, "-._~"."""
    if "%" not in path:
        return path
    return _ESCAPE.sub(lambda m: c if (c := chr(int(m.group()[1:], 16))) in _UNRESERVED else m.group().upper(), path)


def _lower_escapes(path: str) -> str:
    return _ESCAPE.sub(lambda m: m.group().lower(), path)


def address_variants(url: str) -> list[str]:
    """The URL, then as a site may have listed the same page before: over the other scheme, with
    or without `www.` (a site moving to https relists every article under a new URL), with or
    without a trailing slash. Only for recognising what is stored: articles are fetched and
    stored under the URL as listed."""
    parts = urlsplit(url)
    host = parts.netloc
    hosts = [host, host[4:] if host.startswith("www.") else f"www.{host}"]
    schemes = [parts.scheme, "https" if parts.scheme == "http" else "http"]
    path = parts.path.rstrip("/")
    paths = [parts.path] + ([path if parts.path.endswith("/") else f"{path}/"] if path else [])
    if "%" in parts.path:  # stored before escapes were upper-cased (canonical_url): as the site wrote them
        paths += [_lower_escapes(variant) for variant in paths]
    # put together as urlunsplit would (a sitemap's 50,000 entries ask for 400,000 of them)
    rest = (f"?{parts.query}" if parts.query else "") + (f"#{parts.fragment}" if parts.fragment else "")
    return [f"{scheme}://{name}{variant}{rest}" for variant in paths for scheme in schemes for name in hosts]


def page_key(url: str) -> str:
    """What all the address_variants of a URL share: the page without scheme, `www.` or trailing
    slash. Two listings of one page in a run (a feed with `www.`, a sitemap without) are one page
    to fetch."""
    parts = urlsplit(url)
    host = parts.netloc.lower()
    host = host[4:] if host.startswith("www.") else host
    return host + _normal_escapes(parts.path).rstrip("/") + (f"?{parts.query}" if parts.query else "")


def host_of(url: str) -> str:
    """The URL's host, lower-cased ("" if none): also the key Scrapy's downloader groups requests by."""
    return urlsplit(url).hostname or ""  # .hostname is lower-cased already


def is_private_address(url: str) -> bool:
    """True when the URL names a loopback, private, link-local or reserved IP literal or 'localhost'."""
    host = host_of(url)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_global
