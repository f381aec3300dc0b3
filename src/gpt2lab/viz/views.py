"""Interactive views of library results: plain JavaScript drawing SVG, in self-contained HTML.

Each function here turns a library object (a ``Trace``, a ``LogitLens``, a ``Saliency``, a
model's config) into a ``View``: the data a view draws, as plain lists, and the name of the
JavaScript function that draws it. The JavaScript is in ``views/*.js``, one file per view
plus ``common.js``; it is inlined into the HTML (no CDN, no network, no build step), and the web
app serves the same files as ES modules. A ``View`` shows itself in Jupyter (``_repr_html_``:
an inline script with element ids unique to each output), and ``save(path)`` writes it as
.html, or, drawn in a headless Chromium by Playwright, as .svg or .png (300 dpi by default).

    trace = run_with_cache(model, "Mike is quick. He moves")
    attention_lines(trace, layer=0)            # in a notebook cell: lines between tokens
    model_map(model, trace).save("map.png")    # a slide
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html import escape
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..config import GPT2Config
from ..errors import OutputError, UsageError, check_index
from ..files import write_atomic
from ..hooks import describe, head_axis, head_index, short_name

if TYPE_CHECKING:
    from ..lens import LogitLens
    from ..model import GPT2
    from ..saliency import Saliency
    from ..trace import Trace

SCRIPTS = Path(__file__).parent / "views"
# Each view's JavaScript function and its file.
VIEWS = {
    "modelMap": "model_map.js",
    "attentionLines": "attention.js",
    "attentionHeads": "heads.js",
    "coloredText": "text.js",
    "nextTokens": "next.js",
    "logitLens": "lens.js",
    "saliency": "saliency.js",
}
DPI = 300  # of a saved PNG: slides want 200 or more
_CSS_DPI = 96  # a CSS pixel is 1/96 inch
# Shown where scripts do not run (an untrusted notebook, a code host's preview).
_NO_SCRIPT = "This view draws itself with JavaScript: trust the notebook (or open it in a browser)."


# --- the view ---------------------------------------------------------------------------------
def script(function: str) -> str:
    """The JavaScript of one view as a classic script: common.js and the view's file, with
    their ``import``/``export`` lines (for the web app's ES modules) taken out."""
    parts = []
    for name in ("common.js", VIEWS[function]):
        text = (SCRIPTS / name).read_text(encoding="utf-8")
        text = re.sub(r"^import [^;]*;\n", "", text, flags=re.MULTILINE)
        parts.append(re.sub(r"^export ", "", text, flags=re.MULTILINE))
    return "\n".join(parts)


def _json(data: object) -> str:
    """JSON that is safe inside a <script>: no "</" can close it."""
    return json.dumps(data, ensure_ascii=False, allow_nan=False).replace("</", "<\\/")


@dataclass(frozen=True)
class View:
    """One interactive view: ``function`` (the JavaScript that draws it) applied to ``data``."""

    function: str
    data: dict[str, Any]
    title: str

    def html(self, *, standalone: bool = False) -> str:
        """The view as HTML: a <div> and its inline script (``standalone``: a whole page)."""
        element = f"gpt2lab-view-{uuid.uuid4().hex[:12]}"
        fragment = (
            f'<div id="{element}" class="gpt2lab-host">{escape(_NO_SCRIPT)}</div>\n'
            f"<script>\n(function () {{\n{script(self.function)}\n"
            f"{self.function}({_json(self.data)}, document.getElementById({element!r}));\n"
            "})();\n</script>"
        )
        if not standalone:
            return fragment
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<title>{escape(self.title)}</title>\n<link rel="icon" href="data:,">\n</head>\n'
            f"<body>\n{fragment}\n</body>\n</html>\n"
        )

    def _repr_html_(self) -> str:
        return self.html()

    def save(self, path: str | Path, *, dpi: int = DPI) -> Path:
        """Write the view to ``path``: .html (the page), .svg (the drawing) or .png (at ``dpi``
        dots per inch). SVG and PNG are drawn in Chromium (``pip install playwright``)."""
        path = Path(path)
        kind = path.suffix.lower()
        if kind not in (".html", ".svg", ".png"):
            raise UsageError(f"save a view as .html, .svg or .png, not {path.name!r}")
        if kind == ".html":
            data = self.html(standalone=True).encode("utf-8")
        else:
            if isinstance(dpi, bool) or not isinstance(dpi, int) or not 72 <= dpi <= 1200:
                raise UsageError(f"dpi must be an integer in [72, 1200], got {dpi!r}")
            data = _draw(self.html(standalone=True), kind, dpi)
        try:
            write_atomic(path, data)
        except OSError as e:
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
        return path


