"""The web app's limits, request by request (gpt2lab.web.app, in process with TestClient).

Every API route gets over-limit, malformed and wrong-type input and must answer it with a 4xx and a
JSON message, then still answer a normal request. The limiter (``max_concurrent``) must cover
every route that computes, a streamed generation for its whole length.
"""

from __future__ import annotations

import copy
import json
import threading
import time

import pytest
from conftest import TINY_CONFIG, WEB_MAX_NEW_TOKENS, WEB_MAX_PROMPT_TOKENS
from fastapi.testclient import TestClient

from gpt2lab.web import app as web_app
from gpt2lab.web.app import create_app
from gpt2lab.web.lab import kept_steps

PROMPT = "Mike is quick. He moves"
PROMPT_IDS = [16073, 318, 2068, 13, 679, 6100]
MAX_PROMPT_TOKENS = WEB_MAX_PROMPT_TOKENS
MAX_PROMPT_CHARS = web_app.CHARS_PER_TOKEN * MAX_PROMPT_TOKENS  # 1024
MAX_NEW_TOKENS = WEB_MAX_NEW_TOKENS
L, H, C = TINY_CONFIG.n_layer, TINY_CONFIG.n_head, TINY_CONFIG.n_embd  # tiny's sizes
ROUTES = ["tokenize", "run", "step", "lens", "sampling", "edit", "generate"]
COMPUTING = {  # a valid body for each route that runs the model
    "tokenize": {},
    "run": {"layer": 1, "k": 3},
    "step": {"layer": 1, "step": "blocks.1.attn.hook_pattern", "head": 2},
    "lens": {"k": 2},
    "sampling": {"seed": 0},
    "edit": {"edits": [{"kind": "ablate_head", "layer": 0, "head": 1}]},
    "generate": {"greedy": True, "max_new_tokens": 3},
}
HEAD = {"kind": "ablate_head", "layer": 0, "head": 0}
NEURON = {"kind": "scale_neuron", "layer": 0, "neuron": 1, "factor": 2.0}
STEER = {"kind": "steer", "layer": 2, "positive": " happy", "negative": " sad", "scale": 1.0}
SAE_EDIT = {"kind": "sae_feature", "sae": "tiny-sae", "feature": 0, "strength": 4.0}
SET = {"kind": "set_value", "step": "blocks.0.hook_resid_pre", "index": [0, 0], "value": 1.0}
TOO_MANY_TOKENS = " the" * (MAX_PROMPT_TOKENS + 1)  # 260 characters: under the character cap
PATHS = ["/etc", "/etc/passwd", "gpt2", "openai-community/gpt2", "../tiny", "tiny/", "~/.cache"]


def body(route: str, **fields: object) -> dict:
    """A valid request for ``route`` with ``fields`` changed (None: left out)."""
    merged = {"model": "tiny", "prompt": PROMPT, **COMPUTING[route], **fields}
    return {k: v for k, v in merged.items() if v is not None}


