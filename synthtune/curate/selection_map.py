"""A 2-D map of the selection pool: UMAP (or PCA), coloured by cluster and by source, selected marked.

Writes `map.csv` (x, y, cluster, source, selected: the `dvc plots` scatter) and `map.png`
(two panels, matplotlib Agg). The map shows a seeded sample of at most `map_max_points` pool
records.

The default is a PCA projection because the map is a data output, and data outputs must have the
same bytes on every machine. Embeddings differ between CPUs in the last bits (measured: at most
1.0e-7 between torch's generic and AVX2 kernels on MiniLM vectors). PCA is linear, so the
coordinates move by the same ~1e-7 and MAP_DECIMALS rounding absorbs it (4 decimals flipped 1 of
1,068 coordinates, 3 flipped none). UMAP's seeded SGD layout is chaotic in its input: the same
1e-7 moved points by up to 30 units, and the committed map of one AMD EPYC shared no coordinate
with another's. `umap_map: true` draws UMAP (the same bytes on one machine and thread count only;
its first call pays ~30 s of numba JIT, and beyond 4,096 points it switches to approximate
neighbours with more JIT). Pools smaller than UMAP_MIN_POINTS get PCA; the fallback is recorded.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from synthtune.core.config import SelectParams
from synthtune.core.io import atomic_open
from synthtune.core.plots import write_csv
from synthtune.curate.selection import Selection

log = logging.getLogger(__name__)

UMAP_MIN_POINTS = 20
MAP_DECIMALS = 3     # coarse enough to absorb cross-machine float noise, fine enough for a scatter plot


def project_pca(vectors: np.ndarray) -> np.ndarray:
    """First two principal components (zeros where the pool has fewer than two)."""
    coords = np.zeros((len(vectors), 2))
    vectors = np.asarray(vectors, dtype=np.float64)     # no float32 rounding of its own on top of the input's
    centred = vectors - vectors.mean(axis=0)
    if len(vectors) > 1:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        basis = vt[:2]
        basis *= np.where(basis[np.arange(len(basis)), np.abs(basis).argmax(axis=1)] < 0, -1, 1)[:, None]
        coords[:, :len(basis)] = centred @ basis.T      # sign-fixed: the same map on every machine
    return coords


def project_umap(vectors: np.ndarray, seed: int) -> np.ndarray:
    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # "n_jobs overridden by random_state": seeded means single-threaded
        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(vectors) - 1), random_state=seed, n_jobs=1)
        return reducer.fit_transform(vectors)


def project(vectors: np.ndarray, use_umap: bool, seed: int) -> tuple[np.ndarray, dict]:
    if use_umap and len(vectors) >= UMAP_MIN_POINTS:
        return project_umap(vectors, seed), {"map_method": "umap"}
    metrics = {"map_method": "pca"}
    if use_umap:
        metrics["fallback_map"] = f"{len(vectors)} points < {UMAP_MIN_POINTS}: too few for UMAP, used PCA"
    return project_pca(vectors), metrics


def map_rows(selection: Selection, params: SelectParams, seed: int) -> tuple[list[dict], dict]:
    n = len(selection.pool)
    shown = np.arange(n)
    if n > params.map_max_points:
        shown = np.sort(np.random.default_rng(seed).choice(n, params.map_max_points, replace=False))
    coords, metrics = project(selection.vectors[shown], params.umap_map, seed)
    picked = np.zeros(n, dtype=bool)
    picked[selection.chosen] = True
    coords = np.round(coords, MAP_DECIMALS) + 0.0       # + 0.0: -0.0 prints as 0.0 on every machine
    rows = [{"x": float(x), "y": float(y), "cluster": int(selection.labels[i]),
             "source": selection.pool[i]["source"], "selected": int(picked[i])}
            for i, (x, y) in zip(shown, coords)]
    return rows, metrics | {"map_points": len(rows)}


def draw_png(path: Path, rows: list[dict], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xy = np.array([[r["x"], r["y"]] for r in rows]).reshape(-1, 2)
    picked = np.array([r["selected"] == 1 for r in rows], dtype=bool)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
    for ax, key in zip(axes, ("cluster", "source")):
        values = sorted({r[key] for r in rows})
        cmap = plt.get_cmap("tab20" if len(values) > 10 else "tab10")
        for index, value in enumerate(values):
            mine = np.array([r[key] == value for r in rows], dtype=bool)
            colour = "lightgrey" if key == "cluster" and value == -1 else cmap(index % cmap.N)
            label = "outliers (dropped)" if key == "cluster" and value == -1 else str(value)
            ax.scatter(*xy[mine & ~picked].T, s=8, color=colour, alpha=0.35, linewidths=0)
            ax.scatter(*xy[mine & picked].T, s=18, color=colour, edgecolors="black", linewidths=0.5, label=label)
        ax.set_title(f"by {key} (black edge: selected)")
        ax.set_xticks([])
        ax.set_yticks([])
        if len(values) <= 20:
            ax.legend(fontsize=7, markerscale=1.2, loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def write_selection_map(out_dir: Path, selection: Selection, params: SelectParams, seed: int) -> dict:
    """Write out_dir/map.csv and out_dir/map.png; return the map's metrics."""
    rows, metrics = map_rows(selection, params, seed)
    write_csv(out_dir / "map.csv", rows)
    title = (f"{len(selection.chosen)} of {len(selection.pool)} selected ({params.strategy}, {params.embedder}, "
             f"{params.clustering}); {metrics['map_method']} of {metrics['map_points']} points")
    draw_png(out_dir / "map.png", rows, title)
    log.info("wrote the selection map (%s, %d points) to %s", metrics["map_method"], len(rows), out_dir)
    return metrics
