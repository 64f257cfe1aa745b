"""Text from the web, made harmless to store and to show.

A feed title, a page's <title>, an HTTP reason phrase or a Location header may carry control
characters: an escape sequence that retitles or clears the terminal reading `armswatch
sources`, a carriage return that overwrites a health row with "ok", a NUL that makes the
Atom feed of matches fail for every subscriber, a newline that forges a row of its own. Bidi
overrides (U+202E) turn a title or a domain around on screen. So what is stored from the web
loses them, and what is printed or logged shows any that are left (older rows, error messages
that quote a server) as visible escapes such as `\\x1b`, never as the effect they ask for.
"""

from __future__ import annotations

import logging
import re
import traceback

# C0 controls but tab and newline, DEL, the C1 controls, and the bidi embeddings, overrides
# and isolates (the marks LRM, RLM and ALM stay: right-to-left text needs them)
_BIDI_CONTROLS = "\u202a-\u202e\u2066-\u2069"
_CONTROLS = f"\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI_CONTROLS}\ufffe\uffff"
_CONTROL = re.compile(f"[{_CONTROLS}]")
_BIDI_CONTROL = re.compile(f"[{_BIDI_CONTROLS}]")
_CONTROL_OR_BREAK = re.compile(f"[{_CONTROLS}\t\n\u2028\u2029]")
_SPACES = re.compile(r"\s+")


def one_line(text: str | None) -> str | None:
    """A single-line field as stored (title, site name, author, source name): no control or
    bidi-override characters, every run of white space (line breaks too) one space."""
    if text is None:
        return None
    # a bidi control joins nothing: it goes; another control may stand between two words
    return _SPACES.sub(" ", _CONTROL.sub(" ", _BIDI_CONTROL.sub("", text))).strip()


def without_controls(text: str | None) -> str | None:
    """A text as stored (article body, summary): its lines kept, the control characters gone."""
    if text is None:
        return None
    return _CONTROL.sub("", text)


def blanked(text: str | None) -> str | None:
    """A text with each control or bidi-override character made a space: its length, and so the
    offsets into it (a match's highlights in its snippet), unchanged."""
    if text is None:
        return None
    return _CONTROL.sub(" ", text)


def shown(text: object, inline: bool = False) -> str:
    """`text` as printed or logged: each control or bidi-override character as a visible escape
    (`\\x1b`, `\\r`, `\\u202e`); line breaks too when `inline` (one cell of a table). Cut a
    text to a width after this, never before: an escape cut in two is only shorter."""
    pattern = _CONTROL_OR_BREAK if inline else _CONTROL
    return pattern.sub(_escape, str(text))


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    if character == "\t":
        return " "
    return repr(character)[1:-1] if ord(character) < 0x100 else f"\\u{ord(character):04x}"


class ShownLogRecords(logging.Filter):
    """Makes a handler write each record's message as `shown` would print it: Scrapy's own
    warnings quote response headers, and ours quote URLs and server answers."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a call with bad arguments: the handler reports it as logging does
            return True
        safe = shown(message)
        if safe != message:
            record.msg, record.args = safe, ()
        if record.exc_info and not record.exc_text:  # an exception's message may quote a server too
            record.exc_text = shown("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return True


def show_logs_safely(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of `logger` (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, ShownLogRecords) for f in handler.filters):
            handler.addFilter(ShownLogRecords())
