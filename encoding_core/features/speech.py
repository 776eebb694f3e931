"""Speech-model features: sliding windows over a story, all encoder layers at once.

For each window end time ``t`` (seconds) the window is the audio in
``[max(0, t - context_size), t]``; the window goes through the encoder and each layer's frames
are pooled into one vector. One batched forward pass with ``output_hidden_states=True`` gives
every layer; results are cached on disk per (audio content, model configuration).

Pooling (``pool``):
- ``last``: the last encoder frame that real audio reaches. Whisper pads inputs to 30 s; frame
  ``ceil(n_samples / samples_per_frame) - 1`` is the last real one (samples_per_frame = mel hop
  x conv strides = 320 for Whisper).
- ``mean``: mean over real frames only.
- ``last_padded`` / ``mean_padded``: the reference library's behaviour (final frame of the
  30 s padded input / mean over all 1500 frames). Same as last/mean for models without padding.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from encoding_core.config import FeatureConfig
from encoding_core.common.errors import ConfigError
from encoding_core.common.progress import CancelFlag, ProgressCallback, check_cancel
from encoding_core.features import cache as feature_cache
from encoding_core.assembly.audio import load_audio
from encoding_core.features.base import StoryFeatures, coerce_feature_config
from encoding_core.features.models import LoadedModel, load_model, model_facts

logger = logging.getLogger(__name__)

REFERENCE_KEYS = ("model_name", "chunk_size", "context_size", "layer", "pool", "target_sample_rate", "device")
_EPS = 1e-9


def window_end_times(duration_s: float, chunk_size: float, context_size: float,
                     include_early: bool = False) -> np.ndarray:
    """Window end times in seconds, shape (n_windows,).

    Reference windows end at ``context_size + i * chunk_size`` while ``<= duration_s``. With
    ``include_early`` the shorter windows ending at ``chunk_size, 2 * chunk_size, ... <
    context_size`` come first.
    """
    if chunk_size <= 0 or context_size <= 0:
        raise ConfigError(f"chunk_size ({chunk_size}) and context_size ({context_size}) must be > 0 seconds.")
    n_full = int(math.floor((duration_s - context_size) / chunk_size + _EPS)) + 1 if duration_s + _EPS >= context_size else 0
    full = context_size + np.arange(max(n_full, 0)) * chunk_size
    if not include_early:
        return full.astype(np.float64)
    n_early = int(math.ceil(context_size / chunk_size - _EPS)) - 1
    early = np.arange(1, n_early + 1) * chunk_size
    early = early[(early < context_size - _EPS) & (early <= duration_s + _EPS)]
    return np.concatenate([early, full]).astype(np.float64)


def window_bounds(end_times: np.ndarray, context_size: float, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end sample indices (int64, end exclusive) of each window, shapes (n_windows,)."""
    ends = np.round(np.asarray(end_times) * sample_rate).astype(np.int64)
    starts = np.maximum(ends - int(round(context_size * sample_rate)), 0)
    return starts, ends


