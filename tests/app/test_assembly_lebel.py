"""The Assembly page on a LeBel (ds003020) folder: missing files, skip_missing, and the folder check."""
from __future__ import annotations

from app_helpers import new_app, open_page, texts

from tests.assembly.lebel_tree import build_lebel_tree


def _open_folder(at, root):
    at.radio(key="assembly_source_kind").set_value("LeBel (ds003020) folder").run()
    at.text_input(key="lebel_root").input(str(root)).run()
    assert not at.exception, [e.message for e in at.exception]


def test_missing_files_refuse_the_load_then_skip_missing_loads_the_others(studio):
    root = studio / "ds003020"
    build_lebel_tree(root, layout="derivatives", formats={"sweetaspie": "chronological"}, bom=("sweetaspie",))
    (root / "derivatives" / "TextGrids" / "againstthewind.TextGrid").unlink()
    at = new_app()
    at.run()
    open_page(at, "assembly")
    _open_folder(at, root)
    assert not [c for c in at.checkbox if c.key == "lebel_skip_missing"]  # offered only after a failure
    at.button(key="load_lebel").click().run()
    assert not at.exception
    errors = texts(at.error)
    assert "againstthewind: no TextGrid" in errors and "nothing was loaded" in errors
    assert "No assembly is loaded yet" in texts(at.info)
    at.checkbox(key="lebel_skip_missing").check().run()
    at.button(key="load_lebel").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert "Loaded 2 stories" in texts(at.success), (texts(at.error), texts(at.warning), texts(at.info))
    assert "1 stories were skipped because files are missing: againstthewind: no TextGrid" in texts(at.warning)
    assert "TR midpoints" in texts(at.caption)
    config = at.session_state["experiment_config"]
    assert config.assembly.skip_missing is True and config.assembly.tr_time_convention == "midpoint"


def test_the_folder_check_panel_lists_every_story(studio):
    root = studio / "ds003020"
    build_lebel_tree(root, formats={"sweetaspie": "chronological"}, bom=("sweetaspie",))
    (root / "derivative" / "TextGrids" / "wheretheressmoke.TextGrid").unlink()
    at = new_app()
    at.run()
    open_page(at, "assembly")
    _open_folder(at, root)
    at.button(key="check_lebel").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert "1 stories cannot load: wheretheressmoke: no TextGrid" in texts(at.error)
    table = next(df.value for df in at.dataframe if "TextGrid" in df.value.columns)
    rows = {row["story"]: row for row in table.to_dict("records")}
    assert len(rows) == 84 and rows["sweetaspie"]["TextGrid"] == "chronological, BOM"
    assert rows["sweetaspie"]["status"] == "ok" and rows["wheretheressmoke"]["status"] == "cannot load"
    assert "byte-order mark" in texts(at.markdown)
