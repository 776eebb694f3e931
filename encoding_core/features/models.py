"""Loading speech encoders offline: the bundled Whisper, any HF id or local folder.

Supported: Whisper (encoder only), HuBERT, wav2vec2, WavLM and other HF audio encoders with a
convolutional feature extractor (``config.conv_stride``). Nothing is ever downloaded
(``local_files_only=True``); a model missing offline raises :class:`ModelUnavailableError`
before any work, with the command that fetches it.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from encoding_core.common.errors import InputError, ModelUnavailableError
from encoding_core.features import bundled_whisper

logger = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack")
_loaded: dict[tuple, "LoadedModel"] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class ModelFacts:
    """Cheap facts about a model, read from its config.

    n_layers: encoder blocks (embeddings excluded; layers are 0..n_layers-1).
    hidden_size: feature dimension per layer. n_parameters: parameters of the part that runs
    (Whisper: encoder only). kind: ``config.model_type`` (``whisper``, ``hubert``, ...).
    """

    name: str
    n_layers: int
    hidden_size: int
    n_parameters: int
    kind: str


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are and a string identifying its weights (for cache keys)."""

    name: str
    folder: Path
    weights_identity: str


@dataclass
class LoadedModel:
    """A speech encoder ready to run.

    encoder: the module whose ``hidden_states`` are features (Whisper: ``WhisperEncoder``).
    feature_extractor: the HF feature extractor (log-mel for Whisper, waveform normaliser else).
    precision: the precision actually used (``fp32``, ``fp16``, ``bf16``).
    """

    source: ModelSource
    kind: str
    encoder: Any
    feature_extractor: Any
    device: Any
    precision: str
    n_layers: int
    hidden_size: int

    @property
    def is_whisper(self) -> bool:
        return self.kind == "whisper"

    @property
    def sampling_rate(self) -> int:
        return int(getattr(self.feature_extractor, "sampling_rate", 16000))

    @property
    def input_dtype(self) -> Any:
        import torch

        return torch.float16 if self.precision == "fp16" else torch.float32

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """bf16 autocast when precision is ``bf16`` (approximate), else nothing."""
        import torch

        if self.precision == "bf16":
            with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16):
                yield
        else:
            yield


def _how_to_get(name: str) -> str:
    if Path(name).expanduser().is_dir():
        return ("Fix: check that the folder holds a complete model saved with save_pretrained "
                "(config.json and the weights), or choose another model.")
    return (f"Fix: run once with network access: python -c \"from transformers import AutoModel; "
            f"AutoModel.from_pretrained('{name}')\" (or: huggingface-cli download {name}), "
            f"or give the path of a local folder holding config.json and the weights, "
            f"or use the offline model {bundled_whisper.BUNDLED_MODEL_NAME!r}.")


def _files_identity(folder: Path, prefix: str) -> str:
    """Hash of the weight/config files' names, sizes and mtimes (cheap; changes when files do)."""
    parts = [prefix]
    for path in sorted(folder.iterdir()):
        if path.is_file() and (path.suffix in WEIGHT_SUFFIXES or path.name == "config.json"):
            stat = path.stat()
            parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def resolve_model(model_name: str) -> ModelSource:
    """Find a model's local folder without loading it; raise ModelUnavailableError if absent."""
    name = str(model_name).strip()
    if not name:
        raise InputError("model_name is empty; give a HF model id, a local folder, or "
                         f"{bundled_whisper.BUNDLED_MODEL_NAME!r}.")
    if bundled_whisper.is_bundled_name(name):
        folder = bundled_whisper.ensure_converted()
        return ModelSource(bundled_whisper.BUNDLED_MODEL_NAME, folder, bundled_whisper.weights_identity())
    local = Path(name).expanduser()
    try:
        is_folder, exists = local.is_dir(), local.exists()
    except (OSError, ValueError) as exc:  # e.g. a name longer than the file system allows
        raise ModelUnavailableError(f"model_name {name[:60]!r} is not a usable name or folder ({exc.__class__.__name__}: "
                                    f"{getattr(exc, 'strerror', None) or exc}); give a HF model id or a local "
                                    "folder.") from None
    if is_folder:
        if not (local / "config.json").is_file():
            raise ModelUnavailableError(f"Model folder {local} has no config.json; it is not a Hugging Face "
                                        "model folder. Fix: point model_name to the folder saved with "
                                        "model.save_pretrained(...).")
        return ModelSource(str(local.resolve()), local.resolve(), _files_identity(local.resolve(), "local"))
    if exists or name.startswith((".", "/", "~")):
        raise ModelUnavailableError(f"model_name {name!r} is not a model folder. {_how_to_get(name)}")
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(name, "config.json")
    except Exception as exc:  # invalid repo id format raises HFValidationError
        raise ModelUnavailableError(f"model_name {name!r} is neither a local folder nor a valid Hugging Face "
                                    f"model id ({exc}). {_how_to_get(name)}") from None
    if not isinstance(cached, str):
        raise ModelUnavailableError(f"Model {name!r} is not in the local Hugging Face cache and downloads are "
                                    f"disabled. {_how_to_get(name)}")
    folder = Path(cached).parent
    return ModelSource(name, folder, _files_identity(folder, f"hub:{name}@{folder.name}"))


