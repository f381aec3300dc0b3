"""GPT2Config's switches, the Hugging Face config.json of four model types, and the presets'
parameter counts (worked out from the config, checked against transformers and the published
numbers)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from gpt2lab import model as m
from gpt2lab.config import (
    PRESETS,
    GPT2Config,
    RopeScaling,
    kv_cache_bytes_per_token,
    parameter_counts,
)
from gpt2lab.errors import CheckpointError, UsageError

# Published parameter counts (a tied output layer counted once).
PUBLISHED = {
    "gpt2": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
    "gpt1": 116_534_784,
    "smollm2-135m": 134_515_008,
    "qwen2-0.5b": 494_032_768,
    "llama-3.2-1b": 1_235_814_400,
    "llama-3.1-8b": 8_030_261_248,
    "llama-3.1-70b": 70_553_706_496,
    "llama-3.1-405b": 405_853_388_800,
}

# Small configs of each family, shaped to catch mistakes: odd widths, GQA and MQA, tied and not.
SMALL = {
    "gpt2": GPT2Config(vocab_size=97, n_positions=16, n_embd=24, n_layer=2, n_head=3),
    "gpt2 relu n_inner untied": GPT2Config(
        vocab_size=97,
        n_positions=16,
        n_embd=24,
        n_layer=2,
        n_head=3,
        activation="relu",
        n_inner=40,
        tie_word_embeddings=False,
    ),
    "gpt1": PRESETS["gpt1"].replace(vocab_size=97, n_positions=16, n_embd=24, n_layer=2, n_head=3),
    "llama gqa": PRESETS["llama-3.2-1b"].replace(
        vocab_size=97, n_positions=64, n_embd=48, n_layer=2, n_head=6, n_kv_head=2, n_inner=56
    ),
    "llama mqa untied biased": PRESETS["llama-3.1-8b"].replace(
        vocab_size=97,
        n_positions=64,
        n_embd=40,
        n_layer=3,
        n_head=5,
        n_kv_head=1,
        n_inner=72,
        qkv_bias=True,
        attn_out_bias=True,
        mlp_bias=True,
    ),
    "qwen2": PRESETS["qwen2-0.5b"].replace(
        vocab_size=97, n_positions=64, n_embd=28, n_layer=2, n_head=7, n_kv_head=7, n_inner=36
    ),
}

# transformers' parameter names -> our components
HF_COMPONENTS = {
    "embedding": ("wte.", "tokens_embed.", "embed_tokens."),
    "positions": ("wpe.", "positions_embed."),
    "attention": (".attn.", ".self_attn."),
    "mlp": (".mlp.",),
    "norms": (".ln_", "layernorm.", "model.norm.", "ln_f."),
    "unembedding": ("lm_head.",),
}


def hf_model(config: GPT2Config, tmp_path=None):
    """transformers' model for our config, built from the config.json we write (on meta)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    hf_config = AutoConfig.for_model(**config.to_hf_dict())
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config)


def hf_counts(model) -> dict[str, int]:
    counts = dict.fromkeys(HF_COMPONENTS, 0)
    for name, p in model.named_parameters():  # a tied lm_head is the embedding: listed once
        group = next(g for g, keys in HF_COMPONENTS.items() if any(k in name for k in keys))
        counts[group] += p.numel()
    counts["total"] = sum(counts.values())
    return counts


