"""How a figure reads at book width: the size and layout rules every figure of the notebooks follows, in one place.

A Jupyter Book column is about 760 px wide, JupyterLab at 100% about the same on a laptop; a figure wider than
``BOOK_WIDTH_IN`` inches is shrunk until its tick labels and legends are unreadable. So:

- at most ``MAX_PANELS_PER_ROW`` panels per row and at most ``BOOK_WIDTH_IN`` inches wide (`panels` builds such grids);
- one legend per figure, below the panels, with words for labels (`shared_legend`, `plain_label`);
- step axes in thousands / millions (`steps_axis`), every axis labelled;
- no two pieces of text overlapping.

`layout_problems` checks a drawn figure against these rules and says what is wrong; the tests draw every figure
function with it, and `acpg_lab.plotting.show` applies it to every figure a notebook shows when
``ACPG_LAB_CHECK_FIGURES=1`` (the notebook tests set it), so a figure that breaks a rule fails its cell.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.ticker import FuncFormatter

__all__ = ["BOOK_WIDTH_IN", "MAX_PANELS_PER_ROW", "PANEL_HEIGHT_IN", "ARM_LABELS", "CHECK_ENV", "panels",
           "shared_legend", "steps_axis", "format_steps", "plain_label", "layout_problems", "check_layout",
           "FigureLayoutError", "checking_enabled"]

#: Widest figure, in inches, that still reads in a ~760-px book column (shown at ~76% of its natural size).
BOOK_WIDTH_IN = 10.0
#: Most panels side by side; more panels go on further rows (or into a second figure).
MAX_PANELS_PER_ROW = 3
#: Height of one row of panels, in inches.
PANEL_HEIGHT_IN = 3.0
#: Environment variable: ``1`` makes `acpg_lab.plotting.show` refuse a figure that breaks a rule, ``0`` (or unset)
#: only shows it.
CHECK_ENV = "ACPG_LAB_CHECK_FIGURES"

#: Words for the code names of the head arms and other conditions a legend may show.
ARM_LABELS = {
    "linear": "learnable head",
    "linear_scaled": "learnable head at the ETF's scale",
    "random": "fixed random head",
    "etf": "fixed ETF head",
    "shared": "shared actor-critic trunk",
}

_PFO = re.compile(r"^(?:(?P<setting>[a-z]+)/)?e(?P<epochs>\d+)_(?:(?P<head>linear|etf|shared)_)?"
                  r"(?P<kind>b|all)(?P<beta>[0-9.]+)$")


class FigureLayoutError(ValueError):
    """A figure breaks a layout rule; the message lists every problem."""


def checking_enabled() -> bool:
    """Whether ``ACPG_LAB_CHECK_FIGURES`` asks `acpg_lab.plotting.show` to check every figure (``1``) or not
    (``0`` or unset); any other value is an error naming the variable."""
    value = os.environ.get(CHECK_ENV, "0").strip()
    if value not in ("0", "1"):
        raise ValueError(f"environment variable {CHECK_ENV} must be 0 or 1, got {value!r}")
    return value == "1"


def plain_label(name: str) -> str:
    """Words for a condition's code name: head arms (``linear_scaled`` -> "learnable head at the ETF's scale"), PFO
    cells (``cartpole/e40_b1`` -> "40 epochs, PFO β = 1"; ``e10_all10`` -> "10 epochs, PFO β = 10 on all layers";
    ``e40_etf_b1`` -> "fixed ETF head, 40 epochs, PFO β = 1"), exploration arms (``eps0.1/etf`` -> "fixed ETF head,
    ε = 0.1"); anything else is returned with underscores as spaces."""
    if name in ARM_LABELS:
        return ARM_LABELS[name]
    match = _PFO.match(name)
    if match:
        beta = float(match["beta"])
        pfo = "no PFO" if beta == 0 else f"PFO β = {beta:g}" + (" on all layers" if match["kind"] == "all" else "")
        head = f"{ARM_LABELS[match['head']]}, " if match["head"] else ""
        return f"{head}{match['epochs']} epochs, {pfo}"
    eps = re.match(r"^eps(?P<eps>[0-9.]+)/(?P<arm>\w+)$", name)
    if eps and eps["arm"] in ARM_LABELS:
        return f"{ARM_LABELS[eps['arm']]}, ε = {float(eps['eps']):g}"
    return name.replace("_", " ")


def panels(n: int, *, ncols: int | None = None, height: float = PANEL_HEIGHT_IN, width: float = BOOK_WIDTH_IN,
           projection: str | None = None, sharex: bool = False, sharey: bool = False) -> tuple[Figure, list[Axes]]:
    """A figure of ``n`` panels, at most `MAX_PANELS_PER_ROW` per row (``ncols``, default ``min(n, 3)``), ``width``
    inches wide (at most `BOOK_WIDTH_IN`) and ``height`` inches per row, with constrained layout (no collisions
    of titles and labels). Returns the figure and its ``n`` axes in reading order; unused grid cells are removed.
    ``projection="3d"`` makes 3-D axes."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"panels: n must be a positive integer (the number of panels), got {n!r}")
    ncols = min(n, MAX_PANELS_PER_ROW) if ncols is None else ncols
    if isinstance(ncols, bool) or not isinstance(ncols, int) or not 1 <= ncols <= MAX_PANELS_PER_ROW:
        raise ValueError(f"panels: ncols must be an integer from 1 to {MAX_PANELS_PER_ROW}, got {ncols!r}")
    if not (0 < width <= BOOK_WIDTH_IN) or not (0 < height <= 2 * BOOK_WIDTH_IN):
        raise ValueError(f"panels: width must be in (0, {BOOK_WIDTH_IN}] inches and height positive, got "
                         f"width={width!r}, height={height!r}")
    nrows = math.ceil(n / ncols)
    fig = plt.figure(figsize=(width, height * nrows), layout="constrained")
    axes = []
    first = None
    for i in range(n):
        share = {} if first is None else {"sharex": first if sharex else None, "sharey": first if sharey else None}
        ax = fig.add_subplot(nrows, ncols, i + 1, projection=projection, **share)
        first = first or ax
        axes.append(ax)
    return fig, axes


def shared_legend(fig: Figure, *, axes: Sequence[Axes] | None = None, ncol: int | None = None,
                  title: str | None = None) -> Legend | None:
    """One legend for the whole figure, below the panels: the distinct labels of every panel's lines, in the
    order met, with each panel's own legend removed. Labels starting with ``_`` are skipped (matplotlib's
    convention for unlabelled artists). Returns the legend, or None when nothing is labelled."""
    handles: dict[str, object] = {}
    for ax in axes if axes is not None else fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if not label.startswith("_"):
                handles.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if not handles:
        return None
    ncol = ncol or min(len(handles), 3 if max(len(label) for label in handles) > 22 else 4)
    return fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=ncol, frameon=False,
                      title=title)


def format_steps(value: float, _pos: object = None) -> str:
    """A step count as a tick label: ``0``, ``500``, ``250k``, ``1.5M``."""
    value = float(value)
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def steps_axis(ax: Axes, *, label: str = "environment steps per seed", axis: str = "x") -> Axes:
    """Tick labels of ``axis`` in thousands / millions of steps (``250k``, ``1M``) and its label; at most five
    ticks, so that they never run together at book width."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(FuncFormatter(format_steps))
    target.get_major_locator().set_params(nbins=5)
    (ax.set_xlabel if axis == "x" else ax.set_ylabel)(label)
    return ax


