"""The model against transformers (logit parity), and each named step against its formula."""

from __future__ import annotations

import gc
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import make_hf_model

import gpt2lab
from gpt2lab import model as m
from gpt2lab.config import PRESETS, GPT2Config
from gpt2lab.errors import ContextLengthError, UsageError

# (name, transformers config overrides): every GPT-2 preset, odd shapes that catch head/width bugs.
# The presets above 124M take minutes and up to 9 GB (two copies of 1.5B weights): slow.
PARITY_CASES = [
    pytest.param(
        name,
        {"n_embd": c.n_embd, "n_layer": c.n_layer, "n_head": c.n_head},
        marks=[pytest.mark.slow] if name != "gpt2" else [],
        id=name,
    )
    for name, c in PRESETS.items()
    if c.hf_model_type == "gpt2"  # the GPT-2 sizes; the other families' parity is their own
] + [
    pytest.param(label, overrides, id=label)
    for label, overrides in [
        ("3 layers, 5 heads, 80 wide", {"n_layer": 3, "n_head": 5, "n_embd": 80}),
        (
            "1 layer, 1 head, 48 wide, ctx 40",
            {"n_layer": 1, "n_head": 1, "n_embd": 48, "n_positions": 40},
        ),
        (
            "2 layers, 3 heads, 24 wide, eps 1e-3",
            {"n_layer": 2, "n_head": 3, "n_embd": 24, "layer_norm_epsilon": 1e-3},
        ),
    ]
]


@pytest.mark.parametrize(("label", "overrides"), PARITY_CASES)
def test_logits_match_transformers(tmp_path, label, overrides):
    hf = make_hf_model(tmp_path, **overrides)
    n_ctx = overrides.get("n_positions", 1024)
    torch.manual_seed(1)
    ids = torch.randint(0, 50257, (2, min(24, n_ctx)))
    with torch.no_grad():
        expected = hf(ids).logits
    del hf
    gc.collect()  # the big presets: free transformers' copy before loading ours
    ours = gpt2lab.load(tmp_path)
    with torch.no_grad():
        logits = ours(ids)
    assert logits.shape == (2, ids.shape[1], 50257)
    assert logits.dtype == torch.float32
    assert (logits - expected).abs().max().item() <= 1e-4


def test_presets_match_openai_sizes():
    # Parameter counts as published (the tied output layer counted once).
    expected = {
        "gpt2": 124_439_808,
        "gpt2-medium": 354_823_168,
        "gpt2-large": 774_030_080,
        "gpt2-xl": 1_557_611_200,
    }
    for name, count in expected.items():
        with torch.device("meta"):
            model = m.GPT2(PRESETS[name])
        assert model.num_parameters() == count, name
        counts = model.parameter_counts()
        assert counts["total"] == count
        assert sum(v for k, v in counts.items() if k != "total") == count


def test_parameter_counts_by_component():
    with torch.device("meta"):
        model = m.GPT2(PRESETS["gpt2"])
    counts = model.parameter_counts()
    assert counts["embedding"] == 50257 * 768  # tied: also the output layer
    assert counts["unembedding"] == 0
    assert counts["positions"] == 1024 * 768
    assert counts["attention"] == 12 * (768 * 2304 + 2304 + 768 * 768 + 768)
    assert counts["mlp"] == 12 * (768 * 3072 + 3072 + 3072 * 768 + 768)
    assert counts["norms"] == (2 * 12 + 1) * 2 * 768


# --- the steps against their formulas and PyTorch's own ops ------------------------------------
def test_layer_norm_matches_torch():
    x, w, b = torch.randn(3, 5, 16), torch.randn(16), torch.randn(16)
    expected = F.layer_norm(x, (16,), w, b, eps=1e-5)
    assert torch.allclose(m.layer_norm(x, w, b, 1e-5), expected, atol=1e-5)


def test_gelu_is_the_tanh_approximation():
    x = torch.linspace(-6, 6, 1001)
    assert torch.allclose(m.gelu(x), F.gelu(x, approximate="tanh"), atol=1e-6)
    assert not torch.allclose(m.gelu(x), F.gelu(x), atol=1e-6)  # not the exact erf GELU


def test_heads_split_and_merge_round_trip():
    x = torch.randn(2, 7, 80)
    heads = m.split_heads(x, 5)
    assert heads.shape == (2, 7, 5, 16)  # [B, T, H, D], TransformerLens's layout
    assert torch.equal(heads[:, :, 1], x[:, :, 16:32])  # head 1 owns channels 16..31
    assert torch.equal(m.merge_heads(heads), x)