def _draw(page: str, kind: str, dpi: int) -> bytes:
    """The view's SVG as a file, or a PNG of it at ``dpi``, drawn in a headless Chromium.

    It runs in a thread of its own: Playwright's synchronous API refuses a thread with a
    running event loop, which a Jupyter kernel's has."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        raise UsageError(
            "saving a view as SVG or PNG draws it in Chromium: pip install 'gpt2lab[slides]' "
            "(and a Chromium: `playwright install chromium`, or your system's)"
        ) from None
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(_draw_here, page, kind, dpi).result()


def _draw_here(page: str, kind: str, dpi: int) -> bytes:
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(**_chromium())
        except Error as e:
            raise UsageError(
                f"cannot start Chromium to draw the view ({str(e).splitlines()[0]}); install "
                "one: `playwright install chromium`, or your system's package"
            ) from None
        try:
            context = browser.new_context(device_scale_factor=dpi / _CSS_DPI)
            context.route("**/*", _offline)
            view = context.new_page()
            view.set_content(page)
            view.wait_for_selector(".gpt2lab-view[data-ready] svg")
            svg = view.locator(".gpt2lab-view svg").first
            # A wide view scrolls inside its frame in a page: here the page is made wide enough.
            width, height = svg.evaluate("s => [s.width.baseVal.value, s.height.baseVal.value]")
            view.set_viewport_size({"width": int(width) + 64, "height": int(height) + 200})
            if kind == ".svg":
                text = svg.evaluate("node => new XMLSerializer().serializeToString(node)")
                return ('<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n").encode()
            png = svg.screenshot(type="png", omit_background=False)
        finally:
            browser.close()
    return _with_dpi(png, dpi)


def _offline(route: Any) -> None:
    """Nothing a view draws comes from the network."""
    if route.request.url.startswith(("data:", "about:")):
        route.continue_()
    else:
        route.abort()


def _chromium() -> dict[str, Any]:
    """The system's Chromium if there is one (Debian: /usr/bin/chromium), else Playwright's."""
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(candidate).exists():
            return {"executable_path": candidate, "args": ["--no-sandbox", "--disable-gpu"]}
    return {}


def _with_dpi(png: bytes, dpi: int) -> bytes:
    """The PNG with its resolution recorded (a pHYs chunk), so a slide tool sizes it right."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(png))
    out = io.BytesIO()
    image.save(out, format="PNG", dpi=(dpi, dpi))
    return out.getvalue()


# --- values of steps ------------------------------------------------------------------------
def heads_first(value: Tensor, name: str, config: GPT2Config | None = None) -> Tensor:
    """One prompt's value of a per-head step with its head axis first: [H, ...] (or [K, ...]
    for grouped-query keys and values). Where the head axis is comes from the step's shape in
    ``hooks.steps(config)`` (``[B, H, T, D]`` or another)."""
    axis = head_axis(name, config)
    if axis is None:
        raise UsageError(f"{name} is not split into heads")
    return value.movedim(axis - 1, 0)


def _patterns(trace: Trace, layers: list[int] | None) -> tuple[list[int], list]:
    """The attention patterns of ``layers`` (default: every block the trace kept) as
    [layer][head][query][key <= query], rounded to 3 decimals (a long prompt has many)."""
    n_layer = trace.config.n_layer
    kept = [L for L in range(n_layer) if f"blocks.{L}.attn.hook_pattern" in trace]
    if layers is None:
        layers = kept
    for L in layers:
        check_index("layer", L, n_layer)
        if L not in kept:
            raise UsageError(
                f"the trace lacks blocks.{L}.attn.hook_pattern; keep it with "
                "run_with_cache(model, prompt, names='blocks.*.attn.hook_pattern')"
            )
    if not layers:
        raise UsageError("the trace kept no attention pattern (blocks.*.attn.hook_pattern)")
    out = []
    for L in layers:
        pattern = trace[f"blocks.{L}.attn.hook_pattern"][0].float()  # [H, T, S]
        rows = _round(pattern, digits=3)
        out.append([[row[: q + 1] for q, row in enumerate(head)] for head in rows])
    return layers, out