class SpeechFeatureExtractor:
    """Sliding-window features from a speech encoder (Whisper, HuBERT, wav2vec2, WavLM).

    config: dict with the reference keys (``model_name, chunk_size, context_size, layer, pool,
    target_sample_rate, device``) and/or our FeatureConfig keys, or a FeatureConfig.
    cache_dir: folder for the on-disk feature cache; None = no disk cache.
    """

    def __init__(self, config: Union[dict, FeatureConfig, None] = None,
                 cache_dir: Union[str, Path, None] = None) -> None:
        self.config, self.layer_index = coerce_feature_config(config)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.facts = model_facts(self.config.model_name)  # fails early if the model is not available offline
        if self.layer_index is not None and not 0 <= self.layer_index < self.facts.n_layers:
            raise ConfigError(f"config['layer'] = {self.layer_index} but {self.config.model_name} has encoder "
                              f"layers 0..{self.facts.n_layers - 1} (0-based, embeddings excluded).")

    modality = "speech"
    chunk_size = property(lambda self: self.config.chunk_size)
    context_size = property(lambda self: self.config.context_size)
    pool = property(lambda self: self.config.pool)
    target_sample_rate = property(lambda self: self.config.target_sample_rate)
    device = property(lambda self: self.config.device)
    layer = property(lambda self: self.layer_index)

    @property
    def model_name(self) -> str:
        return self.config.model_name

    @property
    def n_layers(self) -> int:
        return self.facts.n_layers

    @property
    def hidden_size(self) -> int:
        return self.facts.hidden_size

    def load_model(self) -> LoadedModel:
        """The encoder, loaded on first use (cached per process)."""
        return load_model(self.config.model_name, device=self.config.device, precision=self.config.precision)

    def extract_story(self, audio_path: Union[str, Path], progress: Optional[ProgressCallback] = None,
                      cancel: Optional[CancelFlag] = None) -> StoryFeatures:
        """All layers of one story, from the cache when possible (computed and stored otherwise)."""
        audio_path = Path(audio_path)

        def compute() -> tuple[np.ndarray, np.ndarray, dict]:
            loaded = self.load_model()
            audio = load_audio(audio_path, target_sr=int(self._sample_rate(loaded)))
            layers, times = compute_layers(audio, loaded, self.config, progress=progress, cancel=cancel,
                                           label=audio_path.name)
            return layers, times, {"device": str(loaded.device), "precision_used": loaded.precision}

        return feature_cache.load_or_compute(audio_path, self.config, self.cache_dir, compute)

    def extract_features(self, audio_path: Union[str, Path], layer: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
        """Reference-style: (features (n_windows, dim) float32, window end times (n_windows,) s).

        layer: 0-based encoder layer; default the config's ``layer``, else the last layer.
        """
        story = self.extract_story(audio_path)
        chosen = layer if layer is not None else self.layer_index if self.layer_index is not None else self.n_layers - 1
        return story.layer(chosen), story.times

    def extract_all_layers(self, audio_path: Union[str, Path]) -> tuple[dict[int, np.ndarray], np.ndarray]:
        """Reference-style: ({layer: (n_windows, dim) float32} for layers 0..n_layers-1, times (n_windows,) s)."""
        story = self.extract_story(audio_path)
        return {i: story.layer(i) for i in range(story.n_layers)}, story.times

    def _sample_rate(self, loaded: LoadedModel) -> int:
        if int(self.config.target_sample_rate) != loaded.sampling_rate:
            raise ConfigError(f"target_sample_rate is {self.config.target_sample_rate} Hz but {self.model_name} "
                              f"expects {loaded.sampling_rate} Hz. Fix: set target_sample_rate to "
                              f"{loaded.sampling_rate} (audio is resampled on load).")
        return loaded.sampling_rate


# -- computation ------------------------------------------------------------------------------

def compute_layers(audio: np.ndarray, loaded: LoadedModel, config: FeatureConfig,
                   progress: Optional[ProgressCallback] = None, cancel: Optional[CancelFlag] = None,
                   label: str = "", end_times: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features of every window for every layer.

    audio: (n_samples,) float32 at the model's rate. Returns (layers (n_layers, n_windows, dim)
    float32, end times (n_windows,) seconds). Windows are batched; progress is reported and
    cancellation checked between batches.
    """
    import torch

    sr = loaded.sampling_rate
    if end_times is None:
        end_times = window_end_times(len(audio) / sr, config.chunk_size, config.context_size,
                                     config.include_early_windows)
    starts, ends = window_bounds(end_times, config.context_size, sr)
    n_windows = len(end_times)
    out = np.zeros((loaded.n_layers, n_windows, loaded.hidden_size), dtype=np.float32)
    if n_windows == 0:
        logger.warning("%s: audio (%.2f s) is shorter than one window (%.2f s); no features.", label,
                       len(audio) / sr, config.context_size)
        return out, np.asarray(end_times, dtype=np.float64)
    runner = _WhisperRunner(loaded, config) if loaded.is_whisper else _ConvEncoderRunner(loaded, config)
    lengths = ends - starts
    batches = runner.plan_batches(lengths)
    done = 0
    if progress is not None:
        progress("features", 0, n_windows, f"{label}: {n_windows} windows")
    with torch.inference_mode():
        for number, index in enumerate(batches, start=1):
            check_cancel(cancel)
            waves = gather_windows(audio, starts[index], ends[index])
            pooled = runner.run(waves, lengths[index])
            out[:, index] = pooled.float().cpu().numpy()
            done += len(index)
            if progress is not None:
                progress("features", done, n_windows, f"{label}: batch {number}/{len(batches)}")
    return out, np.asarray(end_times, dtype=np.float64)


def gather_windows(audio: np.ndarray, starts: np.ndarray, ends: np.ndarray, total: Optional[int] = None) -> np.ndarray:
    """Windows as rows, zero-padded at the end: (n_windows, total or max length) float32."""
    lengths = ends - starts
    width = int(total if total is not None else lengths.max())
    offsets = np.arange(width)[None, :]
    valid = offsets < lengths[:, None]
    index = np.clip(starts[:, None] + offsets, 0, len(audio) - 1)
    return np.where(valid, audio[index], np.float32(0)).astype(np.float32)


def _auto_batch_size(device: Any, sequence_frames: int) -> int:
    # Encoder frames per batch. On a CPU, batching long sequences buys nothing (measured: a
    # padded 30 s Whisper window costs the same per window at batch 1 to 8), so one window
    # of 1500 frames per batch; short windows still share a batch to cut per-call overhead.
    budget = 48000 if device.type != "cpu" else 1500
    return int(max(1, min(64, budget // max(sequence_frames, 1))))


def _split(indices: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]


class _WhisperRunner:
    """Whisper encoder on windows: 30 s padded (exact) or context-only (approximate)."""

    def __init__(self, loaded: LoadedModel, config: FeatureConfig) -> None:
        import torch

        self.loaded, self.config = loaded, config
        encoder = loaded.encoder
        extractor = loaded.feature_extractor
        self.encoder = encoder
        self.hop = int(extractor.hop_length)
        self.n_fft = int(extractor.n_fft)
        self.conv_stride = int(encoder.conv1.stride[0] * encoder.conv2.stride[0])
        self.samples_per_frame = self.hop * self.conv_stride
        self.n_positions = int(encoder.embed_positions.weight.shape[0])
        self.padded_mel_frames = self.n_positions * self.conv_stride  # 3000
        self.padded_samples = self.padded_mel_frames * self.hop  # 480000 = 30 s
        self.mel_filters = torch.from_numpy(np.asarray(extractor.mel_filters, dtype=np.float32)).to(loaded.device)
        self.window = torch.hann_window(self.n_fft, device=loaded.device)
        max_samples = int(round(config.context_size * loaded.sampling_rate))
        if max_samples > self.padded_samples:
            raise ConfigError(f"context_size {config.context_size} s is longer than Whisper's 30 s input. "
                              "Fix: use context_size <= 30.")
        if config.context_only and config.pool in ("last_padded", "mean_padded"):
            raise ConfigError(f"pool={config.pool!r} needs the 30 s padded input; it cannot be combined with "
                              "context_only=True. Fix: use pool 'last' or 'mean', or context_only=False.")
        # pool="last" needs one frame per window: the last layer is computed at that frame only.
        self.last_frame_only = config.pool == "last" and _has_whisper_layers(encoder)

    def real_frames(self, lengths: np.ndarray) -> np.ndarray:
        """Encoder frames reached by real audio: ceil(n_samples / samples_per_frame)."""
        return -(-np.asarray(lengths) // self.samples_per_frame)

    def plan_batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        order = np.arange(len(lengths))
        if not self.config.context_only:
            size = self.config.batch_size or _auto_batch_size(self.loaded.device, self.n_positions)
            return _split(order, size)
        frames = self.real_frames(lengths)  # equal lengths share a batch: no padding inside a sequence
        batches: list[np.ndarray] = []
        for n_frames in np.unique(frames):
            group = order[frames == n_frames]
            size = self.config.batch_size or _auto_batch_size(self.loaded.device, int(n_frames))
            batches.extend(_split(group, size))
        return sorted(batches, key=lambda b: int(b[0]))

    def log_mel(self, waves: Any, n_frames: int) -> Any:
        """Whisper log-mel of zero-padded windows (B, n_samples) -> (B, n_mels, n_frames).

        Same arithmetic as ``WhisperFeatureExtractor`` (STFT, power, mel, log10, max - 8 floor).
        """
        import torch

        stft = torch.stft(waves, self.n_fft, self.hop, window=self.window, return_complex=True)
        power = (stft[..., :-1].abs() ** 2).contiguous()
        log_spec = torch.clamp(self.mel_filters.T @ power, min=1e-10).log10()
        floor = log_spec.amax(dim=(1, 2), keepdim=True) - 8.0
        log_spec = (torch.maximum(log_spec, floor) + 4.0) / 4.0
        return log_spec[..., :n_frames]

    def run(self, waves: np.ndarray, lengths: np.ndarray) -> Any:
        """Pooled features (n_layers, B, dim) of a batch of windows (B, max_len) float32."""
        import torch

        device, dtype = self.loaded.device, self.loaded.input_dtype
        frames = torch.as_tensor(self.real_frames(lengths), device=device)
        if self.config.context_only:
            n_enc = int(frames.max())
            n_mel = n_enc * self.conv_stride
            # Zeros after the audio as in the 30 s input; near 30 s the same length, so that the
            # STFT's reflect padding at the end matches the padded input too.
            width = min(n_mel * self.hop + self.n_fft, self.padded_samples)
        else:
            n_enc, n_mel, width = self.n_positions, self.padded_mel_frames, self.padded_samples
        padded = np.zeros((waves.shape[0], width), dtype=np.float32)
        padded[:, :min(waves.shape[1], width)] = waves[:, :width]
        mel = self.log_mel(torch.from_numpy(padded).to(device), n_mel).to(dtype)  # fp32 even in bf16 mode
        with self.loaded.autocast():
            if self.last_frame_only:
                return self._encode_last_frame(mel, frames)
            if self.config.context_only:
                hidden = self.encode_short(mel)
            else:
                hidden = self.encoder(mel, output_hidden_states=True).hidden_states[1:]
        stacked = torch.stack(hidden)  # (n_layers, B, n_enc, dim)
        return pool_frames(stacked, frames, self.config.pool)

    def encode_short(self, mel: Any) -> tuple:
        """Encoder on fewer than 1500 frames (bypasses HF's 30 s length check); layer outputs.

        Same submodules as ``WhisperEncoder.forward``: conv1, conv2, GELU, the first n position
        embeddings, the layers, and the final layer norm on the last layer's output.
        """
        enc = self.encoder
        x = self._embed(mel, cast=True)
        outputs = []
        for layer in enc.layers:
            x = layer(x, None)
            outputs.append(x)
        outputs[-1] = enc.layer_norm(outputs[-1])
        return tuple(outputs)

    def _embed(self, mel: Any, cast: bool) -> Any:
        """conv1, GELU, conv2, GELU and the first n position embeddings: (B, n_mels, 2n) -> (B, n, dim).

        cast: add the embeddings in the conv output's dtype (``encode_short``'s way); else as HF does.
        """
        import torch.nn.functional as F

        enc = self.encoder
        x = F.gelu(enc.conv2(F.gelu(enc.conv1(mel)))).permute(0, 2, 1)
        positions = enc.embed_positions.weight[: x.shape[1]]
        return x + (positions.to(x.dtype) if cast else positions)

    def _encode_last_frame(self, mel: Any, frames: Any) -> Any:
        """``pool="last"`` features (n_layers, B, dim), the last layer computed at one frame per window.

        frames: (B,) real frames; window b uses frame ``frames[b] - 1`` of every layer. Layers
        0..L-2 run on all frames (they feed the next layer's keys and values). In the last layer
        every operation but the key/value projections acts on each frame separately (layer norms,
        query, output projection, residuals, feed-forward, the final layer norm), so it is enough
        to compute them at the one frame used, attending over all keys without a mask as HF does.
        Same arithmetic as the full forward, up to float rounding.
        """
        import torch
        import torch.nn.functional as F

        enc = self.encoder
        x = self._embed(mel, cast=self.config.context_only)
        batch, n_frames, dim = x.shape
        rows = torch.arange(batch, device=x.device)
        index = (frames - 1).clamp(min=0, max=n_frames - 1)
        pooled = []
        for layer in enc.layers[:-1]:
            x = layer(x, None)
            pooled.append(x[rows, index])
        layer = enc.layers[-1]
        attn = layer.self_attn
        heads, head_dim = attn.num_heads, attn.head_dim
        normed = layer.self_attn_layer_norm(x)
        keys = attn.k_proj(normed).view(batch, n_frames, heads, head_dim).transpose(1, 2)
        values = attn.v_proj(normed).view(batch, n_frames, heads, head_dim).transpose(1, 2)
        query = (attn.q_proj(normed[rows, index]) * attn.scaling).view(batch, heads, 1, head_dim)
        context = F.scaled_dot_product_attention(query, keys, values, scale=1.0)  # (B, heads, 1, head_dim)
        y = x[rows, index] + attn.out_proj(context.reshape(batch, heads * head_dim))
        y = y + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(y))))
        if y.dtype == torch.float16:  # WhisperEncoderLayer's fp16 overflow clamp
            limit = torch.finfo(y.dtype).max - 1000
            y = y.clamp(min=-limit, max=limit)
        pooled.append(enc.layer_norm(y))
        return torch.stack(pooled)


def _has_whisper_layers(encoder: Any) -> bool:
    """True when the encoder has the submodules ``_encode_last_frame`` uses (else: full forward)."""
    layers = getattr(encoder, "layers", None)
    if not layers or not all(hasattr(encoder, name) for name in ("conv1", "conv2", "embed_positions", "layer_norm")):
        return False
    layer = layers[-1]
    attn = getattr(layer, "self_attn", None)
    return (all(hasattr(layer, name) for name in ("self_attn_layer_norm", "final_layer_norm", "fc1", "fc2",
                                                   "activation_fn"))
            and all(hasattr(attn, name) for name in ("q_proj", "k_proj", "v_proj", "out_proj", "scaling",
                                                      "num_heads", "head_dim")))


class _ConvEncoderRunner:
    """wav2vec2 / HuBERT / WavLM: raw waveform in; windows of equal length share a batch."""

    def __init__(self, loaded: LoadedModel, config: FeatureConfig) -> None:
        self.loaded, self.config = loaded, config
        model_config = loaded.encoder.config
        self.kernels = [int(k) for k in model_config.conv_kernel]
        self.strides = [int(s) for s in model_config.conv_stride]
        self.normalize = bool(getattr(loaded.feature_extractor, "do_normalize", False))
        if config.context_only:
            raise ConfigError("context_only=True is a Whisper-only option; these models take windows at their "
                              "real length already. Fix: set context_only to false.")

    def n_frames(self, lengths: np.ndarray) -> np.ndarray:
        """Output frames of the conv feature encoder for inputs of ``lengths`` samples."""
        frames = np.asarray(lengths, dtype=np.int64)
        for kernel, stride in zip(self.kernels, self.strides):
            frames = (frames - kernel) // stride + 1
        return frames

    def plan_batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        if np.any(self.n_frames(lengths) < 1):
            shortest = int(lengths.min())
            raise ConfigError(f"A window of {shortest} samples is shorter than the model's receptive field "
                              f"({sum(self.kernels)} samples). Fix: increase chunk_size or set "
                              "include_early_windows to false.")
        order = np.arange(len(lengths))
        batches: list[np.ndarray] = []
        for length in np.unique(lengths):
            group = order[lengths == length]
            size = self.config.batch_size or _auto_batch_size(self.loaded.device, int(self.n_frames([length])[0]))
            batches.extend(_split(group, size))
        return sorted(batches, key=lambda b: int(b[0]))

    def run(self, waves: np.ndarray, lengths: np.ndarray) -> Any:
        import torch

        values = torch.from_numpy(waves[:, : int(lengths[0])]).to(self.loaded.device)
        if self.normalize:  # Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm, vectorised
            values = (values - values.mean(dim=1, keepdim=True)) / torch.sqrt(
                values.var(dim=1, keepdim=True, unbiased=False) + 1e-7)
        with self.loaded.autocast():
            hidden = self.loaded.encoder(values.to(self.loaded.input_dtype), output_hidden_states=True).hidden_states[1:]
        frames = torch.as_tensor(self.n_frames(lengths), device=self.loaded.device)
        pool = {"last_padded": "last", "mean_padded": "mean"}.get(self.config.pool, self.config.pool)
        return pool_frames(torch.stack(hidden), frames, pool)


def pool_frames(hidden: Any, real_frames: Any, pool: str) -> Any:
    """Pool (n_layers, B, n_frames, dim) over frames -> (n_layers, B, dim).

    real_frames: (B,) frames reached by real audio. ``last``/``mean`` use only those;
    ``last_padded``/``mean_padded`` use all frames (the reference's behaviour).
    """
    import torch

    n_frames = hidden.shape[2]
    if pool == "last":
        index = (real_frames - 1).clamp(min=0, max=n_frames - 1)
        return hidden[:, torch.arange(hidden.shape[1], device=hidden.device), index]
    if pool == "mean":
        mask = (torch.arange(n_frames, device=hidden.device)[None, :] < real_frames[:, None]).to(hidden.dtype)
        total = torch.einsum("lbfd,bf->lbd", hidden, mask)
        return total / mask.sum(dim=1).clamp(min=1)[None, :, None]
    if pool == "last_padded":
        return hidden[:, :, -1]
    if pool == "mean_padded":
        return hidden.mean(dim=2)
    raise ConfigError(f"pool {pool!r} is not one of last, mean, last_padded, mean_padded.")