def _texts(fig: Figure) -> list:
    """Every visible, non-empty text of the figure that a reader must be able to read."""
    found = list(fig.texts)
    if fig._suptitle is not None:
        found.append(fig._suptitle)
    for legend in fig.legends:
        found += legend.get_texts() + ([legend.get_title()] if legend.get_title().get_text() else [])
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        found += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label] + list(ax.texts)
        if ax.name != "3d":  # 3-D tick labels move with the view; their placement is matplotlib's
            for axis in (ax.xaxis, ax.yaxis):
                found += [tick.label1 for tick in axis._update_ticks()]  # the ticks drawn (inside the view)
        legend = ax.get_legend()
        if legend is not None:
            found += legend.get_texts()
    unique = list({id(t): t for t in found}.values())  # a suptitle is also one of fig.texts
    return [t for t in unique if t.get_visible() and t.get_text().strip()]


def _rows(fig: Figure) -> dict[tuple[float, float], int]:
    """Panels per row: data axes (not colour bars, not insets) grouped by their vertical extent."""
    rows: dict[tuple[float, float], int] = {}
    for ax in fig.axes:
        if not ax.get_visible() or ax.get_label() == "<colorbar>" or getattr(ax, "_colorbar", None) is not None:
            continue
        spec = ax.get_subplotspec()
        if spec is None:
            continue
        key = (spec.rowspan.start, spec.rowspan.stop)
        rows[key] = rows.get(key, 0) + 1
    return rows


