"""The web app's JSON API (gpt2lab.web): every answer is the library's own result, computed here
again for comparison, and bad input is answered with a 4xx and a message."""

from __future__ import annotations

import argparse
import copy
import json
import threading

import pytest
import torch
from conftest import TINY_CONFIG, WEB_MAX_NEW_TOKENS, WEB_MAX_PROMPT_TOKENS
from fastapi.testclient import TestClient
from sse import events

from gpt2lab.cli import serve as serve_cli
from gpt2lab.errors import UsageError
from gpt2lab.generate import SamplingSettings, explain_sampling
from gpt2lab.hooks import describe, step_names
from gpt2lab.inspection import step_table
from gpt2lab.lens import logit_lens
from gpt2lab.trace import ablate_head, ablate_mlp, add_vector, scale_neuron, steering_vector
from gpt2lab.web.app import create_app

PROMPT = "Mike is quick. He moves"
MAX_PROMPT_TOKENS = WEB_MAX_PROMPT_TOKENS
MAX_NEW_TOKENS = WEB_MAX_NEW_TOKENS
L, H, C = TINY_CONFIG.n_layer, TINY_CONFIG.n_head, TINY_CONFIG.n_embd  # tiny's sizes


def post(client: TestClient, path: str, **body: object) -> dict:
    response = client.post(path, json={"model": "tiny", "prompt": PROMPT, **body})
    assert response.status_code == 200, response.text
    return response.json()


def next_probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits[0, -1].float(), dim=-1)


def as_json(value: object) -> object:
    """What a value becomes after a trip through JSON (tuples -> lists, -inf -> None...)."""
    return json.loads(json.dumps(value))


def finite_or_none(values: torch.Tensor) -> list:
    return [[v if abs(v) != float("inf") else None for v in row] for row in values.tolist()]


