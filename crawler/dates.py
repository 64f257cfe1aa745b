"""Publication dates as sources give them: read, checked, and put in one order.

Feeds, sitemaps and pages date their articles in several notations and zones, and sometimes
with values no article has (a CMS placeholder of 1970, a pinned item dated 2038). Such a
date would top every newest-first view and make a dead feed look alive, so it is no date.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime, parsedate_tz

EARLIEST_YEAR = 1990  # an earlier "published" date is a CMS placeholder
FUTURE_SLACK = timedelta(days=2)  # a later date is no publication date (zones and clocks aside)

# Zone names RFC 822 does not define, which feedparser reads as UTC: those of the outlets
# armswatch follows (Moscow, Kyiv, Central Europe) and a few more that feeds are seen to use.
ZONE_HOURS = {
    "MSK": 3, "MSD": 4, "EET": 2, "EEST": 3, "CET": 1, "CEST": 2, "MEZ": 1, "MESZ": 2,
    "WET": 0, "WEST": 1, "BST": 1, "TRT": 3, "IRST": 3.5, "JST": 9, "KST": 9,
    "HKT": 8, "SGT": 8, "AEST": 10, "AEDT": 11,
}
_RFC822_NAMED_ZONE = re.compile(
    r"^\s*(?:[A-Za-z]{3,9},?\s*)?(\d{1,2}\s+[A-Za-z]{3,9}\.?\s+\d{2,4}\s+\d{1,2}:\d{2}(?::\d{2})?)\s*([A-Za-z]{3,5})?\s*$"
)


def plausible(moment: datetime) -> bool:
    """A date an article can have been published on, seen from now."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.year >= EARLIEST_YEAR and moment <= datetime.now(timezone.utc) + FUTURE_SLACK


def plausible_iso(value: str) -> bool:
    """The same test for an ISO 8601 date or datetime as stored ("2026-03-01", "...T08:30:00+02:00")."""
    moment = moment_of(value)
    return moment is not None and plausible(moment)


def moment_of(value: str | None) -> datetime | None:
    """An ISO 8601 date or datetime as an aware datetime (UTC when it names no zone), else None."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def rfc822_moment(value: str | None) -> datetime | None:
    """An RFC 822 / HTTP date ("Wed, 21 Oct 2015 07:28:00 GMT") as an aware datetime (UTC when it
    names no zone), else None."""
    try:
        moment = parsedate_to_datetime((value or "").strip())
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def newest_first_key(published: str | None) -> tuple[bool, float]:
    """Sort key putting dated items newest first, in true time whatever their zones, then the undated."""
    moment = moment_of(published)
    return (moment is None, -moment.timestamp() if moment else 0.0)


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def rfc822_named_zone(value: str) -> time.struct_time | None:
    """A feedparser date handler: RFC 822 dates with a zone name it does not know, or none.

    feedparser reads "10:00:00 MSK" as 10:00 UTC, three hours late, and a date without a zone
    as no date at all; zone-less ISO dates it takes for UTC, and so does this."""
    match = _RFC822_NAMED_ZONE.match(value or "")
    if not match:
        return None
    stamp, zone = match.group(1), (match.group(2) or "").upper()
    if zone and zone not in ZONE_HOURS:
        return None  # GMT, EST, Z ...: feedparser's own handler knows them
    fields = parsedate_tz(f"{stamp} +0000")
    if fields is None:
        return None
    seconds = calendar.timegm(fields[:9]) - round(ZONE_HOURS.get(zone, 0) * 3600)
    return time.gmtime(seconds)
