"""Matplotlib figures. Each function takes a library result and returns a Figure; ``save(fig,
path)`` writes it as PNG (200 dpi) or SVG. Figures drawn inside ``with style("slides"):`` are
wider, with bigger fonts and thicker lines, for a 16:9 slide.

The figures draw what the library computed (``Inspection``, ``Trace``, ``LogitLens``,
``Attribution``, ``WordMap``, ``PositionMap``, a run's loss.csv) and compute nothing new, so a
test can read the plotted data back and compare it with the library's values.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # files, not windows: works on machines with no display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from ..errors import OutputError, UsageError, check_index
from ..hooks import short_name
from . import PROBABILITY_COLOURS, ink

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.transforms import Bbox
    from matplotlib.typing import RcKeyType
    from torch import Tensor

    from ..embeddings import PositionMap, WordMap
    from ..inspection import Inspection
    from ..lens import Attribution, LogitLens
    from ..trace import Trace


# --- styles -----------------------------------------------------------------------------------
DPI = 200  # of saved PNGs: sharp when shown large, on a slide or a printed page


@dataclass(frozen=True)
class PlotStyle:
    """How the figures look: matplotlib settings (``rc``: fonts, lines) and how much larger the
    figures are drawn (``scale``), so that bigger fonts keep the room they need. Line and bar
    charts are also stretched to at least ``wide`` (width / height); heatmaps keep square cells.
    """

    rc: dict[RcKeyType, float] = field(default_factory=dict)
    scale: float = 1.0
    wide: float = 0.0


# Slides: fonts 1.6x as large but figures only 1.3x, so text is larger against the picture.
STYLES: dict[str, PlotStyle] = {
    "default": PlotStyle(),
    "slides": PlotStyle(
        rc={
            "font.size": 16,
            "lines.linewidth": 3,
            "lines.markersize": 9,
            "axes.linewidth": 1.5,
            "grid.linewidth": 1.2,
            "patch.linewidth": 1.5,
            "xtick.major.width": 1.5,
            "ytick.major.width": 1.5,
            "xtick.major.size": 6,
            "ytick.major.size": 6,
        },
        scale=1.3,
        wide=16 / 9,
    ),
}
_CURRENT: ContextVar[PlotStyle] = ContextVar("plot_style", default=STYLES["default"])


@contextmanager
def style(name: str) -> Iterator[PlotStyle]:
    """Draw the figures made inside the ``with`` block in style ``name`` ("default", "slides").

    Fonts, line widths and sizes are fixed when a figure is drawn, so the style surrounds the
    drawing, as matplotlib's own ``plt.style.context`` does; ``save`` may come after the block.
    """
    if name not in STYLES:
        raise UsageError(f"plot style must be one of {', '.join(STYLES)}, got {name!r}")
    chosen = STYLES[name]
    token = _CURRENT.set(chosen)
    try:
        with plt.rc_context(chosen.rc):
            yield chosen
    finally:
        _CURRENT.reset(token)


def _figsize(width: float, height: float, *, stretch: bool = False) -> tuple[float, float]:
    """A figure's size in inches in the current style, given its default ``width`` x ``height``;
    ``stretch``: a chart that may grow wider (not a heatmap, whose cells stay square)."""
    current = _CURRENT.get()
    width, height = width * current.scale, height * current.scale
    return (max(width, height * current.wide) if stretch else width), height


def _font(points: float) -> float:
    """A font size chosen at matplotlib's default ``font.size``, scaled with the current one."""
    return points * plt.rcParams["font.size"] / matplotlib.rcParamsDefault["font.size"]


def _thick(points: float) -> float:
    """A line width or marker size chosen at the default ``lines.linewidth``, scaled with the
    current one."""
    default = matplotlib.rcParamsDefault["lines.linewidth"]
    return points * plt.rcParams["lines.linewidth"] / default


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
    fig, ax = plt.subplots(figsize=_figsize(7, 4, stretch=True))
    if series["train_loss"]:
        steps, losses = zip(*series["train_loss"])
        ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=_thick(0.8))
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


