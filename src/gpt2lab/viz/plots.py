"""Matplotlib figures. Each function returns a Figure; ``fig.savefig(path)`` writes PNG or SVG."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files, not windows: works on machines with no display

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.transforms import Bbox
    from torch import Tensor

    from ..embeddings import PositionMap, WordMap


def read_loss_log(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """(step, loss) pairs of a training run's loss.csv, for the train and val columns."""
    series: dict[str, list[tuple[int, float]]] = {"train_loss": [], "val_loss": []}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for key, points in series.items():
                if row.get(key):
                    points.append((int(row["step"]), float(row[key])))
    return series


def loss_curve(path: str | Path) -> Figure:
    """Training loss per step (faint) with its running mean, and held-out loss at each eval."""
    series = read_loss_log(path)
    fig, ax = plt.subplots(figsize=(7, 4))
    if series["train_loss"]:
        steps, losses = zip(*series["train_loss"])
        ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.8)
        window = max(1, len(losses) // 50)
        smooth = [
            sum(losses[max(0, i - window + 1) : i + 1])
            / len(losses[max(0, i - window + 1) : i + 1])
            for i in range(len(losses))
        ]
        ax.plot(steps, smooth, color="tab:blue", label="train (running mean)")
    if series["val_loss"]:
        steps, losses = zip(*series["val_loss"])
        ax.plot(steps, losses, "o-", color="tab:orange", label="held-out")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("training and held-out loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


def _pca_axes(ax: Axes, explained: Tensor, title: str) -> None:
    """Axis labels with each component's share of the variance; equal scales, so that distances
    on the page are distances between the vectors."""
    ax.set_xlabel(f"PC1 ({explained[0].item():.1%} of variance)")
    ax.set_ylabel(f"PC2 ({explained[1].item():.1%} of variance)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(title)
    ax.grid(alpha=0.3)


# Where a label may go, tried in this order: (offset in points, alignment).
_LABEL_SPOTS = (
    ((4, 4), "left", "bottom"),
    ((4, -4), "left", "top"),
    ((-4, 4), "right", "bottom"),
    ((-4, -4), "right", "top"),
)


def _label_points(ax: Axes, xy: np.ndarray, labels: Sequence[str]) -> None:
    """Label each point at the first spot beside it where the text covers no earlier label.

    Words with almost the same embedding (" dog", " cat") land on almost the same point, and
    labels written on top of each other cannot be read.
    """
    ax.apply_aspect()  # fix the final data-to-pixel scale before measuring texts
    renderer = ax.figure.canvas.get_renderer()
    placed: list[Bbox] = []
    for label, point in zip(labels, xy):
        for offset, ha, va in _LABEL_SPOTS:
            text = ax.annotate(
                label, point, xytext=offset, textcoords="offset points", ha=ha, va=va
            )
            box = text.get_window_extent(renderer)
            if offset == _LABEL_SPOTS[-1][0] or not any(box.overlaps(b) for b in placed):
                break
            text.remove()
        placed.append(box)


def embedding_map(result: WordMap, title: str = "token embeddings (PCA)") -> Figure:
    """Each word at its 2-D PCA coordinates (``gpt2lab.embeddings.word_map``), labelled."""
    xy = result.coords.cpu().numpy()
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(xy[:, 0], xy[:, 1], color="tab:blue")
    _pca_axes(ax, result.explained, title)
    _label_points(ax, xy, result.labels)
    fig.tight_layout()
    plt.close(fig)
    return fig


def position_embedding_map(result: PositionMap, title: str | None = None) -> Figure:
    """Vectors at successive positions (``position_map``/``wpe_map``) at their PCA coordinates,
    coloured by position and joined in position order; the first and last are labelled."""
    xy = result.coords.cpu().numpy()
    fig, ax = plt.subplots(figsize=(6.5, 5))
    ax.plot(xy[:, 0], xy[:, 1], color="0.75", linewidth=0.8, zorder=1)
    points = ax.scatter(xy[:, 0], xy[:, 1], c=result.positions, cmap="viridis", s=12, zorder=2)
    fig.colorbar(points, ax=ax, label="position")
    if title is None:
        what = "W_P" if result.token is None else f"W_E[{result.label!r}] + W_P"
        title = f"{what} at {len(xy)} positions (PCA)"
    _pca_axes(ax, result.explained, title)
    ends = [0, len(xy) - 1]
    _label_points(ax, xy[ends], [str(result.positions[i]) for i in ends])
    fig.tight_layout()
    plt.close(fig)
    return fig
