"""Model x layer comparison: several speech models, every layer, the same targets, one run group.

:func:`run_model_layer_comparison` runs the experiment once per model (``features.model_name``
replaced, ``layers = "all"``; everything else, hence the prepared targets, identical) and records
the runs as one group in ``<results_dir>/groups/<group_id>.json``. :func:`comparison_table` reads
a group back as one row per (model, layer): median test r over all voxels, over the FDR-significant
voxels, and over each region given as a boolean mask.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from encoding_core.common.errors import ConfigError, InputError
from encoding_core.common.progress import CancelFlag, ProgressCallback
from encoding_core.common.storage import atomic_write_text, ensure_dir
from encoding_core.config import ExperimentConfig

GROUPS_FOLDER = "groups"
GROUP_ID_PATTERN = re.compile(r"group-\d{8}-\d{6}-[0-9a-f]{6}")


def _group_path(results_dir: Union[str, Path], group_id: str) -> Path:
    if not GROUP_ID_PATTERN.fullmatch(str(group_id)):
        raise InputError(f"{group_id!r} is not a run-group id (group-YYYYMMDD-HHMMSS-xxxxxx).")
    return Path(results_dir).expanduser() / GROUPS_FOLDER / f"{group_id}.json"


def run_model_layer_comparison(config: ExperimentConfig, model_names: Sequence[str],
                               progress: Optional[ProgressCallback] = None, cancel: Optional[CancelFlag] = None,
                               run_store: Any = None) -> str:
    """Run ``config`` for every model in ``model_names`` over all its layers; returns the group id."""
    import secrets

    from encoding_core.experiment.pipeline import run_experiment

    names = [str(name).strip() for name in model_names if str(name).strip()]
    if len(names) < 1 or len(set(names)) != len(names):
        raise ConfigError(f"Give one or more distinct model names to compare; got {list(model_names)}.")
    if config.feature_spaces or config.features.modality not in ("speech", "language_model"):
        raise ConfigError("A model x layer comparison sweeps layered models: features.modality must be \"speech\" "
                          "or \"language_model\" and feature_spaces empty.")
    runs = {}
    for name in names:
        model_config = dataclasses.replace(config, features=dataclasses.replace(config.features, model_name=name),
                                           layers="all")
        runs[name] = run_experiment(model_config, progress=progress, cancel=cancel, run_store=run_store)
    now = _dt.datetime.now(_dt.timezone.utc)
    group_id = f"group-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    results_dir = run_store.results_dir if run_store is not None else Path(config.results_dir).expanduser()
    ensure_dir(Path(results_dir) / GROUPS_FOLDER)
    record = {"group_id": group_id, "kind": "model_x_layer", "name": config.name,
              "created": now.isoformat(timespec="seconds"), "models": names, "runs": runs}
    atomic_write_text(_group_path(results_dir, group_id), json.dumps(record, indent=1))
    return group_id


def load_group(results_dir: Union[str, Path], group_id: str) -> dict:
    """The group record: ``models`` (order) and ``runs`` {model: run id}."""
    path = _group_path(results_dir, group_id)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"Cannot read run group {path}: {exc}") from None


def comparison_table(results_dir: Union[str, Path], group_id: str,
                     regions: Optional[Mapping[str, np.ndarray]] = None) -> list[dict[str, Any]]:
    """One row per (model, layer): ``model``, ``layer``, ``run_id``, ``median_r`` (all voxels),
    ``median_r_significant`` (FDR-significant voxels; nan when none), ``n_significant``, and
    ``median_r_<region>`` for each region mask (n_voxels,) bool."""
    from encoding_core.experiment.runstore import RunStore

    group = load_group(results_dir, group_id)
    store = RunStore(results_dir)
    rows = []
    for model in group["models"]:
        run = store.load(group["runs"][model])
        for layer in run.layers:
            arrays = run.arrays(layer)
            r = np.asarray(arrays["correlations"], dtype=np.float64)
            significant = np.asarray(arrays.get("significant_mask", np.zeros(r.shape, bool)), dtype=bool)
            row = {"model": model, "layer": int(layer), "run_id": run.run_id,
                   "median_r": float(np.nanmedian(r)),
                   "median_r_significant": float(np.nanmedian(r[significant])) if significant.any() else float("nan"),
                   "n_significant": int(significant.sum())}
            for name, mask in (regions or {}).items():
                mask = np.asarray(mask, dtype=bool)
                if mask.shape != r.shape:
                    raise InputError(f"Region {name!r} has {mask.size} entries but the runs have {r.size} voxels.")
                row[f"median_r_{name}"] = float(np.nanmedian(r[mask])) if mask.any() else float("nan")
            rows.append(row)
    return rows


def list_groups(results_dir: Union[str, Path]) -> list[dict]:
    """Every run-group record under ``results_dir`` (newest first); unreadable files are skipped."""
    folder = Path(results_dir).expanduser() / GROUPS_FOLDER
    if not folder.is_dir():
        return []
    records = []
    for path in folder.glob("group-*.json"):
        if not GROUP_ID_PATTERN.fullmatch(path.stem):
            continue
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return sorted(records, key=lambda r: (str(r.get("created", "")), str(r.get("group_id", ""))), reverse=True)


def comparison_matrix(rows: Sequence[Mapping[str, Any]], value: str = "median_r") -> tuple[list, list, np.ndarray]:
    """(models, layers, (n_models, n_layers) float64) of a :func:`comparison_table`; NaN where a model
    has no such layer."""
    models = list(dict.fromkeys(row["model"] for row in rows))
    layers = sorted({int(row["layer"]) for row in rows})
    matrix = np.full((len(models), len(layers)), np.nan)
    for row in rows:
        matrix[models.index(row["model"]), layers.index(int(row["layer"]))] = float(row[value])
    return models, layers, matrix