def loss_curves(
    curves: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str = "held-out loss",
    bold: Sequence[str] = (),
) -> Figure:
    """Several runs on one plot: held-out loss against tokens seen, a line per run (the runs of
    recipes/ladder); the runs named in ``bold`` are drawn thicker."""
    fig, ax = plt.subplots(figsize=_figsize(7, 4.5, stretch=True))
    colours = plt.get_cmap("tab10")
    for i, (name, points) in enumerate(curves.items()):
        if not points:
            continue
        tokens, losses = zip(*points)
        width = _thick(2.6 if name in bold else 1.2)
        ax.plot(tokens, losses, "o-", color=colours(i % 10), lw=width, ms=3, label=name)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1e6:g}M" if x else "0"))
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("held-out loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small", ncol=2)
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
    # Figures here draw on the Agg canvas, which has get_renderer; FigureCanvasBase's stubs lack it.
    renderer = ax.figure.canvas.get_renderer()  # type: ignore[attr-defined]
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
    fig, ax = plt.subplots(figsize=_figsize(6, 5))
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
    fig, ax = plt.subplots(figsize=_figsize(6.5, 5))
    ax.plot(xy[:, 0], xy[:, 1], color="0.75", linewidth=_thick(0.8), zorder=1)
    size = 12 * _thick(1.0) ** 2  # a marker's area, in points squared
    points = ax.scatter(xy[:, 0], xy[:, 1], c=result.positions, cmap="viridis", s=size, zorder=2)
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


# --- saving -----------------------------------------------------------------------------------
def save(fig: Figure, path: str | Path, *, dpi: int = DPI) -> Path:
    """Write ``fig`` as PNG (``dpi`` pixels per inch) or SVG, by the file's extension, creating
    its folder.

    The files carry no date, software version or random ids, so redrawing an unchanged figure
    rewrites the same bytes and committed images change only when the picture does.
    """
    path = Path(path)
    kind = path.suffix.lower()
    if kind not in (".png", ".svg"):
        raise UsageError(f"save writes .png or .svg files, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"Software": None} if kind == ".png" else {"Date": None, "Creator": None}
    with plt.rc_context({"svg.hashsalt": "gpt2lab"}):
        fig.savefig(path, dpi=dpi, metadata=metadata, bbox_inches="tight")
    return path


# --- one forward pass -------------------------------------------------------------------------
def _token_labels(tokens: Sequence[str]) -> list[str]:
    """Tokens as repr()s, so that spaces and newlines show: ' moves', '\\n'."""
    return [repr(token) for token in tokens]


# Tick labels written at a slant, ending under their tick; "$" in a token is not mathtext.
_SLANTED: dict[str, Any] = {
    "rotation": 35,
    "ha": "right",
    "rotation_mode": "anchor",
    "parse_math": False,
}


def next_token_bars(ins: Inspection) -> Figure:
    """The most likely next tokens after the prompt (``inspect_prompt``) as horizontal bars of
    their probabilities, most likely at the top."""
    labels = _token_labels(ins.next_tokens)
    fig, ax = plt.subplots(figsize=_figsize(6, 0.4 * len(labels) + 1.4, stretch=True))
    bars = ax.barh(range(len(labels)), ins.next_probs, color="tab:blue")
    ax.bar_label(bars, fmt="%.3f", padding=3)
    ax.set_yticks(range(len(labels)), labels, parse_math=False)
    ax.invert_yaxis()
    ax.set_xlim(0, min(1.0, max(ins.next_probs) * 1.25))
    ax.set_xlabel("probability")
    ax.set_title(f"next token after {ins.tokens[-1]!r}", parse_math=False)
    fig.tight_layout()
    plt.close(fig)
    return fig


def logit_lens_grid(lens: LogitLens, title: str | None = None) -> Figure:
    """The logit lens as a grid: a row per point of the residual stream (forward order, top to
    bottom), a column per position; each cell names the top token, coloured by its
    probability."""
    probs = lens.top_probs[:, :, 0].numpy()
    n_points, n_positions = probs.shape
    fig, ax = plt.subplots(figsize=_figsize(1.0 * n_positions + 2.8, 0.42 * n_points + 1.8))
    image = ax.imshow(probs, cmap=PROBABILITY_COLOURS, vmin=0, vmax=1, aspect="auto")
    for p, row in enumerate(lens.top_tokens):
        for t, top in enumerate(row):
            style: dict[str, Any] = {
                "ha": "center",
                "va": "center",
                "fontsize": _font(8),
                "parse_math": False,
            }
            ax.text(t, p, repr(top[0]), color=ink(probs[p, t]), **style)
    fig.colorbar(image, ax=ax, label="probability of the top token")
    ax.set_xticks(range(n_positions), _token_labels(lens.tokens), **_SLANTED)
    ax.set_yticks(range(n_points), [short_name(point) for point in lens.points])
    ax.set_xlabel("position (the input token there)")
    ax.set_title(title or "logit lens: the most likely next token at each point")
    fig.tight_layout()
    plt.close(fig)
    return fig


def rank_lines(lens: LogitLens, position: int | None = None, title: str | None = None) -> Figure:
    """The target token's rank at each point of the lens (``logit_lens(..., target=...)``): a
    line per position that has a target, or only ``position``.

    The y axis is rank + 1 on a log scale with 1 (the top token) at the top, so a token that
    climbs from rank 3000 to rank 0 climbs up the page.
    """
    if lens.target_rank is None or lens.target_ids is None:
        raise UsageError("this lens tracks no target token; pass target= to logit_lens")
    n_positions = len(lens.tokens)
    if position is not None:
        check_index("position", position, n_positions)
    wanted = range(n_positions) if position is None else [position]
    shown = [t for t in wanted if lens.target_ids[t] >= 0]
    if not shown:
        raise UsageError(f"no target token at position {position}")
    fig, ax = plt.subplots(figsize=_figsize(7, 4.5, stretch=True))
    steps = range(len(lens.points))
    for t in shown:
        label = f"{t} {lens.tokens[t]!r}"
        ax.plot(steps, lens.target_rank[:, t].numpy() + 1, "o-", label=label, markersize=_thick(3))
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))  # 1000, not 10³
    ax.invert_yaxis()
    ax.set_xticks(steps, [short_name(point) for point in lens.points], **_SLANTED)
    ax.set_ylabel("rank of the target + 1 (1: the top token)")
    ax.set_title(title or "rank of the target token at each point")
    ax.grid(alpha=0.3)
    legend = ax.legend(title="position", fontsize=_font(8))
    for text in legend.get_texts():
        text.set_parse_math(False)
    fig.tight_layout()
    plt.close(fig)
    return fig


