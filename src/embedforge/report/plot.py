"""PNG of the ablation deltas (Table 5): ours with their 95% intervals in one panel, the paper's in another.

The two are different quantities (ours: a mean over our tasks vs our base row; the paper's: its MTEB
average vs its own base), so they never share an axis. Horizontal bars keep long row labels readable;
each row appears once per panel; a row of ours without a result is named under the panel, never drawn as zero.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from embedforge.report.tables import Delta


def plot_deltas(rows: list[Delta], path: Path, quantity: str = "average over our tasks",
                paper_quantity: str = "MTEB average (56 tasks)") -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    ours = [d for d in rows if d.ours is not None]
    paper = [d for d in rows if d.paper is not None]
    not_run = [d.label for d in rows if d.ours is None]
    height = 1.6 + 0.32 * (len(ours) + len(paper))
    fig, axes = plt.subplots(2 if paper else 1, 1, figsize=(8.0, max(3.5, height)), squeeze=False,
                             gridspec_kw={"height_ratios": [max(1, len(ours)), max(1, len(paper))] if paper else [1]})
    intervals = (", with 95% paired-bootstrap intervals (pale: the interval contains 0)"
                 if any(d.low is not None for d in ours) else " (no intervals: these records keep no item scores)")
    _panel(axes[0][0], ours, "ours", f"Ours: Δ {quantity} vs our base row{intervals}", "#fc8d62")
    if not_run:
        axes[0][0].set_xlabel("Δ score (points)\n" + textwrap.fill("no result of ours: " + ", ".join(not_run), 110),
                              fontsize=7)
    if paper:
        _panel(axes[1][0], paper, "paper", f"Paper: Δ {paper_quantity} vs its base row (no intervals published)",
               "#8da0cb")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _panel(ax, rows: list[Delta], who: str, title: str, color: str) -> None:
    import numpy as np

    if not rows:
        ax.set_axis_off()
        ax.set_title(textwrap.fill(title, 72), fontsize=9)
        return
    y = np.arange(len(rows))[::-1]
    bars = ax.barh(y, [getattr(d, who) for d in rows], color=color, height=0.6)
    if who == "ours":
        for yi, d in zip(y, rows):
            if d.ours is not None and d.low is not None:
                ax.errorbar(d.ours, yi, xerr=[[d.ours - d.low], [d.high - d.ours]], fmt="none", ecolor="black",
                            capsize=3, linewidth=1)
    for bar, d in zip(bars, rows):
        if who == "ours" and d.effect == "no detectable effect":
            bar.set_alpha(0.45)  # the interval contains 0
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, [d.label for d in rows], fontsize=8)
    ax.set_xlabel("Δ score (points)", fontsize=8)
    ax.set_title(textwrap.fill(title, 72), fontsize=9)
