"""PNG bar plot of the ablation deltas (Table 5): the paper's and ours side by side per ablation."""

from __future__ import annotations

from pathlib import Path

from embedforge.report.tables import Delta


def plot_deltas(rows: list[Delta], path: Path, title: str = "Ablation deltas (MTEB average)") -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [d.label for d in rows]
    x = np.arange(len(rows))
    width = 0.38
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.2))
    paper = [d.paper if d.paper is not None else 0.0 for d in rows]
    ours = [d.ours if d.ours is not None else 0.0 for d in rows]
    paper_present = [d.paper is not None for d in rows]
    ours_present = [d.ours is not None for d in rows]
    bars_p = ax.bar(x - width / 2, paper, width, label="paper (vs its base)", color="#8da0cb")
    bars_o = ax.bar(x + width / 2, ours, width, label="ours (vs our base)", color="#fc8d62")
    # A value that does not exist gets no bar and a word at the foot of the axes, never a zero bar.
    for bars, values, word in ((bars_p, paper_present, "not in paper"), (bars_o, ours_present, "missing")):
        for bar, present in zip(bars, values):
            if not present:
                bar.set_visible(False)
                ax.text(bar.get_x() + bar.get_width() / 2, 0.03, word, transform=ax.get_xaxis_transform(),
                        ha="center", va="bottom", fontsize=7, rotation=90, color="gray")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("Δ average score (points)")
    ax.set_title(title, fontsize=10)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="#8da0cb", label="paper (vs its base)"), Patch(color="#fc8d62", label="ours (vs our base)")],
              fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