# --- the switches --------------------------------------------------------------------------------
def test_defaults_are_gpt2():
    c = GPT2Config()
    assert c == PRESETS["gpt2"]
    assert (c.positions, c.norm, c.norm_position, c.activation) == (
        "learned",
        "layernorm",
        "pre",
        "gelu_tanh",
    )
    assert (c.n_key_value_heads, c.d_mlp, c.head_dim) == (12, 3072, 64)
    assert c.final_norm and c.tie_word_embeddings and c.qkv_bias and c.attn_out_bias and c.mlp_bias
    assert c.changes_from_gpt2() == []
    assert PRESETS["gpt1"].changes_from_gpt2() == ["norm_position 'post'", "final_norm=False"]
    assert json.dumps(c.to_dict())  # plain JSON values


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"positions": "alibi"}, "positions must be one of learned, sinusoidal, rope"),
        ({"norm": "batchnorm"}, "norm must be one of layernorm, rmsnorm"),
        ({"norm_position": "sandwich"}, "norm_position must be one of pre, post"),
        ({"activation": "silu"}, "activation must be one of gelu_tanh, gelu, relu, swiglu"),
        ({"n_kv_head": 5}, r"n_head \(12\) must be a multiple of n_kv_head \(5\)"),
        ({"n_kv_head": 0}, "n_kv_head must be a positive integer"),
        ({"n_inner": -4}, "n_inner must be a positive integer"),
        ({"qkv_bias": "yes"}, "qkv_bias must be true or false"),
        ({"positions": "rope", "n_embd": 36, "n_head": 4}, "positive even number"),
        ({"positions": "rope", "partial_rotary_factor": 0.3}, r"64 × .* = 19.2\) must be a pos"),
        ({"positions": "rope", "rope_theta": 0.0}, "rope_theta must be positive"),
        ({"positions": "rope", "partial_rotary_factor": 1.5}, r"partial_rotary_factor .* \(0, 1\]"),
        ({"rope_theta": 500000.0}, "rope_theta is set but positions is 'learned'"),
        ({"positions": "sinusoidal", "n_embd": 15, "n_head": 5}, "sinusoidal positions need"),
    ],
)
def test_bad_switches_are_one_line_errors(changes, message):
    with pytest.raises(UsageError, match=message) as excinfo:
        GPT2Config(**changes)
    assert "\n" not in str(excinfo.value)


def test_rope_scaling_is_checked():
    with pytest.raises(UsageError, match="'linear' is not supported"):
        RopeScaling(8.0, 1.0, 4.0, 8192, rope_type="linear")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="low_freq_factor < high_freq_factor"):
        RopeScaling(8.0, 4.0, 1.0, 8192)
    config = PRESETS["llama-3.1-8b"]
    assert config.rope_scaling == RopeScaling(8.0, 1.0, 4.0, 8192)
    assert config.rotary_dim == 128
    assert config.replace(partial_rotary_factor=0.5).rotary_dim == 64


# --- config.json of four model types -------------------------------------------------------------
@pytest.mark.parametrize("name", list(SMALL) + list(PRESETS))
def test_hf_dict_round_trips(name):
    config = SMALL.get(name) or PRESETS[name]
    d = config.to_hf_dict()
    assert GPT2Config.from_hf_dict(json.loads(json.dumps(d))) == config


@pytest.mark.parametrize(
    ("name", "model_type"),
    [
        ("gpt2", "gpt2"),
        ("gpt2 relu n_inner untied", "gpt2"),
        ("gpt1", "openai-gpt"),
        ("llama gqa", "llama"),
        ("llama mqa untied biased", "llama"),
        ("qwen2", "qwen2"),
    ],
)
def test_transformers_reads_what_we_write(name, model_type):
    """transformers builds the same architecture from our config.json (same parameters, by
    component), and we read its own config back to the same GPT2Config."""
    from transformers import AutoConfig

    config = SMALL[name]
    assert config.hf_model_type == model_type
    hf = hf_model(config)
    assert hf_counts(hf) == parameter_counts(config)
    # transformers writes its own form (transformers 5: rope_parameters): read that too
    ours = GPT2Config.from_hf_dict(AutoConfig.for_model(**config.to_hf_dict()).to_dict())
    assert ours == config


def test_gpt1_gelu_is_the_tanh_form():
    """GPT-1's config says afn "gelu", and transformers (like OpenAI's code) runs the tanh form."""
    from transformers.activations import gelu_new
    from transformers.models.openai.modeling_openai import ACT_FNS

    assert ACT_FNS["gelu"] is gelu_new
    assert PRESETS["gpt1"].activation == "gelu_tanh"
    assert PRESETS["gpt1"].to_hf_dict()["afn"] == "gelu"
    assert GPT2Config.from_hf_dict({"model_type": "openai-gpt", "afn": "relu"}).activation == "relu"
    with pytest.raises(CheckpointError, match="afn='silu'"):
        GPT2Config.from_hf_dict({"model_type": "openai-gpt", "afn": "silu"})
    assert PRESETS["gpt1"].replace(activation="gelu").hf_model_type == "gpt2lab"


