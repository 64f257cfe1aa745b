"""Turn downloaded page bytes into text, trusting charset declarations only as far as the bytes agree.

Many news sites still serve windows-1251, koi8-r or windows-1256, and many declare the wrong charset
(a UTF-8 page labelled iso-8859-1) or none at all. Decoding wrongly turns every word into mojibake,
which no rule can match, so the declaration is checked against the bytes before it is used.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Mapping

from charset_normalizer import from_bytes

# where browsers look for <meta charset>: the first 1024 bytes per WHATWG; some pages put it later
_SNIFF_BYTES = 4096
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9._:-]+)""")

# WHATWG: these labels mean windows-1252 in browsers; the superset decodes what sites really send
_LABEL_ALIASES = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "x-cp1251": "cp1251",
    "win-1251": "cp1251",
    "x-mac-cyrillic": "mac_cyrillic",
}


_WINDOWS_LABEL = re.compile(r"^(?:windows|win|x-cp)[-_]?(12\d\d)$")


def _codec_name(label: bytes | str | None) -> str | None:
    """A Python codec name for a charset label, or None when Python does not know it."""
    if not label:
        return None
    if isinstance(label, bytes):
        label = label.decode("ascii", "ignore")
    label = label.strip().strip("\"'").lower()
    label = _LABEL_ALIASES.get(label, label)
    label = _WINDOWS_LABEL.sub(r"cp\1", label)  # "windows1251", "win-1256": labels pages use that Python does not know
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def declared_charsets(html: bytes, headers: Mapping[str, str] | None = None) -> list[str]:
    """What the HTTP header declares, then what the page itself does, each once.

    The header comes first, as in browsers; but a server's default ("iso-8859-1") often
    overrides a page that says what it really is, so the page's own word is the next to try."""
    found: list[str] = []
    content_type = (headers or {}).get("content-type", "")
    match = _HEADER_CHARSET.search(content_type)
    if match and (name := _codec_name(match.group(1))):
        found.append(name)
    head = html[:_SNIFF_BYTES]
    for pattern in (_XML_ENCODING, _META_CHARSET):
        match = pattern.search(head)
        if match and (name := _codec_name(match.group(1))):
            if name not in found:
                found.append(name)
            break
    return found


_SINGLE_BYTE = ("cp12", "cp8", "cp4", "iso8859", "koi8", "mac")  # codec names (codecs.lookup) of charsets that decode any byte
_SAMPLE_CHARS = 50_000


def _text_sample(text: str) -> str:
    """The page's first text between tags, which the checks below read: the letters of markup,
    styles and scripts (all ASCII) would hide any share."""
    return _MARKUP.sub(" ", text[: 4 * _SAMPLE_CHARS])[:_SAMPLE_CHARS]


def _misread(sample: str) -> bool:
    """Does a page's `_text_sample`, decoded with a single-byte charset, look like another
    charset's bytes?

    Every byte means something in windows-1252, -1251 or -1256, so a wrong label decodes without
    an error: Cyrillic read as Latin-1 or windows-1250 is nearly all accented capitals and small
    letters ("Çàêóïêà", "Íîâîńňč"), Arabic read as Cyrillic nearly all capitals. Real text in
    those scripts has few accented letters among its Latin ones (Czech or Vietnamese a fifth at
    most), and few capitals among its Cyrillic or Greek ones (a
    Latin headline in capitals, "ÚLTIMA HORA: ESPAÑA", is no sign)."""
    letters = [c for c in sample if c.isalpha()]
    beyond_ascii = [c for c in letters if ord(c) > 127]
    if len(beyond_ascii) < 20:
        return False
    accented_latin = sum(1 for c in beyond_ascii if "\u00c0" <= c <= "\u024f")
    if accented_latin / len(letters) > 0.4:
        return True
    other_scripts = [c for c in beyond_ascii if ord(c) > 0xFF]
    capitals = sum(1 for c in other_scripts if c.isupper())
    return len(other_scripts) >= 20 and capitals / len(other_scripts) > 0.5


