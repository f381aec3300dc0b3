"""The interactive views' data (gpt2lab.viz.views) against the library's own values, and
saliency (gpt2lab.saliency) against brute force: finite differences and one run per token."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from gpt2lab.errors import UsageError
from gpt2lab.hooks import STEPS
from gpt2lab.lens import logit_lens
from gpt2lab.saliency import METHODS, saliency, target_log_prob
from gpt2lab.trace import ablate_head, run_with_cache, run_with_hooks
from gpt2lab.viz import views

PROMPT = "Mike is quick. He moves"


@pytest.fixture(scope="module")
def trace(tiny):
    return run_with_cache(tiny, PROMPT)


def test_attention_data_is_the_traced_pattern_below_the_diagonal(trace):
    view = views.attention_lines(trace, layer=2, heads=[1, 4])
    data = view.data
    assert data["layers"] == list(range(6)) and data["layer"] == 2 and data["heads"] == [1, 4]
    pattern = trace["blocks.3.attn.hook_pattern"][0]
    rows = data["patterns"][3][5]
    assert [len(r) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert torch.allclose(torch.tensor(rows[4]), pattern[5, 4, :5], atol=5e-4)
    assert views.attention_heads(trace, layers=[0, 5]).data["patterns"][1] == data["patterns"][5]


def test_a_trace_without_patterns_is_refused(tiny):
    small = run_with_cache(tiny, PROMPT, "blocks.1.attn.hook_pattern")
    assert views.attention_lines(small).data["layers"] == [1]
    with pytest.raises(UsageError, match=r"lacks blocks\.0\.attn\.hook_pattern"):
        views.attention_heads(small, layers=[0])
    with pytest.raises(UsageError, match="kept no attention pattern"):
        views.attention_lines(run_with_cache(tiny, PROMPT, "hook_embed"))


def test_text_views_colour_by_the_traced_values(tiny, trace):
    neuron = views.neuron_text(trace, 2, 7).data
    assert neuron["tokens"] == trace.tokens(0)
    expected = trace["blocks.2.mlp.hook_post"][0, :, 7]
    assert torch.allclose(torch.tensor(neuron["values"]), expected)
    direction = torch.randn(tiny.config.n_embd, generator=torch.Generator().manual_seed(0))
    along = views.direction_text(trace, "blocks.4.hook_resid_post", direction).data["values"]
    assert torch.allclose(torch.tensor(along), trace["blocks.4.hook_resid_post"][0] @ direction)
    with pytest.raises(UsageError, match="needs 192 channels"):
        views.direction_text(trace, "blocks.4.hook_resid_post", torch.ones(5))


def test_head_norm_is_what_the_head_alone_adds(tiny, trace):
    layer, head = 1, 3
    norms = torch.tensor(views.head_norm_text(tiny, trace, layer, head).data["values"])
    # Brute force: silence every other head; attn_out is then z_h @ W_O[h] + b_O.
    others = [ablate_head(layer, h) for h in range(tiny.config.n_head) if h != head]
    alone = run_with_cache(tiny, PROMPT, f"blocks.{layer}.hook_attn_out", edits=others)
    bias = tiny.transformer.h[layer].attn.c_proj.bias
    expected = (alone[f"blocks.{layer}.hook_attn_out"][0] - bias).norm(dim=-1)
    assert torch.allclose(norms, expected, atol=1e-4)


def test_heads_first_reads_the_head_axis_from_the_step_shape(trace):
    z = trace["blocks.0.attn.hook_z"][0]
    axes = next(s.shape for s in STEPS if s.name.endswith("attn.hook_z")).strip("[]").split(", ")
    first = views.heads_first(z, "blocks.0.attn.hook_z")
    assert first.shape[0] == 6 and torch.equal(first, z.movedim(axes.index("H") - 1, 0))
    with pytest.raises(UsageError, match="not split into heads"):
        views.heads_first(trace["blocks.0.hook_resid_pre"][0], "blocks.0.hook_resid_pre")


def test_next_tokens_are_the_traced_probabilities(tiny, trace):
    data = views.next_tokens(trace, k=3).data
    probs = trace.probs[0]
    ids = trace.ids[0]
    assert data["next_probs"][-1] is None
    assert data["next_probs"][:-1] == pytest.approx(probs[torch.arange(5), ids[1:]].tolist())
    top = probs[2].topk(3)
    assert data["top_tokens"][2] == [tiny.tokenizer.decode([i]) for i in top.indices.tolist()]
    assert data["top_probs"][2] == pytest.approx(top.values.tolist(), abs=1e-4)


def test_lens_view_has_the_lens_ranks(tiny, trace):
    lens = logit_lens(tiny, trace, target="next", points="post")
    data = views.lens_view(lens).data
    assert data["points"][0] == "b0.resid_pre" and len(data["points"]) == 7
    assert data["target_rank"] == lens.target_rank.tolist()
    assert data["top_tokens"] == lens.top_tokens
    assert data["target_tokens"][-1] == ""  # no next token after the last


def test_model_map_lists_every_step_with_values_of_one_block(tiny, trace):
    view = views.model_map(tiny, trace, layer=2, here="blocks.2.attn.hook_q", head=1)
    data = view.data
    assert [s["name"] for s in data["steps"]] == [s.name for s in STEPS]
    assert {s["group"] for s in data["steps"]} == {
        "embeddings",
        "resid",
        "ln1",
        "attn",
        "ln2",
        "mlp",
        "ln_final",
        "unembed",
        "sampling",
    }
    assert data["steps"][0]["shape"] == "[B, T, 192]"
    assert "blocks.2.attn.hook_pattern" in data["values"]
    assert not any(name.startswith("blocks.1.") for name in data["values"])
    pattern = data["values"]["blocks.2.attn.hook_pattern"]
    assert pattern["shape"] == [1, 6, 6, 6]
    expected = trace["blocks.2.attn.hook_pattern"][0, 1, 3, :6]
    assert torch.allclose(torch.tensor(pattern["values"][3]), expected, atol=1e-4)
    logits = data["values"]["hook_logits"]["values"]
    assert logits[5][0].startswith(repr(tiny.tokenizer.decode([int(trace.logits[0, 5].argmax())])))
    with pytest.raises(UsageError, match="unknown step"):
        views.model_map(tiny, here="blocks.0.attn.hook_nothing")
    assert views.model_map(tiny.config).data["values"] == {}


def test_html_is_self_contained_with_unique_ids(trace):
    view = views.next_tokens(trace)
    one, two = view._repr_html_(), view._repr_html_()
    ids = [h.split('id="', 1)[1].split('"', 1)[0] for h in (one, two)]
    assert ids[0] != ids[1] and ids[0].startswith("gpt2lab-view-")
    assert "<script>" in one and "import " not in one and "export " not in one
    page = view.html(standalone=True)
    assert (
        page.startswith("<!DOCTYPE html>") and "src=" not in page and '<link rel="style' not in page
    )
    text = views.colored_text(["a", "</script>"], [1.0, 2.0], "x").html()
    assert '</script>"' not in text and "<\\/script>" in text


def test_save_refuses_other_formats(trace, tmp_path):
    view = views.next_tokens(trace)
    assert view.save(tmp_path / "v.html").read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(UsageError, match=r"as \.html, \.svg or \.png"):
        view.save(tmp_path / "v.pdf")
    with pytest.raises(UsageError, match="dpi"):
        view.save(tmp_path / "v.png", dpi=10)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs /usr/bin/chromium")
def test_save_as_svg_and_png(trace, tmp_path):
    from PIL import Image

    view = views.attention_heads(trace, layers=[0])
    svg = view.save(tmp_path / "heads.svg").read_text()
    pattern = torch.round(trace["blocks.0.attn.hook_pattern"][0].double(), decimals=3)
    drawn = (pattern.tril() >= 0.01).sum()
    assert svg.startswith("<?xml") and svg.count('class="cell"') == drawn

    async def cell():  # a Jupyter kernel runs each cell with an event loop running
        return view.save(tmp_path / "heads.png", dpi=200)

    png = Image.open(asyncio.run(cell()))
    assert png.info["dpi"] == pytest.approx((200, 200), abs=0.5)
    width = float(svg.split('width="', 1)[1].split('"', 1)[0])
    assert png.size[0] == pytest.approx(width * 200 / 96, abs=2)


@pytest.mark.slow
def test_cli_report_with_interactive_views(capsys, cached_tiny, tmp_path):
    from gpt2lab.cli import main

    path = tmp_path / "report.html"
    assert main(["inspect", PROMPT, "--model", "tiny", "--html", str(path), "--interactive"]) == 0
    text = path.read_text(encoding="utf-8")
    for function in ("modelMap", "attentionLines", "attentionHeads", "logitLens"):
        assert f"{function}({{" in text  # each view's call, with its data
    assert main(["inspect", PROMPT, "--model", "tiny", "--interactive"]) == 2
    assert "add --html PATH" in capsys.readouterr().err


# --- saliency ---------------------------------------------------------------------------------
def _log_prob(model, ids, position, target, fn):
    logits = run_with_hooks(model, ids, {"hook_embed": fn})
    return float(target_log_prob(logits, position, target)[0])


def test_saliency_against_brute_force(tiny):
    result = saliency(tiny, PROMPT, " fast", position=4)
    ids = torch.tensor([tiny.tokenizer.encode(PROMPT)[:5]])  # what position 4 sees
    target = tiny.tokenizer.encode(" fast")[0]
    assert result.target == target and result.position == 4 and result.tokens[1] == " is"
    assert list(result.scores()) == list(METHODS)
    base = _log_prob(tiny, ids, 4, target, lambda e, _n: e)
    assert result.log_prob == pytest.approx(base, abs=1e-5)
    eps = 1e-2
    for s in (0, 2, 4):

        def scaled(alpha, s=s):
            def fn(e, _name):
                e = e.clone()
                e[:, s] *= alpha
                return e

            return fn

        # d/dα f(e_s · α) at α = 1 is ∂f/∂e_s · e_s: the gradient × input, by central difference.
        up = _log_prob(tiny, ids, 4, target, scaled(1 + eps))
        down = _log_prob(tiny, ids, 4, target, scaled(1 - eps))
        assert float(result.gradient_x_input[s]) == pytest.approx((up - down) / (2 * eps), abs=3e-3)
        removed = _log_prob(tiny, ids, 4, target, scaled(0.0))
        assert float(result.ablation[s]) == pytest.approx(base - removed, abs=1e-4)
    assert result.ablation[5] == 0 and result.gradient_x_input[5] == 0  # after the position


def test_saliency_refuses_bad_input(tiny):
    with pytest.raises(UsageError, match="position"):
        saliency(tiny, PROMPT, " fast", position=6)
    with pytest.raises(UsageError, match="one prompt"):
        saliency(tiny, [PROMPT, PROMPT], " fast")
    data = views.saliency_view(saliency(tiny, PROMPT, 262)).data
    assert data["position"] == 5 and set(data["methods"]) == set(METHODS)


# --- the JavaScript ---------------------------------------------------------------------------
SCRIPTS = sorted(views.SCRIPTS.glob("*.js"))


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_view_scripts_stay_plain(path):
    """The web page's rules (tests/test_web_static.py): ts-check, short lines, local imports."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith("// @ts-check\n")
    assert all(len(line) <= 100 for line in text.splitlines())
    sources = re.findall(r'^import [^;]* from "([^"]+)";$', text, re.MULTILINE)
    assert all(s == "./common.js" for s in sources), sources


@pytest.mark.parametrize("function", sorted(views.VIEWS))
def test_each_view_is_exported_and_inlines_as_a_classic_script(function, tmp_path):
    module = (views.SCRIPTS / views.VIEWS[function]).read_text(encoding="utf-8")
    assert f"export function {function}(" in module
    inlined = views.script(function)
    assert "import " not in inlined and "\nexport " not in inlined
    if shutil.which("node"):  # a syntax check of what a notebook runs
        (tmp_path / "view.js").write_text(inlined)
        subprocess.run(["node", "--check", str(tmp_path / "view.js")], check=True)
