"""The logit lens and direct logit attribution, checked against the real output and by hand."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import gpt2lab
from gpt2lab.errors import UsageError
from gpt2lab.lens import direct_logit_attribution, head_outputs, lens_points, logit_lens
from gpt2lab.trace import run_with_cache

PROMPT = "Once upon a time, there was a little girl named Lily. She"
THE = 262  # GPT-2's id of " the"


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    config = gpt2lab.GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64)
    return gpt2lab.GPT2(config, tokenizer=gpt2lab.get_tokenizer()).eval()


def read_out_by_hand(model, x):
    """ln_final written out with its gain and bias, then the tied unembedding. [T, C] -> [T, V]"""
    ln = model.transformer.ln_f
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    normalized = (x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias
    return (normalized @ model.transformer.wte.weight.T).detach()


def assert_rank_matches(rank, logits, target):
    """rank = how many tokens have a larger logit (so a larger probability) than the target's;
    tokens within rounding error of the target may count either way."""
    gap = logits - logits[target]
    assert (gap > 1e-4).sum() <= rank <= (gap > -1e-4).sum() - 1


# --- the logit lens ---------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["small", "tiny"])
def test_the_last_point_is_the_real_output(which, request):
    model = request.getfixturevalue(which)
    ids = model.tokenizer.encode(PROMPT)
    lens = logit_lens(model, PROMPT, k=10)

    with torch.no_grad():
        real = torch.softmax(model(torch.tensor([ids])), dim=-1)[0]  # [T, V]
    n_layer = model.config.n_layer
    assert lens.points[-1] == f"blocks.{n_layer - 1}.hook_resid_post"
    assert len(lens.points) == 2 * n_layer + 1
    assert lens.top_ids.shape == (2 * n_layer + 1, len(ids), 10)
    expected = torch.topk(real, 10)
    assert torch.equal(lens.top_ids[-1], expected.indices)
    torch.testing.assert_close(lens.top_probs[-1], expected.values, atol=1e-5, rtol=0)


def test_a_middle_point_equals_the_read_out_by_hand(small):
    trace = run_with_cache(small, PROMPT)
    lens = logit_lens(small, trace, k=7)

    point = lens.points.index("blocks.1.hook_resid_mid")
    probs = torch.softmax(read_out_by_hand(small, trace["blocks.1.hook_resid_mid"][0]), dim=-1)
    expected = torch.topk(probs, 7)
    assert torch.equal(lens.top_ids[point], expected.indices)
    torch.testing.assert_close(lens.top_probs[point], expected.values, atol=1e-6, rtol=0)
    assert lens.tokens == trace.tokens()
    assert lens.top_tokens[point][3] == [small.tokenizer.decode([i]) for i in expected.indices[3]]


def test_target_rank_and_prob_are_those_computed_directly(small):
    trace = run_with_cache(small, PROMPT)
    lens = logit_lens(small, trace, target=" the")

    assert torch.equal(lens.target_ids, torch.full((trace.ids.shape[1],), THE))
    for p, name in enumerate(lens.points):
        logits = read_out_by_hand(small, trace[name][0])
        probs = torch.softmax(logits, dim=-1)
        torch.testing.assert_close(lens.target_prob[p], probs[:, THE], atol=1e-7, rtol=1e-4)
        for t in range(logits.shape[0]):
            assert_rank_matches(lens.target_rank[p, t], logits[t], THE)
    assert torch.equal(logit_lens(small, trace, target=THE).target_rank, lens.target_rank)


def test_ranks_agree_with_the_top_tokens_on_tiny(tiny):
    lens = logit_lens(tiny, PROMPT, k=10, target="next")

    has = lens.target_ids >= 0
    for p in range(len(lens.points)):
        for t in torch.nonzero(has)[:, 0].tolist():
            rank, target = int(lens.target_rank[p, t]), int(lens.target_ids[t])
            if rank < 10:
                assert lens.top_ids[p, t, rank] == target
                assert lens.target_prob[p, t] == pytest.approx(float(lens.top_probs[p, t, rank]))
            else:
                assert target not in lens.top_ids[p, t].tolist()
                assert lens.target_prob[p, t] <= lens.top_probs[p, t, -1]


def test_target_next_is_the_next_input_token_and_none_at_the_end(small):
    trace = run_with_cache(small, PROMPT)
    lens = logit_lens(small, trace, target="next")

    ids = trace.ids[0]
    assert torch.equal(lens.target_ids[:-1], ids[1:])
    assert lens.target_ids[-1] == -1
    assert (lens.target_rank[:, -1] == -1).all()
    assert torch.isnan(lens.target_prob[:, -1]).all()
    last = len(lens.points) - 1
    logits = read_out_by_hand(small, trace[lens.points[last]][0])
    for t in range(len(ids) - 1):
        assert_rank_matches(lens.target_rank[last, t], logits[t], int(ids[t + 1]))
    per_position = logit_lens(small, trace, target=[*ids[1:].tolist(), -1])
    assert torch.equal(per_position.target_rank, lens.target_rank)


def test_post_points_are_the_resid_post_rows_of_all(small):
    every = logit_lens(small, PROMPT)
    post = logit_lens(small, PROMPT, points="post")

    assert post.points == lens_points(2, "post")
    assert post.points == [
        "blocks.0.hook_resid_pre",
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_post",
    ]
    rows = [every.points.index(name) for name in post.points]
    assert torch.equal(post.top_ids, every.top_ids[rows])
    assert lens_points(2) == [
        "blocks.0.hook_resid_pre",
        "blocks.0.hook_resid_mid",
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_mid",
        "blocks.1.hook_resid_post",
    ]


def test_positions_read_in_chunks_give_the_same_lens(small, monkeypatch):
    whole = logit_lens(small, PROMPT, target="next")
    monkeypatch.setattr(gpt2lab.lens, "_CHUNK_ELEMENTS", 3 * small.config.vocab_size)
    chunked = logit_lens(small, PROMPT, target="next")

    assert torch.equal(chunked.top_ids, whole.top_ids)
    torch.testing.assert_close(chunked.top_probs, whole.top_probs)
    assert torch.equal(chunked.target_rank, whole.target_rank)
    torch.testing.assert_close(chunked.target_prob, whole.target_prob, equal_nan=True)


def test_a_trace_must_hold_the_points(small):
    trace = run_with_cache(small, PROMPT, "blocks.*.hook_resid_post")

    with pytest.raises(
        UsageError, match=r"lacks blocks\.0\.hook_resid_pre, blocks\.0\.hook_resid_mid,"
    ):
        logit_lens(small, trace)
    with pytest.raises(UsageError, match=r"lacks blocks\.0\.hook_resid_pre;"):
        logit_lens(small, trace, points="post")


def test_bad_arguments_are_usage_errors(small, tiny):
    vocab = small.config.vocab_size
    for k in (0, vocab + 1, 2.5, True):
        with pytest.raises(UsageError, match="k must be"):
            logit_lens(small, PROMPT, k=k)
    with pytest.raises(UsageError, match=r"\['Ġgir', 'aff', 'es'\]"):
        logit_lens(small, PROMPT, target=" giraffes")
    with pytest.raises(UsageError, match="one id per position"):
        logit_lens(small, PROMPT, target=[1, 2, 3])
    with pytest.raises(UsageError, match="outside the vocabulary"):
        logit_lens(small, PROMPT, target=vocab)
    with pytest.raises(UsageError, match="points must be"):
        logit_lens(small, PROMPT, points="mid")
    with pytest.raises(UsageError, match="batch of 2"):
        logit_lens(small, ["Hello there", "Hello world"])
    with pytest.raises(UsageError, match="another config"):
        logit_lens(small, run_with_cache(tiny, PROMPT))


@pytest.mark.slow  # a minute, and up to 4 GB in its own process
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
def test_gpt2_small_on_1024_tokens_never_holds_all_the_logits():
    """GPT-2 124M (random weights) on a full context: 25 points x 1024 positions x 50,257
    tokens would be 5 GB of logits; the lens keeps one chunk at a time. Run in a fresh process so
    that its peak memory is its own."""
    code = textwrap.dedent(
        """
        import json, time, torch, gpt2lab
        from gpt2lab.lens import logit_lens
        torch.manual_seed(0)
        model = gpt2lab.GPT2(gpt2lab.preset("gpt2"), tokenizer=gpt2lab.get_tokenizer()).eval()
        ids = torch.randint(0, 50257, (1024,)).tolist()
        start = time.perf_counter()
        lens = logit_lens(model, ids, k=3, target="next")
        seconds = time.perf_counter() - start
        # VmHWM, not ru_maxrss: Linux carries the parent's peak into ru_maxrss across exec
        status = open("/proc/self/status").read().split("VmHWM:")[1]
        peak_mb = int(status.split()[0]) / 1024
        shapes = [list(t.shape) for t in (lens.top_ids, lens.top_probs, lens.target_rank)]
        print(json.dumps({"shapes": shapes, "peak_mb": peak_mb, "seconds": seconds}))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    result = json.loads(run.stdout)
    print(f"124M logit lens on 1024 tokens: {result['seconds']:.1f} s, {result['peak_mb']:.0f} MB")
    assert result["shapes"] == [[25, 1024, 3], [25, 1024, 3], [25, 1024]]
    # Weights 0.5 GB, the trace 0.3 GB and one chunk of logits: about 1.5 GB, but the allocator's
    # peak varies between runs (up to 3.9 GB seen on a busy machine). [25, 1024, 50257] alone
    # would be 5.1 GB, on top of the weights.
    assert result["peak_mb"] < 4500


