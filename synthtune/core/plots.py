"""Writers for `dvc plots` files: CSV data and PNG images (matplotlib, Agg), atomic like every output.

PNGs carry no metadata (no version, no date), so the same numbers give the same bytes.
"""
from __future__ import annotations

import csv
import os
from collections.abc import Sequence

from synthtune.core.io import atomic_open


def write_csv(path: str | os.PathLike, rows: list[dict]) -> None:
    fields = list(rows[0]) if rows else []
    with atomic_open(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _save(fig, path: str | os.PathLike) -> None:
    import matplotlib.pyplot as plt

    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def box_plot(path: str | os.PathLike, groups: dict[str, Sequence[float]], title: str, ylabel: str) -> None:
    """One box per group (e.g. per model: the per-item cosine similarities), points overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(groups)
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * max(len(names), 1), 4))
    ax.boxplot([list(groups[n]) or [0.0] for n in names], showmeans=True)
    ax.set_xticks(range(1, len(names) + 1), names)
    for i, name in enumerate(names, start=1):
        values = list(groups[name])
        ax.plot([i + 0.18] * len(values), values, ".", alpha=0.35, color="grey")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    _save(fig, path)


def histogram(path: str | os.PathLike, values: Sequence[float], title: str, xlabel: str, bins: int = 20) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(list(values), bins=bins, color="#4c72b0", edgecolor="white")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    fig.tight_layout()
    _save(fig, path)
