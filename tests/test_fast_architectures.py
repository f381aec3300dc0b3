"""The fast path (gpt2lab.fast) computes what the named steps compute for every switch of
GPT2Config, alone and combined (LLaMA-style, GPT-1-style), on tiny random models."""

from __future__ import annotations

import pytest
import torch
from test_fast import both_paths

from gpt2lab import fast, quantize
from gpt2lab.config import GPT2Config, RopeScaling
from gpt2lab.model import GPT2

BASE = GPT2Config(vocab_size=97, n_positions=64, n_embd=48, n_layer=2, n_head=6)
LLAMA = {
    "positions": "rope",
    "norm": "rmsnorm",
    "activation": "swiglu",
    "n_inner": 88,
    "n_kv_head": 2,
    "qkv_bias": False,
    "attn_out_bias": False,
    "mlp_bias": False,
    "tie_word_embeddings": False,
}
SWITCHES: dict[str, dict] = {
    "gpt2": {},
    "rmsnorm": {"norm": "rmsnorm"},
    "post-norm": {"norm_position": "post"},
    "no-final-norm": {"final_norm": False},
    "sinusoidal": {"positions": "sinusoidal"},
    "rope": {"positions": "rope"},
    "rope-partial-llama3-scaled": {
        "positions": "rope",
        "partial_rotary_factor": 0.5,
        "rope_theta": 500000.0,
        "rope_scaling": RopeScaling(8.0, 1.0, 4.0, 16),
    },
    "gqa": {"n_kv_head": 2},
    "mqa": {"n_kv_head": 1},
    "swiglu": {"activation": "swiglu", "n_inner": 88},
    "gelu-exact": {"activation": "gelu"},
    "relu": {"activation": "relu", "n_inner": 72},
    "no-biases": {"qkv_bias": False, "attn_out_bias": False, "mlp_bias": False},
    "qkv-bias-only": {"attn_out_bias": False, "mlp_bias": False},
    "untied": {"tie_word_embeddings": False},
    "llama": LLAMA,
    "gpt1": {"norm_position": "post", "final_norm": False, "activation": "gelu"},
    "transformer-2017": {
        "positions": "sinusoidal",
        "norm_position": "post",
        "final_norm": False,
        "activation": "relu",
    },
}
PROMPTS = [[5, 17, 42, 8, 91, 3, 60], [11, 2, 77, 30]]  # unequal lengths: left padding


def random_model(changes: dict, seed: int = 0, dtype: torch.dtype = torch.float32) -> GPT2:
    """A tiny model of BASE with ``changes``, every parameter random (biases and gains too, so
    that a bias or gain the fast path forgot would show)."""
    model = GPT2(BASE.replace(**changes))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.15)
            elif ".ln_" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model.to(dtype).eval()


@pytest.fixture(scope="module", params=list(SWITCHES), ids=list(SWITCHES))
def model(request) -> GPT2:
    return random_model(SWITCHES[request.param])


