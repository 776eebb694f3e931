"""Figure styles (screen or projector), rounded colour limits, titles and region colours shared by
every figure. No plotting library is imported here."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class FigureStyle:
    """Sizes for one kind of display: font sizes (pt), line widths (px) and outline marker size (px)."""

    name: str
    font_size: float
    title_size: float
    line_width: float
    outline_size: float
    contour_width: float


SCREEN = FigureStyle("screen", font_size=12, title_size=15, line_width=2.0, outline_size=2.5, contour_width=1.2)
PROJECTOR = FigureStyle("projector", font_size=18, title_size=22, line_width=4.0, outline_size=4.5, contour_width=2.5)
"""Projector: larger fonts and thicker lines and outlines, readable from the back of a classroom."""


def figure_style(projector: bool = False) -> FigureStyle:
    return PROJECTOR if projector else SCREEN


def apply_style(figure: Any, style: Optional[FigureStyle] = None) -> Any:
    """Apply ``style`` to a plotly figure (fonts, title, line and marker sizes); returns the figure."""
    style = style or SCREEN
    figure.update_layout(font={"size": style.font_size}, title_font={"size": style.title_size},
                         legend_font={"size": style.font_size})
    # explicit on every axis: the app's plotly theme sets axis fonts of its own, which would win
    # over the layout font
    axis_fonts = {"tickfont": {"size": style.font_size}, "title_font": {"size": style.font_size}}
    figure.update_xaxes(**axis_fonts)
    figure.update_yaxes(**axis_fonts)
    for trace in figure.data:
        kind = getattr(trace, "type", "")
        if kind in ("scatter", "scattergl") and getattr(trace, "mode", "") and "lines" in trace.mode:
            trace.update(line={"width": style.line_width})
        elif kind == "scatter3d" and getattr(trace, "meta", None) == "outline":
            trace.update(marker={"size": style.outline_size})
        if kind in ("mesh3d", "heatmap") and getattr(trace, "colorbar", None) is not None:
            trace.update(colorbar={"tickfont": {"size": style.font_size},
                                   "title": {"font": {"size": style.font_size}}})
    return figure


def nice_limit(value: float) -> float:
    """The smallest "nice" number (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x a power of ten) >= |value|; 1 for 0/NaN.

    A colour limit a class can read off the bar: 0.437 -> 0.5, 0.0123 -> 0.015, 7.2 -> 8.
    """
    value = abs(float(value)) if value is not None else float("nan")
    if not math.isfinite(value) or value == 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0):
        candidate = step * 10.0 ** exponent
        if candidate >= value * (1 - 1e-12):
            return float(f"{candidate:.12g}")
    return 10.0 ** (exponent + 1)  # pragma: no cover - the loop always returns


def colour_ticks(vmin: float, vmax: float) -> list[float]:
    """Five evenly spaced colour-bar ticks from vmin to vmax (rounded for display)."""
    return [float(f"{vmin + (vmax - vmin) * k / 4:.6g}") for k in range(5)]


def tick_format(vmin: float, vmax: float) -> str:
    """A d3 number format with the fewest decimals (0-4) that show every tick of
    :func:`colour_ticks` exactly."""
    ticks = colour_ticks(vmin, vmax)
    for decimals in range(5):
        if all(abs(round(t, decimals) - t) < 1e-9 * max(1.0, abs(t)) for t in ticks):
            return f".{decimals}f"
    return ".4f"


def map_title(measure: str, layer: Optional[int] = None, hemi: Optional[str] = None, view: Optional[str] = None,
              threshold: str = "") -> str:
    """A brain-map title that says what is shown: measure · layer · hemisphere view · threshold."""
    parts = [measure]
    if layer is not None:
        parts.append(f"layer {layer}")
    where = " ".join(p for p in (f"{hemi} hemisphere" if hemi else "", f"{view} view" if view else "") if p)
    if where:
        parts.append(where)
    if threshold:
        parts.append(threshold)
    return " · ".join(parts)


def wrap_title(title: str, max_chars: int = 60) -> str:
    """A plotly title broken into lines (``<br>``) at its `` · `` separators, each line at most about
    ``max_chars`` characters: plotly does not wrap titles, and a long one runs off the figure."""
    lines: list[str] = []
    for part in title.split(" · "):
        if lines and len(lines[-1]) + 3 + len(part) <= max_chars:
            lines[-1] += " · " + part
        else:
            lines.append(part)
    return "<br>".join(lines)


def title_layout(title: str, style: Optional[FigureStyle] = None) -> dict[str, Any]:
    """Plotly ``layout.title`` for a map title: its first line (:func:`wrap_title`) as the title and
    the rest as the subtitle, centred at the top of the figure (plotly places a subtitle under its
    title; lines broken with ``<br>`` inside one title are mispositioned at the figure's top)."""
    style = style or SCREEN
    first, *rest = wrap_title(title).split("<br>")
    layout: dict[str, Any] = {"text": first, "font": {"size": style.title_size}, "x": 0.5, "xanchor": "center",
                              "y": 1.0, "yref": "container", "yanchor": "top", "pad": {"t": 8}}
    if rest:
        layout["subtitle"] = {"text": "<br>".join(rest), "font": {"size": style.title_size - 2}}
    return layout


def title_margin(title: str, style: Optional[FigureStyle] = None) -> int:
    """Top margin (px) a figure needs for ``title`` laid out by :func:`title_layout` (10 without a title)."""
    if not title:
        return 10
    return 24 + int(round((style or SCREEN).title_size * 1.5)) * (wrap_title(title).count("<br>") + 1)


REGION_COLOURS = ("#000000", "#e7298a", "#1b9e77", "#d95f02", "#7570b3", "#66a61e", "#e6ab02", "#a6761d")
"""Outline colours for regions drawn on a map (colour-blind-safe Dark2 order, black first)."""
REGION_SYMBOLS_3D = ("circle", "diamond", "square", "cross", "x", "circle-open", "diamond-open", "square-open")


def region_style(index: int) -> dict[str, Any]:
    """Colour and plotly 3-D marker symbol of the ``index``-th region."""
    return {"colour": REGION_COLOURS[index % len(REGION_COLOURS)],
            "symbol": REGION_SYMBOLS_3D[index % len(REGION_SYMBOLS_3D)]}
