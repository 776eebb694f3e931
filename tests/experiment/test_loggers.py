"""The trainer's logger backends, for real: TensorBoard events read back, an offline wandb run on disk.

The wandb run file is read here with a reader written from the file format (a LevelDB-style
log of ``wandb_internal_pb2.Record`` protobufs), not with our own code.
"""
from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from encoding_core.experiment.loggers import log_reference_metrics, make_logger

METRICS = {"median_score": 0.125, "mean_score": 0.25, "std_score": 0.5, "n_significant": 7,
           "correlations": np.linspace(-0.5, 0.9, 40), "significant_mask": np.arange(40) >= 33}


def test_tensorboard_event_file_reads_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = make_logger("tensorboard", str(tmp_path), "run-a")
    log_reference_metrics(tb, METRICS, step=3)
    tb.close()
    assert Path(tb.location) == tmp_path / "runs" / "run-a"
    events = EventAccumulator(tb.location).Reload()
    for tag, value in (("median_correlation", 0.125), ("mean_correlation", 0.25), ("std_correlation", 0.5),
                       ("n_significant_voxels", 7)):
        (scalar,) = events.Scalars(tag)
        assert scalar.value == pytest.approx(value) and scalar.step == 3
    (histogram,) = events.Histograms("correlation_histogram_data_all")
    assert histogram.histogram_value.num == 40
    assert histogram.histogram_value.min == pytest.approx(-0.5) and histogram.histogram_value.max == pytest.approx(0.9)
    (significant,) = events.Histograms("correlation_histogram_data_significant")
    assert significant.histogram_value.num == 7


def wandb_records(path: Path) -> list:
    """Records of a .wandb file: 7-byte header, then 32 KiB blocks of (crc, length, type) chunks."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if (length == 0 and kind == 0) or pos + 7 + length > len(data):
            break  # the end, or a chunk still being written
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_wandb_runs_offline_and_its_run_folder_holds_the_metrics(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    caplog.set_level("INFO")
    wb = make_logger("wandb", str(tmp_path), "run-b", "a-project")
    log_reference_metrics(wb, METRICS, step=3)
    wb.close()
    run_dir = Path(wb.location)
    assert run_dir.parent == tmp_path / "wandb" and run_dir.name.startswith("offline-run-")
    assert str(run_dir) in caplog.text and "wandb sync" in caplog.text
    (run_file,) = run_dir.glob("run-*.wandb")
    deadline = time.monotonic() + 60  # wandb-core may still be flushing its writer when finish() returns
    records = wandb_records(run_file)
    while not any(r.WhichOneof("record_type") == "exit" for r in records) and time.monotonic() < deadline:
        time.sleep(0.5)
        records = wandb_records(run_file)
    logged = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:  # a histogram arrives as nested keys (name, field)
                path = [item.key] if item.key else list(item.nested_key)
                target = logged
                for part in path[:-1]:
                    target = target.setdefault(part, {})
                target[path[-1]] = json.loads(item.value_json)
    assert logged["median_correlation"] == pytest.approx(0.125)
    assert logged["mean_correlation"] == pytest.approx(0.25)
    assert logged["std_correlation"] == pytest.approx(0.5)
    assert logged["n_significant_voxels"] == 7
    assert logged["correlation_histogram_data_all"]["_type"] == "histogram"
    assert sum(logged["correlation_histogram_data_all"]["values"]) == 40