def _pattern(trace: Trace, layer: int, batch: int) -> np.ndarray:
    """Block ``layer``'s attention pattern [H, T, T], keys after the query masked (the model
    cannot look there, so they show blank rather than as a probability of 0)."""
    value = trace[f"blocks.{layer}.attn.hook_pattern"][batch].float().cpu().numpy()
    future = np.triu(np.ones(value.shape[-2:], dtype=bool), k=1)
    return np.ma.masked_array(value, np.broadcast_to(future, value.shape))


def attention_heatmap(trace: Trace, layer: int, head: int, *, batch: int = 0) -> Figure:
    """Head ``head`` of block ``layer``: how much each query position (row) attends to each key
    position (column), from a trace that kept ``blocks.{layer}.attn.hook_pattern``."""
    check_index("layer", layer, trace.config.n_layer)
    check_index("head", head, trace.config.n_head)
    check_index("batch", batch, trace.ids.shape[0])
    pattern = _pattern(trace, layer, batch)[head]
    labels = _token_labels(trace.tokens(batch))
    n = len(labels)
    fig, ax = plt.subplots(figsize=_figsize(0.6 * n + 2.6, 0.6 * n + 1.6))
    image = ax.imshow(pattern, cmap=PROBABILITY_COLOURS, vmin=0, vmax=1)
    if n <= 16:  # beyond that the numbers no longer fit in their cells
        for q, k in zip(*np.tril_indices(n)):
            value = pattern[q, k]
            ax.text(
                int(k),
                int(q),
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=_font(7),
                color=ink(value),
            )
    fig.colorbar(image, ax=ax, label="attention weight")
    ax.set_xticks(range(n), labels, **_SLANTED)
    ax.set_yticks(range(n), labels, parse_math=False)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query")
    ax.set_title(f"attention of head {head} in block {layer}")
    fig.tight_layout()
    plt.close(fig)
    return fig


