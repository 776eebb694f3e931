"""Language-model features: hidden states of a causal LM for every word, in context.

The reference's ``LanguageModelFeatureExtractor`` (TransformerLens) with the same semantics on
Hugging Face models, offline (``local_files_only=True``):

- **Context** (``lookback``, ``context_type``): for word ``i`` the model reads at most
  ``lookback`` tokens (of the model's own tokenizer) of the story ending with word ``i``
  (``fullcontext``: the tokens of ``" ".join(words[i - lookback : i + 1])``, cut to the last
  ``lookback``; ``nocontext``: the text since the last reset, reset once it reaches
  ``lookback`` tokens; ``halfcontext``: a window that jumps ``lookback // 2`` words when it
  exceeds ``lookback`` tokens). The tokenizer's BOS token is prepended (``prepend_bos``).
  The reference builds the strings once with GPT-2's tokenizer, decodes the cut tokens back
  to text and lets TransformerLens re-tokenise them; here the cut token ids go to the model
  directly, so what the model reads is exactly the rule above.
- **Layers** (``hook_resid_pre``): layer 0 is the embedding output (``hidden_states[0]``),
  layer ``l`` the output of block ``l - 1`` (``hidden_states[l]``); layers ``0 .. n_layers - 1``.
- **Token**: ``last_token`` (default) takes the current word's last token; otherwise the mean
  over every token of the context, BOS included (as the reference).
- **Centring** (``center_residual``): TransformerLens' default weight processing centres every
  write to the residual stream of LayerNorm models (GPT-2), so its ``resid_pre`` equals the HF
  hidden state minus its mean over the hidden units. ``"auto"`` does that for models with
  LayerNorm (not RMSNorm), ``True``/``False`` force it.

All layers come from one batched forward pass per group of words (right padding with an
attention mask: causal attention never sees the padding), cached on disk by content
(model weights identity, tokenizer files, words and times, every setting).
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from encoding_core.common.errors import ConfigError, InputError, ModelUnavailableError
from encoding_core.common.progress import CancelFlag, ProgressCallback, check_cancel
from encoding_core.config import FeatureConfig
from encoding_core.features.base import StoryFeatures, words_fingerprint

logger = logging.getLogger(__name__)

CONTEXT_TYPES = ("fullcontext", "nocontext", "halfcontext")
HOOK_TYPES = ("hook_resid_pre",)
MODEL_ALIASES = {"gpt2-small": "gpt2"}
"""TransformerLens model names the reference's scripts use -> Hugging Face ids."""
CACHE_SUBDIR = "lm_features"
TOKENS_PER_BATCH = 4096
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "vocab.txt",
                    "special_tokens_map.json", "tokenizer.model")
_loaded: dict[tuple, "LoadedLanguageModel"] = {}


@dataclass
class LanguageModelConfig:
    """Settings of the language-model extractor (the reference's config keys, plus ours).

    model_name: HF id in the local cache or a local folder (``gpt2-small`` means ``gpt2``).
    layer_idx: the layer ``extract_features`` returns (-1 = last). lookback: context tokens.
    batch_tokens: tokens per forward pass (0 = automatic). device: auto/cpu/cuda/mps.
    """

    model_name: str
    layer_idx: int = -1
    hook_type: str = "hook_resid_pre"
    last_token: bool = True
    context_type: str = "fullcontext"
    lookback: int = 256
    device: str = "auto"
    prepend_bos: bool = True
    center_residual: Union[str, bool] = "auto"
    batch_tokens: int = 0

    def validate(self) -> "LanguageModelConfig":
        if not str(self.model_name).strip():
            raise ConfigError("The language_model modality needs model_name (a HF id in the local cache or a folder).")
        if isinstance(self.layer_idx, bool) or not isinstance(self.layer_idx, (int, np.integer)):
            raise ConfigError(f"layer_idx must be an integer layer (0 = embeddings, -1 = last); got {self.layer_idx!r}.")
        if self.hook_type not in HOOK_TYPES:
            raise ConfigError(f"hook_type {self.hook_type!r} is not supported; use one of {HOOK_TYPES}.")
        if self.context_type not in CONTEXT_TYPES:
            raise ConfigError(f"context_type must be one of {CONTEXT_TYPES}; got {self.context_type!r}.")
        if isinstance(self.lookback, bool) or int(self.lookback) < 1:
            raise ConfigError(f"lookback must be a positive number of tokens; got {self.lookback!r}.")
        if self.center_residual not in ("auto", True, False):
            raise ConfigError(f"center_residual must be 'auto', True or False; got {self.center_residual!r}.")
        return self