_MARKUP = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->|<[^>]*>", re.IGNORECASE | re.DOTALL)
# A UTF-8 page may hold a few bytes of another charset (a windows-1252 dash pasted into a CMS):
# with this many well-formed characters beyond ASCII for each bad byte, it is still UTF-8. A
# legacy charset read as UTF-8 forms a well-formed sequence for a few of its letters at best.
_UTF8_CHARS_PER_BAD_BYTE = 10


def _utf8_or_none(html: bytes) -> str | None:
    """The page as UTF-8, its stray bytes replaced; None when its bytes are not mostly UTF-8."""
    try:
        return html.decode("utf-8")
    except UnicodeDecodeError:
        pass
    text = html.decode("utf-8", errors="replace")
    bad = text.count("\ufffd")
    well_formed = len(text) - len(text.encode("ascii", "ignore")) - bad  # characters beyond ASCII, in C
    return text if well_formed >= _UTF8_CHARS_PER_BAD_BYTE * bad else None


def decode_html(html: bytes, headers: Mapping[str, str] | None = None, undeclared: str | None = None) -> str:
    """Decode page bytes: BOM, then a declaration the bytes agree with, then detection. Never raises.

    `undeclared` is a charset to try before detection when nothing is declared (feeds:
    windows-1252, as feedparser and browsers assume; detection takes Portuguese for cp1250)."""
    for bom, codec in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if html.startswith(bom):
            return html.decode(codec, errors="replace").lstrip("\ufeff")
    declared = declared_charsets(html, headers)
    utf8 = _utf8_or_none(html)
    # valid UTF-8 with non-ASCII bytes is almost never an accident of a legacy encoding, so it wins
    # over any declaration (pure ASCII reads the same in every charset we accept)
    if utf8 is not None:
        return utf8
    for charset in declared:  # the header's, then the page's own when the bytes refuse the header's
        if charset == "utf_8":
            continue
        try:
            text = html.decode(charset)
        except (UnicodeDecodeError, LookupError):
            continue  # the declaration lies
        if not (charset.startswith(_SINGLE_BYTE) and _misread(_text_sample(text))):
            return text
    if not declared and undeclared is not None:
        text = html.decode(undeclared, errors="replace")
        if not _misread(_text_sample(text)):
            return text
    readings = []
    for charset in _language_charsets(html, headers):  # as browsers default by locale
        try:
            text = html.decode(charset)
        except UnicodeDecodeError:
            continue
        sample = _text_sample(text)
        readings.append((_junk(sample), sample, text))
    if readings:  # of a language's charsets, the one that reads with the fewest signs in place of letters
        junk, sample, text = min(readings, key=lambda reading: reading[0][0])
        if _plausible(sample, junk):
            return text
    best = from_bytes(html[:200_000]).best()
    guesses = ([best.encoding] if best is not None and best.encoding else []) + list(_COMMON_LEGACY)
    for charset in dict.fromkeys(guesses):  # detection first; the web's usual charsets when it reads as junk
        text = html.decode(charset, errors="replace")
        if _plausible(_text_sample(text)):
            return text
    return html.decode(guesses[0], errors="replace")


