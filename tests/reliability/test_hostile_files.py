"""Hostile files: pickles that would run code, and files lying about their sizes.

Each pickle payload would create a marker file if anything from it ran; the tests check
the loader refuses with UnsafePickleError naming the global and the marker never appears.
"""
from __future__ import annotations

import builtins
import importlib
import os
import pickle
import subprocess
import sys

import h5py
import numpy as np
import pytest

from encoding_core.assembly.assembly_loader import load_assembly
from encoding_core.common.errors import AssemblyFormatError, EncodingCoreError, UnsafePickleError
from tests.data_reference_pickle import make_story_data, reference_classes


class Payload:
    """Pickles as ``func(*args)``: what an attacker's file would contain."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payloads(marker):
    code = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": Payload(os.system, f"touch {marker}"),
        "subprocess.Popen": Payload(subprocess.Popen, ["touch", str(marker)]),
        "subprocess.call": Payload(subprocess.call, ["touch", str(marker)]),
        "builtins.eval": Payload(builtins.eval, code),
        "builtins.exec": Payload(builtins.exec, code),
        "importlib.import_module": Payload(importlib.import_module, "os"),
        "builtins.getattr": Payload(getattr, "text", "upper"),
        "builtins.open": Payload(open, str(marker), "w"),
    }


EXPECTED_GLOBAL = {
    "os.system": os.system.__module__ + ".system",  # posix.system on Linux
    "subprocess.Popen": "subprocess.Popen", "subprocess.call": "subprocess.call",
    "builtins.eval": "builtins.eval", "builtins.exec": "builtins.exec",
    "importlib.import_module": "importlib.import_module", "builtins.getattr": "builtins.getattr",
    "builtins.open": "io.open",
}


def test_control_the_payload_is_live(tmp_path):
    """Plain pickle would run the payload (so the tests below can fail)."""
    marker = tmp_path / "control_marker"
    pickle.loads(pickle.dumps(Payload(os.system, f"touch {marker}")))
    assert marker.exists()


@pytest.mark.parametrize("name", sorted(EXPECTED_GLOBAL))
@pytest.mark.parametrize("protocol", [0, 2, 5])
@pytest.mark.parametrize("where", ["top", "in_story_state", "in_nested_container"])
def test_code_running_pickles_are_refused(tmp_path, name, protocol, where):
    marker = tmp_path / "marker"
    payload = payloads(marker)[name]
    if where == "top":
        obj = payload
    else:
        with reference_classes() as (StoryData, SimpleNeuroidAssembly):
            if where == "in_story_state":
                record = make_story_data(StoryData, "a", brain_data=payload)
            else:
                record = make_story_data(StoryData, "a", split_indices=[{"x": [1, (2, payload)]}])
            obj = object.__new__(SimpleNeuroidAssembly)
            obj.__dict__.update(stories=["a"], story_data={"a": record}, validation_method="outer",
                                is_volume=False)
            data = pickle.dumps(obj, protocol=protocol, fix_imports=False)
    if where == "top":
        data = pickle.dumps(obj, protocol=protocol, fix_imports=False)
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    with pytest.raises(UnsafePickleError) as info:
        load_assembly(path)
    message = str(info.value)
    assert EXPECTED_GLOBAL[name] in message and str(path) in message
    assert not marker.exists()
    assert "encoding" not in sys.modules


def test_python2_names_are_refused_too(tmp_path):
    """Protocol 0-2 pickles name Python 2 modules by default (subprocess -> commands...)."""
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pkl"
    for payload in payloads(marker).values():
        path.write_bytes(pickle.dumps(payload, protocol=0))
        with pytest.raises(UnsafePickleError):
            load_assembly(path)
    assert not marker.exists()


def test_numpy_array_constructor_cannot_allocate(tmp_path):
    """numpy.ndarray is allowed only as _reconstruct's argument, never called directly."""
    path = tmp_path / "alloc.pkl"
    # GLOBAL numpy.ndarray, MARK, huge int, TUPLE, TUPLE1... built by hand: ndarray((2**40,))
    path.write_bytes(b"cnumpy\nndarray\n((I1099511627776\ntt" + b"R.")
    with pytest.raises(AssemblyFormatError):
        load_assembly(path)
    path.write_bytes(b"cnumpy._core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(I1099511627776\ntS'b'\ntR.")
    with pytest.raises(AssemblyFormatError, match="declares"):
        load_assembly(path)


def test_hdf5_declaring_absurd_shape_is_refused_before_reading(tmp_path, make_assembly):
    from encoding_core.assembly.assembly_loader import save_assembly

    path = tmp_path / "a.h5"
    save_assembly(make_assembly(n_stories=1, n_trs=10, n_voxels=5), path)
    with h5py.File(path, "r+") as h5:
        del h5["stories/0/brain_data"]
        # 2**35 float32 elements declared, nothing written (HDF5 allocates lazily).
        h5["stories/0"].create_dataset("brain_data", shape=(2 ** 20, 2 ** 15), dtype="f4", chunks=(1, 1024))
    assert path.stat().st_size < 1_000_000
    with pytest.raises(AssemblyFormatError, match="over the limit") as info:
        load_assembly(path)
    assert str(path) in str(info.value)


def test_hdf5_lying_about_words_length(tmp_path, make_assembly):
    from encoding_core.assembly.assembly_loader import save_assembly

    path = tmp_path / "a.h5"
    save_assembly(make_assembly(n_stories=1, n_trs=10, n_voxels=5), path)
    with h5py.File(path, "r+") as h5:
        del h5["stories/0/word_onsets"]
        h5["stories/0"].create_dataset("word_onsets", data=np.zeros(3))
    with pytest.raises(AssemblyFormatError, match="words but 3 onsets"):
        load_assembly(path)


def test_every_hostile_error_is_encoding_core_error():
    assert issubclass(UnsafePickleError, EncodingCoreError)
