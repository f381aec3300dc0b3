"""The web app as an explainer, in Chromium: the model map above the cells (where the notebook
stands; a click goes to a step), attention lines and every head drawn by the views of
gpt2lab.viz.views, and the address holding model, prompt, block, cell and edits, so that a link
reopens the same view. Nothing is fetched from anywhere but the server."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from test_views_browser import drawn
from test_web_browser import CHROMIUM, CHROMIUM_ARGS, PROMPT, VIEWPORT, server  # noqa: F401

from gpt2lab.trace import ablate_head, run_with_cache

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs /usr/bin/chromium: apt-get install chromium"
)


@pytest.fixture(scope="module")
def page(server):  # noqa: F811
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.errors = []
        page.elsewhere = []  # requests to anywhere but the server
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.on(
            "request",
            lambda r: r.url.startswith((server, "data:")) or page.elsewhere.append(r.url),
        )
        yield page
        assert page.errors == [] and page.elsewhere == []
        browser.close()


def link(server, **state) -> str:  # noqa: F811
    return f"{server}/#{urlencode(state)}"


def current(page) -> str:
    return page.locator("section.cell.current").get_attribute("data-cell")


def test_a_link_reopens_the_step_and_the_map_shows_it(page, server):  # noqa: F811
    page.goto(link(server, model="tiny", prompt=PROMPT, layer=1, cell="blocks.1.attn.hook_q"))
    page.wait_for_selector(
        '#map-panel .gpt2lab-view[data-ready] g.step[data-step="blocks.1.attn.hook_q"]'
    )
    assert current(page) == "blocks.1.attn.hook_q"
    assert page.input_value("#layer") == "1" and page.input_value("#prompt") == PROMPT
    here = page.locator('#map-panel g.step[data-step="blocks.1.attn.hook_q"] rect')
    assert here.get_attribute("stroke") == "#e6550d"  # "you are here"

    # A click on the map goes to that step's cell, and the address follows.
    page.click('#map-panel g.step[data-step="blocks.1.mlp.hook_post"]')
    page.wait_for_function("location.hash.includes('cell=blocks.1.mlp.hook_post')")
    assert current(page) == "blocks.1.mlp.hook_post"
    assert (
        page.locator('#map-panel g.step[data-step="blocks.1.mlp.hook_post"] rect').get_attribute(
            "stroke"
        )
        == "#e6550d"
    )

    # A step of another block: the page re-runs on that block, then lands on it.
    page.click('#map-panel g.block[data-layer="4"]')
    page.click('#map-panel g.step[data-step="blocks.4.hook_resid_mid"]')
    page.wait_for_function("location.hash.includes('cell=blocks.4.hook_resid_mid')")
    assert page.input_value("#layer") == "4" and current(page) == "blocks.4.hook_resid_mid"


@pytest.mark.slow
def test_attention_lines_and_every_head_with_edits_from_the_link(page, server, tiny):  # noqa: F811
    edits = [{"kind": "ablate_head", "layer": 0, "head": 1}]
    page.goto(
        link(
            server,
            model="tiny",
            prompt=PROMPT,
            layer=2,
            cell="attention-lines",
            edits=json.dumps(edits),
        )
    )
    page.wait_for_selector('[data-cell="attention-lines"] .gpt2lab-view[data-ready]')
    assert page.locator("#edits .chip").count() == 1
    # The weights are the library's, with the link's edit applied.
    trace = run_with_cache(tiny, PROMPT, "blocks.2.attn.hook_pattern", edits=[ablate_head(0, 1)])
    lines = page.locator('[data-cell="attention-lines"] line.line')
    assert lines.count() == drawn(trace["blocks.2.attn.hook_pattern"][0])
    weight = float(trace["blocks.2.attn.hook_pattern"][0, 3, 5, 2])
    line = page.locator('[data-cell="attention-lines"] line[data-h="3"][data-q="5"][data-k="2"]')
    assert float(line.get_attribute("data-w")) == pytest.approx(weight, abs=5e-4)

    page.select_option(
        "#run-to",
        label=next(
            o for o in page.locator("#run-to option").all_text_contents() if "Every head" in o
        ),
    )
    page.wait_for_selector('[data-cell="every-head"] .gpt2lab-view[data-ready]')
    assert page.locator('[data-cell="every-head"] g.head').count() == 36
    page.click('[data-cell="every-head"] g.head[data-layer="3"][data-h="2"]')
    page.wait_for_function("location.hash.includes('cell=blocks.3.attn.hook_pattern')")
    assert page.input_value("#layer") == "3"
    assert "edits=" in page.evaluate("location.hash")  # the edits stay in the address
