"""Parity with transformers for the Llama, Qwen2 and GPT-1 families, in float32.

Each case is a transformers model built from a config with random weights (no download), saved
to a folder and read with ``gpt2lab.load``: logits within 1e-4, greedy tokens equal to
transformers' ``generate``, KV-cache decoding equal to recomputing, left-padded batches equal to
each row alone, and the way back: ``model.save`` -> ``from_pretrained`` -> the same logits.
Each runs through the named steps (``fast_path`` False) and the fused path (True).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    OpenAIGPTConfig,
    OpenAIGPTLMHeadModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

import gpt2lab

ATOL = 1e-4
VOCAB = 97
LLAMA_COMMON = {
    "vocab_size": VOCAB,
    "num_hidden_layers": 2,
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-5,
    "bos_token_id": None,
    "eos_token_id": None,
    "pad_token_id": None,
}
LLAMA3_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,  # small, so the scaling changes this head size
}
# name -> (transformers class, its config); odd widths, MQA and GQA, tied and untied
CASES = {
    "llama-mqa-untied": (
        LlamaForCausalLM,
        LlamaConfig(
            hidden_size=48,
            num_attention_heads=3,
            num_key_value_heads=1,
            intermediate_size=80,
            tie_word_embeddings=False,
            **LLAMA_COMMON,
        ),
    ),
    "llama-gqa2-tied": (
        LlamaForCausalLM,
        LlamaConfig(
            hidden_size=40,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=72,
            tie_word_embeddings=True,
            **LLAMA_COMMON,
        ),
    ),
    "llama3-rope-scaling": (
        LlamaForCausalLM,
        LlamaConfig(
            hidden_size=64,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=96,
            tie_word_embeddings=True,
            rope_theta=500000.0,
            rope_scaling=LLAMA3_SCALING,
            **LLAMA_COMMON,
        ),
    ),
    "qwen2-qkv-bias": (
        Qwen2ForCausalLM,
        Qwen2Config(
            hidden_size=48,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=80,
            tie_word_embeddings=False,
            **LLAMA_COMMON,
        ),
    ),
    "gpt1": (
        OpenAIGPTLMHeadModel,
        OpenAIGPTConfig(vocab_size=VOCAB, n_positions=32, n_embd=48, n_layer=2, n_head=3),
    ),
}
FAST_PATH = pytest.mark.parametrize("fast_path", [False, True], ids=["named-steps", "fast"])
EACH_FAMILY = pytest.mark.parametrize("case", list(CASES))


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Weights large enough for peaked logits (greedy choices far from ties); norm gains near 1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            is_gain = (p.dim() == 1 and "norm" in name) or name.endswith(
                (".ln_1.weight", ".ln_2.weight")
            )
            p.copy_(1 + 0.1 * noise if is_gain else 0.2 * noise)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """case name -> (transformers model, gpt2lab model loaded from its folder, the folder),
    each built once."""
    cache = {}

    def get(name: str):
        if name not in cache:
            cls, config = CASES[name]
            hf = cls(config).eval()
            randomize(hf, seed=len(name))
            folder = tmp_path_factory.mktemp(name)
            hf.save_pretrained(folder)
            cache[name] = hf, gpt2lab.load(folder), folder
        return cache[name]

    return get


@pytest.fixture(params=list(CASES))
def family(request, built):
    """(transformers model, gpt2lab model, its folder, the case name) for every case."""
    return (*built(request.param), request.param)


@pytest.fixture
def case_models(case, built, fast_path):
    """(transformers model, gpt2lab model) of ``case``, the model on ``fast_path`` or not."""
    hf, model, _ = built(case)
    model.fast_path = fast_path
    yield hf, model
    model.fast_path = True


def ids_for(shape: tuple[int, int], seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


def assert_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    assert got.shape == expected.shape
    diff = (got.double() - expected.double()).abs().max().item()
    assert diff <= ATOL, f"max abs logit difference {diff}"


@torch.no_grad()
def test_config_is_read_as_the_family(family):
    _, model, folder, name = family
    config = model.config
    written = json.loads((folder / "config.json").read_text())
    assert config.hf_model_type == written["model_type"]
    if name == "gpt1":
        assert (config.norm_position, config.final_norm, config.positions) == (
            "post",
            False,
            "learned",
        )
        assert model.tokenizer is None
    else:
        assert (config.positions, config.norm, config.activation) == ("rope", "rmsnorm", "swiglu")
        assert config.n_kv_head == written["num_key_value_heads"]
        assert config.tie_word_embeddings == written["tie_word_embeddings"]
        assert (config.rope_scaling is not None) == (name == "llama3-rope-scaling")
        assert config.qkv_bias == (name == "qwen2-qkv-bias")


@FAST_PATH
@torch.no_grad()
def test_logits_equal(family, fast_path):
    hf, model, _, _ = family
    model.fast_path = fast_path
    try:
        ids = ids_for((2, 13))
        assert_close(model(ids), hf(ids).logits)
    finally:
        model.fast_path = True


@EACH_FAMILY
@FAST_PATH
@torch.no_grad()
def test_greedy_tokens_equal_transformers_generate(case_models):
    hf, model = case_models
    prompt = ids_for((1, 5), seed=1)
    expected = hf.generate(prompt, max_new_tokens=8, do_sample=False, min_new_tokens=8)
    got = model.generate(prompt[0].tolist(), 8, greedy=True)
    assert got == expected[0, 5:].tolist()


@EACH_FAMILY
@FAST_PATH
@torch.no_grad()
def test_kv_cache_decoding_equals_recomputation(case_models):
    _, model = case_models
    ids = ids_for((2, 12), seed=2)
    full = model(ids)
    cache = model.new_cache(2)
    steps = [model(ids[:, :4], cache=cache)]
    steps += [model(ids[:, t : t + 1], cache=cache) for t in range(4, 12)]
    assert_close(torch.cat(steps, dim=1), full)


@EACH_FAMILY
@FAST_PATH
@torch.no_grad()
def test_left_padded_batch_equals_rows_alone(case_models):
    _, model = case_models
    long, short = ids_for((1, 9), seed=3), ids_for((1, 5), seed=4)
    pad = 9 - 5
    batch = torch.cat([long, torch.cat([torch.zeros(1, pad, dtype=torch.long), short], 1)])
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, :pad] = False
    positions = (mask.long().cumsum(1) - 1).clamp(min=0)
    logits = model(batch, attention_mask=mask, positions=positions)
    assert_close(logits[0], model(long)[0])
    assert_close(logits[1, pad:], model(short)[0])
    # generate pads a batch of unequal prompts on the left: the same tokens as one by one
    prompts = [long[0].tolist(), short[0].tolist()]
    alone = [model.generate(p, 6, greedy=True) for p in prompts]
    assert model.generate(prompts, 6, greedy=True) == alone


@torch.no_grad()
def test_save_is_read_by_transformers(family, tmp_path):
    hf, model, folder, _ = family
    out = model.save(tmp_path / "saved")
    written = json.loads((out / "config.json").read_text())
    original = json.loads((folder / "config.json").read_text())
    assert written["model_type"] == original["model_type"]
    assert written["architectures"] == [type(hf).__name__]
    with safe_open(out / "model.safetensors", "pt") as f:
        names = set(f.keys())
    with safe_open(folder / "model.safetensors", "pt") as f:
        assert names == set(f.keys())  # transformers' own names, nothing more or less
    again = type(hf).from_pretrained(out).eval()
    ids = ids_for((2, 11), seed=5)
    assert_close(again(ids).logits, hf(ids).logits)
    for name, tensor in again.state_dict().items():  # bit for bit, through both conversions
        assert torch.equal(tensor, hf.state_dict()[name]), name


def test_saved_folder_loads_back_into_gpt2lab(family, tmp_path):
    _, model, _, _ = family
    again = gpt2lab.load(model.save(Path(tmp_path) / "saved"))
    assert again.config == model.config
    for name, tensor in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name
