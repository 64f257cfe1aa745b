"""One URL fetched now, outside Scrapy: for the commands that read a single page or feed on the
spot (`armswatch extract URL`, `armswatch sources check`).

The crawl's rules hold here too: only http(s) is fetched, and so only http(s) redirects are
followed (urllib alone would follow one to ftp://, sending a login to whatever answers);
the time and the size of a download are bounded.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

from crawler.urls import is_fetchable_url


@dataclass(frozen=True)
class Fetched:
    status: int
    body: bytes  # cut to max_bytes
    url: str  # after redirects
    headers: dict[str, str]  # names in lower case


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    max_redirections = 5

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        if not is_fetchable_url(newurl):
            raise urllib.error.HTTPError(req.full_url, code, f"redirect to a non-http(s) URL refused: {newurl}", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch(url: str, user_agent: str, timeout: float, max_bytes: int) -> Fetched:
    """The URL's answer. Raises ValueError for a URL that is not fetched at all, and urllib's
    errors (HTTPError for a status of 400 or more, URLError, OSError, TimeoutError) otherwise."""
    if not is_fetchable_url(url):
        raise ValueError(f"not an http(s) URL: {url}")
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    request = urllib.request.Request(url, headers={"User-Agent": user_agent, "Accept-Encoding": "identity"})
    with opener.open(request, timeout=timeout) as response:
        body = response.read(max_bytes + 1)
        headers = {name.lower(): value for name, value in response.headers.items()}
        return Fetched(response.status, body[:max_bytes], response.geturl(), headers)
