"""Named steps, traces, stop-edit-resume, interventions and activation patching."""

from __future__ import annotations

import pytest
import torch

import gpt2lab
from gpt2lab import trace as tr
from gpt2lab.errors import UsageError
from gpt2lab.hooks import STEPS, describe, resolve_names, step_names
from gpt2lab.model import layer_norm

PROMPT = "Mike is quick. He moves"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = gpt2lab.GPT2Config(n_layer=3, n_embd=48, n_head=4, n_positions=64)
    return gpt2lab.GPT2(config, tokenizer=gpt2lab.get_tokenizer()).eval()


@pytest.fixture(scope="module")
def trace(model):
    return model.run_with_cache(PROMPT)


def test_every_step_is_kept_in_forward_order(model, trace):
    names = step_names(model.config)
    assert list(trace) == names  # hook_probs last, computed on first use
    assert len(names) == 2 + 24 * 3 + 5 + 2
    assert names[:4] == ["hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre",
                         "blocks.0.ln1.hook_mean"]  # fmt: skip
    assert names[-2:] == ["hook_logits", "hook_probs"]
    T, C, H = 6, 48, 4
    shapes = {
        "blocks.1.attn.hook_q": (1, T, H, C // H),
        "blocks.1.attn.hook_z": (1, T, H, C // H),
        "blocks.1.attn.hook_attn_scores": (1, H, T, T),
        "blocks.1.ln1.hook_scale": (1, T, 1),
        "blocks.1.attn.hook_pattern": (1, H, T, T),
        "blocks.1.ln2.hook_var": (1, T, 1),
        "blocks.2.mlp.hook_post": (1, T, 4 * C),
        "hook_probs": (1, T, 50257),
    }
    for name, shape in shapes.items():
        assert tuple(trace[name].shape) == shape, name


def test_trace_values_are_the_plain_forward_pass(model, trace):
    ids = torch.tensor([model.tokenizer.encode(PROMPT)])
    assert trace.ids.tolist() == ids.tolist()
    with torch.no_grad():
        fast = model(ids)  # no hooks: gpt2lab.fast, equal to 1e-4
        model.fast_path = False
        plain = model(ids)  # the named steps with nothing attached: exactly what a trace reads
        model.fast_path = True
    assert torch.equal(trace.logits, plain)
    assert torch.equal(trace["hook_logits"], plain)
    assert (fast - plain).abs().max() <= 1e-4
    assert torch.allclose(trace["hook_probs"].sum(-1), torch.ones(1, 6))
    embed = model.transformer.wte.weight[ids] + model.transformer.wpe.weight[:6]
    assert torch.equal(trace["blocks.0.hook_resid_pre"], embed)


def test_attention_rows_sum_to_one_and_are_zero_above_the_diagonal(model, trace):
    for layer in range(3):
        pattern = trace[f"blocks.{layer}.attn.hook_pattern"][0]  # [H, T, T]
        assert torch.allclose(pattern.sum(-1), torch.ones(4, 6), atol=1e-6)
        assert torch.all(pattern.triu(diagonal=1) == 0)
        assert torch.all(pattern[:, torch.ones(6, 6).tril().bool()] > 0)
        masked = trace[f"blocks.{layer}.attn.hook_attn_scores"][0]  # as in TransformerLens
        assert torch.all(masked[:, torch.ones(6, 6).triu(1).bool()] == float("-inf"))
        scores = trace[f"blocks.{layer}.attn.hook_unmasked_scores"][0]
        assert torch.isfinite(scores).all()
        assert torch.equal(masked.tril(), scores.tril())
        assert torch.allclose(torch.softmax(masked, -1), pattern)


def test_last_resid_post_through_ln_final_and_unembedding_is_the_logits(model, trace):
    x = trace["blocks.2.hook_resid_post"]
    ln_f = model.transformer.ln_f
    by_hand = layer_norm(x, ln_f.weight, ln_f.bias, ln_f.eps) @ model.transformer.wte.weight.T
    assert torch.allclose(by_hand, trace.logits, atol=1e-5)
    mean, var = trace["ln_final.hook_mean"], trace["ln_final.hook_var"]
    assert torch.allclose(mean, x.mean(-1, keepdim=True))
    assert torch.allclose(var, x.var(-1, keepdim=True, unbiased=False))
    assert torch.allclose(trace["ln_final.hook_scale"], torch.sqrt(var + ln_f.eps))
    normalized = trace["ln_final.hook_normalized"]
    assert torch.allclose(normalized, (x - mean) / trace["ln_final.hook_scale"])
    assert torch.allclose(normalized.mean(-1), torch.zeros(1, 6), atol=1e-5)


def test_residual_stream_adds_up(trace):
    for layer in range(3):
        pre = trace[f"blocks.{layer}.hook_resid_pre"]
        mid = trace[f"blocks.{layer}.hook_resid_mid"]
        assert torch.equal(mid, pre + trace[f"blocks.{layer}.hook_attn_out"])
        post = trace[f"blocks.{layer}.hook_resid_post"]
        assert torch.equal(post, mid + trace[f"blocks.{layer}.hook_mlp_out"])
        if layer < 2:
            assert torch.equal(post, trace[f"blocks.{layer + 1}.hook_resid_pre"])


@pytest.mark.parametrize(
    "name",
    [
        "hook_embed",
        "hook_pos_embed",
        "blocks.0.hook_resid_pre",
        "blocks.1.ln1.hook_var",
        "blocks.1.attn.hook_k",
        "blocks.1.attn.hook_pattern",
        "blocks.2.mlp.hook_pre",
        "blocks.2.hook_resid_post",
        "ln_final.hook_normalized",
        "hook_logits",
    ],
)
def test_stop_and_resume_without_an_edit_is_the_plain_run(model, trace, name):
    paused = model.run_to(PROMPT, name)
    assert paused.name == name
    assert torch.equal(paused.value, trace[name])
    assert torch.equal(paused.resume(), trace.logits)


def test_stop_edit_resume_equals_the_same_edit_done_by_a_hook(model):
    name = "blocks.1.attn.hook_pattern"
    paused = model.run_to(PROMPT, name)
    paused.value[0, 2] = torch.eye(6)  # head 2 attends to itself only
    edited = paused.resume()
    expected = model.run_with_hooks(PROMPT, [tr.set_to(name, paused.value)])
    assert torch.equal(edited, expected)
    doubled = paused.resume(lambda v: v * 2)
    assert not torch.allclose(doubled, edited)
    with pytest.raises(UsageError, match="shape"):
        paused.resume(torch.zeros(3))


def test_run_to_keeps_earlier_steps_when_asked(model, trace):
    paused = model.run_to(PROMPT, "blocks.1.hook_resid_mid", names="blocks.*.attn.hook_pattern")
    assert set(paused.trace) >= {"blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"}
    assert "blocks.2.attn.hook_pattern" not in paused.trace  # after the stop
    everything = model.run_to(PROMPT, "blocks.0.hook_attn_out", names=None)
    assert "blocks.0.attn.hook_z" in everything.trace


def test_patching_a_run_with_its_own_activations_reproduces_the_logits_exactly(model, trace):
    edits = [tr.patch(name, trace) for name in trace if name != "hook_probs"]
    assert torch.equal(model.run_with_hooks(PROMPT, edits), trace.logits)


def test_zero_ablating_a_head_changes_only_what_comes_after_it(model, trace):
    ablated = model.run_with_cache(PROMPT, edits=[tr.ablate_head(1, 2)])
    order = step_names(model.config)
    first_changed = order.index("blocks.1.attn.hook_z")
    for name in order[:first_changed]:
        assert torch.equal(ablated[name], trace[name]), name
    z, z0 = ablated["blocks.1.attn.hook_z"], trace["blocks.1.attn.hook_z"]
    assert torch.all(z[:, :, 2] == 0)  # [B, T, H, D]
    assert torch.equal(z[:, :, [0, 1, 3]], z0[:, :, [0, 1, 3]])  # the other heads are untouched
    for name in ["blocks.1.hook_attn_out", "blocks.2.attn.hook_pattern", "hook_logits"]:
        assert not torch.allclose(ablated[name], trace[name]), name
    # The head's share of attn_out is exactly z_h @ W_O[h]: removing it is a subtraction.
    W_O = model.transformer.h[1].attn.c_proj.weight
    D = 12
    share = z0[0, :, 2] @ W_O[2 * D : 3 * D]
    expected = trace["blocks.1.hook_attn_out"][0] - share
    assert torch.allclose(ablated["blocks.1.hook_attn_out"][0], expected, atol=1e-5)


def test_mean_ablation_and_mlp_ablation(model, trace):
    mean = model.run_with_cache(
        PROMPT, "blocks.0.attn.hook_z", edits=[tr.ablate_head(0, 1, "mean")]
    )
    z = mean["blocks.0.attn.hook_z"][0, :, 1]  # head 1 at every position
    expected = trace["blocks.0.attn.hook_z"][0, :, 1].mean(0)
    assert torch.allclose(z, expected.expand_as(z))
    others = mean["blocks.0.attn.hook_z"][0, :, [0, 2, 3]]
    assert torch.equal(others, trace["blocks.0.attn.hook_z"][0, :, [0, 2, 3]])
    no_mlp = model.run_with_cache(PROMPT, "blocks.2.hook_resid_post", edits=[tr.ablate_mlp(2)])
    assert torch.equal(no_mlp["blocks.2.hook_resid_post"], trace["blocks.2.hook_resid_mid"])


def test_scale_neuron_removes_exactly_its_output_direction(model, trace):
    off = model.run_with_cache(PROMPT, "blocks.0.hook_mlp_out", edits=[tr.scale_neuron(0, 7, 0.0)])
    post = trace["blocks.0.mlp.hook_post"][0, :, 7]  # [T]
    W_out = model.transformer.h[0].mlp.c_proj.weight  # [4C, C]
    expected = trace["blocks.0.hook_mlp_out"][0] - post[:, None] * W_out[7]
    assert torch.allclose(off["blocks.0.hook_mlp_out"][0], expected, atol=1e-5)
    same = model.run_with_hooks(PROMPT, [tr.scale_neuron(0, 7, 1.0)])
    assert torch.equal(same, trace.logits)


def test_steering_vector_is_added_to_the_residual_stream(model, trace):
    v = tr.steering_vector(model, "I love it", "I hate it", layer=1)
    assert v.shape == (48,)
    same = tr.steering_vector(model, "I love it", "I love it", layer=1)
    assert torch.all(same == 0)
    steered = model.run_with_cache(
        PROMPT, "blocks.1.hook_resid_pre", edits=[tr.add_vector(1, v, scale=2.0, positions=[0, 5])]
    )
    delta = steered["blocks.1.hook_resid_pre"][0] - trace["blocks.1.hook_resid_pre"][0]
    assert torch.allclose(delta[[0, 5]], 2 * v.expand(2, -1), atol=1e-6)
    assert torch.all(delta[1:5] == 0)


def test_activation_patching_grid(model):
    clean, corrupted = "The cat sat on the", "The dog sat on the"
    tok = model.tokenizer
    assert len(tok.encode(clean)) == len(tok.encode(corrupted)) == 5
    metric = tr.logit_difference(tok.encode(" mat")[0], tok.encode(" rug")[0])
    result = tr.activation_patching(model, clean, corrupted, metric)
    assert result.effect.shape == (3, 5)
    # Before block 0 the runs differ only at the swapped word: patching it there turns the
    # corrupted run into the clean one, patching any other position changes nothing.
    assert result.effect[0, 1].item() == pytest.approx(1.0, abs=1e-4)
    assert torch.allclose(result.effect[0, [0, 2, 3, 4]], torch.zeros(4), atol=1e-4)
    # Entering the last block, only the last position's residual feeds its own attention and
    # MLP directly, yet every position feeds attention: check one cell by a direct patch.
    clean_trace = model.run_with_cache(clean, "blocks.2.hook_resid_pre")
    direct = model.run_with_hooks(
        corrupted, [tr.patch("blocks.2.hook_resid_pre", clean_trace, positions=[4])]
    )
    assert result.metric[2, 4].item() == pytest.approx(metric(direct), abs=1e-5)
    frame = result.to_frame()
    assert list(frame.index) == ["block 0", "block 1", "block 2"]
    assert frame.columns[1] == "1 ' dog'"
    with pytest.raises(UsageError, match="same token length"):
        tr.activation_patching(model, "The cat sat", corrupted, metric)


def test_to_frame_labels_rows_and_columns(model, trace):
    frame = trace.to_frame("blocks.0.attn.hook_pattern", head=3)
    assert frame.shape == (6, 6)
    assert list(frame.index)[:2] == ["0 'Mike'", "1 ' is'"]
    assert torch.allclose(torch.tensor(frame.values), trace["blocks.0.attn.hook_pattern"][0, 3])
    heads = trace.to_frame("blocks.0.attn.hook_pattern")
    assert heads.shape == (4 * 6, 6)
    resid = trace.to_frame("blocks.2.hook_resid_post")
    assert resid.shape == (6, 48) and list(resid.columns[:3]) == [0, 1, 2]
    probs = trace.to_frame("hook_probs")
    assert probs.columns[16073] == "Mike"
    assert list(trace.to_frame("blocks.0.ln1.hook_mean").columns) == ["mean"]
    assert list(trace.to_frame("blocks.0.ln1.hook_scale").columns) == ["scale"]
    q = trace.to_frame("blocks.0.attn.hook_q", head=2)  # [B, T, H, D]: head 2 of every position
    assert q.shape == (6, 12)
    assert torch.allclose(torch.tensor(q.values), trace["blocks.0.attn.hook_q"][0, :, 2])
    scores = trace.to_frame("blocks.0.attn.hook_attn_scores", head=1)
    assert list(scores.columns) == list(frame.index)  # a column per key
    with pytest.raises(UsageError, match="head"):
        trace.to_frame("blocks.0.attn.hook_pattern", head=4)


def test_save_xlsx_writes_one_sheet_per_step_with_the_values(model, trace, tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    names = ["blocks.0.attn.hook_pattern", "blocks.1.hook_resid_post", "hook_logits"]
    path = trace.save_xlsx(tmp_path / "gpt2.xlsx", names)
    book = openpyxl.load_workbook(path, read_only=True)
    assert book.sheetnames == ["b0.attn.pattern", "b1.resid_post", "logits", "steps"]
    rows = list(book["b1.resid_post"].values)
    assert rows[0][1:4] == (0, 1, 2)
    assert rows[3][0] == "2 ' quick'"
    assert rows[3][5] == pytest.approx(trace["blocks.1.hook_resid_post"][0, 2, 4].item(), rel=1e-6)
    logits = list(book["logits"].values)  # transposed: one row per vocabulary entry
    assert len(logits) == 1 + 50257
    assert logits[16074][0] == "Mike"
    assert logits[16074][1] == pytest.approx(trace.logits[0, 0, 16073].item(), rel=1e-6)
    steps = list(book["steps"].values)
    assert steps[0] == ("sheet", "step", "shape", "formula", "transposed")
    assert steps[1][1] == "blocks.0.attn.hook_pattern"
    assert steps[1][3] == describe("blocks.0.attn.hook_pattern").formula


def test_to_disk_trace_equals_the_in_memory_one(model, trace, tmp_path):
    on_disk = model.run_with_cache(PROMPT, "blocks.*.attn.hook_pattern", to_disk=tmp_path / "t")
    assert sorted(p.name for p in (tmp_path / "t").iterdir())[0] == "blocks.0.attn.hook_pattern.npy"
    for name in on_disk:
        assert torch.equal(on_disk[name], trace[name])


def test_names_filter_patterns_and_errors(model):
    small = model.run_with_cache(PROMPT, ["blocks.*.attn.hook_pattern", "hook_logits"])
    assert list(small) == [f"blocks.{i}.attn.hook_pattern" for i in range(3)] + ["hook_logits"]
    with pytest.raises(UsageError, match="was not kept"):
        small["blocks.0.hook_resid_pre"]
    with pytest.raises(UsageError, match=r"did you mean blocks\.0\.attn\.hook_pattern"):
        model.run_with_cache(PROMPT, "blocks.0.attn.hook_patern")
    with pytest.raises(UsageError, match="3-layer model"):
        model.run_with_cache(PROMPT, "blocks.7.hook_resid_pre")
    with pytest.raises(UsageError, match="3-layer model"):
        model.run_with_hooks(PROMPT, [tr.ablate_head(5, 0)])
    with pytest.raises(UsageError, match="head must be"):
        model.run_with_hooks(PROMPT, [tr.ablate_head(0, 9)])
    with pytest.raises(UsageError, match="empty"):
        model.run_with_cache("")
    with pytest.raises(UsageError, match="context"):
        model.run_with_cache(list(range(65)))
    with pytest.raises(UsageError, match="pattern"):
        model.run_to(PROMPT, "blocks.*.hook_resid_pre")
    with pytest.raises(UsageError):
        describe("blocks.0.attn.hook_nothing")


def test_the_step_table_covers_every_hook_the_model_calls(model):
    seen: list[str] = []
    hooks = gpt2lab.hooks.Hooks()
    for name in step_names(model.config):
        hooks.add(name, lambda v, n: seen.append(n))
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]), hooks=hooks)
    assert seen == [n for n in step_names(model.config) if n != "hook_probs"]
    assert all(s.formula and s.shape.startswith("[") for s in STEPS)
    assert resolve_names("blocks.1.ln*.hook_mean", model.config) == [
        "blocks.1.ln1.hook_mean",
        "blocks.1.ln2.hook_mean",
    ]


