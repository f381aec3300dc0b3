"""Each interactive view in a real browser (Debian's Chromium, driven by Playwright): its
script ran, it drew what the data says, hover and clicks change it, and nothing was fetched
from the network. The views are opened as standalone files, the way a saved view or the HTML
report opens, and two in one page, the way a notebook shows them."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from test_web_browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT

from gpt2lab.hooks import STEPS
from gpt2lab.lens import logit_lens
from gpt2lab.saliency import saliency
from gpt2lab.trace import run_with_cache
from gpt2lab.viz import views

PROMPT = "Mike is quick. He moves"
T = 6  # tokens of PROMPT
MIN_WEIGHT = 0.01  # common.js's: smaller weights are not drawn


def drawn(pattern, query: int | None = None) -> int:
    """How many weights of a traced pattern [..., T, S] the views draw (of one query): those
    that reach MIN_WEIGHT once rounded to the 3 decimals the views get."""
    pattern = torch.round(pattern.double(), decimals=3)
    below = torch.ones(T, T).tril().bool()
    if query is not None:
        below[torch.arange(T) != query] = False
    return int(((pattern >= MIN_WEIGHT) & below).sum())


pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs /usr/bin/chromium: apt-get install chromium"
)


@pytest.fixture(scope="module")
def trace(tiny):
    return run_with_cache(tiny, PROMPT)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def show(browser, tmp_path):
    """Open views as one standalone file; fail on any request that is not file: or data:, and
    on any script error."""
    page = browser.new_page(viewport=VIEWPORT)
    fetched: list[str] = []
    errors: list[str] = []

    def route(r):
        url = r.request.url
        if url.startswith(("file:", "data:")):
            r.continue_()
        else:
            fetched.append(url)
            r.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda error: errors.append(str(error)))

    def open_views(*shown: views.View):
        body = "\n".join(v.html() for v in shown)
        path = tmp_path / "view.html"
        path.write_text(f'<!DOCTYPE html><meta charset="utf-8"><body>{body}</body>')
        page.goto(path.as_uri())
        page.wait_for_function(
            f"document.querySelectorAll('.gpt2lab-view[data-ready]').length === {len(shown)}"
        )
        return page

    yield open_views
    page.close()
    assert fetched == [], f"fetched from the network: {fetched}"
    assert errors == [], errors


def visible(page, selector: str) -> int:
    return page.evaluate(
        "s => [...document.querySelectorAll(s)].filter(e => "
        "e.getAttribute('visibility') !== 'hidden').length",
        selector,
    )


def test_attention_lines(show, trace):
    page = show(views.attention_lines(trace, layer=1))
    pattern = trace["blocks.1.attn.hook_pattern"][0]
    lines = page.locator("line.line")
    assert lines.count() == drawn(pattern) > 70  # every head, the keys up to the query
    k = int(pattern[2, 4].argmax())  # query 4's strongest line in head 2
    one = page.locator(f'line[data-h="2"][data-q="4"][data-k="{k}"]')
    assert float(one.get_attribute("stroke-opacity")) == pytest.approx(
        float(pattern[2, 4, k]), abs=5e-4
    )
    page.hover('text.query[data-i="3"]')
    assert visible(page, "line.line") == drawn(pattern, query=3)  # the lines of query 3 only
    assert page.locator(".caption").inner_text().startswith('"." attends to:')
    page.mouse.move(0, 0)
    assert visible(page, "line.line") == drawn(pattern)
    page.click('rect.head[data-h="0"]')  # hide head 0
    assert lines.count() == drawn(pattern[1:])
    page.select_option("select.layer", "4")
    pattern = trace["blocks.4.attn.hook_pattern"][0]
    w = float(page.locator('line[data-h="3"][data-q="5"][data-k="5"]').get_attribute("data-w"))
    assert w == pytest.approx(float(pattern[3, 5, 5]), abs=5e-4)


def test_every_head_and_two_views_in_one_page(show, trace):
    page = show(views.attention_heads(trace), views.next_tokens(trace, k=3))
    heads = page.locator('[data-view="heads"] g.head')
    assert heads.count() == 36
    patterns = torch.stack([trace[f"blocks.{L}.attn.hook_pattern"][0] for L in range(6)])
    assert page.locator('[data-view="heads"] rect.cell').count() == drawn(patterns)
    border = page.locator('g.head[data-layer="2"][data-h="5"] rect.border')
    assert border.get_attribute("stroke-width") == "1"
    page.hover('g.head[data-layer="2"][data-h="5"]')
    assert border.get_attribute("stroke-width") == "3"
    assert page.locator('[data-view="heads"] .caption').inner_text().startswith("block 2 head 5")
    # The second view drew too: its ids do not clash with the first's.
    assert page.locator('[data-view="next"] g.position').count() == T
    assert page.locator('[data-view="next"] rect.bar').count() == T * 3


def test_next_tokens(show, trace, tiny):
    page = show(views.next_tokens(trace, k=5))
    probs = trace.probs[0]
    top = probs.topk(5, dim=-1)
    bars = page.locator('g.position[data-t="2"] rect.bar')
    assert [float(b.get_attribute("data-p")) for b in bars.all()] == pytest.approx(
        top.values[2].tolist(), abs=1e-4
    )
    ids = trace.ids[0].tolist()
    real = sum(ids[t + 1] in top.indices[t].tolist() for t in range(T - 1))
    assert page.locator("rect.real").count() == real
    page.hover('g.position[data-t="4"]')
    caption = page.locator(".caption").inner_text()
    assert caption.startswith('after " He":') and f"{float(probs[4, ids[5]]):.3f}" in caption


def test_colored_text(show, trace):
    page = show(views.neuron_text(trace, 2, 7))
    tokens = page.locator("g.token")
    assert tokens.all_text_contents() == ["Mike", " is", " quick", ".", " He", " moves"]
    values = trace["blocks.2.mlp.hook_post"][0, :, 7]
    shown = [float(t.get_attribute("data-value")) for t in tokens.all()]
    assert shown == pytest.approx(values.tolist(), abs=1e-5)
    page.hover('g.token[data-i="4"]')
    assert page.locator(".caption").inner_text().endswith(f'" He" = {float(values[4]):.3f}')
    assert page.locator('g.token[data-i="4"] rect').get_attribute("stroke") == "#000"


def test_logit_lens(show, trace, tiny):
    lens = logit_lens(tiny, trace, target="next", points="post")
    page = show(views.lens_view(lens))
    cells = page.locator("g.cell")
    assert cells.count() == 7 * T
    tops = page.locator('g.cell[data-p="6"] text.top').all_text_contents()
    assert tops == [f'"{row[0]}"'.replace("\n", "\\n") for row in lens.top_tokens[6]]
    rank = int(lens.target_rank[3, 2])
    assert f"rank {rank}" in page.locator('g.cell[data-p="3"][data-t="2"] text.note').text_content()
    fill = page.locator('g.cell[data-p="3"][data-t="2"] rect')
    before = fill.get_attribute("fill")
    page.check("input.by-rank")
    assert fill.get_attribute("fill") != before
    page.hover('g.cell[data-p="3"][data-t="2"]')
    assert f"is ranked {rank}" in page.locator(".caption").inner_text()


def test_saliency(show, tiny):
    result = saliency(tiny, PROMPT, " fast", position=4)
    page = show(views.saliency_view(result))
    for method, scores in result.scores().items():
        cells = page.locator(f'g.token[data-method="{method}"]')
        assert cells.count() == 5  # the tokens up to position 4
        got = [float(c.get_attribute("data-value")) for c in cells.all()]
        assert got == pytest.approx(scores[:5], abs=1e-5)
    page.hover('g.token[data-method="ablation"][data-i="1"]')
    caption = page.locator(".caption").inner_text()
    assert caption.startswith('token 1 " is": gradient x input') and "ablation" in caption


def test_model_map(show, tiny, trace):
    page = show(views.model_map(tiny, trace, layer=1, here="blocks.1.hook_resid_mid"))
    block_steps = [s for s in STEPS if s.name.startswith("blocks.")]
    assert page.locator("g.step").count() == len(STEPS)
    assert (
        page.locator('g.step[data-step="blocks.1.hook_resid_mid"] rect').get_attribute("stroke")
        == "#e6550d"
    )
    assert page.locator("g.block").count() == 6
    page.click('g.step[data-step="blocks.1.mlp.hook_post"]')
    assert page.locator(".panel text.name").text_content() == "blocks.1.mlp.hook_post"
    first = page.locator(".panel text.value").first.text_content()
    assert float(first) == pytest.approx(float(trace["blocks.1.mlp.hook_post"][0, 0, 0]), abs=1e-3)
    page.click('g.block[data-layer="4"]')  # another block: its steps, the same one chosen
    names = [s.get_attribute("data-step") for s in page.locator("g.step").all()]
    assert sum(n.startswith("blocks.4.") for n in names) == len(block_steps)
    assert page.locator(".panel text.name").text_content() == "blocks.4.mlp.hook_post"
    assert "not in this view" in page.locator(".panel").text_content()  # only block 1 has values


@pytest.mark.parametrize("kind", ["llama", "gpt1"])
def test_model_map_follows_the_architecture(show, kind):
    """RMSNorm is named so; a post-norm block draws each norm after its sublayer, and a model
    with no final norm has no band for one."""
    from gpt2lab.config import GPT2Config
    from gpt2lab.hooks import steps

    switches = {
        "llama": {"positions": "rope", "norm": "rmsnorm", "activation": "swiglu", "n_kv_head": 1},
        "gpt1": {"norm_position": "post", "final_norm": False},
    }[kind]
    config = GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=2, n_head=2, **switches)
    page = show(views.model_map(config))
    assert page.locator("g.step").count() == len(steps(config))
    bands = page.locator("svg text").all_text_contents()
    if kind == "llama":
        assert "RMSNorm 1" in bands and "final RMSNorm" in bands and "layer norm 1" not in bands
        assert page.locator('g.step[data-step="blocks.0.attn.hook_rot_q"]').count() == 1
    else:
        assert not any(t.startswith("final") for t in bands)
        assert bands.index("attention") < bands.index("layer norm 1") < bands.index("MLP")


@pytest.mark.slow
def test_the_report_with_its_interactive_views(browser, tiny, tmp_path):
    from gpt2lab.inspection import inspect_prompt
    from gpt2lab.viz.html import write_html

    ins = inspect_prompt(tiny, PROMPT, layer=1, head=2, all_heads=True)
    path = write_html(ins, tmp_path / "report.html", interactive=True)
    page = browser.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.as_uri())
    page.wait_for_function("document.querySelectorAll('.gpt2lab-view[data-ready]').length === 4")
    kinds = page.eval_on_selector_all(".gpt2lab-view", "views => views.map(v => v.dataset.view)")
    assert kinds == ["map", "attention", "heads", "lens"]
    assert page.locator("table.lens-top").count() == 1  # the tables are still there
    assert page.locator(".panel text.name").text_content() == "blocks.1.attn.hook_pattern"
    assert errors == []
    page.close()


def test_outputs_inserted_as_jupyterlab_does(browser, trace):
    """JupyterLab (and VS Code, Colab) put an output's HTML in with innerHTML, where scripts do
    not run, then replace each <script> with a fresh copy, which runs: two views side by side."""
    page = browser.new_page(viewport=VIEWPORT)
    page.set_content("<body><div id='out1'></div><div id='out2'></div></body>")
    outputs = [views.attention_heads(trace).html(), views.neuron_text(trace, 0, 1).html()]
    page.evaluate(
        """outputs => outputs.forEach((html, i) => {
          const out = document.getElementById(`out${i + 1}`);
          out.innerHTML = html;
          for (const old of out.querySelectorAll("script")) {
            const script = document.createElement("script");
            script.textContent = old.textContent;
            old.replaceWith(script);
          }
        })""",
        outputs,
    )
    page.wait_for_function("document.querySelectorAll('.gpt2lab-view[data-ready]').length === 2")
    assert page.locator("#out1 g.head").count() == 36
    assert page.locator("#out2 g.token").count() == T
    assert "trust the notebook" not in page.inner_text("body")
    page.close()


def test_the_save_buttons_give_the_svg_and_a_300_dpi_png(show, trace, tmp_path):
    from PIL import Image

    page = show(views.neuron_text(trace, 0, 1))
    with page.expect_download() as saved:
        page.click("button.save-svg")
    svg = Path(saved.value.path()).read_text()
    assert svg.startswith("<svg") and svg.count('class="token"') == T
    with page.expect_download() as saved:
        page.click("button.save-png")
    width = page.locator(".gpt2lab-view svg").evaluate("s => s.width.baseVal.value")
    png = Image.open(saved.value.path())
    assert png.size[0] == math.ceil(width * 300 / 96)  # 300 dpi at the view's size
