"""The web app in a real browser: Debian's Chromium, driven by Playwright, against the real server.

The first test loads the page, enters a prompt, walks the cells to the next token, ablates a head
and checks that the page shows the probabilities the library computes. It saves screenshots in
its tmp_path; ``GPT2LAB_SCREENSHOT_DIR=docs/images`` writes them where the docs show them
instead. The others check what a new user's first hour found wrong, at 1400 x 900: where "run
to" lands, wide tables, heatmaps, colours, bars, error messages, sorting, byte tokens, the lens.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import TINY_CONFIG
from fastapi import FastAPI

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
LONG_PROMPT = "Mike is quick. He moves on and on, and the others follow him. " * 10  # 161 tokens
VIEWPORT = {"width": 1400, "height": 900}

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs /usr/bin/chromium: apt-get install chromium"
)


def pct(p: float) -> str:
    """A probability as the page writes it."""
    return f"{100 * p:.2f}%"


def quote(text: str) -> str:
    """A token as the page writes it (JSON.stringify)."""
    return json.dumps(text, ensure_ascii=False)


def serving(app: FastAPI) -> Iterator[str]:
    """``app`` under uvicorn in a thread, on a free port of 127.0.0.1; yields its URL (the body
    of every web test's server fixture: ``yield from serving(app)``)."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
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
def server(tiny) -> Iterator[str]:
    yield from serving(create_app({"tiny": tiny}))


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
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
    assert keys[-5:] == ["lens", "saliency", "sampling", "next", "edit"]
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
    page.wait_for_function(  # the table's own header: the heatmap beside it has one too
        "n => document.querySelectorAll(\"[data-cell='blocks.0.mlp.hook_post'] table.grid thead"
        ' th").length > n',
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


# --- a new user's first hour (issue 14) -----------------------------------------------------
def open_prompt(page, server, prompt: str = PROMPT) -> list[str]:
    """Load the page, run ``prompt``; returns the keys of its cells, in order."""
    page.goto(server + "/")
    page.fill("#prompt", prompt)
    page.click("#run")
    wait_computed(page, "tokens")
    return page.eval_on_selector_all("section.cell", "cells => cells.map(c => c.dataset.cell)")


def run_to(page, keys: list[str], key: str) -> None:
    """Choose ``key`` in the "run to" menu and wait until every cell up to it is drawn."""
    page.select_option("#run-to", str(keys.index(key)))
    for shown in keys[: keys.index(key) + 1]:
        wait_computed(page, shown)


def box(locator) -> dict:
    return locator.evaluate("el => el.getBoundingClientRect().toJSON()")


def set_value(page, key: str, row: int, column: int, value: str) -> None:
    """Double-click a number of a step's table, type ``value``, Enter; wait for the re-run."""
    cell(page, key).locator(f"td[data-r='{row}'][data-c='{column}']").dblclick()
    cell(page, key).locator("td input").fill(value)
    cell(page, key).locator("td input").press("Enter")
    page.wait_for_selector(f"[data-cell='{key}'] td.edited")
    wait_computed(page, key)


def step_window(server: str, step: str, edits: list, **window: int) -> list[list[float]]:
    """The values of a step's window, as the page fetches them."""
    body = {"model": "tiny", "prompt": PROMPT, "step": step, "edits": edits, **window}
    request = urllib.request.Request(
        server + "/api/step", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request) as response:
        return json.load(response)["values"]


@pytest.mark.parametrize("key", ["blocks.0.mlp.hook_post", "edit"])
def test_run_to_lands_on_its_cell(page, server, key):
    keys = open_prompt(page, server, "Mike is quick. He moves on and on.")
    run_to(page, keys, key)
    # The cells above grow from "computing…" to tables after the first scroll: the page scrolls
    # again once they are drawn, so the chosen cell ends at the top, below the sticky header
    # (the page's scroll padding).
    padding = "getComputedStyle(document.documentElement).scrollPaddingTop"
    margin = page.evaluate(f"parseFloat({padding})")
    page.wait_for_function(
        "([key, margin]) => Math.abs(document.querySelector(`[data-cell='${key}']`)"
        ".getBoundingClientRect().top - margin) < 2",
        arg=[key, margin],
        timeout=5000,
    )
    assert box(page.locator("#top"))["bottom"] < margin
    assert "current" in cell(page, key).get_attribute("class")
    assert page.errors == []


def test_wide_tables_scroll_inside_their_cell_with_sticky_labels(page, server, tiny):
    prompt = "The cat sat on the mat by the door"
    assert len(tiny.tokenizer.encode(prompt)) == 9
    keys = open_prompt(page, server, prompt)
    run_to(page, keys, "blocks.0.mlp.hook_post")
    # A 9 x 9 table fits its cell whole: nothing is cut at the right edge.
    scores = cell(page, "blocks.0.attn.hook_attn_scores")
    wrap = scores.locator(".grid-wrap")
    assert wrap.evaluate("el => el.scrollWidth <= el.clientWidth")
    assert box(wrap)["right"] <= box(scores)["right"]
    assert box(scores)["right"] <= VIEWPORT["width"]
    assert scores.locator(".grid thead th").count() == 10
    assert "grey masked" in scores.locator(".chart").inner_text()  # the masked scores
    unmasked = cell(page, "blocks.0.attn.hook_unmasked_scores").locator(".chart").inner_text()
    assert "grey masked" not in unmasked
    # A 9 x 768 table scrolls inside its cell, with its row labels in place.
    mlp = cell(page, "blocks.0.mlp.hook_post")
    wrap = mlp.locator(".grid-wrap")
    assert wrap.evaluate("el => el.scrollWidth > el.clientWidth")
    assert box(wrap)["right"] <= box(mlp)["right"]
    label = mlp.locator("tbody tr").nth(3).locator("th")
    left = box(label)["left"]
    wrap.evaluate("el => { el.scrollLeft = 400; }")
    assert box(label)["left"] == left
    assert box(mlp.locator("td[data-c='0']").first)["left"] < left  # scrolled under the label
    assert page.errors == []


def test_heatmaps_carry_token_labels_and_follow_the_scroll_window(page, server, tiny):
    keys = open_prompt(page, server, LONG_PROMPT)
    key = "blocks.0.attn.hook_pattern"
    run_to(page, keys, key)
    tokens = [tiny.tokenizer.decode([i]) for i in tiny.tokenizer.encode(LONG_PROMPT)]
    heatmap = cell(page, key).locator("table.heatmap")

    def shown() -> tuple[range, range]:
        rows = heatmap.get_attribute("data-rows").split("-")
        cols = heatmap.get_attribute("data-cols").split("-")
        return range(int(rows[0]), int(rows[1]) + 1), range(int(cols[0]), int(cols[1]) + 1)

    rows, cols = shown()
    assert rows.start == 0 and cols.start == 0 and 5 < len(rows) < 30
    wrap = cell(page, key).locator(".grid-wrap")
    header = cell(page, key).locator(".grid thead th").nth(1)
    top = box(header)["top"]
    wrap.evaluate("el => { el.scrollTop = 1500; el.scrollLeft = 600; }")
    page.wait_for_function(
        "key => !document.querySelector(`[data-cell='${key}'] table.heatmap`)"
        ".dataset.rows.startsWith('0-')",
        arg=key,
    )
    assert box(header)["top"] == top  # the column labels stay in place
    rows, cols = shown()
    assert rows.start > 30 and cols.start > 3
    # The heatmap shows the rows and columns the table shows, labelled with positions and tokens.
    visible = wrap.evaluate(
        "el => { const box = el.getBoundingClientRect();"
        " const head = el.querySelector('thead th').getBoundingClientRect().bottom;"
        " const rows = [...el.querySelectorAll('tbody tr')].map(tr => tr.getBoundingClientRect());"
        " return rows.map((b, r) => [r, b])"
        ".filter(([, b]) => b.top >= head - 1 && b.bottom <= box.bottom + 1).map(([r]) => r); }"
    )
    assert set(visible) <= set(rows)
    row_labels = heatmap.locator("tbody th").all_inner_texts()
    assert row_labels == [f"{r} {quote(tokens[r])}" for r in rows]
    col_labels = heatmap.locator("thead th.col").all_inner_texts()
    assert col_labels == [f"{c} {quote(tokens[c])}" for c in cols]
    assert page.errors == []


def test_a_number_of_a_per_head_step_is_set_at_its_index(page, server, tiny):
    """hook_q is [B, T, H, D]: the number in row 3, column 5 of head 0's table is q[0, 3, 0, 5]."""
    keys = open_prompt(page, server)
    key = "blocks.0.attn.hook_q"
    run_to(page, keys, key)
    set_value(page, key, 3, 5, "7")
    assert page.locator("#edits .chip").inner_text().startswith(f"{key}[3, 0, 5] = 7")
    edit = {"kind": "set_value", "step": key, "index": [3, 0, 5], "value": 7.0}
    assert step_window(server, key, [edit])[3][5] == 7
    edited = cell(page, key).locator("td.edited")
    assert (edited.get_attribute("data-r"), edited.get_attribute("data-c")) == ("3", "5")
    assert page.errors == []


def test_one_outlier_does_not_wash_the_colours_out(page, server):
    keys = open_prompt(page, server)
    key = "blocks.0.mlp.hook_post"
    run_to(page, keys, key)
    set_value(page, key, 5, 3, "50")
    edit = {"kind": "set_value", "step": key, "index": [5, 3], "value": 50.0}
    values = step_window(server, key, [edit], row_limit=64, col_limit=40)
    sizes = sorted(abs(v) for row in values for v in row)
    assert sizes[-1] == 50
    clip = sizes[int(0.98 * (len(sizes) - 1))]  # the 98th percentile of |values|
    legend = cell(page, key).locator(".legend")
    assert float(legend.get_attribute("data-clip")) == pytest.approx(clip)
    assert f"clipped at ±{clip:.3f}" in legend.inner_text()
    assert "the largest is 50.000" in legend.inner_text()
    # A clipped colour scale: the numbers below the outlier keep visible tints.
    alphas = (
        cell(page, key)
        .locator(".grid td")
        .evaluate_all(
            "tds => tds.map(td =>"
            " Number(/rgba\\(.*, ([\\d.]+)\\)/.exec(td.style.background)?.[1] ?? 0))"
        )
    )
    strong = [a for a in alphas if a >= 0.1]
    assert len(strong) > len(alphas) / 4, sorted(alphas)[-20:]
    assert max(alphas) == pytest.approx(0.35)
    assert page.errors == []


def test_bars_of_negative_values_keep_their_sign(page, server, tiny):
    keys = open_prompt(page, server)
    key = "blocks.0.ln1.hook_mean"
    run_to(page, keys, key)
    means = tiny.run_with_cache(PROMPT, [key])[key][0, :, 0].tolist()
    assert min(means) < 0 < max(means)
    tracks = cell(page, key).locator(".chart .bars .bar-track")
    assert tracks.count() == len(means)
    for t, mean in enumerate(means):
        track, bar = box(tracks.nth(t)), box(tracks.nth(t).locator("i"))
        axis = track["left"] + track["width"] / 2
        if mean < 0:  # left of the zero axis, ending on it
            assert bar["right"] == pytest.approx(axis, abs=1) and bar["left"] < axis
        else:
            assert bar["left"] == pytest.approx(axis, abs=1)
        assert tracks.nth(t).locator("i").get_attribute("class") == ("neg" if mean < 0 else "pos")
    assert page.errors == []


def test_generate_after_a_set_value_edit_leaves_it_out_with_a_note(page, server, tiny):
    keys = open_prompt(page, server)
    run_to(page, keys, "next")
    set_value(page, "blocks.0.mlp.hook_post", 5, 3, "50")
    wait_computed(page, "next")
    cell(page, "next").get_by_role("button", name="Generate ▸").click()
    continuation = tiny.generate_text(PROMPT, 20, top_p=0.9, seed=0)  # no edit
    page.wait_for_function(
        "text => document.querySelector(\"[data-cell='next'] .new\")?.textContent === text",
        arg=continuation,
    )
    note = cell(page, "next").locator(".skipped").inner_text()
    assert note.startswith("Generation leaves out blocks.0.mlp.hook_post[5, 3] = 50")
    assert cell(page, "next").locator(".error").count() == 0
    assert "400" not in cell(page, "next").inner_text()
    assert page.errors == []


def test_an_empty_prompt_clears_old_results_with_a_friendly_message(page, server):
    open_prompt(page, server)
    assert page.locator("section.cell").count() > 0
    page.fill("#prompt", "")
    page.click("#run")
    error = page.locator("#error")
    error.wait_for()
    assert error.inner_text() == "The prompt is empty: type some text, then press Run."
    assert page.locator("section.cell").count() == 0
    assert page.locator(".intro").is_visible()
    assert page.locator("#run-to").is_disabled() and page.locator("#next-cell").is_disabled()
    # Other refusals are sentences too, never "422: ..." or "400: ...".
    keys = open_prompt(page, server)
    assert error.is_hidden()
    run_to(page, keys, "sampling")
    cell(page, "sampling").locator("#temperature").fill("-1")
    cell(page, "sampling").get_by_role("button", name="Sample").click()
    message = cell(page, "sampling").locator(".error")
    message.wait_for()
    expected = "The temperature is not accepted: input should be greater than or equal to 0."
    assert message.inner_text() == expected
    page.fill("#prompt", " the" * 300)  # longer than tiny's 256 positions
    page.click("#run")
    page.wait_for_function("() => !document.querySelector('#error').hidden")
    assert error.inner_text()[0].isupper() and not error.inner_text()[0].isdigit()
    assert page.locator("section.cell").count() == 0
    assert page.errors == []


@pytest.mark.parametrize("key", ["hook_logits", "hook_probs"])
def test_vocabulary_tables_are_sorted_largest_first(page, server, tiny, key):
    keys = open_prompt(page, server)
    run_to(page, keys, key)
    tok = tiny.tokenizer
    values = tiny.run_with_cache(PROMPT, [key])[key][0, -1]  # logits or probabilities
    table = cell(page, key).locator(".grid")

    def headers() -> list[str]:
        return table.locator("thead th").all_inner_texts()[1:]

    def expected(ids: list[int]) -> list[str]:
        return [f"{quote(tok.decode([i]))} {i}" for i in ids]

    top = values.argsort(descending=True, stable=True)[:40].tolist()
    assert headers() == expected(top)
    last = table.locator("tbody tr").last.locator("td").all_inner_texts()
    numbers = [float(v) for v in last]
    assert numbers == sorted(numbers, reverse=True)
    order = cell(page, key).locator("select[data-sort=order]")
    order.select_option("vocab")
    page.wait_for_function(
        "key => document.querySelector(`[data-cell='${key}'] .grid thead th:nth-child(2)`)"
        "?.textContent === '\"!\" 0'",
        arg=key,
    )
    assert headers() == expected(range(40))
    order.select_option("asc")
    bottom = values.argsort(stable=True)[:40].tolist()
    page.wait_for_function(
        "([key, first]) => document.querySelector("
        "`[data-cell='${key}'] .grid thead th:nth-child(2)`)?.textContent === first",
        arg=[key, expected(bottom[:1])[0]],
    )
    assert headers() == expected(bottom)
    assert page.errors == []


def test_byte_tokens_are_labelled_as_partial_utf8_with_their_bytes(page, server, tiny):
    prompt = "A llama 🦙 here"
    tok = tiny.tokenizer
    ids = tok.encode(prompt)
    partial = [i for i in ids if tok.decode([i]).endswith("\ufffd")]
    assert len(partial) >= 2
    keys = open_prompt(page, server, prompt)
    run_to(page, keys, "ids")
    texts = cell(page, "ids").locator("tbody td:nth-child(2)").all_inner_texts()
    for i, text in zip(ids, texts):
        if i in partial:
            bytes_ = tok.token_bytes(i).hex(" ")
            assert text == f"{quote(tok.decode([i]))} (partial UTF-8: bytes {bytes_})"
        else:
            assert text == quote(tok.decode([i]))
    assert "bytes 20 f0 9f" in " ".join(texts)  # " " and the first 2 of the llama's 4 bytes
    assert page.errors == []


def test_the_logit_lens_opens_at_the_last_position(page, server, tiny):
    keys = open_prompt(page, server, LONG_PROMPT)
    run_to(page, keys, "lens")
    wrap = cell(page, "lens").locator(".grid-wrap")
    assert wrap.evaluate("el => el.scrollWidth > 2 * el.clientWidth")  # a long prompt
    assert wrap.evaluate(
        "el => el.scrollLeft > 0 && el.scrollLeft + el.clientWidth >= el.scrollWidth - 1"
    )
    last = len(tiny.tokenizer.encode(LONG_PROMPT)) - 1
    heading = cell(page, "lens").locator("thead th").last
    assert heading.inner_text().startswith(f"{last} ")
    assert box(heading)["right"] <= box(wrap)["right"] + 1
    assert box(heading)["left"] >= box(wrap)["left"]
    assert page.errors == []