# The legacy charsets a language's pages were written in before UTF-8, after the defaults browsers
# use for an undeclared page in that locale (WHATWG HTML, "the encoding sniffing algorithm"); where
# sites used two (windows-1250 and ISO-8859-2 differ in a few letters), the one that reads with
# fewer signs in place of letters wins. Detection alone confuses the single-byte ones: Spanish
# read as windows-1250, Italian as windows-1258, every accent a wrong letter.
_LANGUAGE_CHARSETS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("ar", "fa", "ur", "ps"), ("cp1256",)),
    **dict.fromkeys(("ba", "be", "bg", "kk", "ky", "mk", "ru", "sr", "tg", "tt", "uk"), ("cp1251",)),
    **dict.fromkeys(("cs", "hr", "ro", "sk", "bs"), ("cp1250", "iso8859_2")),
    **dict.fromkeys(("hu", "pl", "sl"), ("iso8859_2", "cp1250")),
    "el": ("cp1253", "iso8859_7"), "he": ("cp1255", "iso8859_8"), "tr": ("cp1254",), "az": ("cp1254",),
    "lt": ("cp1257",), "lv": ("cp1257", "iso8859_13"), "vi": ("cp1258",), "th": ("cp874",),
    "ja": ("shift_jis", "euc_jp"), "ko": ("euc_kr",), "zh": ("gb18030", "big5"),
    **dict.fromkeys(("af", "ca", "da", "de", "en", "es", "eu", "fi", "fr", "ga", "gl", "id", "is", "it", "ms",
                     "nb", "nl", "nn", "no", "pt", "sq", "sv", "sw"), ("cp1252",)),
}
_HTML_LANG = re.compile(rb"""<html\b[^>]*?\blang\s*=\s*["']?\s*([A-Za-z]{2,3})\b""", re.IGNORECASE)


def _language_charsets(html: bytes, headers: Mapping[str, str] | None) -> tuple[str, ...]:
    """The legacy charsets of the language the page (`<html lang>`) or its server names, if known."""
    match = _HTML_LANG.search(html[:_SNIFF_BYTES])
    named = match.group(1).decode("ascii") if match else (headers or {}).get("content-language", "")
    language = re.split(r"[-_,;\s]", named.strip().lower(), maxsplit=1)[0]
    return _LANGUAGE_CHARSETS.get(language, ())


_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")


def decode_markup(html: bytes, headers: Mapping[str, str] | None = None) -> str:
    """An HTML page decoded as `decode_html` does, for lxml: an XML declaration (XHTML) is
    dropped, since lxml refuses a str that names its encoding."""
    return _XML_DECLARATION.sub("", decode_html(html, headers), count=1)


_XML_DECLARED_ENCODING = re.compile(r"""^(\s*<\?xml[^>]*?)\bencoding\s*=\s*["'][^"']*["']""")


def as_utf8_xml(text: str) -> bytes:
    """A decoded XML document as UTF-8 bytes whose prolog says so, for a parser that reads bytes."""
    return _XML_DECLARED_ENCODING.sub(r'\1encoding="utf-8"', text, count=1).encode("utf-8")


# Undeclared pages that detection misreads (a windows-1251 page as cp866, box-drawing signs for
# capitals) are most often in one of these.
_COMMON_LEGACY = ("cp1251", "cp1256", "koi8_r", "cp1252")
# signs that are text in a real page, beside its letters
_TEXT_SIGNS = frozenset("«»‹›“”„‘’‚–—…•·°№€£¥©®™§¶\u00a0\u202f\u200b\u200c\u200d\u200e\u200f\u061f\u060c\u061b\ufeff")


def _junk(sample: str) -> tuple[int, int]:
    """(characters beyond ASCII in a `_text_sample` that are neither letters, marks nor the usual
    signs of text: box drawing, symbols, control codes; all its characters beyond ASCII)."""
    beyond_ascii = [c for c in sample if c > "\x7f" and c not in _TEXT_SIGNS and not c.isspace()]
    junk = sum(1 for c in beyond_ascii if not (c.isalpha() or unicodedata.category(c).startswith("M")))
    return junk, len(beyond_ascii)


def _plausible(sample: str, junk: tuple[int, int] | None = None) -> bool:
    """A `_text_sample` reads as text: beyond ASCII, letters (and the usual signs), not box
    drawing and symbols in place of letters, and not another charset's letters (`_misread`).
    `junk`: its `_junk`, when already counted."""
    signs, beyond_ascii = junk or _junk(sample)
    return not beyond_ascii or (signs <= 0.05 * beyond_ascii and not _misread(sample))
