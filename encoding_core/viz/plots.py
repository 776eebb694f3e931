"""Plots that are not brain maps: histograms, layer profiles, audio, settings pictures (plotly)."""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np

from encoding_core.common.errors import InputError

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- summaries
def correlation_histogram(correlations: np.ndarray, significant_mask: Optional[np.ndarray] = None,
                          n_bins: int = 60, title: str = "Per-voxel test correlation"):
    """Histogram (plotly) of per-voxel r ``(n_voxels,)``, significant voxels stacked in colour."""
    import plotly.graph_objects as go

    r = np.asarray(correlations, dtype=np.float64).ravel()
    finite = np.isfinite(r)
    edges = np.linspace(np.nanmin(r[finite]) if finite.any() else -1, np.nanmax(r[finite]) if finite.any() else 1,
                        n_bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    fig = go.Figure()
    if significant_mask is not None:
        sig = np.asarray(significant_mask, dtype=bool).ravel() & finite
        fig.add_bar(x=centers, y=np.histogram(r[finite & ~sig], edges)[0], name="not significant",
                    marker_color="#9aa5b1")
        fig.add_bar(x=centers, y=np.histogram(r[sig], edges)[0], name="FDR-significant", marker_color="#d6604d")
    else:
        fig.add_bar(x=centers, y=np.histogram(r[finite], edges)[0], name="voxels", marker_color="#4393c3")
    fig.update_layout(barmode="stack", bargap=0, title=title, xaxis_title="r (test set)",
                      yaxis=count_axis("voxels"), height=320, margin={"t": 40, "b": 40})
    return fig


def count_axis(title: str, max_count: Optional[float] = None, **extra) -> dict:
    """A plotly axis for counts: starts at 0, integer ticks only (a step of 1 when the counts are small).

    With ``max_count`` the ticks are a whole "nice" step apart (1, 2, 2.5, 5 x a power of ten, never
    fractional): plotly's own steps for an overlaid axis can be fractional, and ",d" would then
    print 32, 81, 130 at 32.5, 81.25, 130."""
    axis = {"title": title, "rangemode": "nonnegative", "tickformat": ",d", "tick0": 0}
    if max_count is not None and np.isfinite(max_count):
        top = max(float(max_count), 1.0)
        axis.update(dtick=_whole_step(top / 4.0), range=[0, top * 1.1])
    axis.update(extra)
    return axis


def _whole_step(raw: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 25, 50, 100, ... at or above ``raw`` (a whole number)."""
    if raw <= 1:
        return 1
    exponent = int(np.floor(np.log10(raw)))
    for base in (1, 2, 2.5, 5, 10):
        step = base * 10 ** exponent
        if step >= raw and float(step).is_integer():
            return int(step)
    return int(10 ** (exponent + 1))


def model_layer_heatmap(models: Sequence[str], layers: Sequence[int], values: np.ndarray,
                        title: str = "Median test r by model and layer", colorbar: str = "median r"):
    """Heat-map (plotly) of ``values`` (n_models, n_layers); NaN cells (a model without that layer) stay empty."""
    import plotly.graph_objects as go

    z = np.asarray(values, dtype=np.float64)
    short = [str(m)[-32:] for m in models]
    fig = go.Figure(go.Heatmap(z=z, x=[str(l) for l in layers], y=short, colorscale="Viridis",
                               colorbar={"title": colorbar}, hovertemplate="%{y}, layer %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="layer", yaxis_title="model", height=120 + 40 * len(models),
                      margin={"t": 40, "b": 40})
    return fig


def partition_bar_figure(rows: Sequence[dict], labels: dict, title: str = "Variance partition per region"):
    """Stacked bars (plotly): per region (``rows[i]["region"]``), the mean r² of each partition map
    (``labels``: {map key: legend label}; the key ``joint_r2`` is drawn as a marker, not a bar).
    Negative means stack below zero, as plotly's relative bar mode does: they are shown, not clipped."""
    import plotly.graph_objects as go

    regions = [row["region"] for row in rows]
    fig = go.Figure()
    for key, label in labels.items():
        if key == "joint_r2":
            continue
        fig.add_bar(x=regions, y=[row.get(key, np.nan) for row in rows], name=label)
    if "joint_r2" in labels:
        fig.add_scatter(x=regions, y=[row.get("joint_r2", np.nan) for row in rows], mode="markers",
                        marker={"symbol": "diamond", "size": 10, "color": "black"}, name=labels["joint_r2"])
    fig.update_layout(barmode="relative", title=title, yaxis_title="mean r² (test story)", height=360,
                      margin={"t": 40, "b": 40}, legend={"orientation": "h", "y": -0.2})
    return fig


def layer_profile_figure(layers: Sequence[int], median_r: Sequence[float], n_significant: Sequence[int],
                         selected: Optional[int] = None, *, measure: str = "median r",
                         count_label: str = "significant voxels", selected_label: str = "best layer"):
    """Layer profile (plotly): median r (line, left axis) and significant voxels (bars, right axis;
    integer, non-negative counts). The bar of layer ``selected`` is drawn darker, and its hover
    text says ``selected_label``."""
    import plotly.graph_objects as go

    layers = [int(x) for x in layers]
    counts = [max(int(c), 0) for c in n_significant]
    fig = go.Figure()
    fig.add_bar(x=layers, y=counts, name=count_label, yaxis="y2",
                marker_color=["#d6604d" if layer == selected else "#f4a582" for layer in layers], opacity=0.6,
                customdata=[f" ({selected_label})" if layer == selected else "" for layer in layers],
                hovertemplate=f"layer %{{x}}%{{customdata}}<br>{count_label}: %{{y:,}}<extra></extra>")
    fig.add_scatter(x=layers, y=list(median_r), mode="lines+markers", name=measure, marker_color="#2166ac")
    fig.update_layout(
        title="Layer profile", xaxis={"title": "encoder layer (0-based)", "tickmode": "array", "tickvals": layers},
        yaxis={"title": measure},
        yaxis2=count_axis(count_label, max(counts, default=0), overlaying="y", side="right", showgrid=False),
        height=320, margin={"t": 40, "b": 40}, legend={"orientation": "h", "y": -0.25},
    )
    return fig


def alpha_choice_figure(alphas: Sequence[float], counts: Sequence[int],
                        mean_cv_score: Optional[Sequence[float]] = None, title: str = "Ridge penalty (alpha) per voxel"):
    """Histogram of the chosen alpha (bars, voxels per grid value) and the mean inner-CV score per alpha
    (line, right axis), alphas on a log axis as categories in grid order (plotly)."""
    import plotly.graph_objects as go

    labels = [f"{float(a):g}" for a in alphas]
    counts = [int(c) for c in counts]
    if len(labels) != len(counts):
        raise InputError(f"alphas ({len(labels)}) and counts ({len(counts)}) must have the same length.")
    edges = {0, len(labels) - 1}
    fig = go.Figure()
    fig.add_bar(x=labels, y=counts, name="voxels choosing it",
                marker_color=["#d6604d" if i in edges else "#92c5de" for i in range(len(labels))])
    if mean_cv_score is not None and len(mean_cv_score) == len(labels):
        fig.add_scatter(x=labels, y=[float(v) for v in mean_cv_score], mode="lines+markers", yaxis="y2",
                        name="mean inner-CV r over voxels", marker_color="#2166ac")
    fig.update_layout(title=title, xaxis={"title": "alpha (grid order; the ends in red)", "type": "category"},
                      yaxis={"title": "voxels"},
                      yaxis2={"title": "mean inner-CV r", "overlaying": "y", "side": "right"},
                      height=320, margin={"t": 40, "b": 40}, legend={"orientation": "h", "y": -0.3})
    return fig


def tsnr(brain_data: Sequence[np.ndarray]) -> np.ndarray:
    """Temporal SNR per voxel: mean / std over all TRs of all stories, ``(n_voxels,)``.

    brain_data: list of ``(n_trs, n_voxels)`` arrays. Voxels with zero std get NaN.
    """
    n = sum(int(b.shape[0]) for b in brain_data)
    total = sum(np.asarray(b, dtype=np.float64).sum(axis=0) for b in brain_data)
    mean = total / n
    sq = sum(((np.asarray(b, dtype=np.float64) - mean) ** 2).sum(axis=0) for b in brain_data)
    std = np.sqrt(sq / max(n - 1, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, mean / std, np.nan)


def story_timecourse_figure(names: Sequence[str], brain_data: Sequence[np.ndarray], tr: float):
    """Per-story mean time course (mean over voxels per TR) against time in seconds (plotly)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, data in zip(names, brain_data):
        mean = np.asarray(data, dtype=np.float64).mean(axis=1)
        fig.add_scatter(x=np.arange(mean.size) * tr, y=mean, mode="lines", name=name)
    fig.update_layout(title="Mean response per story", xaxis_title="time (s, from first stored TR)",
                      yaxis_title="mean over voxels", height=320, margin={"t": 40, "b": 40})
    return fig


# --------------------------------------------------------------------------- audio
LABEL_CHAR_PX = 0.62  # width of one character of the label font, in units of the font size (sans-serif)


def non_overlapping_labels(onsets: np.ndarray, words: Sequence[str], duration_s: float, width_px: float = 1100.0,
                           font_size: float = 10.0, gap_px: float = 6.0) -> np.ndarray:
    """Indices of the words whose labels can be drawn without overlapping, centred on their onsets,
    on an axis of ``duration_s`` seconds drawn ``width_px`` pixels wide (greedy from the left: a
    word is labelled when its label starts after the previous label ends). A label is
    ``len(word) x 0.62 x font_size`` pixels wide; ``gap_px`` apart at least. O(n_words)."""
    onsets = np.asarray(onsets, dtype=np.float64)
    if onsets.size == 0 or duration_s <= 0:
        return np.zeros(0, dtype=np.int64)
    seconds_per_px = duration_s / float(width_px)
    half = (np.array([len(str(w)) for w in words], dtype=np.float64) * LABEL_CHAR_PX * font_size) / 2 * seconds_per_px
    gap = gap_px * seconds_per_px
    order = np.argsort(onsets, kind="stable")
    kept = []
    right_edge = -np.inf
    for i in order:  # one step per word of the transcript (a few thousand at most): cheap
        if onsets[i] - half[i] >= right_edge + gap:
            kept.append(i)
            right_edge = onsets[i] + half[i]
    return np.asarray(kept, dtype=np.int64)


def _word_and_tr_marks(fig, word_onsets, words, tr_times, duration_s: float, max_words: int,
                       width_px: float = 1100.0, font_size: float = 10.0) -> None:
    onsets = np.asarray(word_onsets if word_onsets is not None else [], dtype=np.float64)
    if onsets.size:
        fig.add_scatter(x=onsets, y=np.full(onsets.size, 0.8), mode="markers", yaxis="y2",
                        marker={"symbol": "line-ns-open", "size": 12, "color": "#b2182b"}, name="word onsets",
                        text=list(words) if words is not None else None, hoverinfo="x+text")
        if words is not None:
            keep = non_overlapping_labels(onsets, words, duration_s, width_px, font_size)[:max_words]
            fig.add_scatter(x=onsets[keep], y=np.full(keep.size, 0.86), mode="text", yaxis="y2",
                            text=[str(words[i]) for i in keep], textposition="top center", showlegend=False,
                            textfont={"size": font_size, "color": "#67001f"}, hoverinfo="skip", name="word labels")
    ticks = np.asarray(tr_times if tr_times is not None else [], dtype=np.float64)
    ticks = ticks[(ticks >= 0) & (ticks <= duration_s)]
    if ticks.size:
        fig.add_scatter(x=ticks, y=np.full(ticks.size, -0.9), mode="markers", yaxis="y2",
                        marker={"symbol": "line-ns-open", "size": 8, "color": "#2166ac"}, name="TR times")
    fig.update_layout(yaxis2={"overlaying": "y", "range": [-1, 1.1], "visible": False})


def waveform_figure(audio: np.ndarray, sample_rate: int, word_onsets=None, words=None, tr_times=None,
                    max_points: int = 4000, max_words: int = 150, width_px: float = 1100.0):
    """Waveform envelope (plotly) of mono ``audio`` (samples) with word onsets and TR ticks (seconds).

    The signal is reduced to min/max per block so the figure stays small for long stories. Every
    word onset is ticked; labels are thinned so that none overlaps on a plot ``width_px`` wide
    (:func:`non_overlapping_labels`), at most ``max_words``.
    """
    import plotly.graph_objects as go

    audio = np.asarray(audio, dtype=np.float32).ravel()
    if audio.size == 0:
        raise InputError("The audio is empty; check the file.")
    duration = audio.size / float(sample_rate)
    block = max(1, int(np.ceil(audio.size / max_points)))
    padded = np.pad(audio, (0, (-audio.size) % block), mode="edge").reshape(-1, block)
    times = (np.arange(padded.shape[0]) + 0.5) * block / sample_rate
    fig = go.Figure()
    fig.add_scatter(x=np.concatenate([times, times[::-1]]),
                    y=np.concatenate([padded.max(axis=1), padded.min(axis=1)[::-1]]),
                    fill="toself", mode="lines", line={"width": 0.5, "color": "#4d4d4d"}, name="waveform")
    _word_and_tr_marks(fig, word_onsets, words, tr_times, duration, max_words, width_px)
    fig.update_layout(xaxis_title="time (s from sound onset)", yaxis_title="amplitude", height=300,
                      margin={"t": 20, "b": 40}, legend={"orientation": "h", "y": -0.3})
    return fig


def spectrogram_figure(audio: np.ndarray, sample_rate: int, word_onsets=None, words=None, tr_times=None,
                       n_mels: int = 64, hop_s: float = 0.02, max_frames: int = 3000, max_words: int = 150,
                       width_px: float = 1100.0):
    """Log-mel spectrogram heatmap (plotly, dB) with word onsets and TR ticks (seconds)."""
    import librosa
    import plotly.graph_objects as go

    audio = np.asarray(audio, dtype=np.float32).ravel()
    if audio.size == 0:
        raise InputError("The audio is empty; check the file.")
    duration = audio.size / float(sample_rate)
    hop = max(int(hop_s * sample_rate), int(np.ceil(audio.size / max_frames)))
    mel = librosa.feature.melspectrogram(y=audio, sr=sample_rate, n_mels=n_mels, hop_length=hop,
                                         n_fft=max(512, 2 ** int(np.ceil(np.log2(hop)))))
    db = librosa.power_to_db(mel, ref=np.max)
    times = np.arange(db.shape[1]) * hop / sample_rate
    fig = go.Figure()
    fig.add_heatmap(z=db, x=times, y=np.arange(n_mels), colorscale="Viridis", colorbar={"title": "dB"},
                    name="log-mel")
    _word_and_tr_marks(fig, word_onsets, words, tr_times, duration, max_words, width_px)
    fig.update_layout(xaxis_title="time (s from sound onset)", yaxis_title="mel band", height=320,
                      margin={"t": 20, "b": 40}, legend={"orientation": "h", "y": -0.3})
    return fig


# --------------------------------------------------------------------------- settings pictures
def window_diagram(chunk_size: float, context_size: float, include_early: bool = True, n_windows: int = 6,
                   start_s: Optional[float] = None):
    """Diagram (plotly) of consecutive analysis windows: each bar spans [end - context, end] seconds.

    chunk_size: stride between window ends (s); context_size: window length (s). Shows
    ``n_windows`` windows from ``start_s`` (default: the first full window, or 0 with early windows).
    """
    import plotly.graph_objects as go

    if chunk_size <= 0 or context_size <= 0:
        raise InputError("stride and context must be > 0 seconds.")
    first_end = chunk_size if include_early else context_size
    if start_s is not None:
        first_end = max(first_end, start_s)
    ends = first_end + chunk_size * np.arange(n_windows)
    starts = np.maximum(ends - context_size, 0.0)
    fig = go.Figure()
    fig.add_bar(y=[f"window {i + 1}" for i in range(n_windows)], x=ends - starts, base=starts, orientation="h",
                marker_color="#92c5de", name="context (audio the model sees)")
    fig.add_scatter(x=ends, y=[f"window {i + 1}" for i in range(n_windows)], mode="markers",
                    marker={"color": "#b2182b", "size": 9, "symbol": "line-ns-open"},
                    name="feature time (window end)")
    fig.update_layout(xaxis_title="time (s)", height=60 + 28 * n_windows, margin={"t": 10, "b": 40},
                      yaxis={"autorange": "reversed"}, legend={"orientation": "h", "y": -0.35}, showlegend=True)
    return fig


def kernel_figure(t: np.ndarray, weights: np.ndarray, method: str, tr: float):
    """Downsampling kernel (plotly): weight given to a feature at time offset t (s) from a TR."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_scatter(x=np.asarray(t), y=np.asarray(weights), mode="lines", line={"shape": "linear"}, name=method)
    fig.add_vline(x=0, line_dash="dot", line_color="gray")
    fig.update_layout(title=f"{method} kernel (TR = {tr:g} s)", xaxis_title="feature time minus TR time (s)",
                      yaxis_title="weight", height=260, margin={"t": 40, "b": 40})
    return fig


def length_preview_figure(rows: Sequence[dict]):
    """Grouped bars (plotly) of features vs targets TRs per story after trimming; mismatches red.

    rows: dicts with ``story``, ``features``, ``targets`` (TR counts) and ``match`` (bool).
    """
    import plotly.graph_objects as go

    stories = [r["story"] for r in rows]
    fig = go.Figure()
    fig.add_bar(x=stories, y=[r["features"] for r in rows], name="features (TRs)",
                marker_color=["#4393c3" if r["match"] else "#d7301f" for r in rows])
    fig.add_bar(x=stories, y=[r["targets"] for r in rows], name="targets (TRs)",
                marker_color=["#92c5de" if r["match"] else "#fc8d59" for r in rows])
    fig.update_layout(barmode="group", height=280, margin={"t": 20, "b": 40}, yaxis=count_axis("TRs after trimming"))
    return fig