# --- direct logit attribution -----------------------------------------------------------------
@pytest.mark.parametrize("which", ["small", "tiny"])
def test_contributions_sum_to_the_real_logit(which, request):
    model = request.getfixturevalue(which)
    trace = run_with_cache(model, PROMPT)
    T = trace.ids.shape[1]

    for position, token in [(-1, " the"), (3, THE), (T - 2, 13)]:
        parts = direct_logit_attribution(model, trace, token, position=position)
        assert parts.position == position % T
        assert parts.logit == pytest.approx(float(trace.logits[0, position % T, parts.token]))
        assert abs(float(parts.values.sum()) - parts.logit) < 1e-4
    n_layer, n_head = model.config.n_layer, model.config.n_head
    assert len(parts.labels) == len(parts.values) == 2 + n_layer * (n_head + 2) + 1
    assert parts.labels[:4] == ["embed", "pos_embed", "L0H0", "L0H1"]
    assert parts.labels[-3:] == [
        f"L{n_layer - 1} attn bias",
        f"L{n_layer - 1} mlp",
        "ln_final bias",
    ]


def test_head_outputs_and_bias_add_up_to_attn_out(small):
    trace = run_with_cache(small, PROMPT)

    for layer, block in enumerate(small.transformer.h):
        heads = head_outputs(block.attn, trace[f"blocks.{layer}.attn.hook_z"])  # [1, T, H, C]
        assert heads.shape == (1, trace.ids.shape[1], 2, 32)
        total = heads.sum(dim=2) + block.attn.c_proj.bias
        torch.testing.assert_close(total, trace[f"blocks.{layer}.hook_attn_out"])