def _round(values: Tensor, digits: int = 4) -> list:
    return torch.round(values.double(), decimals=digits).tolist()


def _one_prompt(trace: Trace) -> None:
    if trace.ids.shape[0] != 1:
        raise UsageError(f"a view shows one prompt; the trace has {trace.ids.shape[0]}")


# --- the views --------------------------------------------------------------------------------
def attention_lines(
    trace: Trace,
    *,
    layer: int | None = None,
    heads: list[int] | None = None,
    layers: list[int] | None = None,
) -> View:
    """Attention as lines from each token to those it attends to, a colour per head (all heads
    unless ``heads``), for block ``layer`` (default: the first kept), with a menu of ``layers``
    (default: every block whose pattern the trace kept)."""
    _one_prompt(trace)
    layers, patterns = _patterns(trace, layers)
    n_head = trace.config.n_head
    shown = list(range(n_head)) if heads is None else list(heads)
    for h in shown:
        check_index("head", h, n_head)
    if layer is None:
        layer = layers[0]
    elif layer not in layers:
        raise UsageError(f"layer {layer} is not among the layers shown ({layers})")
    data = {
        "tokens": trace.tokens(0),
        "layers": layers,
        "n_head": n_head,
        "patterns": patterns,
        "layer": layer,
        "heads": shown,
    }
    return View("attentionLines", data, "attention lines")


def attention_heads(trace: Trace, *, layers: list[int] | None = None) -> View:
    """Every head's attention pattern in a grid: a row per block, a column per head."""
    _one_prompt(trace)
    layers, patterns = _patterns(trace, layers)
    data = {
        "tokens": trace.tokens(0),
        "layers": layers,
        "n_head": trace.config.n_head,
        "patterns": patterns,
    }
    return View("attentionHeads", data, "every attention head")


def colored_text(tokens: list[str], values: Tensor | list[float], label: str) -> View:
    """Tokens on backgrounds coloured by one value each (a neuron, a direction, a norm)."""
    values = torch.as_tensor(values, dtype=torch.float32).flatten()
    if values.numel() != len(tokens):
        raise UsageError(
            f"colored_text needs one value per token ({len(tokens)}), got {values.numel()}"
        )
    if not torch.isfinite(values).all():
        raise UsageError("colored_text: the values must be finite")
    data = {"tokens": list(tokens), "values": values.tolist(), "label": label}
    return View("coloredText", data, label)


def neuron_text(trace: Trace, layer: int, neuron: int, *, step: str = "mlp.hook_post") -> View:
    """The text coloured by one MLP neuron of block ``layer`` (after the GELU by default)."""
    _one_prompt(trace)
    name = f"blocks.{layer}.{step}"
    value = trace[name][0]  # [T, 4C]
    check_index("neuron", neuron, value.shape[-1])
    return colored_text(trace.tokens(0), value[:, neuron], f"{short_name(name)} neuron {neuron}")


def direction_text(trace: Trace, name: str, direction: Tensor, *, label: str = "") -> View:
    """The text coloured by each position's value of step ``name`` along ``direction`` [C]:
    x_t · direction (a steering vector, a probe, an unembedding row)."""
    _one_prompt(trace)
    value = trace[name][0].float()  # [T, C]
    direction = torch.as_tensor(direction).detach().to(value.device, torch.float32).flatten()
    if value.dim() != 2 or direction.numel() != value.shape[-1]:
        raise UsageError(
            f"the direction needs {value.shape[-1]} channels to match {name} "
            f"{list(value.shape)}, got {direction.numel()}"
        )
    return colored_text(
        trace.tokens(0), value @ direction, label or f"{short_name(name)} · direction"
    )


