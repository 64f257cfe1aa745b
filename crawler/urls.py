"""URL policy: which URLs may be fetched, and the canonical form an article is stored under.

courlan does the normalising (lower-cased host, sorted query, tracking parameters and
fragments removed), so the same article reached through two links is one row.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit, urlunsplit

import courlan


def is_fetchable_url(url: str | None) -> bool:
    """Only absolute http(s) URLs with a host are ever fetched (no file:, data:, javascript:)."""
    if not url or not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def canonical_url(url: str) -> str:
    """The form an article URL is stored and deduplicated under.

    courlan lower-cases the host, sorts the query and drops tracking parameters
    (utm_*, fbclid, gclid, ref, ...); the fragment is dropped too. Its strict mode is not
    used: it also drops meaningful parameters such as `?q=` of a search feed.
    """
    url = url.strip()
    try:
        normalized = courlan.normalize_url(url)
    except (ValueError, AttributeError):
        return url
    return urlunsplit(urlsplit(normalized)._replace(fragment=""))


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