def attention_overview(trace: Trace, *, batch: int = 0) -> Figure:
    """Every head of every block as a small heatmap: a row per block, a column per head, from a
    trace that kept ``blocks.*.attn.hook_pattern``. Axes are in forward order, so
    ``fig.axes[layer * n_head + head]`` shows that head."""
    check_index("batch", batch, trace.ids.shape[0])
    n_layer, n_head = trace.config.n_layer, trace.config.n_head
    patterns = [_pattern(trace, layer, batch) for layer in range(n_layer)]
    fig, axes = plt.subplots(
        n_layer, n_head, figsize=_figsize(1.1 * n_head + 0.6, 1.1 * n_layer + 0.6), squeeze=False
    )
    for layer, row in enumerate(axes):
        for head, ax in enumerate(row):
            ax.imshow(patterns[layer][head], cmap=PROBABILITY_COLOURS, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if layer == 0:
                ax.set_title(f"head {head}", fontsize=_font(9))
            if head == 0:
                ax.set_ylabel(f"block {layer}", fontsize=_font(9))
    fig.suptitle("attention of every head (rows: queries, columns: keys)")
    fig.tight_layout()
    plt.close(fig)
    return fig


def attribution_bars(attribution: Attribution, *, top: int | None = 20) -> Figure:
    """Direct logit attribution (``direct_logit_attribution``) as horizontal bars, largest at
    the top: the ``top`` components of largest magnitude (None: all), and one bar for the sum
    of the rest, so that the bars add up to the logit."""
    values = attribution.values.numpy()
    labels = list(attribution.labels)
    colours = ["tab:blue" if v >= 0 else "tab:red" for v in values]
    if top is not None and top < len(values):
        if top < 1:
            raise UsageError(f"top must be a positive integer or None, got {top!r}")
        kept = np.argsort(-np.abs(values), kind="stable")[:top]
        rest = np.setdiff1d(np.arange(len(values)), kept)
        labels = [labels[i] for i in kept] + [f"{len(rest)} others"]
        colours = [colours[i] for i in kept] + ["0.6"]
        values = np.append(values[kept], values[rest].sum())
    order = np.argsort(-values, kind="stable")
    fig, ax = plt.subplots(figsize=_figsize(7, 0.28 * len(values) + 1.4, stretch=True))
    ax.barh(range(len(order)), values[order], color=[colours[i] for i in order])
    ax.set_yticks(range(len(order)), [labels[i] for i in order], fontsize=_font(8))
    ax.invert_yaxis()
    ax.axvline(0, color="0.3", linewidth=_thick(0.8))
    ax.set_xlabel("contribution to the logit")
    ax.set_title(
        f"logit of {attribution.token_text!r} at position {attribution.position} = "
        f"{attribution.logit:.2f}, by component",
        parse_math=False,
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    plt.close(fig)
    return fig


# --- everything gpt2lab inspect shows -----------------------------------------------------------
def inspection_figures(ins: Inspection) -> dict[str, Figure]:
    """The figures of one inspection by file name: the next tokens, the logit lens, the target's
    rank (when the lens has a target) and, when ``ins.patterns`` kept every head
    (``inspect_prompt(all_heads=True)``), the chosen head's attention and every head."""
    figures = {"next_tokens": next_token_bars(ins), "logit_lens": logit_lens_grid(ins.lens)}
    if ins.lens.target_rank is not None:
        figures["rank_lines"] = rank_lines(ins.lens)
    if ins.patterns is not None:
        figures["attention"] = attention_heatmap(ins.patterns, ins.layer, ins.head)
        figures["attention_overview"] = attention_overview(ins.patterns)
    return figures


def save_inspection(ins: Inspection, folder: str | Path, *, suffix: str = ".png") -> list[Path]:
    """Write ``inspection_figures(ins)`` into ``folder`` as ``next_tokens.png`` and so on (or
    ``.svg``); return the paths. Draw them inside ``style("slides")`` for slides.

    The folder is made if need be, but not its parents: a mistyped path should fail, not leave
    a trail of new folders.
    """
    folder = Path(folder)
    try:
        folder.mkdir(exist_ok=True)
    except FileNotFoundError:
        missing = f"no such folder {folder.parent}"
        raise OutputError(f"cannot write pictures in {folder}: {missing}") from None
    except OSError as e:
        raise OutputError(f"cannot write pictures in {folder}: {e.strerror or e}") from None
    return [save(fig, folder / f"{name}{suffix}") for name, fig in inspection_figures(ins).items()]
