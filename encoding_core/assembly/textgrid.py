"""Praat TextGrids: read what Praat 6.3 reads, with Praat's numbers; refuse what it refuses.

The reader follows Praat 6.3.07's own text reader (``Read from file``), checked against
Praat on a corpus of 91 real files (``tests/data/real-textgrids``, with Praat's own reading
of each in ``praat_reference.json``) and on about 4,400 mutated files read by Praat 6.3.07
itself (``tests/assembly/test_textgrid_praat_live.py`` when Praat is installed). It reads:

- the **long** text format (``xmin = 0``, ``intervals [3]:`` ... around the values),
- the **short** text format (values only; also the old ``File type = "ooTextFile short"``
  header),
- Praat's **chronological** text format (below),
- in UTF-8 with or without byte-order mark, UTF-16 LE/BE with byte-order mark, ISO Latin-1
  (a file that is not valid UTF-8), and CRLF or CR line ends, all as Praat decodes them.

Two deliberate differences from Praat: binary Praat files (``ooBinaryFile``) are refused
with a clear message (Praat reads them; ask for a text file instead), and a chronological
file preceded by a UTF-8 byte-order mark is read with a warning (Praat does not recognise it;
third-party loaders report byte-order marks in the ds003020 TextGrids).

Why our own reader and not a package
------------------------------------
Of the parsers on the package index (praatio 6.2.2, textgrid 1.6.1, tgt 1.5,
praat-parselmouth 0.4.7), only parselmouth, which embeds Praat itself, reads all 91 corpus
files as Praat does (praatio 64/91, tgt 71/91, textgrid 57/91 at best). It is not used
because (1) it crashes the whole Python process (segmentation fault, no exception) on a
4-line file saying ``tiers? <absent>``, so one bad transcript would kill the app or a job;
(2) it is licensed GPLv3+; (3) it is a 36 MB wheel for one file reader; (4) its
one-call-per-interval API makes a 5,000-interval TextGrid take about 1.7 s. This module
reads the same 90 text files identically (the 91st is binary, refused on purpose, below).

How Praat reads a text file (and so how this module does)
---------------------------------------------------------
Praat's reader asks for one value at a time: a real number, an integer, a quoted string or
an ``<enumerated>`` value. To find it, it skips whitespace, ``!`` comments (to the end of
the line) and any *word* that does not start like a value (``xmin``, ``=``, ``[3]:``...),
up to the next whitespace. So labels in the long format are words that are skipped, and the
long and short formats are the same stream of values. A word that starts like a *different*
kind of value is an error ("Found a string while looking for a real number"). A number is
the next run of at most 40 non-space ASCII characters, read by C's ``strtod`` after a check
of its form (``1/2`` is a fraction, ``50%`` is 0.5, ``--undefined--`` or ``1e`` is
undefined, ``0.5abc`` is 0.5). A string runs to a closing quote (``""`` is a quote inside
it) that must be followed by whitespace or the end of the file ("Character x following
quote" otherwise). Praat sorts the intervals of a tier by start time and silently drops an
interval whose start time equals an earlier one (points likewise by time); it refuses an
interval, tier or grid with xmin > xmax ("Wrong xmin ... and xmax ..."), but reads
overlapping intervals, gaps and intervals outside their tier. An interval tier with no
intervals (long and short formats) becomes one empty interval spanning the tier. Text after
the last tier is ignored. Every refusal here says what Praat says, with the line number.

Praat's chronological TextGrid format
-------------------------------------
A text file whose first 40 bytes are exactly ``"Praat chronological TextGrid text file"``
(with quotes; in UTF-16 the header may sit anywhere in the first 100 bytes; the file must
be at least 100 bytes long, and a UTF-8 byte-order mark makes Praat not recognise it).
After the header come the grid's start and end time, the number of tiers, and one line per
tier: its class (exactly ``"IntervalTier"`` or ``"TextTier"``), its quoted name and its start
and end time. Then, in any order (Praat writes them by time, each preceded by a comment line
``! tiername:``), one entry per interval or point: the 1-based tier number, then for an
interval tier the start time, end time and quoted label, for a point tier the time and quoted
mark. Entries are read until the end of the file; a tier number out of range is an error.
Unlike the other formats, an interval tier without entries stays empty. The LeBel et al.
(OpenNeuro ds003020) release has TextGrids in this format (header quoted by
GabrielKP/enc ``src/encoders/data.py``: ``0.0124716553288 819.988889088   ! Time domain.``,
``2   ! Number of tiers.``, tiers "phone" and "word", entries on two lines without comment
lines), next to long and short ones.

Times are seconds, exactly as Praat reads them (a 1e-7 s overlap stays). Undefined times
(Praat's ``--undefined--``, from e.g. ``1/0`` or ``1e400``) are read as NaN or infinity and
refused by the checks below. :func:`check_tier_overlaps` is the policy for overlaps:

- the **word tier** is strict: intervals overlapping by more than
  :data:`WORD_OVERLAP_TOLERANCE_S` (1 us, beyond floating-point noise) are refused with a
  TextGridError naming the file, the tier, the interval and the time;
- **other tiers** (phones...) never block loading the words: overlaps up to
  :data:`OVERLAP_TOLERANCE_S` (1 ms) give a warning naming the tier, the interval and the
  time; larger overlaps (or undefined times) give a stronger warning saying that features
  built from that tier (a phoneme rate, say) will refuse it. Such a feature checks its tier
  strictly by passing it as ``word_tier``.

Praat's numbers are never changed by these checks.
"""
from __future__ import annotations

import bisect
import logging
import math
import re
import sys
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from encoding_core.common.errors import TextGridError
from encoding_core.common.storage import atomic_write_text

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
Interval = tuple[float, float, str]
Point = tuple[float, str]

LEBEL_NON_WORDS = frozenset({"sentence_start", "sentence_end", "br", "lg", "ls", "ns", "sp"})
"""Labels of the LeBel (ds003020) word tiers that are not words (breaths, silences...)."""

MAX_TEXTGRID_BYTES = 200 * 1024 * 1024
"""Files larger than this are refused before being read (the LeBel TextGrids are ~1 MB)."""

OVERLAP_TOLERANCE_S = 1e-3
"""Largest overlap (s) in a tier other than the word tier that gives only a mild warning."""

WORD_OVERLAP_TOLERANCE_S = 1e-6
"""Largest overlap (s) accepted in the word tier (floating-point noise); more is refused."""

_TIME_TOLERANCE_S = 1e-6  # writer only: gaps smaller than this are not filled