def test_one_head_contribution_by_hand(small):
    trace = run_with_cache(small, PROMPT)
    parts = direct_logit_attribution(small, trace, THE, position=5)

    z = trace["blocks.1.attn.hook_z"][0, 5, 1]  # position 5, head 1 of block 1: [D]
    with torch.no_grad():
        out = z @ small.transformer.h[1].attn.c_proj.weight[16:32]  # its rows of W_O [D, C]
        final = trace["blocks.1.hook_resid_post"][0, 5]
        ln, unembed = small.transformer.ln_f, small.transformer.wte.weight[THE]
        scale = torch.sqrt(final.var(unbiased=False) + ln.eps)
        expected = ((out - out.mean()) / scale * ln.weight) @ unembed
        bias = ln.bias @ unembed
    assert parts.values[parts.labels.index("L1H1")] == pytest.approx(float(expected), abs=1e-6)
    assert parts.values[-1] == pytest.approx(float(bias), abs=1e-6)


def test_attribution_errors_are_usage_errors(small):
    T = len(small.tokenizer.encode(PROMPT))
    for position in (T, -T - 1, 1.0):
        with pytest.raises(UsageError, match="position must be"):
            direct_logit_attribution(small, PROMPT, THE, position=position)
    with pytest.raises(UsageError, match="not one"):
        direct_logit_attribution(small, PROMPT, " giraffes")
    with pytest.raises(UsageError, match=r"lacks blocks\.0\.attn\.hook_z"):
        direct_logit_attribution(small, run_with_cache(small, PROMPT, "hook_*"), THE)