def head_norm_text(model: GPT2, trace: Trace, layer: int, head: int) -> View:
    """The text coloured by the norm of one head's output at each position, ‖z_h @ W_O[h]‖:
    what the head adds to the residual stream (its share of attn_out, bias aside)."""
    from ..lens import head_outputs

    _one_prompt(trace)
    name = f"blocks.{layer}.attn.hook_z"
    check_index("head", head, model.config.n_head)
    z = trace[name][0]  # [T, H, D], as hook_z holds it and head_outputs takes it
    attn = model.transformer.h[layer].attn
    with torch.no_grad():
        out = head_outputs(attn, z.to(attn.c_proj.weight))[:, head]  # [T, C]
    return colored_text(
        trace.tokens(0), out.norm(dim=-1).cpu(), f"block {layer} head {head} ‖output‖"
    )


def next_tokens(trace: Trace, *, k: int = 5) -> View:
    """The ``k`` most likely next tokens at every position, and the probability of the token
    that really comes next."""
    _one_prompt(trace)
    probs = trace.probs[0]  # [T, V]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= probs.shape[-1]:
        raise UsageError(f"k must be an integer in [1, {probs.shape[-1]}], got {k!r}")
    top_p, top_i = probs.topk(k, dim=-1)
    ids = trace.ids[0].cpu()
    real = probs[torch.arange(len(ids) - 1), ids[1:]].tolist()
    decode = _decoder(trace)
    data = {
        "tokens": trace.tokens(0),
        "top_tokens": [[decode(i) for i in row] for row in top_i.tolist()],
        "top_probs": _round(top_p),
        "next_probs": [*real, None],
    }
    return View("nextTokens", data, "next-token probabilities")


def lens_view(lens: LogitLens) -> View:
    """The logit lens as a grid of points x positions: the top token and its probability, and
    the target's rank when the lens follows one."""
    rank = lens.target_rank
    target_ids = lens.target_ids
    targets = None
    if target_ids is not None:
        # The target's text is in the top tokens only where it ranks high: name it by id there.
        known: dict[int, str] = {}
        for ids, texts in zip(lens.top_ids.flatten(0, 1).tolist(), chain(*lens.top_tokens)):
            known.update(zip(ids, texts))
        targets = [known.get(i, f"id {i}") if i >= 0 else "" for i in target_ids.tolist()]
    data = {
        "points": [short_name(p) for p in lens.points],
        "tokens": lens.tokens,
        "top_tokens": lens.top_tokens,
        "top_probs": _round(lens.top_probs),
        "target_rank": None if rank is None else rank.tolist(),
        "target_tokens": targets,
    }
    return View("logitLens", data, "logit lens")


def saliency_view(result: Saliency) -> View:
    """Each input token coloured by its saliency for the output, one line per method."""
    data = {
        "tokens": result.tokens,
        "position": result.position,
        "target": result.target_text,
        "log_prob": result.log_prob,
        "methods": result.scores(),
    }
    return View("saliency", data, f"saliency for {result.target_text!r}")


# --- the model map ----------------------------------------------------------------------------
_GROUPS = {
    "hook_embed": "embeddings",
    "hook_pos_embed": "embeddings",
    "ln1": "ln1",
    "attn": "attn",
    "hook_attn_out": "attn",
    "ln2": "ln2",
    "mlp": "mlp",
    "hook_mlp_out": "mlp",
    "ln_final": "ln_final",
    "hook_logits": "unembed",
    "hook_probs": "sampling",
}
_PREVIEW_ROWS, _PREVIEW_COLUMNS = 12, 6


def map_group(name: str) -> str:
    """The part of the model a step belongs to, as the model map groups them."""
    parts = name.split(".")
    inner = parts[2] if parts[0] == "blocks" else parts[0]
    return _GROUPS.get(inner, "resid")


_LABELS = {"unmasked_scores": "unmasked", "attn_scores": "masked", "normalized": "norm"}


def _label(name: str) -> str:
    """A step's short label in its group: blocks.{L}.attn.hook_q -> q"""
    label = name.rsplit(".", 1)[-1].removeprefix("hook_")
    return _LABELS.get(label, label)


