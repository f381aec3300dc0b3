"""The web app's view cells for the text coloured by an activation and for saliency: the API
answers with the library's numbers (gpt2lab.viz.views, gpt2lab.saliency) and refuses bad input
in one line with a 4xx; in Chromium, each cell draws the view, hover changes it, its options go
into the address and a link reopens them, and nothing is fetched from anywhere but the server.
Also: what the browser scrolls into view is never left under the sticky bar."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest
from test_web_browser import CHROMIUM, PROMPT, server  # noqa: F401
from test_web_explainer import current, link, page  # noqa: F401

from gpt2lab.sae import active_features, load_sae
from gpt2lab.saliency import saliency
from gpt2lab.trace import run_with_cache
from gpt2lab.viz import views
from gpt2lab.web.app import create_app

DOG_FEATURE = 89  # of the bundled tiny-sae: fires on " dog" (docs/sae.md)
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs /usr/bin/chromium: apt-get install chromium"
)


@pytest.fixture(scope="module")
def trace(tiny):
    return run_with_cache(tiny, PROMPT)


def view(client, **fields) -> dict:
    answer = client.post("/api/view", json={"model": "tiny", "prompt": PROMPT} | fields)
    assert answer.status_code == 200, answer.text
    return answer.json()


# --- the API ----------------------------------------------------------------------------------
def test_text_coloured_by_a_neuron_a_head_and_a_direction(client, tiny, trace):
    got = view(client, view="text", layer=2, color="neuron", neuron=7)
    assert got == views.neuron_text(trace, 2, 7).data
    got = view(client, view="text", layer=1, color="head", head=3)
    assert got["values"] == pytest.approx(views.head_norm_text(tiny, trace, 1, 3).data["values"])
    got = view(client, view="text", layer=5, color="direction", token=" fast")
    fast = tiny.transformer.wte.weight[tiny.tokenizer.encode(" fast")[0]]
    expected = trace["blocks.5.hook_resid_post"][0] @ fast
    assert got["values"] == pytest.approx(expected.tolist(), abs=1e-4)
    assert got["label"] == "block 5 resid_post · W_E[' fast']"


def test_text_coloured_by_an_sae_feature(tiny):
    from fastapi.testclient import TestClient

    sae = load_sae("tiny-sae")
    prompt = "Tom has a dog. The dog"
    with TestClient(create_app({"tiny": tiny}, saes={"tiny-sae": sae})) as client:
        answer = client.post(
            "/api/view",
            json={
                "model": "tiny",
                "prompt": prompt,
                "view": "text",
                "color": "feature",
                "sae": "tiny-sae",
                "feature": DOG_FEATURE,
            },
        )
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["label"] == f"tiny-sae feature {DOG_FEATURE}"
    # The library's active features at the last " dog": this feature, with the same activation.
    token, top = active_features(tiny, sae, prompt, 16)[-1]
    assert token == " dog" and got["tokens"][-1] == " dog"
    assert got["values"][-1] == pytest.approx(dict(top)[DOG_FEATURE], abs=1e-4)


def test_saliency_is_the_librarys(client, tiny, trace):
    got = view(client, view="saliency", target=" fast")
    expected = saliency(tiny, PROMPT, " fast")
    assert got["target"] == " fast" and got["position"] == 5
    assert got["log_prob"] == pytest.approx(expected.log_prob, abs=1e-4)
    for method, scores in expected.scores().items():
        assert got["methods"][method] == pytest.approx(scores, abs=1e-4)
    # By default: the most likely token, read at the last position.
    got = view(client, view="saliency")
    top = int(trace.logits[0, -1].argmax())
    assert got["target"] == tiny.tokenizer.decode([top]) and got["edits_left_out"] == 0
    got = view(client, view="saliency", target=" fast", position=3)
    assert got["position"] == 3
    assert got["methods"]["ablation"][4:] == [0.0, 0.0]  # position 3 cannot see 4 and 5


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        (
            {"view": "text", "neuron": 99999},
            400,
            "neuron must be an integer in [0, 768), got 99999",
        ),
        ({"view": "text", "color": "head", "head": 6}, 400, "head must be an integer in [0, 6)"),
        ({"view": "text", "layer": 6}, 400, "layer must be an integer in [0, 6), got 6"),
        ({"view": "text", "color": "direction"}, 400, "colouring by a direction needs a token"),
        ({"view": "text", "color": "feature", "sae": "x"}, 404, "unknown SAE 'x'"),
        ({"view": "text", "neuron": -1}, 422, "neuron: Input should be greater than or equal"),
        ({"view": "saliency", "position": 6}, 400, "position must be an integer in [0, 6), got 6"),
        ({"view": "saliency", "target": "xx yy"}, 400, "'xx yy' is 3 tokens"),
        ({"view": "saliency", "target": ""}, 422, "target: String should have at least 1"),
    ],
)
def test_bad_input_is_refused_in_one_line(client, fields, status, message):
    answer = client.post("/api/view", json={"model": "tiny", "prompt": PROMPT} | fields)
    assert answer.status_code == status
    detail = answer.json()["detail"]
    assert message in detail and "\n" not in detail and "Traceback" not in detail


# --- in the browser ---------------------------------------------------------------------------
def options(page) -> dict:  # noqa: F811
    return {k: v[0] for k, v in parse_qs(page.evaluate("location.hash.slice(1)")).items()}


def drawn_values(cell) -> list[float]:
    return [float(t.get_attribute("data-value")) for t in cell.locator("g.token").all()]


@needs_chromium
def test_coloured_text_cell(page, server, tiny, trace):  # noqa: F811
    page.goto(link(server, model="tiny", prompt=PROMPT, layer=1, cell="colored-text",
                   color="head", head=3))  # fmt: skip
    cell = page.locator('[data-cell="colored-text"]')
    cell.locator(".gpt2lab-view[data-ready]").wait_for()
    assert current(page) == "colored-text"
    expected = views.head_norm_text(tiny, trace, 1, 3).data["values"]
    assert drawn_values(cell) == pytest.approx(expected, abs=1e-4)
    assert cell.locator("select[name=color]").input_value() == "head"

    # Hover a token: it is framed and the caption gives its value.
    page.hover('[data-cell="colored-text"] g.token[data-i="4"]')
    assert cell.locator('g.token[data-i="4"] rect').get_attribute("stroke") == "#000"
    assert cell.locator(".caption").inner_text().endswith(f'" He" = {expected[4]:.3f}')

    # Another colouring: the view and the address follow.
    cell.locator("select[name=color]").select_option("neuron")
    cell.locator("input[name=neuron]").fill("7")
    cell.locator("button[type=submit]").click()
    page.wait_for_function("location.hash.includes('neuron=7')")
    cell.locator(".gpt2lab-view[data-ready]").wait_for()
    values = trace["blocks.1.mlp.hook_post"][0, :, 7]
    assert drawn_values(cell) == pytest.approx(values.tolist(), abs=1e-4)
    assert options(page) | {"cell": "colored-text", "color": "neuron", "neuron": "7"} == options(
        page
    )
    assert "head" not in options(page)

    # A bad neuron: one line in the cell, the form stays to fix it.
    cell.locator("input[name=neuron]").fill("99999")
    cell.locator("button[type=submit]").click()
    error = cell.locator(".note.error")
    error.wait_for()
    assert error.inner_text() == "Neuron must be an integer in [0, 768), got 99999."
    assert cell.locator("input[name=neuron]").is_visible()

    # The link reopens the same view.
    page.goto(link(server, model="tiny", prompt=PROMPT, layer=5, cell="colored-text",
                   color="direction", token=" fast"))  # fmt: skip
    cell.locator(".gpt2lab-view[data-ready]").wait_for()
    assert cell.locator("input[name=token]").input_value() == " fast"
    assert "W_E[' fast']" in cell.locator(".caption").inner_text()


@needs_chromium
def test_saliency_cell(page, server, tiny):  # noqa: F811
    edits = [{"kind": "ablate_head", "layer": 0, "head": 1}]
    page.goto(link(server, model="tiny", prompt=PROMPT, layer=0, cell="saliency",
                   target=" fast", edits=json.dumps(edits)))  # fmt: skip
    cell = page.locator('[data-cell="saliency"]')
    cell.locator(".gpt2lab-view[data-ready]").wait_for()
    assert current(page) == "saliency"
    expected = saliency(tiny, PROMPT, " fast")
    for method, scores in expected.scores().items():
        shown = cell.locator(f'g.token[data-method="{method}"]')
        got = [float(t.get_attribute("data-value")) for t in shown.all()]
        assert got == pytest.approx(scores, abs=1e-4)
    assert cell.get_by_text("Saliency reads the model without the edits.").is_visible()

    page.hover('[data-cell="saliency"] g.token[data-method="ablation"][data-i="1"]')
    caption = cell.locator(".caption").inner_text()
    assert caption.startswith('token 1 " is": gradient x input') and "ablation" in caption

    # Another position: the view and the address follow; a bad one is one line.
    cell.locator("input[name=position]").fill("3")
    cell.locator("button[type=submit]").click()
    page.wait_for_function("location.hash.includes('position=3')")
    cell.locator(".gpt2lab-view[data-ready]").wait_for()
    assert cell.locator('g.token[data-method="ablation"]').count() == 4
    assert options(page)["target"] == " fast"
    cell.locator("input[name=target]").fill("xx yy")
    cell.locator("button[type=submit]").click()
    cell.locator(".note.error").wait_for()
    assert cell.locator(".note.error").inner_text().startswith("'xx yy' is 3 tokens")


@needs_chromium
def test_what_the_browser_scrolls_to_stays_below_the_bar(page, server):  # noqa: F811
    page.goto(link(server, model="tiny", prompt=PROMPT, layer=0, cell="saliency"))
    page.locator('[data-cell="saliency"] .gpt2lab-view[data-ready]').wait_for()
    page.wait_for_timeout(200)  # the landing's second scroll, once the cells above are drawn
    box = page.locator('[data-cell="saliency"] input[name=position]')
    bar = page.locator("#top").evaluate("e => e.getBoundingClientRect().bottom")
    # Put the input just under the bar (hidden by it), then let the browser bring it into view.
    box.evaluate("(e, bar) => window.scrollBy(0, e.getBoundingClientRect().top - bar + 10)", bar)
    assert box.evaluate("e => e.getBoundingClientRect().top") < bar  # under the bar
    box.evaluate("e => e.scrollIntoView({block: 'nearest'})")
    assert box.evaluate("e => e.getBoundingClientRect().top") >= bar
    page.evaluate("window.scrollBy(0, 40)")
    box.focus()
    assert box.evaluate("e => e.getBoundingClientRect().top") >= bar
    # A cell landed on starts below the bar too.
    page.select_option("#run-to", label=next(
        o for o in page.locator("#run-to option").all_text_contents() if "Sampling" in o
    ))  # fmt: skip
    page.wait_for_timeout(300)
    top = page.locator('[data-cell="sampling"]').evaluate("e => e.getBoundingClientRect().top")
    assert bar <= top <= bar + 40