# --- the page ---------------------------------------------------------------------------------
def test_the_page_and_its_assets_are_served_with_no_outside_address(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    for asset in ("/static/app.js", "/static/style.css"):
        assert asset in page.text
    for text in [page.text, *(client.get(a).text for a in ("/static/app.js", "/static/style.css"))]:
        assert "://" not in text  # no CDN, no external font: the page works offline
    assert client.get("/docs").status_code == 404  # Swagger's page would load a CDN's scripts
    assert set(client.get("/openapi.json").json()["paths"]) >= {"/api/run", "/api/generate"}


def test_models_gives_each_config_and_its_steps(client, tiny):
    answer = client.get("/api/models").json()
    (model,) = answer["models"]
    assert model["name"] == "tiny"
    assert model["config"] == as_json(vars(tiny.config))
    assert model["parameters"] == tiny.num_parameters()
    assert model["steps"] == as_json([vars(s) for s in step_table(tiny.config)])
    assert answer["limits"]["max_prompt_tokens"] == MAX_PROMPT_TOKENS
    assert answer["limits"]["max_new_tokens"] == MAX_NEW_TOKENS


# --- the cells --------------------------------------------------------------------------------
def test_tokenize_gives_ids_tokens_and_bpe_merges(client, tiny):
    answer = post(client, "/api/tokenize")
    tok = tiny.tokenizer
    ids = tok.encode(PROMPT)
    assert answer["ids"] == ids
    assert answer["tokens"] == [tok.id_to_token(i) for i in ids]
    assert answer["texts"] == [tok.decode([i]) for i in ids]
    assert answer["words"] == as_json([w.to_dict() for w in tok.trace(PROMPT)])


def test_run_gives_tokens_steps_and_the_softmax_of_the_logits(client, tiny):
    answer = post(client, "/api/run", layer=3, k=5)
    trace = tiny.run_with_cache(PROMPT)
    assert answer["ids"] == trace.ids[0].tolist()
    assert answer["tokens"] == trace.tokens()
    names = [s["name"] for s in answer["steps"]]
    block = [n for n in step_names(tiny.config) if n.startswith("blocks.3.")]
    assert names == ["hook_embed", "hook_pos_embed", *block, *names[-7:]]
    final = [f"ln_final.hook_{s}" for s in ("mean", "var", "scale", "normalized", "out")]
    assert names[-7:] == [*final, "hook_logits", "hook_probs"]
    for step in answer["steps"]:
        assert step["shape"] == list(trace[step["name"]].shape)
        described = describe(step["name"])  # the page's headings come from hooks.STEPS
        assert (step["axes"], step["formula"], step["title"]) == (
            described.shape,
            described.formula,
            described.title,
        )
    heads = {s["name"].rsplit(".", 1)[-1]: s["head_axis"] for s in answer["steps"]}
    assert heads["hook_q"] == heads["hook_z"] == 2  # [B, T, H, D]
    assert heads["hook_pattern"] == heads["hook_attn_scores"] == 1  # [B, H, T, S]
    assert heads["hook_resid_pre"] is None
    probs = next_probs(trace.logits)
    top = torch.topk(probs, 5)
    assert [n["id"] for n in answer["next"]] == top.indices.tolist()
    assert [n["prob"] for n in answer["next"]] == pytest.approx(top.values.tolist(), rel=1e-6)
    assert [n["token"] for n in answer["next"]] == [tiny.tokenizer.decode([i]) for i in top.indices]
    logits = trace.logits[0, -1, top.indices].tolist()
    assert [n["logit"] for n in answer["next"]] == pytest.approx(logits, rel=1e-6)


@pytest.mark.parametrize(
    ("step", "window", "table"),
    [
        ("hook_embed", {}, lambda v: v[0]),
        (
            "blocks.2.hook_resid_mid",
            {"row_offset": 2, "row_limit": 3, "col_offset": 100},
            lambda v: v[0],
        ),
        ("blocks.2.attn.hook_pattern", {"head": 1}, lambda v: v[0, 1]),  # [B, H, T, S]
        ("blocks.2.attn.hook_attn_scores", {"head": 3, "col_limit": 4}, lambda v: v[0, 3]),
        ("blocks.2.attn.hook_q", {"head": 4, "col_offset": 3}, lambda v: v[0, :, 4]),  # T, H, D
        ("blocks.2.attn.hook_z", {"head": 5}, lambda v: v[0, :, 5]),
        ("blocks.2.mlp.hook_post", {"col_offset": 300, "col_limit": 256}, lambda v: v[0]),
        ("blocks.2.ln2.hook_var", {}, lambda v: v[0]),
        ("hook_logits", {"row_offset": 5, "col_offset": 50250}, lambda v: v[0]),
        ("hook_probs", {"col_limit": 7}, lambda v: v[0]),
    ],
)
def test_a_step_window_is_that_slice_of_the_trace(client, tiny, step, window, table):
    answer = post(client, "/api/step", layer=2, step=step, **window)
    trace = tiny.run_with_cache(PROMPT)
    full = trace[step]
    value = table(full)
    r0, c0 = window.get("row_offset", 0), window.get("col_offset", 0)
    r1, c1 = r0 + window.get("row_limit", 64), c0 + window.get("col_limit", 64)
    assert answer["values"] == finite_or_none(value[r0:r1, c0:c1])
    assert answer["shape"] == list(full.shape)
    assert (answer["rows"], answer["columns"]) == tuple(value.shape)
    assert (answer["row_offset"], answer["col_offset"]) == (r0, c0)
    assert answer["head"] == window.get("head")
    if answer["axes"][-1] == "V":
        columns = range(c0, min(c1, value.shape[1]))
        assert answer["column_ids"] == list(columns)
        assert answer["column_tokens"] == [tiny.tokenizer.decode([i]) for i in columns]
    else:
        assert answer["column_ids"] is None
        assert answer["column_tokens"] is None


@pytest.mark.parametrize(
    ("step", "window"),
    [
        ("hook_logits", {"sort_row": 5}),
        ("hook_logits", {"sort_row": 2, "descending": False, "row_offset": 1, "col_offset": 9}),
        ("hook_probs", {"sort_row": 5, "col_offset": 256, "col_limit": 3}),
    ],
)
def test_a_vocabulary_window_can_be_sorted_by_the_values_of_a_row(client, tiny, step, window):
    answer = post(client, "/api/step", step=step, **window)
    value = tiny.run_with_cache(PROMPT, [step])[step][0]
    descending = window.get("descending", True)
    order = value[window["sort_row"]].argsort(descending=descending, stable=True)
    c0, r0 = window.get("col_offset", 0), window.get("row_offset", 0)
    columns = order[c0 : c0 + window.get("col_limit", 64)]
    assert answer["column_ids"] == columns.tolist()
    assert answer["column_tokens"] == [tiny.tokenizer.decode([i]) for i in columns.tolist()]
    assert answer["values"] == value[r0 : r0 + 64][:, columns].tolist()
    row = answer["values"][window["sort_row"] - r0]
    assert row == sorted(row, reverse=descending)
    if step == "hook_logits" and descending:  # the largest logit first: the most likely token
        assert answer["column_ids"][0] == post(client, "/api/run", k=1)["next"][0]["id"]


def test_models_list_the_tokens_that_are_partial_utf8(client, tiny):
    (model,) = client.get("/api/models").json()["models"]
    partial = {int(i): hex_bytes for i, hex_bytes in model["partial_tokens"].items()}
    tok = tiny.tokenizer
    llama = [i for i in tok.encode("🦙") if tok.decode([i]) == "\ufffd"]
    assert llama and set(llama) <= set(partial)
    for i, hex_bytes in partial.items():
        data = tok.token_bytes(i)
        assert hex_bytes == data.hex(" ")
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")
    whole = [i for i in range(0, tok.vocab_size, 97) if i not in partial]
    for i in whole:
        tok.token_bytes(i).decode("utf-8")  # every other token is whole characters
    assert partial[94] == "a1"  # the byte 0xa1 alone, which continues a character
    assert 262 not in partial  # " the"


def test_masked_scores_arrive_as_null(client):
    answer = post(client, "/api/step", step="blocks.0.attn.hook_attn_scores")
    assert answer["values"][0][1:] == [None] * 5
    assert all(v is not None for v in answer["values"][-1])


def test_later_cells_reuse_the_cached_trace(tiny, monkeypatch):
    runs = []
    run_with_cache = tiny.run_with_cache

    def counted(*args, **kwargs):
        runs.append(args)
        return run_with_cache(*args, **kwargs)

    monkeypatch.setattr(tiny, "run_with_cache", counted)
    client = TestClient(create_app({"tiny": tiny}))
    post(client, "/api/run", layer=1)
    post(client, "/api/step", layer=1, step="blocks.1.attn.hook_q")
    post(client, "/api/step", layer=1, step="hook_embed")
    post(client, "/api/lens", layer=1)
    post(client, "/api/sampling", layer=1, seed=0)
    assert len(runs) == 1
    post(client, "/api/step", layer=1, step="blocks.4.hook_attn_out")  # another block's step
    post(client, "/api/run", layer=1, edits=[{"kind": "ablate_mlp", "layer": 0}])
    assert len(runs) == 3


def test_the_cache_stays_within_its_budget(tiny, monkeypatch):
    runs = []
    run_with_cache = tiny.run_with_cache
    monkeypatch.setattr(
        tiny, "run_with_cache", lambda *a, **k: runs.append(a) or run_with_cache(*a, **k)
    )
    client = TestClient(create_app({"tiny": tiny}, max_cache_bytes=1))  # room for the newest only
    for prompt in ("one", "two", "one", "one"):
        assert client.post("/api/run", json={"model": "tiny", "prompt": prompt}).status_code == 200
    assert len(runs) == 3


def test_lens_is_the_logit_lens(client, tiny):
    answer = post(client, "/api/lens", k=3, target="next", points="all")
    lens = as_json(logit_lens(tiny, PROMPT, k=3, target="next", points="all").to_dict())
    probs = answer.pop("top_probs"), lens.pop("top_probs")
    target = answer.pop("target_prob"), lens.pop("target_prob")
    assert answer == lens
    torch.testing.assert_close(torch.tensor(probs[0]), torch.tensor(probs[1]))
    nan = float("nan")
    as_tensor = [
        torch.tensor([[nan if p is None else p for p in row] for row in t]) for t in target
    ]
    torch.testing.assert_close(*as_tensor, equal_nan=True)


def test_sampling_explains_the_draw_generate_makes(client, tiny):
    answer = post(client, "/api/sampling", temperature=0.8, top_p=0.9, seed=3, top=5)
    settings = SamplingSettings(temperature=0.8, top_p=0.9, seed=3)
    logits = tiny.run_with_hooks(PROMPT)[0, -1]
    expected = explain_sampling(logits, settings, top=5, tokenizer=tiny.tokenizer).to_dict()
    assert answer.pop("chosen_token") == tiny.tokenizer.decode([expected["chosen"]])
    ids = answer.pop("ids")
    assert ids == [*tiny.tokenizer.encode(PROMPT), expected["chosen"]]
    assert answer.pop("text") == tiny.tokenizer.decode(ids)
    assert answer == as_json(expected)
    first = tiny.generate(PROMPT, 1, temperature=0.8, top_p=0.9, seed=3, stop_at_eos=False)
    assert first == [answer["chosen"]]


# --- edits ------------------------------------------------------------------------------------
def edit_cases(tiny) -> list[tuple[list[dict], list]]:
    steer = steering_vector(tiny, " happy", " sad", 4)
    return [
        ([{"kind": "ablate_head", "layer": 0, "head": 1}], [ablate_head(0, 1)]),
        (
            [{"kind": "ablate_head", "layer": 5, "head": 2, "how": "mean"}],
            [ablate_head(5, 2, "mean")],
        ),
        ([{"kind": "ablate_mlp", "layer": 0}], [ablate_mlp(0)]),
        (
            [{"kind": "scale_neuron", "layer": 2, "neuron": 7, "factor": 5.0}],
            [scale_neuron(2, 7, 5.0)],
        ),
        (
            [{"kind": "steer", "layer": 4, "positive": " happy", "negative": " sad", "scale": 3}],
            [add_vector(4, steer, scale=3.0)],
        ),
        (
            [
                {"kind": "ablate_head", "layer": 0, "head": 0},
                {"kind": "scale_neuron", "layer": L - 1, "neuron": 0, "factor": -2.5},
            ],
            [ablate_head(0, 0), scale_neuron(L - 1, 0, -2.5)],
        ),
    ]


@pytest.mark.parametrize("case", range(6))
def test_an_edit_changes_the_probabilities_exactly_as_the_library_does(client, tiny, case):
    specs, edits = edit_cases(tiny)[case]
    answer = post(client, "/api/edit", edits=specs, k=5)
    before = next_probs(tiny.run_with_hooks(PROMPT))
    after = next_probs(tiny.run_with_hooks(PROMPT, edits))
    ids = [row["id"] for row in answer["rows"]]
    top = {*torch.topk(before, 5).indices.tolist(), *torch.topk(after, 5).indices.tolist()}
    assert set(ids) == top
    assert [row["before"] for row in answer["rows"]] == pytest.approx(
        before[ids].tolist(), rel=1e-5
    )
    assert [row["after"] for row in answer["rows"]] == pytest.approx(after[ids].tolist(), rel=1e-5)
    assert not torch.allclose(before, after)


def test_set_value_runs_to_the_step_changes_it_and_runs_on(client, tiny):
    spec = {"kind": "set_value", "step": "blocks.3.hook_resid_mid", "index": [5, 17], "value": 9.5}
    answer = post(client, "/api/edit", edits=[spec], k=5)
    paused = tiny.run_to(PROMPT, "blocks.3.hook_resid_mid")
    paused.value[0, 5, 17] = 9.5
    after = next_probs(paused.resume())
    ids = [row["id"] for row in answer["rows"]]
    assert [row["after"] for row in answer["rows"]] == pytest.approx(after[ids].tolist(), rel=1e-5)
    step = post(client, "/api/step", edits=[spec], layer=3, step="blocks.3.hook_resid_mid")
    assert step["values"][5][17] == 9.5


def test_the_steps_of_an_edited_run_show_the_edit(client, tiny):
    edits = [{"kind": "ablate_head", "layer": 0, "head": 1}]
    z = post(client, "/api/step", edits=edits, step="blocks.0.attn.hook_z", head=1)
    assert all(v == 0 for row in z["values"] for v in row)
    run = post(client, "/api/run", edits=edits, k=3)
    after = next_probs(tiny.run_with_hooks(PROMPT, [ablate_head(0, 1)]))
    assert [n["prob"] for n in run["next"]] == pytest.approx(torch.topk(after, 3).values.tolist())


# --- generation -------------------------------------------------------------------------------
def test_generate_streams_the_library_continuation(client, tiny):
    response = client.post(
        "/api/generate",
        json={"model": "tiny", "prompt": PROMPT, "greedy": True, "max_new_tokens": 12},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    got = events(response.text)
    assert got[-1] == ("done", {})
    assert {event for event, _ in got[:-1]} == {"token"}
    text = "".join(data["text"] for _, data in got[:-1])
    assert text == tiny.generate_text(PROMPT, 12, greedy=True)


def test_generate_with_sampling_and_a_steering_vector(client, tiny):
    spec = {"kind": "steer", "layer": 4, "positive": " happy", "negative": " sad", "scale": 4}
    body = {"model": "tiny", "prompt": PROMPT, "edits": [spec], "top_p": 0.9, "seed": 1}
    response = client.post("/api/generate", json={**body, "max_new_tokens": MAX_NEW_TOKENS})
    text = "".join(data["text"] for event, data in events(response.text) if event == "token")
    edits = [add_vector(4, steering_vector(tiny, " happy", " sad", 4), scale=4.0)]
    expected = tiny.generate_text(PROMPT, MAX_NEW_TOKENS, top_p=0.9, seed=1, edits=edits)
    assert text == expected


# --- bad requests -----------------------------------------------------------------------------
TOO_LONG = " the" * (MAX_PROMPT_TOKENS + 1)
ZERO_HEAD = {"kind": "ablate_head", "layer": 0, "head": 0}
SET = {"kind": "set_value", "step": "blocks.0.hook_resid_pre", "index": [0, 0], "value": 1.0}


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/run", {"prompt": ""}, 422, "prompt: String should have at least 1 character"),
        ("/api/tokenize", {"prompt": TOO_LONG}, 400, f"at most {MAX_PROMPT_TOKENS}"),
        ("/api/run", {"prompt": TOO_LONG}, 400, f"at most {MAX_PROMPT_TOKENS}"),
        ("/api/run", {"prompt": "x" * 100_001}, 422, "prompt"),
        ("/api/run", {"layer": L}, 400, f"layer must be an integer in [0, {L}), got {L}"),
        ("/api/run", {"layer": -1}, 422, "layer: Input should be greater than or equal to 0"),
        ("/api/run", {"k": 0}, 422, "k:"),
        ("/api/run", {"layr": 1}, 422, "layr: Extra inputs are not permitted"),
        ("/api/run", {"model": "gpt2"}, 404, "unknown model 'gpt2'"),
        ("/api/run", {"model": "/etc/passwd"}, 404, "unknown model"),
        ("/api/run", {"model": "../src/gpt2lab/models/tiny"}, 404, "serves nothing else"),
        ("/api/tokenize", {"model": "src/gpt2lab/models/tiny"}, 404, "unknown model"),
        ("/api/step", {"step": "blocks.0.attn.hook_nope"}, 400, "no step is named"),
        ("/api/step", {"step": "blocks.9.hook_resid_pre"}, 400, "no step is named"),
        ("/api/step", {"step": "blocks.*.attn.hook_z"}, 400, "pattern"),
        ("/api/step", {"step": "blocks.0.attn.hook_z", "head": H}, 400, "head must be"),
        ("/api/step", {"step": "hook_embed", "row_offset": 6}, 400, "has 6 rows"),
        ("/api/step", {"step": "hook_embed", "row_offset": -1}, 422, "row_offset"),
        ("/api/step", {"step": "hook_embed", "col_limit": 100_000}, 422, "col_limit"),
        ("/api/step", {"step": "hook_embed", "sort_row": 0}, 400, "has no vocabulary axis"),
        ("/api/step", {"step": "hook_logits", "sort_row": 6}, 400, "sort_row must be"),
        ("/api/step", {"step": "hook_logits", "sort_row": -1}, 422, "sort_row"),
        ("/api/lens", {"target": " Shawshank"}, 400, "is 3 tokens"),
        ("/api/lens", {"points": "some"}, 422, "points"),
        ("/api/sampling", {"temperature": -1}, 422, "temperature"),
        ("/api/sampling", {"top_k": 0}, 422, "top_k"),
        ("/api/sampling", {"top_k": 60_000}, 400, "top_k must be"),
        ("/api/sampling", {"top_p": 1.5}, 422, "top_p"),
        ("/api/sampling", {"seed": -3}, 422, "seed"),
        ("/api/edit", {"edits": [{**ZERO_HEAD, "head": H}]}, 400, "head must be"),
        ("/api/edit", {"edits": [{**ZERO_HEAD, "layer": L}]}, 400, f"blocks.{L}.attn.hook_z"),
        ("/api/edit", {"edits": [{**ZERO_HEAD, "how": "max"}]}, 422, "how"),
        ("/api/edit", {"edits": [{**ZERO_HEAD, "kind": "delete"}]}, 422, "edits.0"),
        ("/api/edit", {"edits": [ZERO_HEAD] * 17}, 422, "edits"),
        (
            "/api/edit",
            {"edits": [{"kind": "scale_neuron", "layer": 0, "neuron": 4 * C, "factor": 2}]},
            400,
            "neuron must be",
        ),
        (
            "/api/edit",
            {"edits": [{"kind": "scale_neuron", "layer": 0, "neuron": -1, "factor": 2}]},
            422,
            "neuron",
        ),
        (
            "/api/edit",
            {"edits": [{"kind": "steer", "layer": 0, "positive": TOO_LONG, "negative": "a"}]},
            400,
            f"at most {MAX_PROMPT_TOKENS}",
        ),
        ("/api/edit", {"edits": [{**SET, "index": [0]}]}, 400, "give 2 indices"),
        ("/api/edit", {"edits": [{**SET, "index": [6, 0]}]}, 400, "index 0 of"),
        ("/api/edit", {"edits": [{**SET, "step": "hook_probs"}]}, 400, "stop at hook_logits"),
        ("/api/generate", {"max_new_tokens": MAX_NEW_TOKENS + 1}, 400, "at most 16 tokens"),
        ("/api/generate", {"max_new_tokens": -5}, 422, "max_new_tokens"),
        ("/api/generate", {"edits": [SET], "max_new_tokens": 4}, 400, "remove it to generate"),
    ],
)
def test_bad_requests_get_a_4xx_and_a_message(client, path, body, status, message):
    response = client.post(path, json={"model": "tiny", "prompt": PROMPT, **body})
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert message in detail


