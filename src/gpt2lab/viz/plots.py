"""Matplotlib figures. Each function returns a Figure; ``fig.savefig(path)`` writes PNG or SVG."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files, not windows: works on machines with no display

import matplotlib.pyplot as plt
from matplotlib.figure import Figure


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