def assert_refused(response, status: int, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert message in detail


def assert_still_serving(client: TestClient) -> None:
    answer = client.post("/api/tokenize", json={"model": "tiny", "prompt": PROMPT})
    assert answer.status_code == 200, answer.text
    assert answer.json()["ids"] == PROMPT_IDS
    run = client.post("/api/run", json={"model": "tiny", "prompt": PROMPT, "k": 2})
    assert run.status_code == 200, run.text
    assert run.json()["ids"] == PROMPT_IDS


# --- the same bad input on every route --------------------------------------------------------
EVERY_ROUTE = [
    ({"prompt": "x" * 100_001}, 422, "prompt: String should have at most 100000 characters"),
    ({"prompt": "a" * (MAX_PROMPT_CHARS + 1)}, 400, f"at most {MAX_PROMPT_CHARS}"),
    ({"prompt": TOO_MANY_TOKENS}, 400, f"this server takes at most {MAX_PROMPT_TOKENS}"),
    ({"prompt": ""}, 422, "prompt: String should have at least 1 character"),
    ({"prompt": 42}, 422, "prompt: Input should be a valid string"),
    ({"prompt": ["a", "b"]}, 422, "prompt: Input should be a valid string"),
    ({"model": 5}, 422, "model: Input should be a valid string"),
    ({"model": "m" * 201}, 422, "model: String should have at most 200 characters"),
    *[({"model": path}, 404, f"unknown model {path!r}") for path in PATHS],
    ({"modle": "tiny"}, 422, "modle: Extra inputs are not permitted"),
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("fields", "status", "message"), EVERY_ROUTE)
def test_every_route_refuses_bad_prompts_and_models(client, route, fields, status, message):
    response = client.post(f"/api/{route}", json=body(route, **fields))
    assert_refused(response, status, message)
    assert_still_serving(client)


def test_a_missing_model_or_prompt_is_named(client):
    for route in ROUTES:
        assert_refused(client.post(f"/api/{route}", json={"model": "tiny"}), 422, "prompt: Field")
        response = client.post(f"/api/{route}", json={"prompt": PROMPT})
        assert_refused(response, 422, "model: Field required")
    assert_still_serving(client)


RAW = [
    (b"this is not JSON", 422, "JSON decode error"),
    (b'["model", "tiny"]', 422, "body: Input should be a valid dictionary"),
    (b"null", 422, "body:"),
    (b'{"model": "tiny", "prompt": "\xff\xfe"}', 400, "error parsing the body"),  # not UTF-8
    (b"[" * 100_000 + b"]" * 100_000, 400, "error parsing the body"),  # too deeply nested
    (b'{"model": "tiny", "prompt": "a", "layer": ' + b"9" * 5000 + b"}", 400, "parsing the body"),
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("raw", "status", "message"), RAW)
def test_malformed_bodies_are_refused(client, route, raw, status, message):
    headers = {"Content-Type": "application/json"}
    assert_refused(client.post(f"/api/{route}", content=raw, headers=headers), status, message)
    assert_still_serving(client)


@pytest.mark.parametrize("route", ROUTES)
def test_a_body_over_the_limit_is_refused_unread(client, route):
    limit = web_app.MAX_BODY_BYTES
    big = json.dumps(body(route, prompt="a" * limit)).encode()
    response = client.post(
        f"/api/{route}", content=big, headers={"Content-Type": "application/json"}
    )
    assert_refused(response, 413, f"over {limit} bytes")

    def chunks():  # no Content-Length: the bytes are counted as they arrive
        yield big[:1000]
        yield big[1000:]

    response = client.post(
        f"/api/{route}", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_refused(response, 413, f"over {limit} bytes")
    assert_still_serving(client)


def test_a_body_just_under_the_limit_is_read(client):
    prompt = "a" * (web_app.MAX_BODY_BYTES - 100)  # refused for its length, not its bytes
    assert_refused(client.post("/api/run", json=body("run", prompt=prompt)), 422, "prompt:")


# --- route by route ---------------------------------------------------------------------------
BIG = 10**30
CASES = [
    # run: layer and k
    ("run", {"layer": L}, 400, f"layer must be an integer in [0, {L}), got {L}"),
    ("run", {"layer": BIG}, 400, f"layer must be an integer in [0, {L}), got {BIG}"),
    ("run", {"layer": -1}, 422, "layer: Input should be greater than or equal to 0"),
    ("run", {"layer": 1.5}, 422, "layer: Input should be a valid integer"),
    ("run", {"layer": "two"}, 422, "layer: Input should be a valid integer"),
    ("run", {"k": 0}, 422, "k: Input should be greater than or equal to 1"),
    ("run", {"k": 101}, 422, "k: Input should be less than or equal to 100"),
    ("run", {"k": None, "edits": "ablate"}, 422, "edits: Input should be a valid list"),
    # step: names, heads and the window
    ("step", {"step": "blocks.0.attn.hook_nope"}, 400, "no step is named"),
    ("step", {"step": f"blocks.{L}.hook_resid_pre"}, 400, "no step is named"),
    ("step", {"step": "hook_embedd"}, 400, "no step is named"),
    ("step", {"step": "blocks.*.attn.hook_z"}, 400, "pattern"),
    ("step", {"step": ""}, 422, "step: String should have at least 1 character"),
    ("step", {"step": "s" * 101}, 422, "step: String should have at most 100 characters"),
    ("step", {"step": None}, 422, "step: Field required"),
    ("step", {"step": 7}, 422, "step: Input should be a valid string"),
    ("step", {"head": H}, 400, f"head must be an integer in [0, {H}), got {H}"),
    ("step", {"head": -1}, 422, "head: Input should be greater than or equal to 0"),
    ("step", {"layer": L}, 400, f"layer must be an integer in [0, {L}), got {L}"),
    ("step", {"row_offset": 6}, 400, "has 6 rows and 6 columns"),
    ("step", {"col_offset": BIG}, 400, f"col_offset {BIG}"),
    ("step", {"row_offset": -1}, 422, "row_offset: Input should be greater than or equal to 0"),
    ("step", {"row_limit": 0}, 422, "row_limit: Input should be greater than or equal to 1"),
    ("step", {"row_limit": 257}, 422, "row_limit: Input should be less than or equal to 256"),
    ("step", {"col_limit": 100_000}, 422, "col_limit: Input should be less than or equal to 256"),
    # lens
    ("lens", {"k": 21}, 422, "k: Input should be less than or equal to 20"),
    ("lens", {"points": "some"}, 422, "points: Input should be 'all' or 'post'"),
    ("lens", {"target": " Shawshank"}, 400, "is 3 tokens"),
    ("lens", {"target": "x" * 101}, 422, "target: String should have at most 100 characters"),
    ("lens", {"layer": 99}, 400, f"layer must be an integer in [0, {L}), got 99"),
    # sampling: the settings
    ("sampling", {"temperature": -1}, 422, "temperature: Input should be greater than or equal"),
    ("sampling", {"temperature": 1e-300}, 422, "temperature: Value error, must be 0 (greedy)"),
    ("sampling", {"temperature": "hot"}, 422, "temperature: Input should be a valid number"),
    ("sampling", {"top_k": 0}, 422, "top_k: Input should be greater than or equal to 1"),
    ("sampling", {"top_k": BIG}, 400, f"top_k must be an integer in [1, 50257], got {BIG}"),
    ("sampling", {"top_p": 0}, 422, "top_p: Input should be greater than 0"),
    ("sampling", {"top_p": 1.5}, 422, "top_p: Input should be less than or equal to 1"),
    ("sampling", {"seed": -3}, 422, "seed: Input should be greater than or equal to 0"),
    ("sampling", {"seed": 2**63}, 422, "seed: Input should be less than or equal to"),
    ("sampling", {"top": 0}, 422, "top: Input should be greater than or equal to 1"),
    ("sampling", {"greedy": "maybe"}, 422, "greedy: Input should be a valid boolean"),
    # edit: count, kinds, layers, heads, neurons, steps, values
    ("edit", {"edits": [HEAD] * 17}, 422, "edits: List should have at most 16 items"),
    (
        "edit",
        {"edits": [{**HEAD, "head": H}]},
        400,
        f"head must be an integer in [0, {H}), got {H}",
    ),
    ("edit", {"edits": [{**HEAD, "head": BIG}]}, 400, f"got {BIG}"),
    ("edit", {"edits": [{**HEAD, "layer": L}]}, 400, f"no step is named 'blocks.{L}.attn.hook_z'"),
    ("edit", {"edits": [{**HEAD, "layer": -1}]}, 422, "edits.0.ablate_head.layer"),
    ("edit", {"edits": [{**HEAD, "how": "max"}]}, 422, "edits.0.ablate_head.how"),
    ("edit", {"edits": [{**HEAD, "kind": "delete"}]}, 422, "edits.0: Input tag 'delete'"),
    ("edit", {"edits": [{"layer": 0}]}, 422, "edits.0: Unable to extract tag"),
    ("edit", {"edits": [{**HEAD, "extra": 1}]}, 422, "edits.0.ablate_head.extra"),
    ("edit", {"edits": [{"kind": "ablate_mlp", "layer": L}]}, 400, f"blocks.{L}.hook_mlp_out"),
    (
        "edit",
        {"edits": [{**NEURON, "neuron": 4 * C}]},
        400,
        f"neuron must be an integer in [0, {4 * C})",
    ),
    ("edit", {"edits": [{**NEURON, "neuron": -1}]}, 422, "edits.0.scale_neuron.neuron"),
    ("edit", {"edits": [{**NEURON, "factor": 1e308}]}, 400, "the logits are inf or NaN"),
    ("edit", {"edits": [{**STEER, "layer": L}]}, 400, "layer"),
    ("edit", {"edits": [{**STEER, "scale": 1e308}]}, 400, "the logits are inf or NaN"),
    ("edit", {"edits": [{**STEER, "positive": TOO_MANY_TOKENS}]}, 400, "at most 64"),
    ("edit", {"edits": [{**STEER, "negative": ""}]}, 422, "edits.0.steer.negative"),
    ("edit", {"edits": [SAE_EDIT]}, 404, "unknown SAE 'tiny-sae' for model 'tiny'"),
    ("edit", {"edits": [{**SAE_EDIT, "strength": 1e308}]}, 422, "less than or equal to 1000"),
    ("edit", {"edits": [{**SAE_EDIT, "feature": -1}]}, 422, "edits.0.sae_feature.feature"),
    ("edit", {"edits": [{**SAE_EDIT, "mode": "set"}]}, 422, "edits.0.sae_feature.mode"),
    ("edit", {"edits": [{**SAE_EDIT, "sae": ""}]}, 422, "edits.0.sae_feature.sae"),
    ("edit", {"edits": [{**SET, "step": "nope"}]}, 400, "no step is named 'nope'"),
    ("edit", {"edits": [{**SET, "step": "hook_probs"}]}, 400, "stop at hook_logits"),
    ("edit", {"edits": [{**SET, "index": [0]}]}, 400, "give 2 indices"),
    ("edit", {"edits": [{**SET, "index": [6, 0]}]}, 400, "index 0 of blocks.0.hook_resid_pre"),
    ("edit", {"edits": [{**SET, "index": [0, 0, 0, 0]}]}, 422, "List should have at most 3"),
    ("edit", {"edits": [{**SET, "index": []}]}, 422, "List should have at least 1 item"),
    ("edit", {"edits": [{**SET, "value": 1e308}]}, 400, "does not fit in blocks.0.hook_resid_pre"),
    # generate: tokens per request, sampling settings, edits
    ("generate", {"max_new_tokens": MAX_NEW_TOKENS + 1}, 400, "at most 16 tokens per request"),
    ("generate", {"max_new_tokens": BIG}, 400, "at most 16 tokens per request"),
    ("generate", {"max_new_tokens": 0}, 422, "max_new_tokens: Input should be greater than"),
    ("generate", {"max_new_tokens": -5}, 422, "max_new_tokens: Input should be greater than"),
    ("generate", {"max_new_tokens": 2.5}, 422, "max_new_tokens: Input should be a valid integer"),
    ("generate", {"greedy": None, "temperature": 1e-300}, 422, "temperature: Value error"),
    ("generate", {"greedy": None, "top_k": 50258}, 400, "top_k must be an integer in [1, 50257]"),
    ("generate", {"greedy": None, "top_p": 2}, 422, "top_p: Input should be less than"),
    ("generate", {"edits": [SET]}, 400, "remove it to generate"),
    ("generate", {"edits": [{**HEAD, "head": 9}]}, 400, f"head must be an integer in [0, {H})"),
    ("generate", {"edits": [{**STEER, "scale": 1e308}]}, 400, "the logits are inf or NaN"),
    ("generate", {"edits": [SAE_EDIT]}, 404, "unknown SAE 'tiny-sae'"),
    ("generate", {"edits": [HEAD] * 17}, 422, "edits: List should have at most 16 items"),
    ("generate", {"layer": 0}, 422, "layer: Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("route", "fields", "status", "message"), CASES)
def test_bad_values_get_a_4xx_with_a_message(client, route, fields, status, message):
    response = client.post(f"/api/{route}", json=body(route, **fields))
    assert_refused(response, status, message)
    assert_still_serving(client)


NOT_FINITE = [
    ("sampling", '"temperature": NaN', "temperature: Input should be a finite number"),
    ("sampling", '"top_p": NaN', "top_p: Input should be a finite number"),
    ("generate", '"temperature": Infinity', "temperature: Input should be a finite number"),
    ("run", '"layer": NaN', "layer: Input should be a finite number"),
    ("step", '"head": -Infinity', "head: Input should be a finite number"),
    ("run", '"k": 1e400', "k: Input should be a finite number"),
    (
        "edit",
        '"edits": [{"kind": "scale_neuron", "layer": 0, "neuron": 1, "factor": NaN}]',
        "factor: Input should be a finite number",
    ),
    (
        "edit",
        '"edits": [{"kind": "steer", "layer": 0, "positive": "a", "negative": "b", '
        '"scale": Infinity}]',
        "scale: Input should be a finite number",
    ),
    (
        "generate",
        '"edits": [{"kind": "set_value", "step": "hook_embed", "index": [0, 0], '
        '"value": -Infinity}]',
        "value: Input should be a finite number",
    ),
    (
        "generate",
        '"edits": [{"kind": "sae_feature", "sae": "s", "feature": 0, "strength": NaN}]',
        "strength: Input should be a finite number",
    ),
]


@pytest.mark.parametrize(("route", "field", "message"), NOT_FINITE)
def test_nan_and_infinity_are_refused(client, route, field, message):
    raw = f'{{"model": "tiny", "prompt": "{PROMPT}", {field}}}'
    response = client.post(
        f"/api/{route}", content=raw, headers={"Content-Type": "application/json"}
    )
    assert_refused(response, 422, message)
    assert_still_serving(client)


@pytest.mark.parametrize(
    ("route", "fields", "status", "message"),
    [
        ("sae/features", {"prompt": PROMPT, "sae": "tiny-sae"}, 404, "unknown SAE 'tiny-sae'"),
        ("sae/features", {"prompt": PROMPT, "sae": "../x", "k": 21}, 422, "k: Input should be"),
        ("sae/features", {"prompt": "", "sae": "s"}, 422, "prompt: String should have at least"),
        ("sae/feature", {"sae": "/etc", "feature": 0}, 404, "unknown SAE '/etc'"),
        ("sae/feature", {"sae": "s", "feature": "one"}, 422, "feature: Input should be"),
        ("sae/feature", {"model": "gpt2", "sae": "s", "feature": 0}, 404, "unknown model"),
        ("sae/feature", {"sae": "s", "feature": 0, "prompt": "x"}, 422, "prompt: Extra inputs"),
    ],
)
def test_the_sae_routes_refuse_bad_input(client, route, fields, status, message):
    response = client.post(f"/api/{route}", json={"model": "tiny", **fields})
    assert_refused(response, status, message)
    assert_still_serving(client)


def test_wrong_methods_and_unknown_routes(client):
    assert_refused(client.get("/api/run"), 405, "Method Not Allowed")
    assert_refused(client.post("/api/models", json={}), 405, "Method Not Allowed")
    assert_refused(client.post("/api/load", json={"model": "/etc"}), 404, "Not Found")
    assert client.get("/static/../app.py").status_code == 404  # no file outside static/
    assert client.get("/static/%2e%2e/app.py").status_code == 404
    assert_still_serving(client)


def test_no_request_ever_loads_a_model(tiny, monkeypatch):
    loads = []
    monkeypatch.setattr("gpt2lab.weights.load", lambda *a, **k: loads.append(a))
    monkeypatch.setattr("gpt2lab.load", lambda *a, **k: loads.append(a))
    with TestClient(create_app({"tiny": tiny})) as client:
        for route in ROUTES:
            for path in [*PATHS, "tiny "]:
                assert_refused(
                    client.post(f"/api/{route}", json=body(route, model=path)), 404, "serves"
                )
        assert_still_serving(client)
    assert loads == []


def test_the_limits_are_published(client):
    limits = client.get("/api/models").json()["limits"]
    assert limits == {
        "max_prompt_tokens": MAX_PROMPT_TOKENS,
        "max_prompt_chars": MAX_PROMPT_CHARS,
        "max_new_tokens": MAX_NEW_TOKENS,
        "max_window": 256,
        "max_edits": 16,
        "max_concurrent": 2,
        "max_body_bytes": 2**20,
    }


def test_the_character_cap_never_exceeds_the_schema_bound(tiny):
    app = create_app({"tiny": tiny}, max_prompt_tokens=1_000_000)
    assert app.state.lab.max_prompt_chars == web_app.MAX_PROMPT_CHARS == 100_000
    assert create_app({"tiny": tiny}).state.lab.max_prompt_chars == 16 * 1024


# --- the limiter ------------------------------------------------------------------------------
def request_in_thread(client: TestClient, route: str, out: dict) -> threading.Thread:
    def go() -> None:
        out[route] = client.post(f"/api/{route}", json=body(route, prompt=f"{PROMPT} {route}"))

    thread = threading.Thread(target=go)
    thread.start()
    return thread


def test_every_computing_route_waits_for_a_slot(tiny):
    with TestClient(create_app({"tiny": tiny}, max_concurrent=1)) as client:
        lab = client.app.state.lab
        held = client.portal.wrap_async_context_manager(lab.slot())
        held.__enter__()  # the only slot is taken
        out: dict = {}
        try:
            threads = [request_in_thread(client, route, out) for route in ROUTES]
            time.sleep(1.0)
            assert out == {}  # every one of them waits
            assert client.get("/api/models").status_code == 200  # no model work: answered
            assert lab.limiter.borrowed_tokens == 1
        finally:
            held.__exit__(None, None, None)
        for thread in threads:
            thread.join(60)
        assert {route: out[route].status_code for route in ROUTES} == dict.fromkeys(ROUTES, 200)
        assert lab.limiter.borrowed_tokens == 0


def test_a_generation_holds_its_slot_until_its_last_token(tiny, monkeypatch):
    """With one slot, a request that arrives while a generation is between tokens waits for
    the whole generation: the model's calls never interleave."""
    gen = copy.deepcopy(tiny)
    calls: list[str] = []
    midway = threading.Event()
    generate_text = gen.generate_text

    def logged(*args, **kwargs):
        for n, piece in enumerate(generate_text(*args, **kwargs)):
            calls.append("gen")
            if n == 1:
                midway.set()
                time.sleep(0.5)  # the run request below queues for the slot meanwhile
            yield piece

    monkeypatch.setattr(gen, "generate_text", logged)
    run_with_cache = tiny.run_with_cache
    monkeypatch.setattr(
        tiny, "run_with_cache", lambda *a, **k: calls.append("run") or run_with_cache(*a, **k)
    )
    with TestClient(create_app({"tiny": tiny, "gen": gen}, max_concurrent=1)) as client:
        out: dict = {}
        request = {"model": "gen", "prompt": PROMPT, "greedy": True, "max_new_tokens": 8}
        streaming = threading.Thread(
            target=lambda: out.update(gen=client.post("/api/generate", json=request))
        )
        streaming.start()
        assert midway.wait(30)
        running = request_in_thread(client, "run", out)
        streaming.join(60)
        running.join(60)
        assert out["gen"].status_code == 200
        assert out["run"].status_code == 200
        events = out["gen"].text.count("event: token")
        assert events == 8
        assert calls == ["gen"] * 8 + ["run"]
        assert client.app.state.lab.limiter.borrowed_tokens == 0


def test_a_generation_that_fails_midway_says_so_and_frees_its_slot(tiny, monkeypatch):
    gen = copy.deepcopy(tiny)

    def failing(*args, **kwargs):
        yield " one"
        yield " two"
        raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")

    monkeypatch.setattr(gen, "generate_text", failing)
    with TestClient(create_app({"gen": gen, "tiny": tiny}, max_concurrent=1)) as client:
        response = client.post("/api/generate", json={"model": "gen", "prompt": PROMPT})
        assert response.status_code == 200
        blocks = response.text.strip().split("\n\n")
        assert blocks[:2] == [
            'event: token\ndata: {"text": " one"}',
            'event: token\ndata: {"text": " two"}',
        ]
        assert blocks[2].startswith('event: error\ndata: {"detail": "generation failed: prob')
        assert len(blocks) == 3
        assert client.app.state.lab.limiter.borrowed_tokens == 0
        refused = client.post("/api/generate", json={**body("generate"), "max_new_tokens": 999})
        assert_refused(refused, 400, "at most 256 tokens")
        assert client.app.state.lab.limiter.borrowed_tokens == 0
        assert_still_serving(client)


def test_the_trace_cache_stays_within_budget_after_hook_probs_is_read(tiny):
    one, two = (tiny.run_with_cache(p, kept_steps(0)) for p in ("one", "two"))
    probs = two.logits.numel() * 4  # float32, as big as the logits
    budget = one.nbytes + two.nbytes + probs // 2  # room for both traces, not for two's probs
    with TestClient(create_app({"tiny": tiny}, max_cache_bytes=budget)) as client:
        cache = client.app.state.lab.traces
        for prompt in ("one", "two"):
            run = client.post("/api/run", json=body("run", prompt=prompt, layer=0))
            assert run.status_code == 200
        assert len(cache._traces) == 2
        step = body("step", prompt="two", layer=0, step="hook_probs", head=None)
        assert client.post("/api/step", json=step).status_code == 200  # "two" grows by its probs
        assert client.post("/api/step", json=step).status_code == 200
        assert len(cache._traces) == 1  # so "one" goes
        assert cache._bytes() == two.nbytes + probs <= budget
