"""``check_lebel_folder`` and ``python -m encoding_core check-data`` on ds003020-shaped trees.

References: the tree the test wrote (lebel_tree returns every word interval and duration),
the real respdict.json, and the run's TR span written out here (-10 s to 2 * respdict - 20 s).
"""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from encoding_core.assembly.check_data import check_lebel_folder
from encoding_core.cli import main
from encoding_core.common.errors import AssemblyFormatError
from lebel_tree import AUDIO_RATE, N_VOXELS, build_lebel_tree, real_respdict

NON_WORDS = {"sp", "{lg}", "", "{ns}", "sentence_start"}


def n_words(built) -> int:
    return sum(label.lower() not in NON_WORDS for _, _, label in built.words)


@pytest.fixture
def tree(tmp_path):
    built = build_lebel_tree(tmp_path, subjects=("UTS01", "UTS02"), layout="derivatives",
                             formats={"sweetaspie": "chronological", "againstthewind": "short"},
                             bom=("sweetaspie",), audio=("sweetaspie", "againstthewind"))
    return tmp_path, built


def test_one_row_per_story_with_what_a_user_needs(tree):
    root, built = tree
    report = check_lebel_folder(root)
    assert report.ok and report.layout == "derivatives" and report.subjects == ["UTS01", "UTS02"]
    rows = {row.story: row for row in report.rows}
    assert len(rows) == 84 == report.n_respdict  # every story of the real respdict.json
    expected_formats = {"sweetaspie": "chronological, BOM", "againstthewind": "short", "wheretheressmoke": "long"}
    for name, made in built.items():
        row = rows[name]
        assert row.status == "ok" and not row.problems
        assert row.textgrid_format == expected_formats[name]
        assert row.words == n_words(made)
        assert row.duration_s == made.duration_s
        assert row.respdict_trs == real_respdict()[name]
        assert row.response_rows == {"UTS01": made.run_trs - 20, "UTS02": made.run_trs - 20}
        assert row.tr_span_s == (-10.0, 2.0 * made.run_trs - 20.0)
    assert rows["sweetaspie"].audio_s == pytest.approx(built["sweetaspie"].duration_s, abs=1 / AUDIO_RATE)
    assert rows["sweetaspie"].audio_agrees is True
    assert rows["wheretheressmoke"].audio_agrees is None
    assert any("no audio" in w for w in rows["wheretheressmoke"].warnings)
    assert any("byte-order mark" in w for w in rows["sweetaspie"].warnings)
    assert rows["legacy"].status == "no responses" and rows["legacy"].textgrid_format == "missing"
    assert any("derivatives/" in w for w in report.warnings)
    one = check_lebel_folder(root, subject="UTS02")
    assert {r.story: r.response_rows for r in one.rows}["sweetaspie"] == {"UTS02": 157}


def test_problems_that_stop_a_story_from_loading(tree):
    root, built = tree
    derivatives = root / "derivatives"
    (derivatives / "TextGrids" / "sweetaspie.TextGrid").unlink()
    (derivatives / "TextGrids" / "againstthewind.TextGrid").write_text('File type = "ooTextFile"\nObject class = '
                                                                        '"TextGrid"\n0 1 <exists> 1 "IntervalTier" "w"x\n')
    with h5py.File(derivatives / "preprocessed_data" / "UTS02" / "wheretheressmoke.hf5", "a") as h5:
        del h5["data"]
        h5["data"] = np.zeros((280, N_VOXELS), dtype=np.float32)
    report = check_lebel_folder(root)
    rows = {row.story: row for row in report.rows}
    assert not report.ok and {r.story for r in report.failed} == set(built)
    assert rows["sweetaspie"].problems == [f"no TextGrid {derivatives / 'TextGrids' / 'sweetaspie'}.TextGrid"]
    assert rows["againstthewind"].textgrid_format == "refused"
    assert "againstthewind.TextGrid, line 3" in rows["againstthewind"].problems[0]
    assert "Character x following quote" in rows["againstthewind"].problems[0]
    problem, = rows["wheretheressmoke"].problems
    assert problem.startswith("UTS02:") and "280 rows" in problem and "311 TRs" in problem and "291 rows" in problem
    assert rows["wheretheressmoke"].response_rows == {"UTS01": 291, "UTS02": 280}


def test_audio_that_does_not_match_the_tr_span_is_flagged(tree):
    import soundfile

    root, _ = tree
    soundfile.write(root / "stimuli" / "sweetaspie.wav", np.zeros(200 * AUDIO_RATE, dtype=np.float32), AUDIO_RATE)
    row = next(r for r in check_lebel_folder(root).rows if r.story == "sweetaspie")
    assert row.audio_agrees is False and row.status == "ok"  # a warning, not a refusal
    assert any("lasts 200.00 s" in w and "end 334 s after the sound onset" in w for w in row.warnings)


def test_command_line_prints_the_table_and_exits_non_zero_when_a_story_cannot_load(tree, capsys):
    root, _ = tree
    assert main(["check-data", str(root), "--subject", "UTS01"]) == 0
    out = capsys.readouterr().out
    assert "layout derivatives/" in out and "subjects: UTS01" in out
    line = next(line for line in out.splitlines() if line.startswith("sweetaspie "))
    assert "chronological, BOM" in line and " 157 " in line and "agree" in line
    (root / "derivatives" / "TextGrids" / "wheretheressmoke.TextGrid").unlink()
    assert main(["check-data", str(root)]) == 1
    out = capsys.readouterr().out
    assert "CANNOT LOAD wheretheressmoke: no TextGrid" in out and "1 cannot load" in out


def test_not_a_lebel_folder_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(AssemblyFormatError, match="neither derivative/ nor derivatives/"):
        check_lebel_folder(tmp_path)
    assert main(["check-data", str(tmp_path)]) == 2
    assert "neither derivative/ nor derivatives/" in capsys.readouterr().err
    build_lebel_tree(tmp_path, stories=("sweetaspie",))
    with pytest.raises(AssemblyFormatError, match="subject 'UTS07'"):
        check_lebel_folder(tmp_path, subject="UTS07")
    (tmp_path / "derivative" / "respdict.json").write_text(json.dumps({"sweetaspie": "many"}))
    with pytest.raises(AssemblyFormatError, match="respdict.json must map story names"):
        check_lebel_folder(tmp_path)