def _load_config(source: ModelSource) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source.folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelUnavailableError(f"Cannot read the config of model {source.name!r} in {source.folder}: {exc}. "
                                    f"{_how_to_get(source.name)}") from None


def _check_speech_config(config: Any, name: str) -> str:
    kind = str(getattr(config, "model_type", ""))
    if kind == "whisper" or hasattr(config, "conv_stride"):
        return kind
    raise InputError(f"Model {name!r} (type {kind!r}) is not a speech encoder with a known frame rate. "
                     "Fix: use Whisper, HuBERT, wav2vec2, WavLM or another HF audio encoder.")


def _n_layers(config: Any) -> int:
    return int(getattr(config, "encoder_layers", None) or config.num_hidden_layers)


def _hidden_size(config: Any) -> int:
    return int(getattr(config, "d_model", None) or config.hidden_size)


SAFETENSORS_HEADER_MAX_BYTES = 64 * 1024 ** 2
WHISPER_ENCODER_PREFIXES = ("model.encoder.", "encoder.")


def _safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a .safetensors file's header (8-byte length, then JSON); reads no weights."""
    with open(path, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        if not 0 < length <= SAFETENSORS_HEADER_MAX_BYTES:
            raise ValueError(f"implausible safetensors header length {length}")
        header = json.loads(handle.read(length))
    return {name: [int(d) for d in entry["shape"]] for name, entry in header.items() if name != "__metadata__"}


def _whisper_facts_from_files(name: str, folder: Path) -> Optional[ModelFacts]:
    """Facts of a Whisper folder from config.json and model.safetensors' header alone.

    The warm path of a run (features cached) then needs no transformers import (~3-7 s here).
    The encoder's parameters are the tensors under ``model.encoder.`` (or ``encoder.``), the
    ones ``WhisperModel.get_encoder().parameters()`` counts. Anything else (another kind, sharded
    or .bin weights, an unreadable header) returns None and the caller builds the model.
    """
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if config.get("model_type") != "whisper" or not (folder / "model.safetensors").is_file():
            return None
        shapes = _safetensors_shapes(folder / "model.safetensors")
        encoder = [shape for key, shape in shapes.items() if key.startswith(WHISPER_ENCODER_PREFIXES)]
        if not encoder:
            return None
        n_parameters = sum(math.prod(shape) for shape in encoder)
        return ModelFacts(name, int(config["encoder_layers"]), int(config["d_model"]), int(n_parameters), "whisper")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


@functools.lru_cache(maxsize=32)
def _facts_cached(name: str, folder: str, identity: str) -> ModelFacts:
    fast = _whisper_facts_from_files(name, Path(folder))
    if fast is not None:
        return fast
    return _facts_from_model(name, folder, identity)


def _facts_from_model(name: str, folder: str, identity: str) -> ModelFacts:
    """Facts from the model built on the meta device (shapes only, no weights read)."""
    import torch
    from transformers import AutoModel

    source = ModelSource(name, Path(folder), identity)
    config = _load_config(source)
    kind = _check_speech_config(config, name)
    with torch.device("meta"):  # shapes only: no memory, no weights read
        model = AutoModel.from_config(config)
    part = model.get_encoder() if kind == "whisper" else model
    n_parameters = sum(p.numel() for p in part.parameters())
    return ModelFacts(name, _n_layers(config), _hidden_size(config), int(n_parameters), kind)


def model_facts(model_name: str) -> ModelFacts:
    """Layers, width, parameter count and kind of a model, from its config (no weights loaded)."""
    source = resolve_model(model_name)
    return _facts_cached(source.name, str(source.folder), source.weights_identity)


def resolve_device(device: str = "auto") -> Any:
    """``auto`` -> cuda, then mps, then cpu. A missing GPU falls back to cpu with a warning."""
    import torch

    requested = (device or "auto").strip().lower()
    mps_ok = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        _warn(f"device {device!r} was requested but no CUDA GPU is available; using the CPU instead "
              "(set device to 'cpu' or 'auto' to silence this warning).")
        return torch.device("cpu")
    if requested == "mps" and not mps_ok:
        _warn("device 'mps' was requested but Apple MPS is not available; using the CPU instead.")
        return torch.device("cpu")
    try:
        return torch.device(requested)
    except RuntimeError:
        raise InputError(f"device {device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'mps'.") from None


def _warn(message: str) -> None:
    logger.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def effective_precision(precision: str, device: Any) -> str:
    """The precision that will run: fp16 needs a GPU (falls back to fp32 on CPU with a warning)."""
    precision = (precision or "fp32").lower()
    if precision not in ("fp32", "fp16", "bf16"):
        raise InputError(f"precision {precision!r} is not one of fp32, fp16, bf16.")
    if precision == "fp16" and device.type == "cpu":
        _warn("precision 'fp16' needs a GPU; using fp32 on the CPU (bf16 is the approximate CPU speed mode).")
        return "fp32"
    return precision


def planned_precision(precision: str, device: str = "auto") -> str:
    """The precision that will run for a requested precision and device, without warnings."""
    import torch

    precision = (precision or "fp32").lower()
    wanted = (device or "auto").strip().lower()
    gpu = torch.cuda.is_available() if wanted in ("auto",) or wanted.startswith("cuda") else wanted == "mps"
    if wanted == "auto" and not gpu:
        gpu = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return "fp32" if precision == "fp16" and not gpu else precision


def _feature_extractor(source: ModelSource, config: Any, kind: str) -> Any:
    from transformers import AutoFeatureExtractor, Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

    if (source.folder / "preprocessor_config.json").is_file():
        try:
            return AutoFeatureExtractor.from_pretrained(source.folder, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(f"Cannot read the feature extractor of {source.name!r}: {exc}. "
                                        f"{_how_to_get(source.name)}") from None
    _warn(f"Model {source.name!r} has no preprocessor_config.json; using the default "
          f"{'Whisper' if kind == 'whisper' else 'wav2vec2'} feature extractor settings.")
    if kind == "whisper":
        return WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    return Wav2Vec2FeatureExtractor(do_normalize=bool(getattr(config, "feat_extract_norm", "") == "layer"))


def load_model(model_name: str, device: str = "auto", precision: str = "fp32") -> LoadedModel:
    """Load a speech encoder (cached per process by folder, device and precision)."""
    from transformers import AutoModel

    source = resolve_model(model_name)
    torch_device = resolve_device(device)
    precision = effective_precision(precision, torch_device)
    key = (str(source.folder), source.weights_identity, str(torch_device), precision)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        config = _load_config(source)
        kind = _check_speech_config(config, source.name)
        encoder = _from_pretrained(AutoModel, source)
        if kind == "whisper":
            encoder = encoder.get_encoder()
        encoder = encoder.to(torch_device)
        if precision == "fp16":
            encoder = encoder.half()
        encoder.eval()
        loaded = LoadedModel(source=source, kind=kind, encoder=encoder,
                             feature_extractor=_feature_extractor(source, config, kind), device=torch_device,
                             precision=precision, n_layers=_n_layers(config), hidden_size=_hidden_size(config))
        _loaded[key] = loaded
        logger.info("Loaded %s (%s) on %s, %s.", source.name, kind, torch_device, precision)
        return loaded


def _from_pretrained(auto_cls: Any, source: ModelSource) -> Any:
    try:
        try:
            return auto_cls.from_pretrained(source.folder, local_files_only=True, attn_implementation="sdpa")
        except ValueError as exc:
            message = str(exc).lower()
            if "sdpa" not in message and "attention implementation" not in message:
                raise
            logger.info("%s has no sdpa attention; using its default attention.", source.name)
            return auto_cls.from_pretrained(source.folder, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelUnavailableError(f"Cannot load the weights of {source.name!r} from {source.folder}: {exc}. "
                                    f"{_how_to_get(source.name)}") from None