@pytest.mark.slow  # every activation of 124M on 1024 tokens: gigabytes
def test_a_1024_token_trace_on_the_124m_config():
    torch.manual_seed(0)
    model = gpt2lab.GPT2(gpt2lab.preset("gpt2")).eval()
    ids = torch.randint(0, 50257, (1, 1024))
    trace = model.run_with_cache(ids)
    assert len(trace) == len(step_names(model.config))
    pattern = trace["blocks.11.attn.hook_pattern"]
    assert pattern.shape == (1, 12, 1024, 1024)
    assert torch.allclose(pattern.sum(-1), torch.ones(1, 12, 1024), atol=1e-5)
    assert torch.all(pattern[0, 0].triu(diagonal=1) == 0)
    ln_f = model.transformer.ln_f
    x = trace["blocks.11.hook_resid_post"][0, -8:]
    logits = layer_norm(x, ln_f.weight, ln_f.bias, ln_f.eps) @ model.transformer.wte.weight.T
    assert torch.allclose(logits, trace.logits[0, -8:], atol=1e-4)


def test_generation_with_edits_equals_greedy_steps_with_the_same_edits(model):
    """Steering while generating: each step (KV cache, one new position) equals a full
    uncached forward pass with the same edit."""
    v = tr.steering_vector(model, "I love it", "I hate it", layer=1)
    edit = tr.add_vector(1, v, scale=4.0)
    steered = model.generate(PROMPT, 5, greedy=True, stop_at_eos=False, edits=[edit])
    ids = model.tokenizer.encode(PROMPT)
    for _ in range(5):
        ids.append(int(model.run_with_hooks(ids, [edit])[0, -1].argmax()))
    assert steered == ids[-5:]
    assert not torch.allclose(model.run_with_hooks(ids, [edit]), model.run_with_hooks(ids))
    with pytest.raises(UsageError, match="3-layer model"):
        model.generate(PROMPT, 2, edits=[tr.ablate_mlp(3)])


def test_patching_positions_of_a_per_head_step_follows_its_layout(model, trace):
    """hook_q is [B, T, H, D] and hook_pattern [B, H, T, S]: position 3 is a different axis."""
    other = model.run_with_cache("Anna is slow. She waits")
    for name in ("blocks.1.attn.hook_q", "blocks.1.attn.hook_pattern"):
        patched = model.run_with_cache(PROMPT, name, edits=[tr.patch(name, other, [3])])[name]
        at = 1 if name.endswith("hook_q") else 2
        changed = (patched != trace[name]).movedim(at, 0).flatten(1).any(1)  # per position
        assert changed.tolist() == [False, False, False, True, False, False], name
        assert torch.equal(patched.select(at, 3), other[name].select(at, 3))