def padded(prompts: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded ids [B, T], their mask and positions (as gpt2lab.generate pads)."""
    T = max(map(len, prompts))
    ids = torch.tensor([[0] * (T - len(p)) + p for p in prompts])
    mask = torch.tensor([[False] * (T - len(p)) + [True] * len(p) for p in prompts])
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


@torch.no_grad()
def test_logits_equal_the_named_steps(model):
    assert model.uses_fast_path(None)
    ids = torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(1))
    fast_logits, step_logits = both_paths(model, lambda m: m(ids))
    assert fast_logits.abs().max() > 0.5  # not a degenerate model
    assert (fast_logits - step_logits).abs().max() <= 1e-5


@torch.no_grad()
def test_cached_decoding_equals_recomputation(model):
    ids = torch.tensor([PROMPTS[0] + [14, 29, 33, 70, 1]])

    def decoded(m: GPT2) -> torch.Tensor:
        cache = m.new_cache(1)
        steps = [m(ids[:, :5], cache=cache)] + [
            m(ids[:, t : t + 1], cache=cache) for t in range(5, 12)
        ]
        return torch.cat(steps, dim=1)

    fast_steps, step_steps = both_paths(model, decoded)
    assert (fast_steps - model(ids)).abs().max() <= 1e-5
    assert (fast_steps - step_steps).abs().max() <= 1e-5


@torch.no_grad()
def test_left_padded_batch_equals_each_prompt_alone(model):
    ids, mask, positions = padded(PROMPTS)
    fast_pad, step_pad = both_paths(
        model, lambda m: m(ids, attention_mask=mask, positions=positions)
    )
    for row, prompt in enumerate(PROMPTS):
        alone = model(torch.tensor([prompt]))[0]
        assert (fast_pad[row, -len(prompt) :] - alone).abs().max() <= 1e-5
        assert (step_pad[row, -len(prompt) :] - alone).abs().max() <= 1e-5


def test_greedy_tokens_equal_the_named_steps(model):
    fast_ids, step_ids = both_paths(
        model, lambda m: m.generate(PROMPTS, 12, greedy=True, stop_at_eos=False)
    )
    assert fast_ids == step_ids
    assert [len(row) for row in fast_ids] == [12, 12]


@torch.no_grad()
def test_static_decoder_eager_step_equals_a_full_forward_pass(model):
    ids = torch.tensor([PROMPTS[0] + [14, 29, 33, 70, 1]])
    T = ids.shape[1]
    full = model(ids)
    decoder = fast.StaticDecoder(model, batch=1, max_len=T + 3)
    cache = decoder.start(torch.ones(1, T, dtype=torch.bool))
    model(ids[:, :4], cache=cache)
    for t in range(4, T):
        logits = decoder(ids[:, t], torch.tensor([[t]]))
        assert (logits - full[:, t]).abs().max() <= 1e-5, t


def test_generation_through_the_static_decoder_equals_the_named_steps(model, monkeypatch):
    monkeypatch.setattr(fast, "decodes_with_graphs", lambda device: True)  # eagerly on a CPU
    fast_ids, step_ids = both_paths(
        model, lambda m: m.generate(PROMPTS, 10, greedy=True, stop_at_eos=False)
    )
    assert model.fast_state.decoder is not None
    assert fast_ids == step_ids


# --- pieces of the fused forms -------------------------------------------------------------------
def test_gqa_cache_keeps_only_the_key_value_heads():
    model = random_model({"n_kv_head": 2})
    assert model.new_cache(1, 8).k.shape == (2, 1, 2, 8, 8)  # [layers, B, K, S, D]


@pytest.mark.parametrize("changes", [LLAMA, {"activation": "relu", "norm_position": "post"}])
def test_gradients_flow_through_the_fast_path(changes):
    model = random_model(changes)
    ids = torch.tensor([PROMPTS[0]])
    grads = []
    for use_fast in (True, False):
        model.fast_path = use_fast
        model.zero_grad()
        model(ids)[0, -1, 11].backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for fast_grad, step_grad in zip(*grads, strict=True):
        assert torch.allclose(fast_grad, step_grad, atol=1e-5)


@torch.no_grad()
def test_a_torch_without_rms_norm_or_enable_gqa_gets_the_same_logits(monkeypatch):
    """torch < 2.4 has no F.rms_norm, < 2.5 no enable_gqa: the fallbacks compute the same."""
    model = random_model(LLAMA)
    ids = torch.tensor([PROMPTS[0]])
    expected = model(ids)
    monkeypatch.setattr(fast, "SDPA_GROUPS", False)
    monkeypatch.delattr(fast.F, "rms_norm")
    model.fast_state.weights = None  # remake the kernels, with the other norm
    assert (model(ids) - expected).abs().max() <= 1e-5


# --- int8 and bfloat16 ---------------------------------------------------------------------------
# Errors are measured against the largest |logit| of the float32 model (2.5 to 10 here). Measured
# on these models: int8 fast vs int8 steps up to 2.3% of it, int8 vs float32 up to 3.3%,
# bfloat16 fast vs float32 up to 3.2% (the bfloat16 steps err as much).
@pytest.mark.parametrize("name", list(SWITCHES))
@torch.no_grad()
def test_int8_covers_every_matrix_and_stays_close(name):
    model = random_model(SWITCHES[name])
    ids = torch.tensor([PROMPTS[0]])
    exact = model(ids)
    scale = exact.abs().max()
    model.quantize("int8")
    rounded = [n for n, p in model.named_parameters() if quantize.output_axis(n, p) is not None]
    for p_name in rounded:  # every matrix holds its rounding: rounding again changes nothing
        p = model.get_parameter(p_name)
        axis = quantize.output_axis(p_name, p)
        assert torch.equal(quantize.dequantize_matrix(*quantize.quantize_matrix(p, axis)), p)
    matrices = {n for n, p in model.named_parameters() if p.dim() == 2}
    assert set(rounded) == matrices - {"transformer.wpe.weight"}  # added, not multiplied
    fast_logits, step_logits = both_paths(model, lambda m: m(ids))
    # The int8 kernel multiplies in bfloat16; the steps in float32 with the same rounded weights.
    assert (fast_logits - step_logits).abs().max() <= 0.04 * scale
    assert (fast_logits - exact).abs().max() <= 0.05 * scale
    kernels = fast.fast_weights(model)
    assert isinstance(kernels.unembed, fast.Int8)
    mlp_in = kernels.layers[0].mlp_in
    if isinstance(mlp_in, fast.SwiGLUIn):  # gate and up in one int8 kernel [C, 2F]
        assert mlp_in.up is None and isinstance(mlp_in.gate, fast.Int8)
        assert model.transformer.h[0].mlp.c_gate.weight.shape == (48, 88)
    if name == "llama":
        assert {"lm_head.weight", "transformer.h.0.mlp.c_gate.weight"} <= set(rounded)
        assert quantize.output_axis("lm_head.weight", model.lm_head.weight) == 0


def test_an_int8_file_of_a_llama_style_model_loads_as_its_rounding(tmp_path):
    """lm_head is rounded per token row, as the model rounds it, and c_gate per column."""
    from safetensors.torch import load_file

    from gpt2lab.weights.hf import dequantize_state, save_hf_folder

    model = random_model(LLAMA)
    save_hf_folder(model.config, model.state_dict(), tmp_path, int8=True)
    stored = load_file(tmp_path / "model.safetensors")
    assert stored["lm_head.weight.scale"].shape == (97, 1)
    assert stored["transformer.h.0.mlp.c_gate.weight.scale"].shape == (1, 88)
    loaded = dequantize_state(stored)
    for name, value in model.quantize("int8").state_dict().items():
        assert torch.equal(loaded[name], value), name


@pytest.mark.parametrize("name", list(SWITCHES))
@torch.no_grad()
def test_bfloat16_runs_and_stays_close(name):
    exact = random_model(SWITCHES[name])(torch.tensor([PROMPTS[0]]))
    model = random_model(SWITCHES[name], dtype=torch.bfloat16)
    fast_logits, step_logits = both_paths(model, lambda m: m(torch.tensor([PROMPTS[0]])).float())
    fast_err, step_err = (fast_logits - exact).abs().max(), (step_logits - exact).abs().max()
    assert fast_err <= 0.05 * exact.abs().max()
    assert fast_err <= 1.5 * step_err + 0.02
    fast_ids, step_ids = both_paths(model, lambda m: m.generate(PROMPTS, 6, greedy=True))
    assert [len(row) for row in fast_ids] == [len(row) for row in step_ids] == [6, 6]


# --- CUDA: the recorded decoding step (skipped without a GPU) -----------------------------------
GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@GPU
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-4), (torch.bfloat16, 0.15)])
@torch.no_grad()
def test_gpu_graphed_steps_equal_a_full_forward_pass_llama(dtype, tolerance):
    model = random_model(LLAMA, dtype=dtype).cuda()
    ids = torch.tensor([PROMPTS[0] + [14, 29, 33, 70, 1]], device="cuda")
    T = ids.shape[1]
    full = model(ids).float()
    decoder = fast.StaticDecoder(model, batch=1, max_len=T + 3)
    assert decoder.graph is not None
    cache = decoder.start(torch.ones(1, T, dtype=torch.bool, device="cuda"))
    model(ids[:, :4], cache=cache)
    for t in range(4, T):
        logits = decoder(ids[:, t], torch.tensor([[t]], device="cuda")).float()
        assert (logits - full[:, t]).abs().max() <= tolerance, t


@GPU
def test_gpu_graphed_generation_equals_the_named_steps_llama():
    model = random_model(LLAMA).cuda()
    fast_ids, step_ids = both_paths(
        model, lambda m: m.generate(PROMPTS, 16, greedy=True, stop_at_eos=False)
    )
    assert model.fast_state.decoder.graph is not None
    assert fast_ids == step_ids
