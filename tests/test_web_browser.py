"""The web app in a real browser: Debian's Chromium, driven by Playwright, against the real server.

The test loads the page, enters a prompt, walks the cells to the next token, ablates a head and
checks that the page shows the probabilities the library computes. It saves screenshots in its
tmp_path; ``GPT2LAB_SCREENSHOT_DIR=docs/images`` writes them where the docs show them instead.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import TINY_CONFIG

from gpt2lab.trace import ablate_head
from gpt2lab.web.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
# Chromium's own network traffic (updates, sync) is switched off: the machines have no network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PROMPT = "Mike is quick. He moves"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs /usr/bin/chromium: apt-get install chromium"
)


def pct(p: float) -> str:
    """A probability as the page writes it."""
    return f"{100 * p:.2f}%"


def quote(text: str) -> str:
    """A token as the page writes it (JSON.stringify)."""
    return json.dumps(text, ensure_ascii=False)


@pytest.fixture(scope="module")
def server(tiny) -> Iterator[str]:
    """The app under uvicorn in a thread, on a free port of 127.0.0.1; yields its URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        create_app({"tiny": tiny}), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.errors = []  # uncaught JavaScript errors
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        yield page
        browser.close()


def cell(page, key: str):
    return page.locator(f'[data-cell="{key}"]')


def wait_computed(page, key: str) -> None:
    """Wait until a cell has drawn its answer, and check that it is not an error."""
    page.wait_for_function(
        "key => { const body = document.querySelector(`[data-cell='${key}'] .body`);"
        " return body && !body.textContent.includes('computing…'); }",
        arg=key,
    )
    assert cell(page, key).locator(".error").count() == 0, cell(page, key).inner_text()