def _numeric(tick: str) -> bool:
    """Whether a tick label is a number (``0.5``, ``−3``, ``250k``, ``1.5M``, ``10%``, mathtext ``$10^{2}$``) rather
    than a category name (which needs no axis label)."""
    text = tick.replace("\\mathdefault", "").replace("\\times", "×")
    return bool(re.search(r"[0-9]", text)) and re.fullmatch(r"[−\-+0-9.,eEkM%×^{}$ ]*", text) is not None


def layout_problems(fig: Figure, *, tolerance_px: float = 1.0) -> list[str]:
    """What makes ``fig`` hard to read at book width, one line per problem (empty: it reads).

    Checks the width (at most `BOOK_WIDTH_IN`), the panels per row (at most `MAX_PANELS_PER_ROW`), one legend at
    most, legend labels in words (no ``snake_case`` code names), a label on every axis of a 2-D panel that shows
    numeric ticks, and that no two texts (titles, axis and tick labels, legend entries, annotations) overlap by
    more than ``tolerance_px`` pixels in each direction. The figure is drawn (without rendering) first.
    """
    problems = []
    width, _ = fig.get_size_inches()
    if width > BOOK_WIDTH_IN + 1e-6:
        problems.append(f"figure is {width:.1f} in wide (at most {BOOK_WIDTH_IN:g} reads at book width)")
    for (start, _stop), count in _rows(fig).items():
        if count > MAX_PANELS_PER_ROW:
            problems.append(f"row {start + 1} has {count} panels (at most {MAX_PANELS_PER_ROW})")
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    if len(legends) > 1:
        problems.append(f"{len(legends)} legends (one per figure: acpg_lab.figstyle.shared_legend)")
    for legend in legends:
        for text in legend.get_texts():
            if re.search(r"[a-z0-9]_[a-z0-9]", text.get_text()):
                problems.append(f"legend label {text.get_text()!r} is a code name (use plain_label)")
    fig.draw_without_rendering()
    for ax in fig.axes:
        if not ax.get_visible() or ax.name == "3d" or ax.get_label() == "<colorbar>":
            continue
        if not (ax.lines or ax.collections or ax.patches or ax.images):
            continue  # an empty or "no data" panel
        for axis, label in ((ax.xaxis, ax.get_xlabel()), (ax.yaxis, ax.get_ylabel())):
            ticks = [t.get_text() for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
            numeric = ticks and all(_numeric(t) for t in ticks)
            if numeric and not label.strip():
                problems.append(f"panel {ax.get_title() or '(untitled)'!r}: its {axis.axis_name} axis has no label")
    renderer = fig.canvas.get_renderer()
    boxes = [(t, t.get_window_extent(renderer)) for t in _texts(fig)]
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            dx = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
            dy = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
            if dx > tolerance_px and dy > tolerance_px:
                problems.append(f"texts overlap: {a.get_text()!r} and {b.get_text()!r}")
    return problems


def check_layout(fig: Figure) -> Figure:
    """Return ``fig`` if it reads at book width, else raise `FigureLayoutError` listing every problem."""
    problems = layout_problems(fig)
    if problems:
        name = fig.get_suptitle() or next((ax.get_title() for ax in fig.axes if ax.get_title()), "figure")
        raise FigureLayoutError(f"figure {name!r} does not read at book width:\n- " + "\n- ".join(problems))
    return fig
