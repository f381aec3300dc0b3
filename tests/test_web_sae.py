"""Sparse-autoencoder features in the web app: the features the API lists, the dashboards it
draws and the steering edits it applies are the library's own (gpt2lab.sae), computed here
again for comparison; bad SAEs, features and strengths are refused with a 4xx."""

from __future__ import annotations

import pytest
import torch
from conftest import WEB_MAX_NEW_TOKENS, WEB_MAX_PROMPT_TOKENS
from fastapi.testclient import TestClient
from sse import events
from test_web_api import serve_parser
from test_web_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    VIEWPORT,
    cell,
    open_prompt,
    run_to,
    serving,
    wait_computed,
)

from gpt2lab.errors import UsageError
from gpt2lab.sae import active_features, feature_report, load_sae, steer
from gpt2lab.web.app import create_app
from gpt2lab.web.lab import Lab
from gpt2lab.web.sae_lab import DASHBOARD_CONTEXT

PROMPT = "Tom has a dog. The dog"
DOG_FEATURE = 89  # of the bundled tiny-sae: fires on " dog" (docs/sae.md)


@pytest.fixture(scope="module")
def sae():
    return load_sae("tiny-sae")


@pytest.fixture(scope="module")
def sae_client(tiny, sae):
    app = create_app(
        {"tiny": tiny},
        max_prompt_tokens=WEB_MAX_PROMPT_TOKENS,
        max_new_tokens=WEB_MAX_NEW_TOKENS,
        saes={"tiny-sae": sae},
    )
    with TestClient(app) as c:
        yield c


def sae_edit(**changes: object) -> dict:
    return {
        "kind": "sae_feature",
        "sae": "tiny-sae",
        "feature": DOG_FEATURE,
        "strength": 8.0,
    } | changes


def test_models_list_their_saes(sae_client, sae):
    (model,) = sae_client.get("/api/models").json()["models"]
    assert model["saes"] == [
        {
            "name": "tiny-sae",
            "hook_name": "blocks.4.hook_resid_pre",
            "d_in": 192,
            "d_sae": 768,
            "activation": "topk",
            "k": 16,
        }
    ]


def test_active_features_are_the_librarys(sae_client, tiny, sae):
    answer = sae_client.post(
        "/api/sae/features", json={"model": "tiny", "prompt": PROMPT, "sae": "tiny-sae", "k": 4}
    )
    assert answer.status_code == 200, answer.text
    expected = active_features(tiny, sae, PROMPT, 4)
    got = [
        (p["token"], [(f["feature"], f["activation"]) for f in p["features"]])
        for p in answer.json()["positions"]
    ]
    assert got == expected
    assert got[-1][0] == " dog" and DOG_FEATURE in [i for i, _ in got[-1][1]]


def test_a_dashboard_shows_the_features_top_context(sae_client, tiny, sae):
    lab: Lab = sae_client.app.state.lab
    answer = sae_client.post(
        "/api/sae/feature", json={"model": "tiny", "sae": "tiny-sae", "feature": DOG_FEATURE}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    report = feature_report(
        tiny, sae, lab.sae_lab.dashboard_tokens("tiny"), DOG_FEATURE, context=DASHBOARD_CONTEXT
    )
    assert body["fraction_active"] == report.fraction_active
    assert body["max_activation"] == report.max_activation
    assert "shakespeare" in body["contexts_from"]
    html = body["html"]
    assert html.startswith("<!DOCTYPE html>") and "http" not in html.replace("http://www.w3", "")
    assert f"{DOG_FEATURE}" in html
    if report.contexts:
        import html as html_lib

        top = report.contexts[0]
        assert html_lib.escape(top.tokens[top.at].strip()) in html


@pytest.mark.parametrize("mode", ["add", "clamp"])
def test_steering_moves_the_next_token_as_steer_does(sae_client, tiny, sae, mode):
    answer = sae_client.post(
        "/api/edit",
        json={"model": "tiny", "prompt": "Once upon a time", "edits": [sae_edit(mode=mode)]},
    )
    assert answer.status_code == 200, answer.text
    ids = tiny.tokenizer.encode("Once upon a time")
    before = torch.softmax(tiny.run_with_hooks(ids, [])[0, -1].float(), -1)
    after = torch.softmax(
        tiny.run_with_hooks(ids, [steer(sae, DOG_FEATURE, 8.0, mode=mode)])[0, -1].float(), -1
    )
    rows = answer.json()["rows"]
    assert len(rows) >= 10
    for row in rows:
        assert row["before"] == pytest.approx(float(before[row["id"]]), abs=1e-6)
        assert row["after"] == pytest.approx(float(after[row["id"]]), abs=1e-6)
    assert max(abs(r["after"] - r["before"]) for r in rows) > 1e-3


def test_generation_streams_the_steered_story(sae_client, tiny, sae):
    body = {"model": "tiny", "prompt": "Once upon a time", "greedy": True, "max_new_tokens": 12}
    texts = []
    for edits in ([], [sae_edit(strength=20.0)]):
        response = sae_client.post("/api/generate", json=body | {"edits": edits})
        assert response.status_code == 200, response.text
        texts.append("".join(d["text"] for e, d in events(response.text) if e == "token"))
    steered = tiny.generate_text(
        "Once upon a time", 12, greedy=True, edits=[steer(sae, DOG_FEATURE, 20.0)]
    )
    assert texts[1] == steered
    assert texts[0] == tiny.generate_text("Once upon a time", 12, greedy=True) != steered


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/api/sae/features", {"prompt": PROMPT, "sae": "nope"}, 404, "unknown SAE 'nope'"),
        ("/api/sae/feature", {"sae": "nope", "feature": 0}, 404, "unknown SAE"),
        ("/api/sae/feature", {"sae": "tiny-sae", "feature": 768}, 400, "feature"),
        ("/api/sae/feature", {"sae": "tiny-sae", "feature": -1}, 422, "feature"),
        ("/api/sae/features", {"prompt": PROMPT, "sae": "tiny-sae", "k": 0}, 422, "k"),
        ("/api/edit", {"prompt": PROMPT, "edits": [sae_edit(sae="nope")]}, 404, "unknown SAE"),
        ("/api/edit", {"prompt": PROMPT, "edits": [sae_edit(feature=768)]}, 400, "feature"),
        ("/api/edit", {"prompt": PROMPT, "edits": [sae_edit(strength=1e6)]}, 422, "strength"),
        ("/api/edit", {"prompt": PROMPT, "edits": [sae_edit(mode="set")]}, 422, "mode"),
        ("/api/run", {"prompt": PROMPT, "edits": [sae_edit(strength="inf")]}, 422, "strength"),
    ],
)
def test_bad_sae_requests_are_refused(sae_client, path, body, status, says):
    answer = sae_client.post(path, json={"model": "tiny"} | body)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["detail"]


