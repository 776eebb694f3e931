"""Speed: a LeBel-sized TextGrid (3000 phones + 1000 words) reads well under a second."""
from __future__ import annotations

import time

import numpy as np
import pytest

from encoding_core.assembly.textgrid import read_textgrid_file, read_words


def lebel_like(n_phones: int, n_words: int, chronological: bool) -> str:
    rng = np.random.default_rng(0)

    def tier(n):
        bounds = (0.0124716553288 + np.concatenate([[0.0], np.cumsum(rng.uniform(0.03, 0.3, n))])).tolist()
        return bounds, rng.choice(["AH0", "K", "sp", "{NS}", "HELLO", "S"], n).tolist()

    (pb, pl), (wb, wl) = tier(n_phones), tier(n_words)
    xmax = max(pb[-1], wb[-1])
    if chronological:
        lines = ['"Praat chronological TextGrid text file"', f"0.0124716553288 {xmax!r}   ! Time domain.",
                 "2   ! Number of tiers.", f'"IntervalTier" "phone" 0.0124716553288 {xmax!r}',
                 f'"IntervalTier" "word" 0.0124716553288 {xmax!r}']
        entries = sorted([(pb[i], 1, pb[i + 1], pl[i]) for i in range(n_phones)]
                         + [(wb[i], 2, wb[i + 1], wl[i]) for i in range(n_words)])
        for start, number, end, label in entries:
            lines += [f"{number} {start!r} {end!r}", f'"{label}"']
        return "\n".join(lines) + "\n"
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0.0124716553288 ",
             f"xmax = {xmax!r} ", "tiers? <exists> ", "size = 2 ", "item []: "]
    for k, (name, bounds, labels) in enumerate([("phone", pb, pl), ("word", wb, wl)], start=1):
        lines += [f"    item [{k}]:", '        class = "IntervalTier" ', f'        name = "{name}" ',
                  "        xmin = 0.0124716553288 ", f"        xmax = {xmax!r} ", f"        intervals: size = {len(labels)} "]
        for i, label in enumerate(labels):
            lines += [f"        intervals [{i + 1}]:", f"            xmin = {bounds[i]!r} ",
                      f"            xmax = {bounds[i + 1]!r} ", f'            text = "{label}" ']
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("chronological", [False, True], ids=["long", "chronological"])
def test_lebel_sized_textgrid_reads_fast(tmp_path, chronological):
    path = tmp_path / "story.TextGrid"
    path.write_text(lebel_like(3000, 1000, chronological), encoding="utf-8")
    grid = read_textgrid_file(path)
    assert [len(t.intervals) for t in grid.tiers] == [3000, 1000]
    best = min(_timed(lambda: read_textgrid_file(path)) for _ in range(3))
    assert best < 1.0, f"reading 4000 intervals took {best:.3f} s"
    assert len(read_words(path)[0]) == sum(label not in ("sp", "{NS}") for *_, label in grid.tiers[1].intervals)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