def model_map(
    model_or_config: GPT2 | GPT2Config,
    trace: Trace | None = None,
    *,
    layer: int = 0,
    here: str | None = None,
    selected: str | None = None,
    head: int = 0,
    name: str = "",
) -> View:
    """The model as a diagram of its named steps (``STEPS``). With a ``trace``, clicking a step
    shows its values (those the trace kept, of block ``layer`` and the steps outside blocks;
    per-head steps for ``head``). ``here``: a step marked "you are here"."""
    from ..inspection import step_table

    config = model_or_config if isinstance(model_or_config, GPT2Config) else model_or_config.config
    check_index("layer", layer, config.n_layer)
    check_index("head", head, config.n_head)
    for step in (here, selected):
        if step is not None:
            describe(step, config)  # a clear error for an unknown name
    steps = [
        {**vars(s), "group": map_group(s.name), "label": _label(s.name)} for s in step_table(config)
    ]
    values = {}
    if trace is not None:
        _one_prompt(trace)
        for full in trace:
            if full.startswith("blocks.") and not full.startswith(f"blocks.{layer}."):
                continue
            values[full] = _preview(trace, full, head)
    model = {
        "name": name,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_embd": config.n_embd,
        "vocab_size": config.vocab_size,
        "norm": "RMSNorm" if config.norm == "rmsnorm" else "layer norm",
        "post_norm": config.norm_position == "post",
    }
    data = {
        "model": model,
        "steps": steps,
        "layer": layer,
        "here": here,
        "selected": selected,
        "values": values,
    }
    return View("modelMap", data, "model map")


def _preview(trace: Trace, name: str, head: int) -> dict[str, Any]:
    """A step's shape, statistics and a small table of its values: positions x the first
    channels (one head's, for per-head steps; the top tokens, for vocabulary steps)."""
    value = trace[name][0].float()
    flat = value[torch.isfinite(value)]  # the masked scores' -inf are left out
    if flat.numel() == 0:
        flat = torch.zeros(1)
    stats = {
        "mean": float(flat.mean()),
        "std": float(flat.std()) if flat.numel() > 1 else 0.0,
        "min": float(flat.min()),
        "max": float(flat.max()),
    }
    shape = [1, *value.shape]
    config = trace.config
    axes = describe(name, config).shape.strip("[]").split(", ")
    rows = [f"{t} {tok!r}"[:14] for t, tok in enumerate(trace.tokens(0))][:_PREVIEW_ROWS]
    if head_axis(name, config) is not None:
        value = heads_first(value, name, config)[head_index(name, head, config)]
        rows = [f"h{head} {r}"[:14] for r in rows]
    if axes[-1] == "V":
        top_p, top_i = value[:_PREVIEW_ROWS].softmax(-1).topk(3, dim=-1)
        decode = _decoder(trace)
        cells = [
            [f"{decode(i)!r} {p:.2f}" for i, p in zip(ids, ps)]
            for ids, ps in zip(top_i.tolist(), top_p.tolist())
        ]
        return {
            "shape": shape,
            "stats": stats,
            "rows": rows,
            "columns": ["1st", "2nd", "3rd"],
            "values": cells,
        }
    table = value[:_PREVIEW_ROWS, :_PREVIEW_COLUMNS]
    cells = [[v if math.isfinite(v) else str(v) for v in row] for row in _round(table)]
    return {
        "shape": shape,
        "stats": stats,
        "rows": rows,
        "columns": [str(c) for c in range(table.shape[-1])],
        "values": cells,
    }


def _decoder(trace: Trace) -> Callable[[int], str]:
    tokenizer = trace.tokenizer
    if tokenizer is None:
        return str
    return lambda i: tokenizer.decode([i])


__all__ = [
    "DPI",
    "View",
    "attention_heads",
    "attention_lines",
    "colored_text",
    "direction_text",
    "head_norm_text",
    "heads_first",
    "lens_view",
    "map_group",
    "model_map",
    "neuron_text",
    "next_tokens",
    "saliency_view",
    "script",
]
