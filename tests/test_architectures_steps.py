"""The named steps of every switch since GPT-2 (issue 18): each step function against a hand
computation or PyTorch's own op, each switch running forward, traces, KV-cache generation,
the step catalogue and the parameter counts. Tiny random models: the file runs in seconds."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from gpt2lab import model as m
from gpt2lab.config import PRESETS, GPT2Config, RopeScaling, parameter_counts
from gpt2lab.hooks import describe, get_act_name, head_axis, head_index, step_names, steps
from gpt2lab.kv_cache import KVCache
from gpt2lab.lens import direct_logit_attribution, logit_lens
from gpt2lab.trace import ablate_head, run_to, run_with_cache, run_with_hooks

TINY = dict(vocab_size=61, n_positions=32, n_embd=24, n_layer=2, n_head=4)
CONFIGS = {
    "gpt2": GPT2Config(**TINY),
    "sinusoidal": GPT2Config(**TINY, positions="sinusoidal"),
    "rope": GPT2Config(**TINY, positions="rope"),
    "rope partial, theta": GPT2Config(
        **{**TINY, "n_embd": 32},
        positions="rope",
        partial_rotary_factor=0.5,
        rope_theta=500.0,
    ),
    "rmsnorm": GPT2Config(**TINY, norm="rmsnorm"),
    "post-norm": GPT2Config(**TINY, norm_position="post", final_norm=False),
    "post-norm, final norm": GPT2Config(**TINY, norm_position="post"),
    "no final norm": GPT2Config(**TINY, final_norm=False),
    "gelu exact": GPT2Config(**TINY, activation="gelu"),
    "relu, n_inner": GPT2Config(**TINY, activation="relu", n_inner=40),
    "swiglu": GPT2Config(**TINY, activation="swiglu", n_inner=36),
    "gqa": GPT2Config(**TINY, n_kv_head=2),
    "mqa": GPT2Config(**TINY, n_kv_head=1),
    "no biases": GPT2Config(**TINY, qkv_bias=False, attn_out_bias=False, mlp_bias=False),
    "qkv bias only": GPT2Config(**TINY, attn_out_bias=False, mlp_bias=False),
    "untied": GPT2Config(**TINY, tie_word_embeddings=False),
    "llama": PRESETS["llama-3.1-8b"].replace(
        vocab_size=61, n_positions=32, n_embd=24, n_layer=2, n_head=4, n_kv_head=2, n_inner=40
    ),
    "gpt1": PRESETS["gpt1"].replace(**TINY),
    "transformer-base": PRESETS["transformer-base"].replace(**TINY, n_inner=48),
}
LLAMA, GPT1 = CONFIGS["llama"], CONFIGS["gpt1"]


def build(config: GPT2Config, seed: int = 0) -> m.GPT2:
    """A random model whose biases and gains are not their init values (so they count)."""
    torch.manual_seed(seed)
    model = m.GPT2(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
    return model.eval()


IDS = torch.tensor([[5, 17, 3, 42, 8, 8, 30], [1, 2, 3, 4, 5, 6, 7]])


# --- the step functions -------------------------------------------------------------------------
def test_rms_norm_and_its_steps():
    x, g = torch.randn(2, 3, 8), torch.randn(8)
    scale = m.rms_scale(x, 1e-6)
    assert torch.allclose(scale, (x.pow(2).sum(-1, keepdim=True) / 8 + 1e-6).sqrt())
    x_hat = m.rms_normalize(x, scale)
    assert torch.allclose(x_hat.pow(2).mean(-1), torch.ones(2, 3), atol=1e-4)  # rms 1, mean not 0
    assert torch.equal(m.gain(x_hat, g), x_hat * g)
    torch.testing.assert_close(m.rms_norm(x, g, 1e-6), F.rms_norm(x, (8,), g, eps=1e-6))


def test_activations_match_torch():
    x = torch.linspace(-6, 6, 1001)
    torch.testing.assert_close(m.gelu_exact(x), F.gelu(x))
    torch.testing.assert_close(m.relu(x), F.relu(x))
    torch.testing.assert_close(m.silu(x), F.silu(x))
    up = torch.randn(1001)
    torch.testing.assert_close(m.swiglu(x, up), F.silu(x) * up)
    assert m.relu(torch.tensor([-2.0, 0.0, 3.0])).tolist() == [0.0, 0.0, 3.0]


def test_sinusoids_at_known_positions():
    pe = m.sinusoidal_positions(torch.tensor([0, 1, 7]), 4)  # [3, 4]
    assert pe[0].tolist() == [0.0, 1.0, 0.0, 1.0]  # sin 0, cos 0 for every frequency
    # position 1: pair 0 turns by 1 radian, pair 1 by 1/10000^(2/4) = 0.01
    expected = [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)]
    torch.testing.assert_close(pe[1], torch.tensor(expected))
    torch.testing.assert_close(pe[2, :2], torch.tensor([math.sin(7), math.cos(7)]))


def test_rope_frequencies_and_llama3_scaling():
    inv = m.rope_frequencies(8, 10000.0)
    torch.testing.assert_close(inv, torch.tensor([1.0, 0.1, 0.01, 0.001]))
    # Llama 3 scaling, with L = 16: wavelengths 2π, 62.8, 628, 6283 against L/4 = 4, L/1 = 16
    scaling = RopeScaling(
        factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=16
    )
    scaled = m.rope_frequencies(8, 10000.0, scaling)
    # 2π lies between 4 and 16: blended with s = (16/2π - 1) / 3
    s = (16 / (2 * math.pi) - 1) / 3
    expected = torch.tensor([(1 - s) / 8 + s, 0.1 / 8, 0.01 / 8, 0.001 / 8])
    torch.testing.assert_close(scaled, expected)


def test_rope_frequencies_equal_transformers():
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    hf = transformers.LlamaConfig(
        hidden_size=64,
        num_attention_heads=2,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    )
    theirs, _ = ROPE_INIT_FUNCTIONS["llama3"](hf, "cpu")
    scaling = RopeScaling(32.0, 1.0, 4.0, 64)
    torch.testing.assert_close(m.rope_frequencies(32, 500000.0, scaling), theirs)


def test_rotate_half_and_rope_keep_norms_and_depend_on_offsets():
    x = torch.arange(6.0)
    assert m.rotate_half(x).tolist() == [-3.0, -4.0, -5.0, 0.0, 1.0, 2.0]
    inv = m.rope_frequencies(8, 10000.0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def dot(p_q: int, p_k: int) -> float:
        cq, sq = m.rope_angles(torch.tensor([[p_q]]), inv)
        ck, sk = m.rope_angles(torch.tensor([[p_k]]), inv)
        return float((m.apply_rope(q, cq, sq) * m.apply_rope(k, ck, sk)).sum())

    # rotating q and k by their positions leaves q·k depending only on the offset
    assert dot(3, 1) == pytest.approx(dot(12, 10), abs=1e-5)
    assert dot(5, 5) == pytest.approx(float((q * k).sum()), abs=1e-5)
    assert dot(3, 1) != pytest.approx(dot(3, 2), abs=1e-3)
    cos, sin = m.rope_angles(torch.tensor([[9]]), inv)
    assert m.apply_rope(q, cos, sin).norm() == pytest.approx(float(q.norm()), rel=1e-5)
    # partial rotation: the dims past rotary_dim pass unchanged
    wide = torch.randn(1, 1, 2, 12)
    assert torch.equal(m.apply_rope(wide, cos, sin)[..., 8:], wide[..., 8:])


def test_repeat_kv_gives_each_query_head_its_group():
    kv = torch.randn(2, 5, 2, 3)
    out = m.repeat_kv(kv, 3)
    assert out.shape == (2, 5, 6, 3)
    for h in range(6):
        assert torch.equal(out[:, :, h], kv[:, :, h // 3])
    assert m.repeat_kv(kv, 1) is kv


# --- each switch, in the model ------------------------------------------------------------------
@pytest.mark.parametrize("name", CONFIGS)
def test_every_switch_runs_traces_and_counts(name):
    config = CONFIGS[name]
    model = build(config)
    trace = run_with_cache(model, IDS)
    assert list(trace) == [n for n in step_names(config) if n != "hook_probs"] + ["hook_probs"]
    assert trace.logits.shape == (2, 7, 61) and torch.isfinite(trace.logits).all()
    torch.testing.assert_close(model(IDS), trace.logits)  # the same with no hooks (fast or not)
    with torch.no_grad():
        loss = model(IDS[:, :-1], targets=IDS[:, 1:])
    expected = F.cross_entropy(trace.logits[:, :-1].reshape(-1, 61), IDS[:, 1:].reshape(-1))
    assert float(loss) == pytest.approx(float(expected), abs=1e-5)
    # every step's shape, with K where it applies, as steps(config) says
    C, K, D = config.n_embd, config.n_key_value_heads, config.head_dim
    sizes = {"B": 2, "T": 7, "S": 7, "C": C, "H": 4, "K": K, "D": D, "4C": 4 * C}
    sizes |= {"F": config.d_mlp, "V": 61, "1": 1}
    for step in trace:
        axes = describe(step, config).shape.strip("[]").split(", ")
        assert list(trace[step].shape) == [sizes[a] for a in axes], step
    assert (
        model.num_parameters()
        == parameter_counts(config)["total"]
        == model.parameter_counts()["total"]
    )
    state = model.state_dict()
    assert ("transformer.wpe.weight" in state) == (config.positions == "learned")
    assert ("transformer.ln_f.weight" in state) == config.final_norm
    assert ("lm_head.weight" in state) == (not config.tie_word_embeddings)
    assert ("transformer.h.0.attn.c_attn.bias" in state) == config.qkv_bias
    assert ("transformer.h.0.mlp.c_proj.bias" in state) == config.mlp_bias
    assert state["transformer.h.0.attn.c_attn.weight"].shape == (C, (4 + 2 * K) * D)


@pytest.mark.parametrize("name", ["llama", "gpt1"])
def test_kv_cache_generation_equals_recomputation(name):
    config = CONFIGS[name]
    model = build(config)
    model.fast_path = False
    prompt = [[5, 17, 3, 42], [9, 1, 2, 3]]
    greedy = model.generate(prompt, max_new_tokens=6, greedy=True, stop_at_eos=False)
    ids = torch.tensor(prompt)
    for _ in range(6):  # recompute everything for every new token
        with torch.no_grad():
            ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(torch.tensor(greedy), ids[:, 4:])
    # a left-padded batch gives each prompt the tokens it gets alone
    padded = model.generate(
        [[5, 17, 3, 42], [9, 1]], max_new_tokens=4, greedy=True, stop_at_eos=False
    )
    alone = model.generate([9, 1], max_new_tokens=4, greedy=True, stop_at_eos=False)
    assert padded[1] == alone and padded[0] == greedy[0][:4]
    cache = model.new_cache(2)
    assert cache.k.shape == (2, 2, config.n_key_value_heads, 32, config.head_dim)
    with torch.no_grad():  # the prompt in two chunks through the cache
        first = model(ids[:, :5], cache=cache)
        second = model(ids[:, 5:], cache=cache)
        full = model(ids)
    torch.testing.assert_close(torch.cat([first, second], 1), full, atol=1e-5, rtol=0)


def test_the_kv_cache_keeps_k_heads():
    cache = KVCache(LLAMA, 3, 10, torch.device("cpu"), torch.float32)
    assert cache.k.shape == (2, 3, 2, 10, 6)


@pytest.mark.parametrize("name", ["llama", "gpt1", "sinusoidal"])
def test_run_to_resume_and_edits(name):
    config = CONFIGS[name]
    model = build(config)
    full = run_with_cache(model, IDS[:1]).logits
    for step in ("blocks.1.attn.hook_z", "blocks.1.hook_resid_mid", "hook_logits"):
        paused = run_to(model, IDS[:1], step)
        torch.testing.assert_close(paused.resume(), full, atol=1e-5, rtol=0)
    rot = "blocks.1.attn.hook_rot_k" if config.positions == "rope" else "blocks.1.attn.hook_k"
    paused = run_to(model, IDS[:1], rot)
    zeroed = paused.resume(torch.zeros_like)
    edited = run_with_hooks(model, IDS[:1], [(rot, lambda v, _: torch.zeros_like(v))])
    torch.testing.assert_close(zeroed, edited, atol=1e-5, rtol=0)
    assert not torch.allclose(zeroed, full)
    ablated = run_with_hooks(model, IDS[:1], [ablate_head(1, 3)])
    assert not torch.allclose(ablated, full)


@pytest.mark.parametrize(
    "name",
    ["llama", "gpt1", "untied", "no final norm", "post-norm, final norm"],
)
def test_logit_lens_and_attribution(name):
    config = CONFIGS[name]
    model = build(config)
    trace = run_with_cache(model, IDS[:1])
    lens = logit_lens(model, trace, target="next", k=3)
    # the last point is the model's own output
    assert lens.top_ids[-1, :, 0].tolist() == trace.logits[0].argmax(-1).tolist()
    # an RMSNorm's lens reads x / rms · g @ W_U, with no mean taken out
    x = trace["blocks.0.hook_resid_mid"][0]
    expected = model.final_norm(x) @ model.output_weight.T
    torch.testing.assert_close(lens.top_ids[1], expected.topk(3, dim=-1).indices)
    for position in (0, 4, -1):
        parts = direct_logit_attribution(model, trace, 7, position=position)
        assert float(parts.values.sum()) == pytest.approx(parts.logit, abs=1e-4)
    assert ("pos_embed" in parts.labels) == (config.positions != "rope")
    assert ("ln_final bias" in parts.labels) == (config.final_norm and config.norm == "layernorm")


def test_rms_norm_lens_takes_no_mean_out():
    model = build(CONFIGS["rmsnorm"])
    x = torch.randn(3, 24) + 5.0  # a large mean: a LayerNorm would remove it
    ln_f = model.transformer.ln_f
    expected = x / (x.pow(2).mean(-1, keepdim=True) + ln_f.eps).sqrt() * ln_f.weight
    torch.testing.assert_close(model.final_norm(x), expected)


# --- the catalogue ------------------------------------------------------------------------------
def test_steps_follow_the_switches():
    names = [s.name for s in steps(LLAMA)]
    assert "hook_pos_embed" not in names and "blocks.{L}.ln1.hook_mean" not in names
    assert names.index("blocks.{L}.attn.hook_k") < names.index("blocks.{L}.attn.hook_rot_k")
    assert "blocks.{L}.mlp.hook_pre_linear" in names
    assert describe("blocks.0.attn.hook_k", LLAMA).shape == "[B, T, K, D]"
    assert "RMSNorm" in describe("blocks.0.ln1.hook_scale", LLAMA).formula
    assert "SwiGLU" in describe("blocks.0.mlp.hook_post", LLAMA).formula
    assert "RoPE" in describe("blocks.0.attn.hook_rot_q", LLAMA).formula
    assert head_axis("blocks.0.attn.hook_rot_k") == head_axis("blocks.0.attn.hook_k", LLAMA) == 2
    gpt1 = [s.name for s in steps(GPT1)]
    assert not any(n.startswith("ln_final") for n in gpt1)
    # post-norm: ln_1 follows the attention output and comes before resid_mid
    assert gpt1.index("blocks.{L}.hook_attn_out") < gpt1.index("blocks.{L}.ln1.hook_mean")
    assert gpt1.index("blocks.{L}.ln2.hook_out") < gpt1.index("blocks.{L}.hook_resid_post")
    assert get_act_name("rot_q", 1) == "blocks.1.attn.hook_rot_q"
    assert get_act_name("pre_linear", 0) == "blocks.0.mlp.hook_pre_linear"


@pytest.mark.parametrize("name", list(PRESETS))
def test_parameter_counts_equal_the_built_model(name):
    config = PRESETS[name]
    # each preset's shape, scaled down: the same switches, a handful of parameters
    n_head = config.n_head // math.gcd(config.n_head, 8) or 1
    kv = config.n_key_value_heads * n_head // config.n_head or 1
    small = config.replace(
        vocab_size=50,
        n_positions=20,
        n_layer=2,
        n_head=n_head,
        n_kv_head=kv,
        n_embd=4 * n_head,
        n_inner=None if config.n_inner is None else 24,
    )
    model = m.GPT2(small)
    assert model.num_parameters() == parameter_counts(small)["total"]
    assert model.parameter_counts() == parameter_counts(small)


def test_llama_logits_equal_transformers_with_weights_copied_by_hand():
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.LlamaConfig(
        vocab_size=61,
        hidden_size=24,
        intermediate_size=40,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        rope_theta=500.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 4.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8,
        },
    )
    torch.manual_seed(1)
    hf = transformers.LlamaForCausalLM(hf_config).eval()
    config = LLAMA.replace(rope_theta=500.0, rope_scaling=RopeScaling(4.0, 1.0, 4.0, 8))
    ours = m.GPT2(config).eval()
    hf_state = {k: v.detach() for k, v in hf.state_dict().items()}
    with torch.no_grad():
        t = ours.transformer
        t.wte.weight.copy_(hf_state["model.embed_tokens.weight"])
        t.ln_f.weight.copy_(hf_state["model.norm.weight"])
        ours.lm_head.weight.copy_(hf_state["lm_head.weight"])
        for i, block in enumerate(t.h):
            p = f"model.layers.{i}."
            qkv = [hf_state[p + f"self_attn.{x}_proj.weight"] for x in "qkv"]
            block.attn.c_attn.weight.copy_(torch.cat(qkv).T)  # [out, in] -> [in, out]
            block.attn.c_proj.weight.copy_(hf_state[p + "self_attn.o_proj.weight"].T)
            block.mlp.c_gate.weight.copy_(hf_state[p + "mlp.gate_proj.weight"].T)
            block.mlp.c_fc.weight.copy_(hf_state[p + "mlp.up_proj.weight"].T)
            block.mlp.c_proj.weight.copy_(hf_state[p + "mlp.down_proj.weight"].T)
            block.ln_1.weight.copy_(hf_state[p + "input_layernorm.weight"])
            block.ln_2.weight.copy_(hf_state[p + "post_attention_layernorm.weight"])
        ids = torch.randint(0, 61, (2, 20))
        theirs = hf(ids).logits
        torch.testing.assert_close(ours(ids), theirs, atol=1e-4, rtol=0)


def test_steps_command_lists_a_presets_steps(capsys):
    from gpt2lab.cli import main

    assert main(["steps", "--model", "llama-3.2-1b", "--layer", "3", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    names = [s["name"] for s in listed]
    assert names == [s.name.replace("{L}", "3") for s in steps(PRESETS["llama-3.2-1b"])]
    shapes = {s["name"]: s["shape"] for s in listed}
    assert shapes["blocks.3.attn.hook_k"] == "[B, T, 8, 64]"  # K = 8 key/value heads
    assert shapes["blocks.3.mlp.hook_pre_linear"] == "[B, T, 8192]"


def test_spreadsheet_names_the_switch_it_cannot_lay_out():
    from gpt2lab.errors import UsageError
    from gpt2lab.spreadsheet import plan_workbook

    with pytest.raises(
        UsageError, match="GPT-2's architecture; this model has norm 'rmsnorm'"
    ) as e:
        plan_workbook(build(CONFIGS["rmsnorm"]), [1, 2, 3])
    assert "\n" not in str(e.value)


def test_views_and_the_web_page_read_the_models_steps():
    from gpt2lab.viz.views import model_map
    from gpt2lab.viz.web_json import step_json
    from gpt2lab.web.lab import kept_steps

    for config in (LLAMA, GPT1):
        model = build(config)
        trace = run_with_cache(model, IDS[:1], kept_steps(1, config))
        assert "blocks.1.ln2.hook_scale" in trace
        assert ("ln_final.hook_out" in trace) == config.final_norm
        view = model_map(model, trace, layer=1, head=3)
        assert [s["name"] for s in view.data["steps"]] == [s.name for s in steps(config)]
    assert head_index("blocks.1.attn.hook_k", 3, LLAMA) == 1  # query head 3 of 4: kv head 1
    assert head_index("blocks.1.attn.hook_q", 3, LLAMA) == 3
    k = step_json("blocks.1.attn.hook_k", list(trace["blocks.1.attn.hook_k"].shape), GPT1)
    assert k["axes"] == "[B, T, H, D]" and k["head_axis"] == 2
    llama = build(LLAMA)
    trace = run_with_cache(llama, IDS[:1], "blocks.1.attn.hook_rot_k")
    assert step_json("blocks.1.attn.hook_rot_k", [1, 7, 2, 6], LLAMA)["axes"] == "[B, T, K, D]"
    frame = trace.to_frame("blocks.1.attn.hook_rot_k", head=1)
    assert frame.shape == (7, 6)