# --- tables and JSON --------------------------------------------------------------------------
def test_lens_tables_show_the_top_token_rank_and_prob(small):
    lens = logit_lens(small, "Hello there, friend", k=2, target="next")

    top = lens.to_frame()
    assert list(top.index) == lens.points
    assert list(top.columns) == ["0 'Hello'", "1 ' there'", "2 ','", "3 ' friend'"]
    p, t = 2, 1
    token, prob = lens.top_tokens[p][t][0], float(lens.top_probs[p, t, 0])
    assert top.iloc[p, t] == f"{token!r} ({prob:.2f})"
    rank = lens.to_frame("rank")
    assert rank.values.tolist() == lens.target_rank.tolist()
    assert (rank.iloc[:, -1] == -1).all()
    prob_table = lens.to_frame("prob")
    assert prob_table.iloc[p, t] == pytest.approx(float(lens.target_prob[p, t]))
    assert prob_table.iloc[:, -1].isna().all()
    with pytest.raises(UsageError, match="what must be"):
        lens.to_frame("logits")
    with pytest.raises(UsageError, match="no target"):
        logit_lens(small, "Hello there").to_frame("rank")


def test_lens_dict_is_json_with_every_value(small):
    lens = logit_lens(small, "Hello there, friend", k=2, target="next")

    d = json.loads(json.dumps(lens.to_dict(), allow_nan=False))
    assert d["points"] == lens.points
    assert d["tokens"] == ["Hello", " there", ",", " friend"]
    assert d["top_ids"] == lens.top_ids.tolist()
    assert d["top_tokens"] == lens.top_tokens
    assert d["top_probs"][1][2] == pytest.approx(lens.top_probs[1, 2].tolist())
    assert d["target_ids"] == [*lens.target_ids[:-1].tolist(), -1]
    assert d["target_rank"] == lens.target_rank.tolist()
    assert all(row[-1] is None for row in d["target_prob"])
    assert d["target_prob"][0][0] == pytest.approx(float(lens.target_prob[0, 0]))
    untargeted = logit_lens(small, "Hello there").to_dict()
    assert [untargeted[f"target_{f}"] for f in ("ids", "rank", "prob")] == [None, None, None]


def test_attribution_table_and_dict(small):
    parts = direct_logit_attribution(small, PROMPT, " the")

    frame = parts.to_frame()
    assert list(frame.index) == parts.labels
    assert list(frame.columns) == ["contribution"]
    assert frame.loc["L1H0", "contribution"] == pytest.approx(
        float(parts.values[parts.labels.index("L1H0")])
    )
    assert frame["contribution"].sum() == pytest.approx(parts.logit, abs=1e-4)
    d = json.loads(json.dumps(parts.to_dict(), allow_nan=False))
    assert d["token"] == THE
    assert d["token_text"] == " the"
    assert d["position"] == len(small.tokenizer.encode(PROMPT)) - 1
    assert d["labels"] == parts.labels
    assert d["values"] == pytest.approx(parts.values.tolist())
    assert d["logit"] == pytest.approx(parts.logit)
