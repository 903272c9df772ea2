"""Interactive explorers (ipywidgets). Each first draws a static figure for its default values, so an executed
notebook (papermill, CI, a static page) still shows something meaningful; in JupyterLab the controls below it
redraw a live copy."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from acpg_lab.etf import etf_error, simplex_etf
from acpg_lab.plotting import plot_frame, plot_gram, show

__all__ = ["etf_explorer", "draw_etf"]


def draw_etf(num_actions: int = 4, feature_dim: int = 3, seed: int = 0) -> plt.Figure:
    """Gram matrix of ``simplex_etf(K, d, seed)`` and, for d <= 3, the vectors themselves."""
    w = simplex_etf(num_actions, feature_dim, seed=seed).double().numpy()
    error = float(etf_error(simplex_etf(num_actions, feature_dim, seed=seed)))
    fig = plt.figure(figsize=(9, 3.8), layout="constrained")  # no suptitle: the facts go in the panel titles
    ax = fig.add_subplot(1, 2, 1)
    plot_gram(w, ax=ax, title=f"cosines, K={num_actions}, d={feature_dim}\n(target {-1 / (num_actions - 1):.3f})")
    if feature_dim in (2, 3):
        ax3 = fig.add_subplot(1, 2, 2, projection="3d" if feature_dim == 3 else None)
        plot_frame(w, ax=ax3, title=f"the frame (seed {seed})\ndistance from an exact ETF {error:.1e}")
    else:
        ax2 = fig.add_subplot(1, 2, 2)
        ax2.bar(range(num_actions), np.linalg.norm(w, axis=1), color="#0072B2")
        ax2.set_xlabel("action k")
        ax2.set_ylabel("norm of w_k")
        ax2.set_title(f"row norms (d={feature_dim} > 3: not drawn)\ndistance from an exact ETF {error:.1e}")
    return fig


def etf_explorer(num_actions: int = 4, feature_dim: int = 3, seed: int = 0) -> None:
    """Static figure for the defaults, then sliders for K, d and the orientation seed."""
    import ipywidgets as w

    show(draw_etf(num_actions, feature_dim, seed), "etf_explorer")
    k = w.IntSlider(value=num_actions, min=2, max=18, description="K actions")
    d = w.IntSlider(value=feature_dim, min=1, max=32, description="d features")
    s = w.IntSlider(value=seed, min=0, max=20, description="seed")
    out = w.Output()

    def redraw(_=None) -> None:
        d.min = k.value - 1
        with out:
            out.clear_output(wait=True)
            show(draw_etf(k.value, max(d.value, k.value - 1), s.value), "etf_explorer")

    for control in (k, d, s):
        control.observe(redraw, names="value")
    display(w.VBox([w.HTML("<b>Explore (live in JupyterLab):</b>"), w.HBox([k, d, s]), out]))
