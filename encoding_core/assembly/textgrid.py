"""Praat TextGrids: read (long and short text formats, UTF-8 / UTF-16) and write.

Why a small parser instead of ``praatio``: praatio 6.2 reads valid files well (the tests
use it as the independent reference), but on malformed input it raises a mix of
``ValueError``, ``IndexError``, ``KeyError`` and its own exception types, and it can
allocate from a declared size before checking it. Here every problem becomes one
:class:`~encoding_core.common.errors.TextGridError` naming the file and what is wrong, which the
loaders and the app rely on.

Praat's text formats are one token stream: the long format only adds labels
(``xmin = ``), index brackets (``intervals [3]:``) and ``!`` comments around the same
numbers and quoted strings as the short format. So the parser tokenizes (strings with
``""`` escapes, numbers, ``<exists>``) and ignores the rest, which reads both formats.

Times are seconds. Only interval tiers are returned; point tiers (``TextTier``) are
parsed and skipped.
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Optional, Union

import numpy as np

from encoding_core.common.errors import TextGridError
from encoding_core.common.storage import atomic_write_text

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
Interval = tuple[float, float, str]

LEBEL_NON_WORDS = frozenset({"sentence_start", "sentence_end", "br", "lg", "ls", "ns", "sp"})
"""Labels of the LeBel (ds003020) word tiers that are not words (breaths, silences...)."""

MAX_TEXTGRID_BYTES = 200 * 1024 * 1024
_TIME_TOLERANCE_S = 1e-6

_TOKEN = re.compile(
    r'"(?P<string>(?:[^"]|"")*)"'          # a quoted string, "" is an escaped quote
    r"|(?P<flag><exists>|<absent>)"
    r"|(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<skip>\[[^\]\n]*\]|![^\n]*|[A-Za-z_][\w]*|[=:?\s]+)"
    r"|(?P<other>.)",
    re.DOTALL,
)


def _decode(path: Path, data: bytes) -> str:
    """Decode Praat's encodings: UTF-8 (optionally with BOM), UTF-16 with BOM, else Latin-1."""
    try:
        if data.startswith(b"\xef\xbb\xbf"):
            return data[3:].decode("utf-8")
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return data.decode("utf-16")
        if len(data) >= 2 and b"\x00" in data[:64]:
            # UTF-16 without a BOM: the zero byte of ASCII characters says the byte order.
            return data.decode("utf-16-le" if data[1:2] == b"\x00" else "utf-16-be")
    except UnicodeDecodeError as exc:
        raise TextGridError(f"TextGrid {path}: cannot decode the text ({exc.reason} at byte "
                            f"{exc.start}); save it from Praat as UTF-8 or UTF-16.") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        logger.warning("TextGrid %s is not UTF-8; reading it as Latin-1.", path)
        return data.decode("latin-1")