def test_llama3_rope_scaling_reaches_transformers():
    from transformers import AutoConfig

    hf = AutoConfig.for_model(**SMALL["llama gqa"].replace(n_positions=131072).to_hf_dict())
    rope = getattr(hf, "rope_parameters", None) or hf.rope_scaling
    assert rope["rope_type"] == "llama3"
    assert (rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]) == (32, 1, 4)
    assert rope["original_max_position_embeddings"] == 8192


# config.json files as their models publish them (the keys that matter; transformers' generation
# defaults left out): each reads to its preset.
PUBLISHED_CONFIGS = {
    "smollm2-135m": {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "head_dim": 64,
        "hidden_act": "silu",
        "hidden_size": 576,
        "initializer_range": 0.041666666666666664,
        "intermediate_size": 1536,
        "is_llama_config": True,
        "max_position_embeddings": 8192,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": 9,
        "num_hidden_layers": 30,
        "num_key_value_heads": 3,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_interleaved": False,
        "rope_scaling": None,
        "rope_theta": 100000,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": 49152,
    },
    "llama-3.2-1b": {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 128000,
        "eos_token_id": 128001,
        "head_dim": 64,
        "hidden_act": "silu",
        "hidden_size": 2048,
        "initializer_range": 0.02,
        "intermediate_size": 8192,
        "max_position_embeddings": 131072,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": 32,
        "num_hidden_layers": 16,
        "num_key_value_heads": 8,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {
            "factor": 32.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "rope_theta": 500000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": 128256,
    },
    "qwen2-0.5b": {
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151643,
        "hidden_act": "silu",
        "hidden_size": 896,
        "initializer_range": 0.02,
        "intermediate_size": 4864,
        "max_position_embeddings": 131072,
        "max_window_layers": 24,
        "model_type": "qwen2",
        "num_attention_heads": 14,
        "num_hidden_layers": 24,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 131072,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": 151936,
    },
    "gpt1": {
        "afn": "gelu",
        "architectures": ["OpenAIGPTLMHeadModel"],
        "attn_pdrop": 0.1,
        "embd_pdrop": 0.1,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-05,
        "model_type": "openai-gpt",
        "n_ctx": 512,
        "n_embd": 768,
        "n_head": 12,
        "n_layer": 12,
        "n_positions": 512,
        "n_special": 0,
        "predict_special_tokens": True,
        "resid_pdrop": 0.1,
        "vocab_size": 40478,
    },
}


@pytest.mark.parametrize("name", list(PUBLISHED_CONFIGS))
def test_published_config_json_reads_to_the_preset(name):
    assert GPT2Config.from_hf_dict(PUBLISHED_CONFIGS[name]) == PRESETS[name]


def test_gpt2_config_json_is_unchanged():
    """GPT-2's config.json is byte for byte what gpt2lab wrote before the switches existed."""
    expected = (
        '{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 50257, '
        '"n_positions": 1024, "n_ctx": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12, '
        '"n_inner": null, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-05, '
        '"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "initializer_range": 0.02, '
        '"scale_attn_weights": true, "tie_word_embeddings": true, "bos_token_id": 50256, '
        '"eos_token_id": 50256}'
    )
    assert json.dumps(GPT2Config().to_hf_dict()) == expected


def test_a_mix_is_written_as_gpt2lab():
    config = PRESETS["transformer-base"]
    d = config.to_hf_dict()
    assert d["model_type"] == "gpt2lab" and d["positions"] == "sinusoidal"
    assert GPT2Config.from_hf_dict(d) == config
    with pytest.raises(CheckpointError, match=r"unknown keys \['rotary'\]"):
        GPT2Config.from_hf_dict({**d, "rotary": 1})
    rope = {**d, "positions": "rope", "rope_scaling": {"factor": 8.0}}
    with pytest.raises(CheckpointError, match="lacks low_freq_factor"):
        GPT2Config.from_hf_dict(rope)
    rope["rope_scaling"] = {**RopeScaling(8.0, 1.0, 4.0, 64).to_hf_dict(), "factor": "x"}
    with pytest.raises(CheckpointError, match="factor has the wrong type: 'x'"):
        GPT2Config.from_hf_dict(rope)
    with pytest.raises(CheckpointError, match="rope_scaling must be a RopeScaling, got 'x'"):
        GPT2Config.from_hf_dict({**rope, "rope_scaling": "x"})


@pytest.mark.parametrize(
    ("d", "message"),
    [
        ({"model_type": "t5"}, "model_type 't5'; gpt2lab reads 'gpt2', 'openai-gpt', 'llama'"),
        ({"model_type": "llama"}, r"config.json \(model_type 'llama'\) lacks hidden_size"),
        ({"model_type": "gpt2", "activation_function": "silu"}, "activation_function='silu'"),
        ({"model_type": "gpt2", "n_inner": "x"}, "n_inner has the wrong type"),
        ({"model_type": "openai-gpt", "tie_word_embeddings": False}, "tie_word_embeddings"),
        ({"model_type": "llama", "hidden_act": "gelu"}, "hidden_act='gelu'"),
        ({"model_type": "qwen2", "use_sliding_window": True}, "use_sliding_window=True"),
        ({"model_type": "llama", "rope_scaling": {"rope_type": "yarn"}}, "'yarn' is not supp"),
        ({"model_type": "llama", "head_dim": 32}, "head_dim=32, not hidden_size"),
        ({"model_type": "llama", "num_key_value_heads": 4}, "multiple of n_kv_head"),
        ({"model_type": "llama", "eos_token_id": [1, "2"]}, "eos_token_id has the wrong type"),
    ],
)
def test_unsupported_hf_configs_are_refused(d, message):
    base = SMALL["llama gqa"].to_hf_dict() if d["model_type"] in ("llama", "qwen2") else {}
    if d == {"model_type": "llama"}:
        base = {}
    with pytest.raises(CheckpointError, match=message):
        GPT2Config.from_hf_dict({**base, **d})


# --- parameter counts ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(PUBLISHED))
def test_preset_counts_are_the_published_ones(name):
    counts = parameter_counts(PRESETS[name])
    assert counts["total"] == PUBLISHED[name]
    assert sum(v for k, v in counts.items() if k != "total") == PUBLISHED[name]


def test_published_counts_are_transformers_counts():
    """Each published number is also what transformers builds from our config.json (on the meta
    device: a 405B model allocates nothing)."""
    for name, count in PUBLISHED.items():
        if PRESETS[name].hf_model_type != "gpt2":  # the GPT-2 sizes: test_model builds them
            assert hf_counts(hf_model(PRESETS[name]))["total"] == count, name


def test_transformer_base_count():
    """Vaswani et al.'s base sizes, one decoder stack (their encoder-decoder has ~65M): a shared
    37,000 × 512 embedding and 6 post-LN blocks, no positions to learn."""
    block = 4 * (512 * 512 + 512) + (512 * 2048 + 2048) + (2048 * 512 + 512) + 2 * 2 * 512
    assert parameter_counts(PRESETS["transformer-base"]) == {
        "embedding": 37000 * 512,
        "positions": 0,
        "attention": 6 * 4 * (512 * 512 + 512),
        "mlp": 6 * (2 * 512 * 2048 + 2048 + 512),
        "norms": 6 * 2 * 2 * 512,
        "unembedding": 0,
        "total": 37000 * 512 + 6 * block,
    }


@pytest.mark.parametrize(
    "config",
    [PRESETS["gpt2"], SMALL["gpt2"], GPT2Config(n_embd=80, n_layer=3, n_head=5, n_positions=40)],
)
def test_model_counts_equal_config_counts(config):
    """The model's own count of its tensors and the count from the config are one number."""
    with torch.device("meta"):
        model = m.GPT2(config)
    ours = parameter_counts(config)
    assert model.num_parameters() == ours["total"]
    assert model.parameter_counts() == ours


def test_kv_cache_bytes_per_token():
    # 2 (k and v) · layers · kv heads · head size · bytes
    assert kv_cache_bytes_per_token(PRESETS["gpt2"]) == 2 * 12 * 12 * 64 * 4
    assert kv_cache_bytes_per_token(PRESETS["llama-3.1-8b"], 2) == 2 * 32 * 8 * 128 * 2
    assert kv_cache_bytes_per_token(PRESETS["smollm2-135m"], 2) == 2 * 30 * 3 * 64 * 2


def test_every_preset_is_documented():
    from gpt2lab.config import PRESET_NOTES

    assert set(PRESET_NOTES) == set(PRESETS)
    assert all(dataclasses.is_dataclass(c) for c in PRESETS.values())