def test_a_server_without_saes_refuses_sae_edits(client):
    answer = client.post(
        "/api/edit", json={"model": "tiny", "prompt": PROMPT, "edits": [sae_edit()]}
    )
    assert answer.status_code == 404
    assert "none" in answer.json()["detail"]


def test_an_sae_of_no_served_model_is_one_clear_error(tiny, sae):
    from gpt2lab.sae import SAE, SAEConfig

    wrong = SAE(SAEConfig(d_in=64, d_sae=8, hook_name="blocks.4.hook_resid_pre", k=2))
    with pytest.raises(UsageError, match="belongs to none of the served models"):
        create_app({"tiny": tiny}, saes={"small": wrong})


def test_serve_passes_its_saes(tiny, monkeypatch):
    served = {}
    monkeypatch.setattr("gpt2lab.weights.load", lambda name, **options: tiny)
    monkeypatch.setattr("uvicorn.run", lambda app, host, port, **kw: served.update(app=app))
    args = serve_parser().parse_args(["serve", "--model", "tiny", "--sae", "tiny-sae"])
    args.func(args)
    (model,) = TestClient(served["app"]).get("/api/models").json()["models"]
    assert [s["name"] for s in model["saes"]] == ["tiny-sae"]
    loaded = []
    monkeypatch.setattr("gpt2lab.weights.load", lambda name, **options: loaded.append(name))
    args = serve_parser().parse_args(["serve", "--model", "tiny", "--sae", "no-such-sae"])
    with pytest.raises(Exception, match="no-such-sae: no SAE there"):
        args.func(args)
    assert loaded == []  # refused before any model loads


# --- the page ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sae_server(tiny, sae):
    """The app with tiny-sae under uvicorn in a thread; yields its URL."""
    yield from serving(create_app({"tiny": tiny}, saes={"tiny-sae": sae}))


@pytest.fixture(scope="module")
def page(sae_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.errors = []  # uncaught JavaScript errors
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        yield page
        browser.close()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_the_page_lists_features_opens_one_and_steers_generation(page, sae_server, tiny, sae):
    keys = open_prompt(page, sae_server, PROMPT)
    run_to(page, keys, "edit")
    edit_cell = cell(page, "edit")
    edit_cell.locator("[data-sae=list]").click()
    edit_cell.locator(f"button[data-feature='{DOG_FEATURE}']").last.click()
    frame = edit_cell.locator(".sae-dashboard iframe")
    frame.wait_for()
    assert f"{DOG_FEATURE}" in frame.get_attribute("srcdoc")
    assert edit_cell.locator("[data-sae=feature]").input_value() == str(DOG_FEATURE)
    edit_cell.locator("[data-sae=strength]").fill("20")
    add = edit_cell.locator("[data-add=sae_feature]")
    add.evaluate("b => b.scrollIntoView({block: 'center'})")  # not under the sticky bar
    add.click()
    assert (
        page.locator("#edits .chip")
        .inner_text()
        .startswith(f"tiny-sae feature {DOG_FEATURE}: add 20")
    )
    page.click("#rerun")
    page.wait_for_selector('[data-cell="edit"] table.compare')
    wait_computed(page, "next")
    cell(page, "next").get_by_role("button", name="Generate ▸").click()
    steered = tiny.generate_text(
        PROMPT, 20, top_p=0.9, seed=0, edits=[steer(sae, DOG_FEATURE, 20.0)]
    )
    assert steered != tiny.generate_text(PROMPT, 20, top_p=0.9, seed=0)
    page.wait_for_function(
        "text => document.querySelector(\"[data-cell='next'] .new\")?.textContent === text",
        arg=steered,
    )
    assert page.errors == []
