"""Ask Praat itself (``praat_nogui``, Debian package ``praat``) what it reads from a file.

Used by ``test_textgrid_praat_live.py`` as the independent reference (a test-only tool; CI does
not install Praat: the readings that matter are committed as data in
``tests/data/real-textgrids/praat_reference.json`` and as literals in ``test_textgrid.py``). Each call runs
Praat in a subprocess (Praat 6.3.07 crashes on some inputs, e.g. ``tiers? <absent>``), so a
crash is reported, not inherited. Numbers come back with 17 significant digits.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Union

PRAAT = shutil.which("praat_nogui") or shutil.which("praat")

_SCRIPT = r'''form Dump
  sentence path x
endform
tg = Read from file: path$
klass$ = selected$ ()
klass$ = left$ (klass$, index (klass$, " ") - 1)
writeInfoLine: "class ", klass$
if klass$ = "TextGrid"
  gxmin = Get start time
  gxmax = Get end time
  appendInfoLine: "domain ", gxmin, " ", gxmax
  n = Get number of tiers
  appendInfoLine: "tiers ", n
  for t to n
    name$ = Get tier name: t
    isint = Is interval tier: t
    if isint
      k = Get number of intervals: t
      appendInfoLine: "I ", k, " ", length (name$), " ", name$
      for i to k
        s = Get start time of interval: t, i
        en = Get end time of interval: t, i
        l$ = Get label of interval: t, i
        appendInfoLine: "i ", s, " ", en, " ", length (l$), " ", l$
      endfor
    else
      k = Get number of points: t
      appendInfoLine: "P ", k, " ", length (name$), " ", name$
      for i to k
        s = Get time of point: t, i
        l$ = Get label of point: t, i
        appendInfoLine: "p ", s, " ", length (l$), " ", l$
      endfor
    endif
  endfor
endif
'''


MEASURED_VERSION = "6.3.07"
"""The Praat version the reader was checked against (Debian bookworm's package ``praat``)."""


def version() -> str:
    """Praat's version number ("6.3.07"), or "" when Praat is absent or does not answer."""
    if PRAAT is None:
        return ""
    try:
        result = subprocess.run([PRAAT, "--version"], capture_output=True, check=False, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    words = result.stdout.decode("utf-8", errors="replace").split()
    return words[1] if len(words) > 1 and words[0] == "Praat" else ""


def available() -> bool:
    """Praat is installed and is the version the reader's expectations were measured on."""
    return version() == MEASURED_VERSION


def _number(token: str) -> float:
    return float("nan") if token == "--undefined--" else float(token)


def _take_text(rest: str, lines: list[str], index: int) -> tuple[str, int]:
    """A length-prefixed text ('<n> <text>') that may span several output lines."""
    length_str, _, text = rest.partition(" ")
    length = int(length_str)
    while len(text) < length:
        index += 1
        text += "\n" + lines[index]
    return text, index


def praat_read(path: Union[str, Path], timeout: float = 30.0) -> dict:
    """What Praat reads from ``path``.

    Returns ``{"tiers": [{"name", "interval" (bool), "items": [(start, end, label)] or
    [(time, mark)]}], "xmin", "xmax"}``, or ``{"error": first line of Praat's message}``,
    or ``{"crash": returncode}`` when Praat dies, or ``{"class": other}`` for a non-TextGrid.
    """
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "dump.praat"
        script.write_text(_SCRIPT, encoding="utf-8")
        result = subprocess.run([PRAAT, "--run", str(script), str(path)], capture_output=True, check=False,
                                timeout=timeout)
    out = result.stdout.decode("utf-8", errors="replace")
    if result.returncode < 0 or result.returncode > 128 and result.returncode != 255:
        return {"crash": result.returncode}
    if result.returncode != 0:
        err = result.stderr.decode("utf-8", errors="replace").strip().splitlines()
        errors = [line for line in err if line.startswith("Error:")]
        return {"error": (errors or err or [f"rc {result.returncode}"])[0]}
    lines = out.split("\n")
    klass = lines[0].split(" ", 1)[1]
    if klass != "TextGrid":
        return {"class": klass}
    _, xmin, xmax = lines[1].split(" ")
    tiers: list[dict] = []
    index = 3
    while index < len(lines) and lines[index]:
        kind, rest = lines[index].split(" ", 1)
        count_str, rest = rest.split(" ", 1)
        name, index = _take_text(rest, lines, index)
        items = []
        for _ in range(int(count_str)):
            index += 1
            parts = lines[index].split(" ", 3 if kind == "I" else 2)
            if kind == "I":
                label, index = _take_text(" ".join(parts[3:]), lines, index)
                items.append((_number(parts[1]), _number(parts[2]), label))
            else:
                label, index = _take_text(" ".join(parts[2:]), lines, index)
                items.append((_number(parts[1]), label))
        tiers.append({"name": name, "interval": kind == "I", "items": items})
        index += 1
    return {"xmin": _number(xmin), "xmax": _number(xmax), "tiers": tiers}


def praat_read_bytes(data: bytes, timeout: float = 30.0, suffix: str = ".TextGrid") -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"probe{suffix}"
        path.write_bytes(data)
        return praat_read(path, timeout)


if __name__ == "__main__":
    import json
    import sys
    for arg in sys.argv[1:]:
        print(arg, json.dumps(praat_read(arg), ensure_ascii=False)[:2000])
