"""A matplotlib figure as inline SVG: the report's plot style, rendering, ids, labels.

Figures are built with :class:`matplotlib.figure.Figure` directly, never registered with
pyplot, so nothing is left open after a plot is rendered. The SVG has its XML prolog and
namespace declarations stripped so it can be inlined in an HTML page, text is kept as
``<text>`` (small, searchable, escaped by matplotlib), and ids are derived from the
content so the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from matplotlib.typing import RcKeyType

from fanout.lab import fmt

WIDE = (8.0, 3.2)
"""Size in inches of a time-series plot."""

_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "fanout-report",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial"],
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8.0,
    "legend.framealpha": 0.8,
}
_NO_METADATA: dict[str, Any] = {"Date": None, "Creator": None, "Format": None, "Type": None}
_PROLOG = re.compile(r"\A.*?(?=<svg\b)", re.DOTALL)
_NAMESPACES = re.compile(r'\s+xmlns(?::\w+)?="[^"]*"')
_STYLE = re.compile(r"\s*<defs>\s*<style[^>]*>[^<]*</style>\s*</defs>")
_TAG = re.compile(r"<[^<>]+>")  # text content is escaped: a tag is all there is between < >
_ID = re.compile(r'\b(id)="([^"]+)"')
_HREF = re.compile(r'\b((?:xlink:)?href)="#([^"]+)"')
_URL = re.compile(r"url\(#([^)]+)\)")
SVG_CSS = "figure svg * { stroke-linejoin: round; stroke-linecap: butt; }"
"""The one rule matplotlib puts in each SVG's ``<style>``, for the page's CSS instead."""


def render(
    draw: Callable[[Figure], None], size: tuple[float, float] = WIDE, fit: bool = False
) -> str:
    """Draw on a new figure and return it as inline SVG.

    A time series has fixed margins (room for a second y axis on the right); ``fit``
    asks matplotlib to lay the figure out (rotated labels, colour bars), which costs
    about as much again as the drawing itself.
    """
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=size, layout="constrained" if fit else None)
        if not fit:
            fig.subplots_adjust(left=0.1, right=0.9, bottom=0.15, top=0.9)
        draw(fig)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata=_NO_METADATA)
    svg = _PROLOG.sub("", buf.getvalue(), count=1).strip()
    svg = _STYLE.sub("", svg, count=1)  # its rule is in the page's CSS, scoped to svg
    head, sep, body = svg.partition(">")  # the namespaces are only needed outside HTML
    svg = _NAMESPACES.sub("", head) + sep + body
    digest = hashlib.sha1(svg.encode(), usedforsecurity=False).hexdigest()[:10]
    return scope_ids(svg, f"f{digest}-")


def scope_ids(svg: str, prefix: str) -> str:
    """Prefix the ids of one SVG, and the references to them, so that several SVGs
    inlined in one page do not share ids (each plot's are prefixed with a digest of
    it; a page showing the same plot twice prefixes them again)."""

    def in_tag(tag: re.Match[str]) -> str:
        out = _ID.sub(lambda m: f'{m[1]}="{prefix}{m[2]}"', tag[0])
        out = _HREF.sub(lambda m: f'{m[1]}="#{prefix}{m[2]}"', out)
        return _URL.sub(lambda m: f"url(#{prefix}{m[1]})", out)

    return _TAG.sub(in_tag, svg)


def label(value: str) -> str:
    """User text made safe for a matplotlib label: no mathtext, no hidden ``_`` labels."""
    safe = value.replace("$", r"\$")
    return " " + safe if safe.startswith("_") else safe


def plain_numbers(ax: Axes) -> None:
    """Tick labels such as ``900,000`` instead of an offset ``1e6``."""
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt.decimal(v)))