@pytest.mark.parametrize(
    "body",
    [
        '{"model": "tiny", "prompt": "a", "temperature": NaN}',
        '{"model": "tiny", "prompt": "a", "temperature": Infinity}',
        '{"model": "tiny", "prompt": "a", "edits": [{"kind": "scale_neuron", "layer": 0, '
        '"neuron": 1, "factor": NaN}]}',
        '{"model": "tiny", "prompt": "a", "edits": [{"kind": "set_value", "step": '
        '"hook_embed", "index": [0, 0], "value": -Infinity}]}',
        "this is not JSON",
    ],
)
def test_nan_infinity_and_broken_json_are_refused(client, body):
    for path in ("/api/sampling", "/api/generate"):
        response = client.post(path, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, response.text
        assert isinstance(response.json()["detail"], str)


def test_no_request_loads_a_model(tiny, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("a request must never load a model")

    monkeypatch.setattr("gpt2lab.weights.load", no_loading)
    client = TestClient(create_app({"tiny": tiny}))
    for name in ("gpt2", "tiny/../tiny", "/tmp", "hf://gpt2"):
        response = client.post("/api/run", json={"model": name, "prompt": PROMPT})
        assert response.status_code == 404


def test_create_app_checks_its_arguments(tiny):
    with pytest.raises(UsageError, match="at least one model"):
        create_app({})
    with pytest.raises(UsageError, match="max_concurrent must be a positive integer"):
        create_app({"tiny": tiny}, max_concurrent=0)


# --- concurrency ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slow(tiny):
    """A copy of tiny whose forward pass waits until the test lets it go."""
    model = copy.deepcopy(tiny)
    model.started, model.release = threading.Event(), threading.Event()

    def hold(_module, _args):
        model.started.set()
        assert model.release.wait(20)

    model.register_forward_pre_hook(hold)
    return model


def start_slow_request(client, slow) -> tuple[threading.Thread, dict]:
    slow.started.clear()
    slow.release.clear()
    result = {}
    body = {"model": "slow", "prompt": PROMPT}
    thread = threading.Thread(target=lambda: result.update(r=client.post("/api/run", json=body)))
    thread.start()
    assert slow.started.wait(20)
    return thread, result


def test_a_slow_request_does_not_block_others(tiny, slow):
    with TestClient(create_app({"tiny": tiny, "slow": slow}, max_concurrent=2)) as client:
        thread, result = start_slow_request(client, slow)
        try:
            fast = client.post("/api/run", json={"model": "tiny", "prompt": PROMPT})
            assert fast.status_code == 200
            assert thread.is_alive()  # the slow one is still held
        finally:
            slow.release.set()
            thread.join()
        assert result["r"].status_code == 200


def test_model_work_waits_for_a_free_slot(tiny, slow):
    with TestClient(create_app({"tiny": tiny, "slow": slow}, max_concurrent=1)) as client:
        thread, result = start_slow_request(client, slow)
        done = threading.Event()
        waiting = threading.Thread(
            target=lambda: (
                client.post("/api/run", json={"model": "tiny", "prompt": "a"}),
                done.set(),
            )
        )
        try:
            waiting.start()
            assert client.get("/api/models").status_code == 200  # no model work: answers at once
            assert not done.wait(0.5)  # the only slot is taken
        finally:
            slow.release.set()
            thread.join()
        waiting.join()
        assert done.is_set()
        assert result["r"].status_code == 200


# --- gpt2lab serve ----------------------------------------------------------------------------
def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpt2lab")
    serve_cli.add_serve_parser(parser.add_subparsers(dest="command"))
    return parser


def test_serve_parses_its_flags():
    args = serve_parser().parse_args(["serve", "--model", "tiny", "--model", "run", "--port", "9"])
    assert args.model == ["tiny", "run"]
    assert (args.host, args.port, args.func) == ("127.0.0.1", 9, serve_cli.cmd_serve)
    defaults = serve_parser().parse_args(["serve"])
    assert (defaults.model, defaults.host, defaults.port) == (None, "127.0.0.1", 8000)
    for bad in (["--port", "0"], ["--port", "70000"], ["--max-concurrent", "0"]):
        with pytest.raises(SystemExit):
            serve_parser().parse_args(["serve", *bad])


def test_serve_loads_the_given_models_and_binds_loopback(tiny, monkeypatch, capsys):
    loaded, served = [], {}
    monkeypatch.setattr("gpt2lab.weights.load", lambda name, **options: loaded.append(name) or tiny)
    monkeypatch.setattr(
        "uvicorn.run", lambda app, host, port, **kw: served.update(app=app, host=host, port=port)
    )
    args = serve_parser().parse_args(["serve", "--model", "tiny", "--port", "8123"])
    args.func(args)
    assert loaded == ["tiny"]
    assert (served["host"], served["port"]) == ("127.0.0.1", 8123)
    names = [m["name"] for m in TestClient(served["app"]).get("/api/models").json()["models"]]
    assert names == ["tiny"]
    out, err = capsys.readouterr()
    assert "http://127.0.0.1:8123/" in out
    assert err == ""
    args = serve_parser().parse_args(["serve", "--model", "tiny", "--host", "0.0.0.0"])
    args.func(args)
    assert served["host"] == "0.0.0.0"
    assert "other machines can reach this app" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        *[("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("localhost", True)],
        *[("0.0.0.0", False), ("192.168.1.5", False), ("::", False), ("example.org", False)],
    ],
)
def test_is_loopback(host, loopback):
    assert serve_cli.is_loopback(host) is loopback


def test_set_value_of_a_per_head_step_indexes_its_layout(client, tiny):
    """hook_q is [B, T, H, D]: index [position, head, channel], as the page sends it."""
    spec = {"kind": "set_value", "step": "blocks.1.attn.hook_q", "index": [4, 2, 7], "value": 3.5}
    q = post(client, "/api/step", edits=[spec], layer=1, step="blocks.1.attn.hook_q", head=2)
    assert q["values"][4][7] == 3.5
    before = tiny.run_with_cache(PROMPT, "blocks.1.attn.hook_q")["blocks.1.attn.hook_q"]
    assert q["values"][3][7] == pytest.approx(float(before[0, 3, 2, 7]), rel=1e-6)