# ---------------------------------------------------------------------------------------
# Praat's character classes (measured on Praat 6.3.07: the Unicode White_Space characters
# except U+001C..U+001F).
_WS = ("\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
       "\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_WS_SET = frozenset(_WS)
_WS_CLASS = "[" + "".join(re.escape(c) for c in _WS) + "]"
_NON_WS_CLASS = "[^" + "".join(re.escape(c) for c in _WS) + "]"
_NUMBER_START = frozenset("-+0123456789")


class _Kind:
    """One kind of value Praat looks for: how it starts, what is an error, the messages."""

    def __init__(self, name: str, start: str, forbidden: dict[str, str], word_eof: str) -> None:
        self.name = name
        self.start = frozenset(start)
        self.forbidden = forbidden
        self.word_eof = word_eof
        specials = set(start) | set(forbidden) | {"!"} | set(_WS)
        word_first = "[^" + "".join(re.escape(c) for c in sorted(specials)) + "]"
        # Whitespace, comments to the end of the line, and words up to and including the
        # whitespace after them: what Praat skips while looking for this kind of value.
        self.skip = re.compile(f"(?:{_WS_CLASS}++|![^\\n]*+\\n|{word_first}{_NON_WS_CLASS}*+{_WS_CLASS})*+")


_NUMBER_FORBIDDEN = {'"': "a string", "<": "an enumerated value"}
_REAL = _Kind("a real number", "-+0123456789", _NUMBER_FORBIDDEN,
              "Early end of text detected in comment while looking for a real number")
_INTEGER = _Kind("an integer", "-+0123456789", _NUMBER_FORBIDDEN,
                 "Early end of text detected in comment")
_STRING = _Kind("a string", '"', {**{c: "a number" for c in "-+0123456789"}, "<": "an enumerated value"},
                "Early end of text detected while looking for a string")
_ENUM = _Kind("an enumerated value", "<", {**{c: "a number" for c in "-+0123456789"}, '"': "a string"},
              "Early end of text detected in comment while looking for an enumerated value")

_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?")
_TOKEN = re.compile(f"{_NON_WS_CLASS}{{1,41}}")
_STRING_BODY = re.compile(r'"((?:[^"]|"")*+)"')  # possessive: a closing quote is never taken back
_VALID_FORM = re.compile(r"[ \t\n\r]*[+-]?[0-9]+(?:\.[0-9]*)?")
_EXPONENT = re.compile(r"[eE][+-]?[0-9]+")
_HEX_PREFIX = re.compile(r"[ \t\n\r]*([+-]?)0[xX]((?:[0-9a-fA-F]+(?:\.[0-9a-fA-F]*)?|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?)")
_DECIMAL_PREFIX = re.compile(r"[ \t\n\r]*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER_PREFIX = re.compile(r"[ \t\n\r\x0b\x0c]*[+-]?[0-9]+")
_INT64 = (-(2 ** 63), 2 ** 63 - 1)
_INT32 = (-(2 ** 31), 2 ** 31 - 1)

_CHRONOLOGICAL_TAG = "Praat chronological TextGrid text file"
_CHRONOLOGICAL_HEADER = b'"' + _CHRONOLOGICAL_TAG.encode("ascii") + b'"'
_CHRONOLOGICAL_UTF16 = b'"\x01' + b"".join(bytes([c]) + b"\x01" for c in _CHRONOLOGICAL_TAG.encode()) + b'"'
_UTF16_NEWLINES = {ord(c): "\n" for c in "\r\x0c\x85\u2028\u2029"}
_TEXTFILE_UTF16 = b"T\x01e\x01x\x01t\x01F\x01i\x01l\x01e"
_LENIENT_UTF8 = re.compile(rb"(?:[\x00-\x7f]|[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}"
                           rb"|[\xf0-\xf4][\x80-\xbf]{3})*")


class _ReadError(Exception):
    """Praat's message for a refusal, and where the reader stood (character offset)."""

    def __init__(self, message: str, position: int, what: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.what = what


def _safe(message: str) -> str:
    """A message printable in any UTF-8 log: lone surrogates from the file become \\udxxx escapes."""
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


def praat_number_text(value: float) -> str:
    """A number as Praat prints it in messages: shortest of %.15g/%.16g/%.17g that round-trips."""
    if not math.isfinite(value):
        return "--undefined--"
    for digits in (15, 16, 17):
        text = f"{value:.{digits}g}"
        if float(text) == value:
            return text
    return repr(value)  # pragma: no cover - %.17g always round-trips


def _strtod(text: str) -> float:
    """C ``strtod`` on a string known to start (after spaces) with a sign or digit."""
    hex_match = _HEX_PREFIX.match(text)
    if hex_match:
        sign, body = hex_match.groups()
        try:
            value = float.fromhex("0x" + body)
        except OverflowError:
            value = math.inf
        return -value if sign == "-" else value
    return float(_DECIMAL_PREFIX.match(text).group())


def _praat_atof(text: str) -> float:
    """Praat's ``Melder_a8tof``: NaN unless the text starts like [+-]digits[.digits][e[+-]digits][%]."""
    match = _VALID_FORM.match(text)
    if not match:
        return math.nan
    end = match.end()
    if end < len(text) and text[end] in "eE":
        exponent = _EXPONENT.match(text, end)
        if not exponent:
            return math.nan
        end = exponent.end()
    value = _strtod(text)
    if end < len(text) and text[end] == "%":
        value *= 0.01
    return value


class _PraatText:
    """Praat's value reader over a decoded text (``MelderReadText`` + ``abcio`` semantics)."""

    __slots__ = ("text", "pos", "end", "start")

    def __init__(self, text: str, pos: int = 0) -> None:
        self.text = text
        self.pos = pos
        self.end = len(text)
        self.start = pos  # where the last value found began

    def line(self, position: Optional[int] = None) -> int:
        """1-based line of a character offset (default: where the reader stands), as Praat counts."""
        return self.text.count("\n", 0, self.pos if position is None else position) + 1

    def _fail(self, message: str, position: int, what: object) -> _ReadError:
        return _ReadError(f"{message} (line {self.line(position)}).", position, what)

    def _find(self, kind: _Kind, what: object) -> int:
        """Offset of the first character of the next value of ``kind`` (Praat's search loop)."""
        text = self.text
        p = kind.skip.match(text, self.pos).end()
        if p >= self.end:
            raise self._fail(f"Early end of text detected while looking for {kind.name}", self.end, what)
        c = text[p]
        if c in kind.start:
            self.start = p
            return p
        if c in kind.forbidden:
            raise self._fail(f"Found {kind.forbidden[c]} while looking for {kind.name} in text", p + 1, what)
        if c == "!":
            raise self._fail(f"Early end of text detected in comment while looking for {kind.name}", self.end, what)
        raise self._fail(kind.word_eof, self.end, what)

    def _token(self, kind: _Kind, p: int, what: object, long_verb: str) -> str:
        """The number token at ``p`` (at most 40 characters up to whitespace); moves past it."""
        run = _TOKEN.match(self.text, p).group()
        if len(run) > 40 or not run.isascii():
            for j in range(1, min(len(run), 40)):
                if ord(run[j]) > 127:
                    raise self._fail(f"Found strange text while looking for {kind.name} in text", p + j + 1, what)
            if len(run) > 40:
                raise self._fail(f"Found long text while {long_verb} {kind.name} in text", p + 41, what)
        after = p + len(run)
        self.pos = after + 1 if after < self.end else self.end  # the whitespace after it is read too
        return run

    def real(self, what: object) -> float:
        """Praat's ``texgetr64``: undefined values come back as NaN (or +-inf from strtod)."""
        while True:
            token = self._token(_REAL, self._find(_REAL, what), what, "searching for")
            if token != "+":  # a lone '+' is skipped
                break
        if _PLAIN_NUMBER.fullmatch(token):  # the usual case: strtod reads all of it
            return float(token)
        slash = token.find("/")
        if slash < 0:
            return _praat_atof(token)
        numerator, denominator = _praat_atof(token[:slash]), _praat_atof(token[slash + 1:])
        if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator == 0.0:
            return math.nan
        return numerator / denominator

    def integer(self, what: object) -> int:
        """Praat's ``texgetinteger``: strtoll of the token, which must fit 32 bits."""
        start = self._find(_INTEGER, what)
        token = self._token(_INTEGER, start, what, "looking for")
        match = _INTEGER_PREFIX.match(token)
        value = int(match.group()) if match else 0
        value = min(max(value, _INT64[0]), _INT64[1])
        if not _INT32[0] <= value <= _INT32[1]:
            raise _ReadError(f"Value ({value}) out of range (-2147483648 .. +2147483647).", self.pos, what)
        return value

    def string(self, what: object) -> str:
        """Praat's ``texgetw16``: a quoted string, ``""`` inside it being one quote."""
        p = self._find(_STRING, what)
        match = _STRING_BODY.match(self.text, p)
        if not match:
            raise self._fail("Early end of text detected while reading a string", self.end, what)
        after = match.end()
        if after < self.end:
            c = self.text[after]
            if c not in _WS_SET:
                raise _ReadError(f"Character {c} following quote (line {self.line(after + 1)}). "
                                 "End of string or undoubled quote?", after + 1, what)
            self.pos = after + 1
        else:
            self.pos = self.end
        body = match.group(1)
        return body.replace('""', '"') if '""' in body else body

    def enum(self, what: object) -> str:
        """Praat's enumerated value ``<...>``: the text between the brackets."""
        p = self._find(_ENUM, what)
        text = self.text
        for i in range(40):
            q = p + 1 + i
            if q >= self.end:
                raise self._fail("Early end of text detected while reading an enumerated value", self.end, what)
            c = text[q]
            if c in _WS_SET and c != " ":
                raise self._fail("No matching '>' while reading an enumerated value", q + 1, what)
            if c == ">":
                self.pos = q + 1
                return text[p + 1:q]
        raise self._fail("Found strange text while reading an enumerated value in text", p + 41, what)


def _enum_matches(value: str, name: str) -> bool:
    """Praat accepts an enumerated value as written or with its first letter capitalised."""
    return value == name or (value[:1].isupper() and value[:1].lower() + value[1:] == name)


# ---------------------------------------------------------------------------------------
# Decoding, as Praat's MelderReadText does it.

def _decode_utf16(data: bytes, big_endian: bool) -> str:
    """UTF-16 after the byte-order mark; bad surrogates become U+FFFD as in Praat."""
    data = data[: len(data) // 2 * 2]
    try:
        return data.decode("utf-16-be" if big_endian else "utf-16-le")
    except UnicodeDecodeError:
        pass
    units = array("H", data)
    if big_endian == (sys.byteorder == "little"):
        units.byteswap()
    chars: list[str] = []
    i, n = 0, len(units)
    while i < n:
        unit = units[i]
        i += 1
        if 0xD800 <= unit < 0xDC00:
            low = units[i] if i < n else 0xFFFF
            i += 1
            chars.append(chr(0x10000 + ((unit & 0x3FF) << 10) + (low & 0x3FF))
                         if 0xDC00 <= low <= 0xDFFF else "\ufffd")
        elif 0xDC00 <= unit < 0xE000:
            chars.append("\ufffd")
        else:
            chars.append(chr(unit))
    return "".join(chars)


def _decode_lenient_utf8(data: bytes) -> str:
    """UTF-8 as Praat decodes it: no check of overlong forms or surrogates."""
    chars: list[str] = []
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b < 0x80:
            code, i = b, i + 1
        elif b <= 0xDF:
            code, i = ((b & 0x1F) << 6) | (data[i + 1] & 0x3F), i + 2
        elif b <= 0xEF:
            code, i = ((b & 0x0F) << 12) | ((data[i + 1] & 0x3F) << 6) | (data[i + 2] & 0x3F), i + 3
        else:
            code = ((b & 0x07) << 18) | ((data[i + 1] & 0x3F) << 12) | ((data[i + 2] & 0x3F) << 6) | (data[i + 3] & 0x3F)
            i += 4
        chars.append(chr(code) if code <= 0x10FFFF else "\ufffd")
    return "".join(chars)


def _decode(data: bytes, warnings: list[str]) -> tuple[str, str]:
    """(text, encoding name) as Praat reads the bytes: BOM, else UTF-8, else ISO Latin-1.

    8-bit files lose their NUL bytes (Praat: "Ignored N null bytes"); a NUL character in
    UTF-16 ends the text; CR LF and lone CR become LF (in UTF-16 also FF, NEL, LS and PS).
    """
    if data[:2] in (b"\xfe\xff", b"\xff\xfe"):
        big_endian = data[:2] == b"\xfe\xff"
        text = _decode_utf16(data[2:], big_endian)
        encoding = "utf-16-be" if big_endian else "utf-16-le"
        nul = text.find("\x00")
        if nul >= 0:
            text = text[:nul]
        # Praat 6.3 turns these line separators into LF in UTF-16 text (not in 8-bit text).
        text = text.replace("\r\n", "\n").translate(_UTF16_NEWLINES)
    else:
        encoding = "utf-8"
        if data[:3] == b"\xef\xbb\xbf":
            data, encoding = data[3:], "utf-8-sig"
        nuls = data.count(0)
        if nuls:
            data = data.replace(b"\x00", b"")
            warnings.append(f"Ignored {nuls} NUL bytes, as Praat does (a UTF-16 file without byte-order mark?).")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            if _LENIENT_UTF8.fullmatch(data):
                text = _decode_lenient_utf8(data)
                nul = text.find("\x00")
                if nul >= 0:  # an overlong NUL ends Praat's text
                    text = text[:nul]
            else:
                text, encoding = data.decode("latin-1"), "latin-1"
                warnings.append("Not valid UTF-8: read as ISO Latin-1, as Praat does.")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text, encoding


def _dispatch(data: bytes) -> str:
    """Which reader Praat's ``Read from file`` picks, from the first 512 bytes.

    Returns "text", "chronological", "binary", "cgn" or "unknown"; also
    "chronological-bom" for a chronological file after a UTF-8 byte-order mark, which Praat
    does not recognise but this reader reads (with a warning): the one place where it reads
    a file that Praat refuses.
    """
    header = data[:512]
    nread = len(header)
    c_header = header.split(b"\x00", 1)[0]  # C string functions stop at the first NUL
    if nread > 11:
        p = c_header.find(b"TextFile")
        if 0 <= p < 40 and p < nread - 8:
            return "text"
    if nread > 22:
        p = header[:100].replace(b"\x00", b"\x01").find(_TEXTFILE_UTF16)
        if 0 <= p < 80 and p < nread - 15:
            return "text"
    if nread > 13:
        p = c_header.find(b"BinaryFile")
        if 0 <= p < 40 and p < nread - 10:
            return "binary"
    if nread >= 57 and header.startswith(b'<?xml version="1.0"?>') and (
            header[22:57] == b'<!DOCTYPE ttext SYSTEM "ttext.dtd">' or header[23:58] == b'<!DOCTYPE ttext SYSTEM "ttext.dtd">'):
        return "cgn"
    if nread >= 100 and (header.startswith(_CHRONOLOGICAL_HEADER)
                         or _CHRONOLOGICAL_UTF16 in header[:100].replace(b"\x00", b"\x01")):
        return "chronological"
    if header.startswith(b"\xef\xbb\xbf" + _CHRONOLOGICAL_HEADER) and len(data) >= 103:
        return "chronological-bom"  # Praat 6.3 does not recognise this; read with a warning
    if nread and all(32 <= b <= 126 for b in header):
        return "text"
    return "unknown"


# ---------------------------------------------------------------------------------------
# The data model.

@dataclass(frozen=True)
class Tier:
    """One tier as Praat reads it.

    kind: "interval" (``IntervalTier``) or "point" (``TextTier``). ``intervals``: tuple of
    (start_s, end_s, label), sorted by start as Praat keeps them (empty for point tiers);
    ``points``: tuple of (time_s, mark) (empty for interval tiers). ``line``: line of the
    tier's class in the file, for messages.
    """

    name: str
    kind: str
    xmin: float
    xmax: float
    intervals: tuple[Interval, ...] = ()
    points: tuple[Point, ...] = ()
    line: int = 0

    def times(self) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends) float64 arrays of shape (n_intervals,) in seconds (point tiers: time, time)."""
        if self.kind == "interval":
            n = len(self.intervals)
            starts = np.fromiter((iv[0] for iv in self.intervals), dtype=np.float64, count=n)
            ends = np.fromiter((iv[1] for iv in self.intervals), dtype=np.float64, count=n)
            return starts, ends
        times = np.fromiter((pt[0] for pt in self.points), dtype=np.float64, count=len(self.points))
        return times, times.copy()


@dataclass(frozen=True)
class TextGrid:
    """A Praat TextGrid as read from ``path``.

    format: "long" | "short" | "chronological"; encoding: "utf-8", "utf-8-sig" (with BOM),
    "utf-16-le", "utf-16-be" or "latin-1"; xmin/xmax: the grid's time domain (s); tiers: in
    file order, duplicate names kept; warnings: what Praat reads silently but a user may want
    to know (dropped duplicate starts, re-sorted intervals, empty tiers, ignored bytes...).
    """

    path: Path
    format: str
    encoding: str
    xmin: float
    xmax: float
    tiers: tuple[Tier, ...]
    warnings: tuple[str, ...] = field(default=())

    def interval_tiers(self) -> list[Tier]:
        return [t for t in self.tiers if t.kind == "interval"]

    def tier(self, name: str) -> Tier:
        """The first tier called ``name``; TextGridError naming the tiers if there is none."""
        for tier in self.tiers:
            if tier.name == name:
                return tier
        raise TextGridError(f"TextGrid {self.path} has no tier {name!r}; its tiers are "
                            f"{[t.name for t in self.tiers]}.")


class _SortedItems:
    """Praat's sorted set of intervals (key: start) or points (key: time).

    An item whose key equals one already present is dropped; an undefined key compares
    equal to everything, so it survives only as the first item (and then nothing follows).
    """

    __slots__ = ("keys", "items", "dropped", "resorted")

    def __init__(self) -> None:
        self.keys: list[float] = []
        self.items: list[tuple] = []
        self.dropped: list[tuple[int, float]] = []
        self.resorted = False

    def add(self, key: float, item: tuple, index: int) -> None:
        keys = self.keys
        if not keys or key > keys[-1]:
            keys.append(key)
            self.items.append(item)
            return
        last = keys[-1]
        if math.isnan(key) or math.isnan(last) or key == last:
            self.dropped.append((index, key))
            return
        i = bisect.bisect_left(keys, key)
        if keys[i] == key:
            self.dropped.append((index, key))
            return
        keys.insert(i, key)
        self.items.insert(i, item)
        self.resorted = True


def _check_domain(xmin: float, xmax: float, reader: _PraatText, what: object) -> None:
    if xmin > xmax:
        raise _ReadError(f"Wrong xmin {praat_number_text(xmin)} and xmax {praat_number_text(xmax)}.",
                         reader.pos, what)


def _class_name(raw: str) -> tuple[str, int]:
    """Praat's ``Thing_newFromClassName``: "Name version" -> (name, version)."""
    name, _, rest = raw.partition(" ")
    match = _INTEGER_PREFIX.match(rest)
    return name, (int(match.group()) if match else 0)


def _finish_tier(name: str, kind: str, xmin: float, xmax: float, items: _SortedItems, line: int,
                 warnings: list[str], fill_empty: bool) -> Tier:
    noun = "interval" if kind == "interval" else "point"
    if items.dropped:
        shown = ", ".join(f"{noun} {i} ({praat_number_text(k)} s)" for i, k in items.dropped[:5])
        more = f" and {len(items.dropped) - 5} more" if len(items.dropped) > 5 else ""
        warnings.append(f"Tier {name!r}: {shown}{more} dropped because an earlier {noun} has the same "
                        "start time (or an undefined one), as Praat does.")
    if items.resorted:
        warnings.append(f"Tier {name!r}: {noun}s were not in time order; sorted by time, as Praat does.")
    if kind == "interval":
        intervals = tuple(items.items)
        if not intervals:
            if fill_empty:
                intervals = ((xmin, xmax, ""),)
                warnings.append(f"Interval tier {name!r} has no intervals; read as one empty interval "
                                "spanning the tier, as Praat does.")
            else:
                warnings.append(f"Interval tier {name!r} has no intervals (Praat keeps it empty).")
        return Tier(name, "interval", xmin, xmax, intervals=intervals, line=line)
    return Tier(name, "point", xmin, xmax, points=tuple(items.items), line=line)


def _read_items(reader: _PraatText, kind: str, tier_name: str, count: int) -> _SortedItems:
    """``count`` intervals or points of one tier (long/short formats)."""
    items = _SortedItems()
    real, string, add = reader.real, reader.string, items.add
    if kind == "interval":
        for i in range(1, count + 1):
            start = real(("xmin of interval", i, tier_name))
            end = real(("xmax of interval", i, tier_name))
            if start > end:
                _check_domain(start, end, reader, ("interval", i, tier_name))
            add(start, (start, end, string(("text of interval", i, tier_name))), i)
    else:
        for i in range(1, count + 1):
            time = real(("time of point", i, tier_name))
            add(time, (time, string(("mark of point", i, tier_name))), i)
    return items


def _read_oo_text(reader: _PraatText, warnings: list[str]) -> tuple[str, float, float, list[Tier]]:
    """Praat's ``Data_readFromTextFile`` for a TextGrid: (format, xmin, xmax, tiers)."""
    text = reader.text
    newline = text.find("\n")
    first_line = text if newline < 0 else text[:newline]
    reader.pos = len(text) if newline < 0 else newline + 1
    if not text:
        raise _ReadError("No lines.", 0, "the header")
    if "ooTextFile" in first_line:
        name, version = _class_name(reader.string("the object class"))
    elif "TextFile" in first_line:
        name, version = _class_name(first_line[: first_line.find("TextFile")])
        warnings.append(f"Old-type Praat text file header {first_line!r}.")
    else:
        raise _ReadError("Not an old-type text file; should not occur.", 0, "the first line")
    if name != "TextGrid":
        raise _ReadError(f'Class "{name}" not recognized. (This reader reads TextGrids; the object class '
                         f'in the file is "{name}".)', reader.pos, "the object class")
    if version > 0:
        raise _ReadError("The format of this file is too new. Download a newer version of Praat.",
                         reader.pos, "the object class")
    look = re.compile(f"{_WS_CLASS}*").match(text, reader.pos).end()
    file_format = "short" if look < len(text) and text[look] in _NUMBER_START else "long"
    xmin = reader.real("the TextGrid xmin")
    xmax = reader.real("the TextGrid xmax")
    _check_domain(xmin, xmax, reader, "the TextGrid domain")
    exists = reader.enum("tiers? <exists>")
    if _enum_matches(exists, "absent"):
        raise _ReadError("The TextGrid says it has no tier list ('tiers? <absent>'); Praat 6.3 crashes "
                         "on such a file instead of reading it.", reader.pos, "tiers? <exists>")
    if not _enum_matches(exists, "exists"):
        raise _ReadError(f'"{exists}" is not a value of the enumerated type.', reader.pos, "tiers? <exists>")
    n_tiers = reader.integer("the number of tiers")
    tiers: list[Tier] = []
    for t in range(1, n_tiers + 1):
        tier_class, version = _class_name(reader.string(("the class of tier", t)))
        line = reader.line(reader.start)
        if tier_class not in ("IntervalTier", "TextTier"):
            raise _ReadError(f'Class "{tier_class}" not recognized. (A TextGrid tier is "IntervalTier" or '
                             '"TextTier".)', reader.pos, ("the class of tier", t))
        if version > 0:
            raise _ReadError("The format of this file is too new. Download a newer version of Praat.",
                             reader.pos, ("the class of tier", t))
        name = reader.string(("the name of tier", t))
        tier_xmin = reader.real(("xmin of tier", name))
        tier_xmax = reader.real(("xmax of tier", name))
        _check_domain(tier_xmin, tier_xmax, reader, ("tier", name))
        kind = "interval" if tier_class == "IntervalTier" else "point"
        count = reader.integer(("the number of intervals" if kind == "interval" else "the number of points", name))
        items = _read_items(reader, kind, name, count)
        tiers.append(_finish_tier(name, kind, tier_xmin, tier_xmax, items, line, warnings, fill_empty=True))
    rest = text[reader.pos:]
    if rest.strip(_WS):
        warnings.append(f"{len(rest.strip(_WS))} characters after the last tier (from line {reader.line()}) "
                        "were ignored, as Praat does.")
    return file_format, xmin, xmax, tiers


def _read_chronological(reader: _PraatText, warnings: list[str]) -> tuple[float, float, list[Tier]]:
    """Praat's ``TextGrid_readFromChronologicalTextFile``: (xmin, xmax, tiers)."""
    tag = reader.string("the chronological header")
    if tag != _CHRONOLOGICAL_TAG:
        raise _ReadError("This is not a chronological TextGrid text file.", reader.pos, "the header")
    xmin = reader.real("the TextGrid xmin")
    xmax = reader.real("the TextGrid xmax")
    _check_domain(xmin, xmax, reader, "the TextGrid domain")
    n_tiers = reader.integer("the number of tiers")
    heads: list[tuple[str, str, float, float, int]] = []
    for t in range(1, n_tiers + 1):
        tier_class = reader.string(("the class of tier", t))
        line = reader.line(reader.start)
        if tier_class not in ("IntervalTier", "TextTier"):
            raise _ReadError(f'Unknown tier class "{tier_class}".', reader.pos, ("the class of tier", t))
        name = reader.string(("the name of tier", t))
        tier_xmin = reader.real(("xmin of tier", name))
        tier_xmax = reader.real(("xmax of tier", name))
        _check_domain(tier_xmin, tier_xmax, reader, ("tier", name))
        heads.append((name, "interval" if tier_class == "IntervalTier" else "point", tier_xmin, tier_xmax, line))
    sets = [_SortedItems() for _ in heads]
    counts = [0] * len(heads)
    real, string = reader.real, reader.string
    while True:
        try:
            number = reader.integer("a tier number")
        except _ReadError as exc:
            if exc.message.startswith("Early end of text"):
                break
            raise
        if number < 1:
            raise _ReadError(f"TextGrid: the specified tier number is {number}, but should be at least 1.",
                             reader.pos, "a tier number")
        if number > len(heads):
            raise _ReadError(f"TextGrid: the specified tier number ({number}) exceeds my number of tiers "
                             f"({len(heads)}).", reader.pos, "a tier number")
        name, kind = heads[number - 1][:2]
        counts[number - 1] += 1
        i = counts[number - 1]
        if kind == "interval":
            start = real(("xmin of interval", i, name))
            end = real(("xmax of interval", i, name))
            if start > end:
                _check_domain(start, end, reader, ("interval", i, name))
            sets[number - 1].add(start, (start, end, string(("text of interval", i, name))), i)
        else:
            time = real(("time of point", i, name))
            sets[number - 1].add(time, (time, string(("mark of point", i, name))), i)
    tiers = [_finish_tier(name, kind, t_min, t_max, items, line, warnings, fill_empty=False)
             for (name, kind, t_min, t_max, line), items in zip(heads, sets)]
    return xmin, xmax, tiers


def _describe(what: object) -> str:
    """Human wording of what was being read, from the compact tuples the reader passes."""
    if isinstance(what, str):
        return what
    if isinstance(what, tuple) and len(what) == 3:
        label, index, tier = what
        return f"{label} {index} of tier {tier!r}"
    if isinstance(what, tuple) and len(what) == 2:
        label, value = what
        if label == "tier":
            return f"the time domain of tier {value!r}"
        if label.endswith(" tier"):
            return f"{label} {value!r}" if isinstance(value, str) else f"{label} {value}"
        return f"{label} of tier {value!r}"
    return "the file"


def _hint(message: str) -> str:
    if message.startswith("Early end of text"):
        return "The file is truncated, or a count in it is larger than the items that follow."
    if message.startswith("Character"):
        return 'A label has a lone double quote: write "" for a quote inside a label.'
    if message.startswith("Found"):
        return "The file is malformed at that place; re-save it from Praat."
    if message.startswith("Wrong xmin"):
        return "Fix the start/end times (start must not be after end)."
    if message.startswith("Value ("):
        return "A count is out of range; the file is malformed."
    return "Re-save the file from Praat as a text file."


def read_textgrid_file(path: PathLike, *, max_bytes: int = MAX_TEXTGRID_BYTES) -> TextGrid:
    """Read a Praat TextGrid as Praat 6.3 reads it (long, short or chronological text).

    Returns a :class:`TextGrid` with Praat's numbers (times in s, as read) and labels.
    Raises TextGridError naming the file, the line and what is wrong (with Praat's own
    wording) for every file Praat refuses, and for binary TextGrids, files larger than
    ``max_bytes``, and non-TextGrid Praat objects.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise TextGridError(f"TextGrid {path} is {size / 1e6:.1f} MB, larger than the limit of "
                                f"{max_bytes / 1e6:.1f} MB for a transcript; check the file.")
        data = path.read_bytes()
    except OSError as exc:
        raise TextGridError(f"Cannot read TextGrid {path}: {exc.strerror or exc}.") from None
    if not data.strip():
        praat_says = "No lines. " if not data else ""  # Praat's words for a 0-byte file
        raise TextGridError(f"TextGrid {path} is empty ({len(data)} bytes, no text). {praat_says}Export the "
                            "transcript from Praat again.")
    reader_kind = _dispatch(data)
    if reader_kind == "binary":
        raise TextGridError(f"TextGrid {path}, line 1: a binary Praat file (ooBinaryFile); this reader "
                            "takes text TextGrids only. In Praat: Read from file, then Save as text file.")
    if reader_kind == "cgn":
        raise TextGridError(f"TextGrid {path}, line 1: a CGN syntax XML file, not a Praat text TextGrid; "
                            "convert it in Praat (Read from file, then Save as text file).")
    if reader_kind == "unknown":
        raise TextGridError(f"TextGrid {path}, line 1: not a Praat TextGrid text file (Praat: File not "
                            "recognized). A TextGrid starts with 'File type = \"ooTextFile\"' or "
                            "'\"Praat chronological TextGrid text file\"'.")
    warnings: list[str] = []
    text, encoding = _decode(data, warnings)
    reader = _PraatText(text)
    try:
        if reader_kind.startswith("chronological"):
            file_format = "chronological"
            if reader_kind == "chronological-bom":
                warnings.append("A UTF-8 byte-order mark precedes the chronological header: Praat 6.3 does not "
                                "recognise such a file (it needs the header at byte 0); read anyway.")
            xmin, xmax, tiers = _read_chronological(reader, warnings)
        else:
            file_format, xmin, xmax, tiers = _read_oo_text(reader, warnings)
    except _ReadError as exc:
        line = reader.line(exc.position)
        raise TextGridError(_safe(f"TextGrid {path}, line {line}: {exc.message} (while reading "
                                  f"{_describe(exc.what)}). {_hint(exc.message)}")) from None
    for tier in tiers:
        if tier.kind == "interval" and tier.intervals:
            starts, ends = tier.times()
            undefined = np.flatnonzero(~(np.isfinite(starts) & np.isfinite(ends)))
            if undefined.size:
                warnings.append(f"Tier {tier.name!r}: interval {int(undefined[0]) + 1} has an undefined time "
                                "(Praat's --undefined--).")
    return TextGrid(path=path, format=file_format, encoding=encoding, xmin=xmin, xmax=xmax,
                    tiers=tuple(tiers), warnings=tuple(_safe(w) for w in warnings))


# ---------------------------------------------------------------------------------------
# Checks and the simple API.

def _tier_index(textgrid: TextGrid, word_tier: Union[str, int, None]) -> Optional[int]:
    if word_tier is None:
        return None
    if isinstance(word_tier, str):
        for i, tier in enumerate(textgrid.tiers):
            if tier.name == word_tier:
                return i
        raise TextGridError(f"TextGrid {textgrid.path} has no tier {word_tier!r}; its tiers are "
                            f"{[t.name for t in textgrid.tiers]}.")
    if isinstance(word_tier, (int, np.integer)) and not isinstance(word_tier, bool) \
            and 0 <= int(word_tier) < len(textgrid.tiers):
        return int(word_tier)
    raise TextGridError(f"word_tier must be a tier name or a 0-based index into the {len(textgrid.tiers)} "
                        f"tiers of {textgrid.path}, got {word_tier!r}.")


def check_tier_overlaps(textgrid: TextGrid, word_tier: Union[str, int, None] = None, *,
                        tolerance_s: float = OVERLAP_TOLERANCE_S,
                        word_tolerance_s: float = WORD_OVERLAP_TOLERANCE_S) -> list[str]:
    """Check the interval tiers for overlaps and undefined times; return warnings (strings).

    An interval overlaps when it starts before the latest end of the intervals before it
    (Praat keeps intervals sorted by start). ``word_tier`` (a name, the first tier of that
    name, or a 0-based index into ``textgrid.tiers``) is strict: an overlap larger than
    ``word_tolerance_s`` seconds, or an undefined time, raises TextGridError naming the
    file, the tier, the interval (1-based) and the time. Every other interval tier only
    warns: overlaps up to ``tolerance_s`` seconds get one warning per tier naming it, the
    intervals and times; larger overlaps and undefined times get a stronger warning saying
    that features built from that tier will refuse it. Praat's numbers are never changed.
    """
    word_index = _tier_index(textgrid, word_tier)
    path = textgrid.path
    warnings: list[str] = []
    for index, tier in enumerate(textgrid.tiers):
        if tier.kind != "interval" or not tier.intervals:
            continue
        strict = index == word_index
        starts, ends = tier.times()
        bad = np.flatnonzero(~(np.isfinite(starts) & np.isfinite(ends)))
        if bad.size:
            i = int(bad[0])
            where = (f"TextGrid {path}: tier {tier.name!r} interval {i + 1} has an undefined time "
                     f"({praat_number_text(starts[i])} .. {praat_number_text(ends[i])} s)")
            if strict:
                raise TextGridError(f"{where}; fix the interval's times.")
            warnings.append(f"{where}: features built from tier {tier.name!r} will refuse it; the words are "
                            "loaded.")
            continue
        if starts.size < 2:
            continue
        latest_end = np.maximum.accumulate(ends)[:-1]
        overlap = latest_end - starts[1:]
        limit = word_tolerance_s if strict else 0.0
        overlapping = np.flatnonzero(overlap > limit)
        if not overlapping.size:
            continue
        worst = int(overlapping[np.argmax(overlap[overlapping])])
        amount = float(overlap[worst])
        where = f"interval {worst + 2} (starting {float(starts[worst + 1])!r} s)"
        if strict:
            raise TextGridError(f"TextGrid {path}: word tier {tier.name!r} has overlapping intervals: {where} "
                                f"starts {amount * 1e3:.6g} ms before the previous interval ends "
                                f"({float(latest_end[worst])!r} s), more than the {word_tolerance_s * 1e6:g} us "
                                "of rounding tolerated. Words must not overlap; fix the word times.")
        shown = ", ".join(f"interval {int(i) + 2} at {float(starts[i + 1])!r} s ({overlap[i] * 1e3:.3g} ms)"
                          for i in overlapping[:10])
        more = f" and {overlapping.size - 10} more" if overlapping.size > 10 else ""
        if amount > tolerance_s:
            warnings.append(f"TextGrid {path}: tier {tier.name!r} has {overlapping.size} interval(s) starting "
                            f"before the previous one ends, by up to {amount * 1e3:.6g} ms, more than the "
                            f"{tolerance_s * 1e3:g} ms tolerated: {shown}{more}. Features built from tier "
                            f"{tier.name!r} (e.g. a phoneme rate) will refuse it; the words are loaded.")
        else:
            warnings.append(f"TextGrid {path}: tier {tier.name!r} has {overlapping.size} interval(s) starting "
                            f"before the previous one ends, by at most {amount * 1e3:.3g} ms (tolerated, <= "
                            f"{tolerance_s * 1e3:g} ms; Praat's times kept): {shown}{more}.")
    return warnings


def _interval_tier_dict(textgrid: TextGrid, notes: Optional[list[str]] = None
                        ) -> tuple[dict[str, list[Interval]], list[int]]:
    """{unique name: intervals} for interval tiers (a repeated name gets "_2", "_3"...), and
    the index in ``textgrid.tiers`` of each. Renames are appended to ``notes`` (else logged)."""
    tiers: dict[str, list[Interval]] = {}
    indices: list[int] = []
    for index, tier in enumerate(textgrid.tiers):
        if tier.kind != "interval":
            continue
        unique, suffix = tier.name, 2
        while unique in tiers:
            unique = f"{tier.name}_{suffix}"
            suffix += 1
        if unique != tier.name:
            message = f"Tier name {tier.name!r} repeated; the later one is called {unique!r}."
            if notes is None:
                logger.warning("TextGrid %s: %s", textgrid.path, message)
            else:
                notes.append(message)
        tiers[unique] = list(tier.intervals)
        indices.append(index)
    return tiers, indices


def _log_warnings(textgrid: TextGrid, extra: Sequence[str]) -> None:
    for message in textgrid.warnings:
        logger.info("TextGrid %s: %s", textgrid.path, message)
    for message in extra:
        logger.warning("%s", message)


def read_textgrid(path: PathLike) -> dict[str, list[Interval]]:
    """Read a Praat TextGrid (any text format Praat reads) as ``{tier_name: intervals}``.

    Returns ``{tier_name: [(start_s, end_s, label), ...]}`` for every interval tier, in
    file order (point tiers are skipped; a repeated name gets "_2", "_3"...). Times are
    Praat's. Raises TextGridError naming the file (and the line) when Praat would refuse it.
    Overlapping intervals and undefined times are logged as warnings
    (:func:`check_tier_overlaps` with no word tier).
    """
    textgrid = read_textgrid_file(path)
    _log_warnings(textgrid, check_tier_overlaps(textgrid))
    return _interval_tier_dict(textgrid)[0]


def is_non_word(label: str) -> bool:
    """True for empty labels and LeBel non-words (``sp``, ``{LG}``, ``sentence_start``...)."""
    core = label.strip().strip("{}<>[]").strip().lower()
    return not core or core in LEBEL_NON_WORDS


def select_word_tier(tiers: dict[str, list[Interval]], tier: Union[str, int, None] = None,
                     path: PathLike = "<textgrid>") -> str:
    """Name of the words tier: ``tier`` if given (name or 0-based index among interval tiers),
    else the tier named "words"/"word" (any case), else index 1 if there are >= 2 tiers, else 0."""
    names = list(tiers)
    if not names:
        raise TextGridError(f"TextGrid {path} has no interval tiers; it needs a words tier.")
    if isinstance(tier, str):
        if tier not in tiers:
            raise TextGridError(f"TextGrid {path} has no tier {tier!r}; its tiers are {names}.")
        return tier
    if isinstance(tier, (int, np.integer)) and not isinstance(tier, bool):
        if not 0 <= int(tier) < len(names):
            raise TextGridError(f"TextGrid {path}: tier index {tier} is out of range; it has "
                                f"{len(names)} interval tiers {names}.")
        return names[int(tier)]
    if tier is not None:
        raise TextGridError(f"tier must be a tier name, a 0-based index or None, got {tier!r}.")
    for name in names:
        if name.strip().lower() in ("words", "word"):
            return name
    return names[1] if len(names) >= 2 else names[0]


@dataclass(frozen=True)
class WordTier:
    """The words of one TextGrid, and what a user should know about the file.

    words: stripped labels without LeBel non-words and empty labels; onsets/offsets:
    float64 ``(n_words,)`` start and end times (s, Praat's numbers). format/encoding: as
    :class:`TextGrid`; xmin/xmax: the grid's time domain (s); tier: the word tier's name;
    warnings: the reader's notes and the overlap policy's warnings, in that order.
    """

    path: Path
    format: str
    encoding: str
    xmin: float
    xmax: float
    tier: str
    words: list[str]
    onsets: np.ndarray
    offsets: np.ndarray
    warnings: tuple[str, ...]


def read_word_tier(path: PathLike, tier: Union[str, int, None] = None) -> WordTier:
    """Read a TextGrid's word tier (chosen by :func:`select_word_tier`) and check its overlaps.

    Overlaps are checked by :func:`check_tier_overlaps` with this tier as the word tier (more
    than 1 us there is an error, other tiers only warn). Raises TextGridError naming the file.
    Nothing is logged: the warnings are returned (see :func:`read_words` for the logging form).
    """
    textgrid = read_textgrid_file(path)
    notes = [f"TextGrid {textgrid.path}: {w}" for w in textgrid.warnings]
    renames: list[str] = []
    tiers, indices = _interval_tier_dict(textgrid, renames)
    notes += [f"TextGrid {textgrid.path}: {w}" for w in renames]
    name = select_word_tier(tiers, tier, path)
    notes += check_tier_overlaps(textgrid, word_tier=indices[list(tiers).index(name)])
    kept = [iv for iv in tiers[name] if not is_non_word(iv[2])]
    return WordTier(path=textgrid.path, format=textgrid.format, encoding=textgrid.encoding, xmin=textgrid.xmin,
                    xmax=textgrid.xmax, tier=name, words=[iv[2].strip() for iv in kept],
                    onsets=np.array([iv[0] for iv in kept], dtype=np.float64),
                    offsets=np.array([iv[1] for iv in kept], dtype=np.float64), warnings=tuple(notes))


def read_words(path: PathLike, tier: Union[str, int, None] = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Words of a TextGrid's words tier, without LeBel non-words and empty labels.

    Returns ``(words, onsets, offsets)``: ``words`` a list of stripped labels, onsets and
    offsets float64 arrays of shape ``(n_words,)`` in seconds. The tier is chosen by
    :func:`select_word_tier`; overlaps are checked by :func:`check_tier_overlaps` with it as
    the word tier (more than 1 us there is an error; other tiers give logged warnings).
    """
    word_tier = read_word_tier(path, tier)
    for message in word_tier.warnings:
        logger.warning("%s", message)
    return word_tier.words, word_tier.onsets, word_tier.offsets


# ---------------------------------------------------------------------------------------
# Writing (unchanged behaviour).

def _check_intervals(path: Path, tier: str, intervals: list[Interval], tier_xmin: float,
                     tier_xmax: float) -> None:
    """Refuse inverted, out-of-range or overlapping intervals (vectorised over intervals)."""
    if not intervals:
        raise TextGridError(f"TextGrid {path}: interval tier {tier!r} is empty (no intervals); "
                            "every interval tier needs at least one interval.")
    starts = np.array([iv[0] for iv in intervals])
    ends = np.array([iv[1] for iv in intervals])
    inverted = np.flatnonzero(starts > ends + _TIME_TOLERANCE_S)
    if inverted.size:
        i = int(inverted[0])
        raise TextGridError(f"TextGrid {path}: tier {tier!r} interval {i + 1} has xmin > xmax "
                            f"({starts[i]} > {ends[i]} s); fix the interval boundaries.")
    overlap = np.flatnonzero(starts[1:] < ends[:-1] - _TIME_TOLERANCE_S)
    if overlap.size:
        i = int(overlap[0]) + 1
        raise TextGridError(f"TextGrid {path}: tier {tier!r} interval {i + 1} (starting {starts[i]} s) "
                            f"overlaps the previous one (ending {ends[i - 1]} s); intervals must be "
                            "in time order and must not overlap.")
    if starts[0] < tier_xmin - _TIME_TOLERANCE_S or ends[-1] > tier_xmax + _TIME_TOLERANCE_S:
        raise TextGridError(f"TextGrid {path}: tier {tier!r} has intervals outside the tier's range "
                            f"[{tier_xmin}, {tier_xmax}] s.")


def _quote(label: str) -> str:
    return '"' + label.replace('"', '""') + '"'


def write_textgrid(path: PathLike, tiers: dict[str, list[Interval]], xmax: float) -> Path:
    """Write interval tiers as a long-format UTF-8 Praat TextGrid, atomically.

    tiers: ``{name: [(start_s, end_s, label), ...]}`` sorted, non-overlapping, within
    ``[0, xmax]`` seconds. Gaps are filled with empty intervals, as Praat requires.
    Raises TextGridError for bad tiers (naming the path) and StorageError if unwritable.
    """
    path = Path(path)
    if not (isinstance(xmax, (int, float, np.floating, np.integer)) and math.isfinite(float(xmax)) and xmax > 0):
        raise TextGridError(f"write_textgrid({path}): xmax must be a positive number of seconds, got {xmax!r}.")
    xmax = float(xmax)
    if not tiers:
        raise TextGridError(f"write_textgrid({path}): no tiers given; pass {{'words': [(start, end, label), ...]}}.")
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "",
             "xmin = 0 ", f"xmax = {xmax!r} ", "tiers? <exists> ", f"size = {len(tiers)} ", "item []: "]
    for tier_number, (name, intervals) in enumerate(tiers.items(), start=1):
        checked = []
        for item in intervals:
            try:
                start, end, label = float(item[0]), float(item[1]), str(item[2])
            except (TypeError, ValueError, IndexError):
                raise TextGridError(f"write_textgrid({path}): tier {name!r} has an item {item!r} that is "
                                    "not (start_s, end_s, label).") from None
            checked.append((start, end, label))
        if not checked:
            raise TextGridError(f"write_textgrid({path}): tier {name!r} is empty.")
        if not all(math.isfinite(s) and math.isfinite(e) for s, e, _ in checked):
            raise TextGridError(f"write_textgrid({path}): tier {name!r} has a NaN or infinite time.")
        _check_intervals(path, str(name), checked, 0.0, xmax)
        filled: list[Interval] = []
        cursor = 0.0
        for start, end, label in checked:
            if start > cursor + _TIME_TOLERANCE_S:
                filled.append((cursor, start, ""))
            filled.append((start, end, label))
            cursor = end
        if cursor < xmax - _TIME_TOLERANCE_S:
            filled.append((cursor, xmax, ""))
        lines += [f"    item [{tier_number}]:", '        class = "IntervalTier" ',
                  f"        name = {_quote(str(name))} ", "        xmin = 0 ", f"        xmax = {xmax!r} ",
                  f"        intervals: size = {len(filled)} "]
        for i, (start, end, label) in enumerate(filled, start=1):
            lines += [f"        intervals [{i}]:", f"            xmin = {start!r} ",
                      f"            xmax = {end!r} ", f"            text = {_quote(label)} "]
    return atomic_write_text(path, "\n".join(lines) + "\n")
