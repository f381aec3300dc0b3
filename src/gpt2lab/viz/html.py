"""Self-contained HTML views of one forward pass, for ``gpt2lab inspect --html`` and Jupyter.

Everything is inline: the CSS in a <style> element, tables with coloured cells, figures as PNG
data URIs. There is no link to another file, font or web address, so a report opens offline,
from a USB stick; there is no script either, unless ``interactive=True`` adds the views of
``gpt2lab.viz.views`` (inline scripts drawing SVG). The views draw library results
(``Inspection``, ``LogitLens``, ``Trace``) and compute nothing of their own.

    write_html(inspect_prompt(model, "Mike is quick. He moves"), "report.html")
    lens            # in Jupyter, a LogitLens, Trace or Inspection shows itself as these tables
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import OutputError, UsageError
from . import PROBABILITY_COLOURS, STEP_COLUMNS, ink

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..generate import SamplingExplanation
    from ..inspection import Inspection, StepValues
    from ..lens import LogitLens
    from ..sae.features import FeatureReport, TokenEffect
    from ..trace import Trace

# Every rule is scoped to .gpt2lab, so that a view inside a Jupyter page restyles nothing else.
_CSS = """
.gpt2lab { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: #1b1b1b; font-size: 14px; line-height: 1.4; }
.gpt2lab h1 { font-size: 20px; margin: 0.2em 0; }
.gpt2lab h2 { font-size: 16px; margin: 1.2em 0 0.3em; }
.gpt2lab h3 { font-size: 14px; margin: 1em 0 0.2em; }
.gpt2lab p { margin: 0.3em 0; }
.gpt2lab .note { color: #555; font-size: 12px; max-width: 40em; }
.gpt2lab table { border-collapse: collapse; margin: 0.3em 0 0.8em; font-size: 12px; }
.gpt2lab th, .gpt2lab td { border: 1px solid #d8d8d8; padding: 2px 6px; text-align: left; }
.gpt2lab th { background: #f3f3f3; font-weight: 600; }
.gpt2lab td.num { text-align: right; font-variant-numeric: tabular-nums; }
.gpt2lab td.cell { text-align: center; min-width: 3.5em; }
.gpt2lab td.off { background: #fafafa; }
.gpt2lab .tok { font-family: ui-monospace, "SF Mono", Menlo, Consolas, monospace;
  white-space: pre; }
.gpt2lab .p { display: block; font-size: 10px; opacity: 0.85; }
.gpt2lab .bar { display: inline-block; height: 10px; background: #3b78b5; }
.gpt2lab img { max-width: 100%; height: auto; }
.gpt2lab details summary { cursor: pointer; }
.gpt2lab .side { display: flex; flex-wrap: wrap; gap: 0 2.5em; align-items: flex-start; }
.gpt2lab .ctx { font-family: ui-monospace, "SF Mono", Menlo, Consolas, monospace;
  white-space: pre-wrap; margin: 0.15em 0; }
.gpt2lab .ctx span { border-radius: 2px; }
.gpt2lab .ctx .peak { outline: 1px solid #c0392b; }
"""


# --- pieces -----------------------------------------------------------------------------------
def _tok(text: str) -> str:
    """A token as its repr(), so that spaces and newlines show: ' moves', '\\n'."""
    return f'<span class="tok">{escape(repr(text))}</span>'


def _colour(value: float) -> str:
    """The background of a cell for ``value`` in [0, 1], from the figures' colour map."""
    import matplotlib
    from matplotlib.colors import to_hex

    return to_hex(matplotlib.colormaps[PROBABILITY_COLOURS](value))


def _cell(value: float, body: str, title: str = "") -> str:
    """A table cell coloured by ``value`` in [0, 1], its text readable on that colour."""
    hint = f' title="{escape(title)}"' if title else ""
    style = f"background:{_colour(value)};color:{ink(value)}"
    return f'<td class="cell" style="{style}"{hint}>{body}</td>'


def _row(*cells: str) -> str:
    return "<tr>" + "".join(cells) + "</tr>"


def _header(*names: str) -> str:
    return _row(*(f"<th>{name}</th>" for name in names))


def _table(kind: str, rows: Sequence[str]) -> str:
    return f'<table class="{kind}">' + "".join(rows) + "</table>"


def _side(*blocks: str) -> str:
    """Blocks side by side, wrapping to a new line when the window is too narrow."""
    return '<div class="side">' + "\n".join(f"<div>{block}</div>" for block in blocks) + "</div>"


def _png(fig: Figure, alt: str) -> str:
    """A figure as an <img> whose PNG is inside the page."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _document(body: str, title: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f'<body>\n<div class="gpt2lab">\n{body}\n</div>\n</body>\n</html>\n'
    )


def _fragment(body: str) -> str:
    """A view for a page that already has its <head> (Jupyter): the style travels inside."""
    return f'<div class="gpt2lab"><style>{_CSS}</style>{body}</div>'


# --- the logit lens ---------------------------------------------------------------------------
# A rank's colour fades over 5 decades: log10 of GPT-2's 50,257 tokens is 4.7.
_RANK_DECADES = 5


def _lens_tables(lens: LogitLens) -> str:
    from ..hooks import short_name

    header = _header("", *(_tok(token) for token in lens.tokens))
    rows = []
    for point, tokens, probs in zip(lens.points, lens.top_tokens, lens.top_probs.tolist()):
        cells = []
        for candidates, p in zip(tokens, probs):
            body = f'{_tok(candidates[0])}<span class="p">{p[0]:.2f}</span>'
            tip = ", ".join(f"{t!r} {q:.3f}" for t, q in zip(candidates, p))
            cells.append(_cell(p[0], body, tip))
        rows.append(_row(f"<th>{escape(short_name(point))}</th>", *cells))
    top = (
        "<h2>Logit lens</h2>\n"
        '<p class="note">The most likely next token if the model stopped at each point (rows), '
        f"by position (columns). Hover for the top {lens.top_ids.shape[-1]}.</p>\n"
        + _table("lens-top", [header, *rows])
    )
    if lens.target_rank is None:
        return top
    rows = []
    for point, ranks in zip(lens.points, lens.target_rank.tolist()):
        cells = [
            '<td class="cell off">–</td>'
            if rank < 0
            else _cell(1 - min(1.0, math.log10(rank + 1) / _RANK_DECADES), str(rank))
            for rank in ranks
        ]
        rows.append(_row(f"<th>{escape(short_name(point))}</th>", *cells))
    rank = (
        "<h2>Rank of the target token</h2>\n"
        '<p class="note">0: the top token; –: no target there.</p>\n'
        + _table("lens-rank", [header, *rows])
    )
    return _side(top, rank)


def lens_html(lens: LogitLens) -> str:
    """The logit lens as HTML tables (top token and probability; the target's rank), for
    Jupyter (``LogitLens._repr_html_``)."""
    return _fragment(_lens_tables(lens))


# --- a trace ----------------------------------------------------------------------------------
def trace_html(trace: Trace, *, top: int = 5) -> str:
    """A summary of a trace for Jupyter: its tokens, the ``top`` next tokens after the first
    prompt, and the steps it kept with their shapes and formulas (folded)."""
    from ..hooks import describe

    tokens = trace.tokens(0)
    probs, ids = trace.probs[0, -1].topk(min(top, trace.probs.shape[-1]))
    decode = trace.tokenizer.decode if trace.tokenizer is not None else None
    nexts = [decode([i]) if decode else str(i) for i in ids.tolist()]
    steps = [_header("step", "shape", "formula")]
    for name in trace:
        # hook_probs is computed on first use; its shape is the logits' without computing it
        shape = trace.logits.shape if name == "hook_probs" else trace[name].shape
        steps.append(
            _row(
                f'<td class="tok">{escape(name)}</td>',
                f"<td>{list(shape)}</td>",
                f"<td>{escape(describe(name, trace.config).formula)}</td>",
            )
        )
    batch, n_tokens = trace.ids.shape
    body = [
        f"<p><b>Trace</b> of {len(trace)} steps: {batch} prompt(s) of {n_tokens} tokens</p>",
        "<p>" + " ".join(_tok(token) for token in tokens) + "</p>",
        "<p>next: "
        + ", ".join(f"{_tok(t)} {p:.3f}" for t, p in zip(nexts, probs.tolist()))
        + "</p>",
        f"<details><summary>{len(trace)} steps</summary>",
        _table("steps", steps),
        "</details>",
    ]
    return _fragment("\n".join(body))


# --- gpt2lab inspect --------------------------------------------------------------------------
def _setting(value: object) -> str:
    """A setting's value as a cell's text: texts as repr()s (so spaces show), None as "none"."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return _tok(value)
    return escape(str(value))


def _about_section(ins: Inspection) -> str:
    """The model (its name, size, weights) and every setting, each a table of one row, so that a
    saved report says what it shows and how to make it again."""
    m = ins.model
    model = {
        "model": f'<span class="tok">{escape(m.name)}</span>' if m.name else "not named",
        "layers": m.n_layer,
        "heads": m.n_head,
        "width": m.n_embd,
        "parameters": f"{m.parameters:,}",
        "positions": f"{m.n_positions:,}",
        "vocabulary": f"{m.vocab_size:,}",
        "weights": f"{m.dtype}, {m.quantized} quantized" if m.quantized else m.dtype,
        "device": escape(m.device),
    }
    settings = {name: _setting(value) for name, value in ins.settings().items()}
    return "<h2>Model and settings</h2>\n" + "\n".join(
        _table(kind, [_header(*cells), _row(*(f"<td>{cell}</td>" for cell in cells.values()))])
        for kind, cells in (("model", model), ("settings", settings))
    )


def _tokens_section(ins: Inspection) -> str:
    rows = [
        _row("<th>#</th>", *(f'<td class="num">{t}</td>' for t in range(len(ins.ids)))),
        _row("<th>token</th>", *(f"<td>{_tok(token)}</td>" for token in ins.tokens)),
        _row("<th>id</th>", *(f'<td class="num">{i}</td>' for i in ins.ids)),
    ]
    return f"<h2>{len(ins.ids)} tokens</h2>\n" + _table("tokens", rows)


def _next_section(ins: Inspection) -> str:
    rows = [_header("token", "id", "p", "")]
    for token, i, p in zip(ins.next_tokens, ins.next_ids, ins.next_probs):
        bar = f'<span class="bar" style="width:{200 * p:.1f}px"></span>'
        rows.append(
            _row(
                f"<td>{_tok(token)}</td>",
                f'<td class="num">{i}</td>',
                f'<td class="num">{p:.3f}</td>',
                f'<td style="width:205px">{bar}</td>',
            )
        )
    return f"<h2>Next token after {_tok(ins.tokens[-1])}</h2>\n" + _table("next", rows)


def _attention_section(ins: Inspection, overview: Trace | None) -> str:
    pattern = ins.attention.to_numpy()
    rows = [_header("query \\ key", *(_tok(token) for token in ins.tokens))]
    for q, (token, weights) in enumerate(zip(ins.tokens, pattern)):
        cells = [
            _cell(w, f"{w:.2f}") if k <= q else '<td class="cell off"></td>'
            for k, w in enumerate(weights.tolist())
        ]
        rows.append(_row(f"<th>{_tok(token)}</th>", *cells))
    chosen = (
        f"<h2>Attention of head {ins.head} in block {ins.layer}</h2>\n"
        '<p class="note">Row: the query position; column: the key it attends to. Keys after '
        "the query are hidden from it.</p>\n" + _table("attention", rows)
    )
    if overview is None:
        return chosen
    from .plots import attention_overview

    if overview.ids.shape[0] != 1 or overview.ids[0].tolist() != ins.ids:
        raise UsageError("the overview trace must be of the inspected prompt alone")
    picture = _png(attention_overview(overview), "attention of every head")
    return _side(chosen, f"<h2>Every head</h2>\n{picture}")


def _step_section(step: StepValues) -> str:
    frame = step.frame.iloc[:, :STEP_COLUMNS]
    more = frame.shape[1] < step.frame.shape[1]
    rows = [_header("", *(escape(str(c)) for c in frame.columns), *(["…"] if more else []))]
    for label, values in frame.iterrows():
        cells = [f'<td class="num">{v:.3f}</td>' for v in values.tolist()]
        rows.append(_row(f"<th>{escape(str(label))}</th>", *cells, *(["<td>…</td>"] * more)))
    which = "" if step.head is None else f", head {step.head}"
    return (
        f'<h2><span class="tok">{escape(step.name)}</span></h2>\n'
        f"<p>shape {list(step.values.shape)}{which}: {escape(step.formula)}</p>\n"
        + _table("step", rows)
    )


def _sampling_section(ex: SamplingExplanation, chosen: str | None) -> str:
    s = ex.settings
    rows = [_header("token", "id", "logit", "logit/T", "p before", "top-k", "top-p", "final p")]
    for r in ex.rows:
        rows.append(
            _row(
                f"<td>{_tok(r.token if r.token is not None else str(r.token_id))}</td>",
                f'<td class="num">{r.token_id}</td>',
                f'<td class="num">{r.logit:.3f}</td>',
                f'<td class="num">{r.scaled_logit:.3f}</td>',
                f'<td class="num">{r.prob_before:.3f}</td>',
                f"<td>{'kept' if r.kept_top_k else 'cut'}</td>",
                f"<td>{'kept' if r.kept_top_p else 'cut'}</td>",
                f'<td class="num">{r.prob:.3f}</td>',
            )
        )
    return (
        "<h2>Sampling the next token</h2>\n"
        f"<p>temperature {s.temperature}, top-k {s.top_k or 'off'}, top-p {s.top_p or 'off'}, "
        f"seed {s.seed}</p>\n"
        + _table("sampling", rows)
        + f"\n<p>top-k keeps {ex.kept_top_k} tokens, top-p {ex.effective_k} (the effective k), "
        f"{ex.mass_kept:.1%} of the probability; chosen: id {ex.chosen} "
        f"{_tok(chosen or str(ex.chosen))} (p {ex.chosen_prob:.3f})</p>"
    )


def _inspection_body(ins: Inspection, overview: Trace | None) -> str:
    parts = [
        "<h1>gpt2lab inspect</h1>",
        f'<p class="tok">{escape("".join(ins.tokens))}</p>',
        _about_section(ins),
        _side(_tokens_section(ins), _next_section(ins)),
        _lens_tables(ins.lens),
        _attention_section(ins, overview),
    ]
    if ins.step is not None:
        parts.append(_step_section(ins.step))
    if ins.sampling is not None:
        parts.append(_sampling_section(ins.sampling, ins.sampled_token))
    return "\n".join(parts)


def _interactive_section(ins: Inspection, overview: Trace | None) -> str:
    """The interactive views of gpt2lab.viz.views (each with its inline script): the logit
    lens, and with an overview trace the model map, attention lines and every head."""
    from . import views

    shown = [views.lens_view(ins.lens)]
    if overview is not None:
        pattern = f"blocks.{ins.layer}.attn.hook_pattern"
        shown = [
            views.model_map(
                overview.config,
                overview,
                layer=ins.layer,
                selected=pattern,
                head=ins.head,
                name=ins.model.name,
            ),
            views.attention_lines(overview, layer=ins.layer),
            views.attention_heads(overview),
            *shown,
        ]
    return "<h2>Interactive views</h2>\n" + "\n".join(
        f"<h3>{escape(view.title)}</h3>\n{view.html()}" for view in shown
    )


def inspection_html(
    ins: Inspection,
    *,
    overview: Trace | None = None,
    standalone: bool = True,
    interactive: bool = False,
) -> str:
    """Everything ``gpt2lab inspect`` shows, as HTML: tokens, next tokens, the logit lens, the
    attention of the chosen head, the step and the sampling lab if asked for.

    ``overview``: a trace of the same prompt that kept ``blocks.*.attn.hook_pattern`` adds a
    picture of every head (default: ``ins.patterns``, which ``inspect_prompt(all_heads=True)``
    keeps). ``standalone``: a whole document (True) or a <div> for a page that has one already,
    such as a Jupyter notebook. ``interactive``: add the interactive views (gpt2lab.viz.views:
    the model map, attention lines, every head, the lens grid); the page then holds scripts,
    still inline, still loading nothing.
    """
    overview = ins.patterns if overview is None else overview
    body = _inspection_body(ins, overview)
    if interactive:
        body += "\n" + _interactive_section(ins, overview)
    if not standalone:
        return _fragment(body)
    model = f"{ins.model.name}: " if ins.model.name else ""
    return _document(body, f"gpt2lab inspect: {model}{''.join(ins.tokens)}")


def write_html(
    ins: Inspection, path: str | Path, *, overview: Trace | None = None, interactive: bool = False
) -> Path:
    """Write ``inspection_html(ins, overview=overview, interactive=interactive)`` to ``path`` as
    one UTF-8 file."""
    path = Path(path)
    page = inspection_html(ins, overview=overview, interactive=interactive)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    return path


# --- an SAE feature's dashboard -----------------------------------------------------------------
def _activation_colour(value: float) -> str:
    """Orange, as strong as ``value`` in [0, 1] (white at 0): activations, not probabilities."""
    alpha = max(0.0, min(1.0, value))
    return f"rgba(230,120,20,{alpha:.3f})"


def _context_line(tokens: Sequence[str], acts: Sequence[float], at: int, top: float) -> str:
    """A context with each token shaded by the feature's activation on it (hover: the value)."""
    spans = []
    for i, (text, act) in enumerate(zip(tokens, acts)):
        cls = ' class="peak"' if i == at else ""
        style = f"background:{_activation_colour(act / top if top > 0 else 0.0)}"
        shown = escape(text.replace("\n", "↵"))  # one line per context
        spans.append(f'<span{cls} style="{style}" title="{act:.3f}">{shown}</span>')
    return '<div class="ctx">' + "".join(spans) + "</div>"


def _histogram_svg(edges: Sequence[float], counts: Sequence[int]) -> str:
    """An inline SVG bar chart of the non-zero activations."""
    width, height, n = 360, 120, max(len(counts), 1)
    peak = max(counts, default=0) or 1
    bar = width / n
    rects = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - height * c / peak:.1f}" width="{bar - 1:.1f}" '
        f'height="{height * c / peak:.1f}" fill="#e67814"><title>{edges[i]:.2f}-'
        f"{edges[i + 1]:.2f}: {c}</title></rect>"
        for i, c in enumerate(counts)
    )
    axis = (
        f'<text x="0" y="{height + 14}" font-size="11">0</text>'
        f'<text x="{width}" y="{height + 14}" font-size="11" text-anchor="end">'
        f"{edges[-1] if edges else 0:.2f}</text>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 18}" '
        f'role="img" aria-label="activation histogram">{rects}{axis}</svg>'
    )


def _effects_table(title: str, rows: Sequence[TokenEffect]) -> str:
    body = [_header(title, "logit effect")]
    body += [
        _row(f"<td>{_tok(r.token)}</td>", f'<td class="num">{r.effect:+.3f}</td>') for r in rows
    ]
    return _table("effects", body)


def _feature_body(report: FeatureReport) -> str:
    top = report.max_activation
    contexts = (
        "".join(_context_line(c.tokens, c.activations, c.at, top) for c in report.contexts)
        or '<p class="note">It did not fire on these tokens.</p>'
    )
    effects = (
        _side(
            _effects_table("promoted", report.promoted),
            _effects_table("suppressed", report.suppressed),
        )
        if report.promoted
        else '<p class="note">This step is not the residual stream: no direct logit effect.</p>'
    )
    return (
        f"<h1>Feature {report.feature} of {escape(report.hook_name)}</h1>"
        f"<p>fires on {report.fraction_active:.3%} of {report.tokens_read:,} tokens; "
        f"largest activation {top:.3f}</p>"
        f"<h2>Top contexts</h2>{contexts}"
        f"<h2>Activations (non-zero)</h2>{_histogram_svg(*report.histogram)}"
        "<h2>Tokens it promotes and suppresses</h2>"
        '<p class="note">W_dec[f], centred and scaled by ln_final\'s gain, times the '
        "unembedding: how adding the direction moves each logit.</p>"
        f"{effects}"
    )


def feature_html(report: FeatureReport, *, standalone: bool = True) -> str:
    """An SAE feature's dashboard: top contexts, activation histogram, promoted and suppressed
    tokens; a whole document, or a <div> for Jupyter (``standalone=False``)."""
    body = _feature_body(report)
    if not standalone:
        return _fragment(body)
    return _document(body, f"gpt2lab SAE feature {report.feature} of {report.hook_name}")


def write_feature_html(report: FeatureReport, path: str | Path) -> Path:
    """Write ``feature_html(report)`` to ``path`` as one UTF-8 file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(feature_html(report), encoding="utf-8")
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    return path