def test_walk_to_the_next_token_then_ablate_a_head(page, server, tiny, tmp_path):
    shots = Path(os.environ.get("GPT2LAB_SCREENSHOT_DIR", tmp_path))
    tok = tiny.tokenizer
    page.goto(server + "/")
    page.fill("#prompt", PROMPT)
    page.click("#run")

    # Text -> tokens, with each word's BPE merges.
    wait_computed(page, "tokens")
    ids = tok.encode(PROMPT)
    chips = cell(page, "tokens").locator(".tokens .tok").all_inner_texts()
    assert chips == [tok.id_to_token(i) for i in ids]
    words = tok.trace(PROMPT)
    assert cell(page, "tokens").locator("details.word").count() == len(words)
    quick = cell(page, "tokens").locator("details.word").nth(2)  # " quick"
    quick.locator("summary").click()
    quick.locator("table.merges").wait_for()  # drawn on the toggle event, which comes after
    ranks = quick.locator("table.merges td:nth-child(2)").all_inner_texts()[1:]
    assert ranks == [f"rank {m.rank}" for m in words[2].merges]

    # Walk the cells in order, one "Next cell" at a time, up to the next token.
    keys = page.eval_on_selector_all("section.cell", "cells => cells.map(c => c.dataset.cell)")
    assert keys[:4] == ["tokens", "ids", "hook_embed", "hook_pos_embed"]
    assert keys[-4:] == ["lens", "sampling", "next", "edit"]
    for key in keys[1 : keys.index("next") + 1]:
        page.click("#next-cell")
        assert cell(page, key).is_visible()
        wait_computed(page, key)
    assert cell(page, "ids").locator("p.mono").inner_text() == f"ids = [{', '.join(map(str, ids))}]"

    # The probabilities and the sampled token are the library's.
    probs = torch.softmax(tiny.run_with_hooks(PROMPT)[0, -1].float(), dim=-1)
    top = torch.topk(probs, 10)
    bars = cell(page, "hook_probs").locator(".bars")
    labels = bars.locator(".tok").all_inner_texts()
    numbers = bars.locator(".num-cell").all_inner_texts()
    assert labels == [quote(tok.decode([i])) for i in top.indices.tolist()]
    assert numbers == [pct(p) for p in top.values.tolist()]
    new = tiny.generate(PROMPT, 1, top_p=0.9, seed=0, stop_at_eos=False)
    appended = cell(page, "next").locator("[data-testid=appended]").inner_text()
    assert appended == tok.decode(ids + new)
    assert cell(page, "next").locator("mark").inner_text() == tok.decode(new)

    # Generation streams the library's continuation into the page.
    cell(page, "next").get_by_role("button", name="Generate ▸").click()
    continuation = tiny.generate_text(PROMPT, 20, top_p=0.9, seed=0)
    page.wait_for_function(
        "text => document.querySelector(\"[data-cell='next'] .new\")?.textContent === text",
        arg=continuation,
    )

    pattern = cell(page, "blocks.0.attn.hook_pattern").element_handle()
    page.evaluate("el => el.scrollIntoView({block: 'start'})", pattern)
    page.screenshot(path=shots / "web.png")

    # Ablate head 0.1, re-run: the comparison and the probabilities cell show the new numbers.
    page.click("#next-cell")
    wait_computed(page, "edit")
    form = cell(page, "edit").locator("[data-form=ablate_head]")
    form.locator("select").nth(1).select_option("1")
    form.locator("[data-add=ablate_head]").click()
    assert page.locator("#edits .chip").inner_text().startswith("ablate head 0.1")
    page.click("#rerun")
    page.wait_for_selector('[data-cell="edit"] table.compare')
    wait_computed(page, "edit")

    after = torch.softmax(tiny.run_with_hooks(PROMPT, [ablate_head(0, 1)])[0, -1].float(), dim=-1)
    rows = cell(page, "edit").locator("table.compare tbody tr")
    shown = {}
    for i in range(rows.count()):
        row = rows.nth(i)
        token_id = int(row.get_attribute("data-token"))
        texts = row.locator("td").all_inner_texts()
        expected = [pct(float(probs[token_id])), pct(float(after[token_id]))]
        assert texts[:3] == [quote(tok.decode([token_id])), *expected]
        shown[token_id] = texts
    assert set(top.indices.tolist()[:8]) <= set(shown)
    assert any(texts[1] != texts[2] for texts in shown.values())  # the edit changed something
    wait_computed(page, "hook_probs")
    numbers = cell(page, "hook_probs").locator(".bars .num-cell").all_inner_texts()
    assert numbers == [pct(p) for p in torch.topk(after, 10).values.tolist()]

    page.evaluate("el => el.scrollIntoView({block: 'start'})", cell(page, "edit").element_handle())
    page.screenshot(path=shots / "web-edit.png")
    for name in ("web.png", "web-edit.png"):
        assert (shots / name).stat().st_size > 10_000
    assert page.errors == []


def test_a_big_step_table_fetches_more_as_it_scrolls(page, server):
    page.goto(server + "/")
    page.fill("#prompt", PROMPT)
    page.click("#run")
    wait_computed(page, "tokens")
    key = "blocks.0.mlp.hook_post"
    keys = page.eval_on_selector_all("section.cell", "cells => cells.map(c => c.dataset.cell)")
    page.select_option("#run-to", str(keys.index(key)))  # run to a chosen step
    wait_computed(page, key)
    assert cell(page, "edit").is_hidden()
    header = cell(page, key).locator("table.grid thead th")
    before = header.count()
    assert before == 41  # the row labels, then the first 40 neurons
    cell(page, key).locator(".grid-wrap").evaluate("el => { el.scrollLeft = el.scrollWidth; }")
    page.wait_for_function(
        "n => document.querySelectorAll(\"[data-cell='blocks.0.mlp.hook_post'] thead th\")"
        ".length > n",
        arg=before,
    )
    info = cell(page, key).locator(".grid-info").inner_text()
    assert f"columns 0–79 of {4 * TINY_CONFIG.n_embd}" in info

    # Double-click a number, type a new one: the run goes on from there with that value.
    cell(page, key).locator("td[data-r='5'][data-c='3']").dblclick()
    cell(page, key).locator("td input").fill("50")
    cell(page, key).locator("td input").press("Enter")
    page.wait_for_selector(f"[data-cell='{key}'] td.edited")
    assert page.locator("#edits .chip").inner_text().startswith(f"{key}[5, 3] = 50")
    assert cell(page, key).locator("td.edited").inner_text() == "50.000"
    assert page.errors == []