class _Tokens:
    """Sequential access to the numbers and strings of a TextGrid, with clear errors."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.items: list[tuple[str, object]] = []
        for match in _TOKEN.finditer(text):
            kind = match.lastgroup
            if kind == "string":
                self.items.append(("string", match.group("string").replace('""', '"')))
            elif kind == "number":
                self.items.append(("number", match.group("number")))
            elif kind == "flag":
                self.items.append(("flag", match.group("flag")))
            elif kind == "other":
                line = text.count("\n", 0, match.start()) + 1
                raise TextGridError(
                    f"TextGrid {path}: unexpected character {match.group()!r} on line {line}; "
                    "the file is not a Praat text TextGrid (re-save it from Praat as a text file).")
        self.pos = 0

    def remaining(self) -> int:
        return len(self.items) - self.pos

    def _next(self, what: str) -> tuple[str, object]:
        if self.pos >= len(self.items):
            raise TextGridError(f"TextGrid {self.path}: the file ends early while reading {what}; "
                                "it is truncated or malformed.")
        item = self.items[self.pos]
        self.pos += 1
        return item

    def string(self, what: str) -> str:
        kind, value = self._next(what)
        if kind != "string":
            raise TextGridError(f"TextGrid {self.path}: expected a quoted string for {what}, "
                                f"found {value!r}; the file is malformed.")
        return str(value)

    def number(self, what: str) -> float:
        kind, value = self._next(what)
        if kind != "number":
            raise TextGridError(f"TextGrid {self.path}: expected a number for {what}, "
                                f"found {value!r}; the file is malformed.")
        number = float(str(value))
        if not math.isfinite(number):
            raise TextGridError(f"TextGrid {self.path}: {what} is not a finite number ({value}).")
        return number

    def count(self, what: str, tokens_per_item: int) -> int:
        number = self.number(what)
        if number != int(number) or number < 0:
            raise TextGridError(f"TextGrid {self.path}: {what} must be a non-negative integer, got {number}.")
        count = int(number)
        if count * tokens_per_item > self.remaining():
            raise TextGridError(f"TextGrid {self.path}: {what} declares {count} items but the file "
                                "holds fewer; it is truncated or malformed.")
        return count

    def peek_flag(self) -> Optional[str]:
        if self.pos < len(self.items) and self.items[self.pos][0] == "flag":
            self.pos += 1
            return str(self.items[self.pos - 1][1])
        return None


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


def read_textgrid(path: PathLike) -> dict[str, list[Interval]]:
    """Read a Praat TextGrid (long or short text format, UTF-8 or UTF-16).

    Returns ``{tier_name: [(start_s, end_s, label), ...]}`` for every interval tier, in
    file order (point tiers are skipped). Raises TextGridError naming the file when it is
    missing, malformed, has an empty interval tier, an interval with xmin > xmax or
    overlapping intervals.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_TEXTGRID_BYTES:
            raise TextGridError(f"TextGrid {path} is {size / 1e6:.0f} MB, larger than any plausible "
                                f"transcript (limit {MAX_TEXTGRID_BYTES / 1e6:.0f} MB); check the file.")
        data = path.read_bytes()
    except OSError as exc:
        raise TextGridError(f"Cannot read TextGrid {path}: {exc.strerror or exc}.") from None
    if not data.strip():
        raise TextGridError(f"TextGrid {path} is empty; export the transcript from Praat again.")
    if data.lstrip().startswith(b"ooBinaryFile"):
        raise TextGridError(f"TextGrid {path} is a binary Praat file; save it from Praat as a "
                            "text file (Save as text file...).")
    tokens = _Tokens(path, _decode(path, data))
    file_type = tokens.string("the file type")
    object_class = tokens.string("the object class")
    if file_type != "ooTextFile" or object_class != "TextGrid":
        raise TextGridError(f"TextGrid {path}: header says {file_type!r}/{object_class!r}, expected "
                            "'ooTextFile'/'TextGrid'; this is not a Praat TextGrid text file.")
    xmin = tokens.number("the TextGrid xmin")
    xmax = tokens.number("the TextGrid xmax")
    if xmin > xmax:
        raise TextGridError(f"TextGrid {path}: xmin {xmin} s is greater than xmax {xmax} s.")
    if tokens.peek_flag() == "<absent>":
        return {}
    n_tiers = tokens.count("the number of tiers", tokens_per_item=5)
    tiers: dict[str, list[Interval]] = {}
    for tier_index in range(n_tiers):
        tier_class = tokens.string(f"the class of tier {tier_index + 1}")
        name = tokens.string(f"the name of tier {tier_index + 1}")
        tier_xmin = tokens.number(f"xmin of tier {name!r}")
        tier_xmax = tokens.number(f"xmax of tier {name!r}")
        if tier_xmin > tier_xmax:
            raise TextGridError(f"TextGrid {path}: tier {name!r} has xmin {tier_xmin} > xmax {tier_xmax}.")
        if tier_class == "IntervalTier":
            n_items = tokens.count(f"the number of intervals of tier {name!r}", tokens_per_item=3)
            intervals = [(tokens.number(f"xmin of interval {i + 1} of tier {name!r}"),
                          tokens.number(f"xmax of interval {i + 1} of tier {name!r}"),
                          tokens.string(f"the text of interval {i + 1} of tier {name!r}"))
                         for i in range(n_items)]
            _check_intervals(path, name, intervals, tier_xmin, tier_xmax)
            unique = name
            suffix = 2
            while unique in tiers:
                unique = f"{name}_{suffix}"
                suffix += 1
            if unique != name:
                logger.warning("TextGrid %s: tier name %r repeated; the later one is called %r.", path, name, unique)
            tiers[unique] = intervals
        elif tier_class == "TextTier":
            n_items = tokens.count(f"the number of points of tier {name!r}", tokens_per_item=2)
            for i in range(n_items):
                tokens.number(f"time of point {i + 1} of tier {name!r}")
                tokens.string(f"mark of point {i + 1} of tier {name!r}")
        else:
            raise TextGridError(f"TextGrid {path}: tier {name!r} has unknown class {tier_class!r}; "
                                "expected 'IntervalTier' or 'TextTier'.")
    if tokens.remaining():
        raise TextGridError(f"TextGrid {path}: {tokens.remaining()} unexpected values after the "
                            f"{n_tiers} declared tiers; the tier count or the file is wrong.")
    return tiers


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


def read_words(path: PathLike, tier: Union[str, int, None] = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Words of a TextGrid's words tier, without LeBel non-words and empty labels.

    Returns ``(words, onsets, offsets)``: ``words`` a list of stripped labels, onsets and
    offsets float64 arrays of shape ``(n_words,)`` in seconds. The tier is chosen by
    :func:`select_word_tier`.
    """
    tiers = read_textgrid(path)
    name = select_word_tier(tiers, tier, path)
    kept = [iv for iv in tiers[name] if not is_non_word(iv[2])]
    words = [iv[2].strip() for iv in kept]
    onsets = np.array([iv[0] for iv in kept], dtype=np.float64)
    offsets = np.array([iv[1] for iv in kept], dtype=np.float64)
    return words, onsets, offsets


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