def coerce_lm_config(config: Union[dict, FeatureConfig, LanguageModelConfig, None],
                     model_name: Optional[str] = None) -> LanguageModelConfig:
    """A validated LanguageModelConfig from the reference's dict, our FeatureConfig or itself."""
    if isinstance(config, LanguageModelConfig):
        return dataclasses.replace(config).validate()
    if isinstance(config, FeatureConfig):
        return LanguageModelConfig(model_name=config.model_name, last_token=config.last_token,
                                   context_type=config.context_type, lookback=config.lookback,
                                   device=config.device).validate()
    values = dict(config or {})
    if model_name and "model_name" not in values:
        values["model_name"] = model_name
    if "model_name" not in values:
        raise ConfigError("config['model_name'] is required for the language_model modality.")
    allowed = {f.name for f in dataclasses.fields(LanguageModelConfig)}
    ignored = sorted(set(values) - allowed)
    if ignored:  # the reference ignores keys it does not read (e.g. a tutorial's extra keys)
        logger.info("Language-model config keys %s are not used; ignored.", ignored)
    return LanguageModelConfig(**{k: v for k, v in values.items() if k in allowed}).validate()


@dataclass
class LoadedLanguageModel:
    """A causal LM ready to run: the base model (hidden states), its tokenizer and facts."""

    name: str
    model: Any
    tokenizer: Any
    device: Any
    n_layers: int
    hidden_size: int
    identity: str
    uses_layernorm: bool


def resolve_lm_name(model_name: str) -> str:
    return MODEL_ALIASES.get(str(model_name).strip(), str(model_name).strip())


def _tokenizer_identity(folder: Path) -> str:
    parts = []
    for name in _TOKENIZER_FILES:
        path = folder / name
        if path.is_file():
            parts.append(f"{name}:{hashlib.sha256(path.read_bytes()).hexdigest()}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def load_language_model(model_name: str, device: str = "auto") -> LoadedLanguageModel:
    """Load a HF causal LM's base model and tokenizer offline (cached per process)."""
    from transformers import AutoModel, AutoTokenizer

    from encoding_core.features.models import _from_pretrained, resolve_device, resolve_model

    source = resolve_model(resolve_lm_name(model_name))
    torch_device = resolve_device(device)
    key = (str(source.folder), source.weights_identity, str(torch_device))
    if key in _loaded:
        return _loaded[key]
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"Cannot load the tokenizer of {source.name!r} from {source.folder}: {exc}. "
                                    "Fix: save the tokenizer next to the model (tokenizer.save_pretrained).") from None
    model = _from_pretrained(AutoModel, source).to(torch_device).eval()
    config = model.config
    n_layers = int(getattr(config, "num_hidden_layers", None) or config.n_layer)
    hidden = int(getattr(config, "hidden_size", None) or config.n_embd)
    uses_layernorm = not any("rmsnorm" in type(m).__name__.lower() for m in model.modules())
    identity = hashlib.sha256(f"{source.weights_identity}|{_tokenizer_identity(source.folder)}".encode()).hexdigest()[:32]
    loaded = LoadedLanguageModel(source.name, model, tokenizer, torch_device, n_layers, hidden, identity,
                                 uses_layernorm)
    _loaded[key] = loaded
    logger.info("Loaded language model %s (%d layers, width %d) on %s.", source.name, n_layers, hidden, torch_device)
    return loaded