def test_attention_steps_match_scaled_dot_product_attention():
    q, k, v = (torch.randn(2, 6, 3, 8) for _ in range(3))  # [B, T, H, D]
    allowed = m.causal_mask(6, 0, None, q.device)
    pattern = m.softmax(m.apply_mask(m.attention_scores(q, k), allowed))  # [B, H, T, S]
    z = m.weighted_values(pattern, v)  # [B, T, H, D]
    heads_first = [t.transpose(1, 2) for t in (q, k, v)]  # SDPA's [B, H, T, D]
    expected = F.scaled_dot_product_attention(*heads_first, is_causal=True).transpose(1, 2)
    assert torch.allclose(z, expected, atol=1e-5)
    assert torch.allclose(pattern.sum(-1), torch.ones(2, 3, 6))
    assert (pattern.triu(diagonal=1) == 0).all()  # nothing attends to the future
    scores = m.attention_scores(q, k)
    q_h, k_h = heads_first[:2]
    assert torch.allclose(scores, q_h @ k_h.transpose(-1, -2) / math.sqrt(8), atol=1e-6)


def test_causal_mask_with_padding_and_cache():
    padding = torch.tensor([[False, True, True, True]])
    allowed = m.causal_mask(2, 2, padding, torch.device("cpu"))
    # Queries at absolute positions 2 and 3 see real keys up to themselves, never the pad key 0.
    assert allowed[0, 0].tolist() == [[False, True, True, False], [False, True, True, True]]
    pad_query = m.causal_mask(4, 0, padding, torch.device("cpu"))[0, 0, 0]
    assert pad_query.tolist() == [True, False, False, False]  # a pad row is never all-masked


# --- cache and forward contract --------------------------------------------------------------
@pytest.fixture(scope="module")
def small(small_hf):
    return gpt2lab.load(small_hf[1])


def test_kv_cache_gives_the_same_logits(small):
    ids = torch.randint(0, 50257, (3, 20))
    with torch.no_grad():
        full = small(ids)
        cache = small.new_cache(3, 20)
        pieces = [small(ids[:, :7], cache=cache)]
        pieces += [small(ids[:, i : i + 1], cache=cache) for i in range(7, 13)]
        pieces.append(small(ids[:, 13:], cache=cache))
    assert cache.length == 20
    assert (torch.cat(pieces, dim=1) - full).abs().max().item() <= 1e-5


def test_forward_rejects_bad_input(small):
    with pytest.raises(UsageError, match="integer tensor"):
        small(torch.zeros(1, 4))
    with pytest.raises(ContextLengthError, match="context of 128"):
        small(torch.zeros(1, 129, dtype=torch.long))


def test_dropout_only_in_training():
    model = m.GPT2(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100, dropout=0.5))
    ids = torch.randint(0, 100, (1, 8))
    model.eval()
    assert torch.equal(model(ids), model(ids))
    model.train()
    assert not torch.equal(model(ids), model(ids))


def test_init_is_gpt2s_and_seeded():
    a = m.GPT2(GPT2Config(n_layer=4, n_embd=64, n_head=4, vocab_size=500))
    a.init_weights(seed=3)
    b = m.GPT2(a.config)
    b.init_weights(seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    w = a.transformer.h[0].mlp.c_proj.weight
    assert abs(w.std().item() - 0.02 / math.sqrt(8)) < 0.002  # residual projections scaled down
    assert abs(a.transformer.wte.weight.std().item() - 0.02) < 0.002
    assert torch.equal(a.transformer.h[0].ln_1.weight, torch.ones(64))


@pytest.mark.parametrize(
    "bad",
    [{"n_embd": 70, "n_head": 4}, {"n_layer": 0}, {"vocab_size": -1}, {"dropout": 1.0}],
)
def test_config_validation(bad):
    with pytest.raises(UsageError):
        GPT2Config(**bad)


def test_config_round_trips_through_hf_json(tmp_path):
    config = GPT2Config(n_layer=3, n_head=5, n_embd=80, n_positions=64, layer_norm_epsilon=1e-4)
    config.save_json(tmp_path / "config.json")
    assert GPT2Config.from_json_file(tmp_path / "config.json") == config
    from transformers import GPT2Config as HFConfig

    hf = HFConfig.from_pretrained(tmp_path)
    assert (hf.n_layer, hf.n_head, hf.n_embd, hf.n_positions) == (3, 5, 80, 64)
    assert hf.activation_function == "gelu_new"