def language_model_facts(model_name: str) -> dict[str, Any]:
    """Layers (resid_pre: 0 .. n-1), width, parameters and kind, from the config (no weights read)."""
    import torch
    from transformers import AutoConfig, AutoModel

    from encoding_core.features.models import resolve_model

    source = resolve_model(resolve_lm_name(model_name))
    try:
        config = AutoConfig.from_pretrained(source.folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelUnavailableError(f"Cannot read the config of {source.name!r}: {exc}.") from None
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    n_layers = int(getattr(config, "num_hidden_layers", None) or config.n_layer)
    return {"name": source.name, "n_layers": n_layers, "hidden_size": int(config.hidden_size),
            "n_parameters": int(sum(p.numel() for p in model.parameters())), "kind": str(config.model_type)}


# -- contexts ---------------------------------------------------------------------------------

def context_token_ids(words: Sequence[str], tokenizer: Any, lookback: int,
                      context_type: str = "fullcontext") -> list[list[int]]:
    """Token ids (without BOS) of each word's context, ending with that word; [] for a blank word."""
    words = [str(w) for w in words]
    lookback = int(lookback)

    def encode(texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    if context_type == "fullcontext":
        texts = [" ".join(words[max(0, i - lookback): i + 1]) for i in range(len(words))]
        out = [ids[-lookback:] for ids in encode(texts)]
    elif context_type == "nocontext":
        out, start = [], 0
        for i in range(len(words)):  # sequential by definition: the reset depends on the last context
            ids = encode([" ".join(words[start: i + 1])])[0]
            out.append(ids)
            if len(ids) >= lookback:
                start = i + 1
    elif context_type == "halfcontext":
        out, start, i = [], 0, 0
        while i < len(words):  # the window jumps by lookback // 2 words while the word's context is too long
            ids = encode([" ".join(words[start: i + 1])])[0]
            if len(ids) > lookback and start < i:
                start = min(start + max(lookback // 2, 1), i)
                continue
            out.append(ids[-lookback:])
            i += 1
    else:
        raise ConfigError(f"context_type must be one of {CONTEXT_TYPES}; got {context_type!r}.")
    return [ids if words[i].strip() else [] for i, ids in enumerate(out)]


# -- computation ------------------------------------------------------------------------------

def hidden_state_features(sequences: Sequence[Sequence[int]], loaded: LoadedLanguageModel, config: LanguageModelConfig,
                          progress: Optional[ProgressCallback] = None, cancel: Optional[CancelFlag] = None,
                          label: str = "") -> np.ndarray:
    """Pooled hidden states (n_layers, n_sequences, hidden) float32 of token-id sequences.

    BOS is prepended (``prepend_bos``); empty sequences give zero rows. Sequences are sorted by
    length and batched (``batch_tokens`` tokens per pass), right-padded with an attention mask.
    """
    import torch

    bos = loaded.tokenizer.bos_token_id if config.prepend_bos else None
    seqs = [([bos] if bos is not None and len(s) else []) + [int(t) for t in s] for s in sequences]
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    out = np.zeros((loaded.n_layers, len(seqs), loaded.hidden_size), dtype=np.float32)
    todo = np.flatnonzero(lengths > 0)
    order = todo[np.argsort(lengths[todo], kind="stable")]
    budget = int(config.batch_tokens) or TOKENS_PER_BATCH
    batches, current = [], []
    for index in order:  # plan batches (cheap): sizes grow with length
        if current and (len(current) + 1) * int(lengths[index]) > budget:
            batches.append(current)
            current = []
        current.append(int(index))
    if current:
        batches.append(current)
    center = loaded.uses_layernorm if config.center_residual == "auto" else bool(config.center_residual)
    pad = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    done = 0
    with torch.inference_mode():
        for number, batch in enumerate(batches, start=1):
            check_cancel(cancel)
            width = int(lengths[batch].max())
            ids = np.full((len(batch), width), pad, dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, index in enumerate(batch):  # one row copy per sequence
                ids[row, :lengths[index]] = seqs[index]
                mask[row, :lengths[index]] = 1
            mask_t = torch.from_numpy(mask).to(loaded.device)
            hidden = loaded.model(input_ids=torch.from_numpy(ids).to(loaded.device), attention_mask=mask_t,
                                  output_hidden_states=True).hidden_states
            stacked = torch.stack(hidden[: loaded.n_layers]).float()  # (L, B, T, D), resid_pre of each block
            if center:
                stacked = stacked - stacked.mean(dim=-1, keepdim=True)
            if config.last_token:
                last = torch.from_numpy(lengths[batch] - 1).to(loaded.device)
                pooled = stacked[:, torch.arange(len(batch), device=loaded.device), last]
            else:
                weights = mask_t.to(stacked.dtype)
                pooled = torch.einsum("lbtd,bt->lbd", stacked, weights) / weights.sum(dim=1)[None, :, None]
            out[:, batch] = pooled.cpu().numpy()
            done += len(batch)
            if progress is not None:
                progress("features", done, len(todo), f"{label}: batch {number}/{len(batches)}")
    return out


class LanguageModelFeatureExtractor:
    """The reference's language-model extractor on Hugging Face models (see the module docstring).

    config: the reference's dict (``model_name``, ``layer_idx``, ``hook_type``, ``last_token``,
    ``context_type``, ``device``, ``lookback``) plus ours (``prepend_bos``, ``center_residual``,
    ``batch_tokens``), a FeatureConfig, or a LanguageModelConfig. cache_dir: feature cache
    folder (None = no disk cache).
    """

    modality = "language_model"

    def __init__(self, config: Union[dict, FeatureConfig, LanguageModelConfig, None],
                 cache_dir: Union[str, Path, None] = None) -> None:
        self.config = coerce_lm_config(config)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.facts = language_model_facts(self.config.model_name)  # fails early when not available offline

    model_name = property(lambda self: self.config.model_name)
    layer_idx = property(lambda self: self.config.layer_idx)
    lookback = property(lambda self: self.config.lookback)
    last_token = property(lambda self: self.config.last_token)
    context_type = property(lambda self: self.config.context_type)
    hook_type = property(lambda self: self.config.hook_type)

    @property
    def n_layers(self) -> int:
        return int(self.facts["n_layers"])

    def load_model(self) -> LoadedLanguageModel:
        return load_language_model(self.config.model_name, self.config.device)

    def extract_all_layers(self, stimuli: Sequence[str]) -> dict[int, np.ndarray]:
        """The reference's call: one row per context string (read whole, BOS prepended) ->
        ``{layer: (n, hidden) float32}`` for layers 0 .. n_layers - 1."""
        loaded = self.load_model()
        texts = [str(s) for s in stimuli]
        nonblank = [t for t in texts if t.strip()]
        encoded = iter(loaded.tokenizer(nonblank, add_special_tokens=False)["input_ids"] if nonblank else [])
        sequences = [list(next(encoded)) if t.strip() else [] for t in texts]
        layers = hidden_state_features(sequences, loaded, self.config)
        return {layer: layers[layer] for layer in range(layers.shape[0])}

    def extract_features(self, stimuli: Sequence[str], layer_idx: Optional[int] = None) -> np.ndarray:
        """One layer (default ``config.layer_idx``) of :meth:`extract_all_layers`: (n, hidden)."""
        layers = self.extract_all_layers(stimuli)
        layer = self.config.layer_idx if layer_idx is None else int(layer_idx)
        return layers[self._layer(layer, len(layers))]

    @staticmethod
    def _layer(layer: int, n_layers: int) -> int:
        if not -n_layers <= layer < n_layers:
            raise InputError(f"layer {layer} does not exist: the model has layers 0..{n_layers - 1} "
                             "(0 = embeddings, l = output of block l-1).")
        return layer % n_layers

    def extract_words(self, words: Sequence[str], times: Any, lookback: Optional[int] = None,
                      progress: Optional[ProgressCallback] = None, cancel: Optional[CancelFlag] = None,
                      label: str = "") -> StoryFeatures:
        """All layers for a story's words in context, at ``times`` (n_words,) s; cached by content."""
        from encoding_core.features.cache import load_or_compute_fields

        config = self.config if lookback is None else dataclasses.replace(self.config, lookback=int(lookback))
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        if len(times) != len(words):
            raise InputError(f"{label or 'story'}: {len(words)} words but {len(times)} word times.")
        loaded = self.load_model()
        fields = {"format": 1, "modality": self.modality, "model_name": loaded.name, "weights_identity": loaded.identity,
                  "lookback": int(config.lookback), "context_type": config.context_type,
                  "last_token": bool(config.last_token), "hook_type": config.hook_type,
                  "prepend_bos": bool(config.prepend_bos), "center_residual": config.center_residual,
                  "precision": "fp32", "words_sha256": words_fingerprint(words, times)}

        def compute() -> tuple[np.ndarray, np.ndarray, dict]:
            sequences = context_token_ids(words, loaded.tokenizer, config.lookback, config.context_type)
            layers = hidden_state_features(sequences, loaded, config, progress, cancel, label)
            return layers, times, {"device": str(loaded.device), "n_words": len(words)}

        return load_or_compute_fields(fields, self.cache_dir, compute, subdir=CACHE_SUBDIR, source=label or "words")

    def extract_story(self, story: Any, progress: Optional[ProgressCallback] = None,
                      cancel: Optional[CancelFlag] = None, lookback: Optional[int] = None) -> StoryFeatures:
        """All layers for a Story's words at its word times (``story.data_times``)."""
        return self.extract_words(story.words, story.data_times, lookback=lookback, progress=progress,
                                  cancel=cancel, label=story.name)
