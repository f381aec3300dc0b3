"""Llama, Qwen2 and GPT-1 folders: the name tables, every layout transformers writes, errors
that name the file's tensor, and the tokenizers such folders hold.

transformers models built from small configs (random weights, no download) write the folders;
tokenizers the library trains on the shipped stories stand in for SmolLM's or Llama 3's.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import tokenizers
import torch
from conftest import BUNDLED_TOKENIZER, STORIES
from safetensors.torch import load_file, save_file
from test_weights_hf import offline_hub, populate_cache_with_blobs  # noqa: F401 (a fixture)
from tokenizers import decoders, models, trainers
from tokenizers import pre_tokenizers as pre
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    OpenAIGPTConfig,
    OpenAIGPTLMHeadModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

import gpt2lab
from gpt2lab.config import GPT2Config
from gpt2lab.errors import CheckpointError, TokenizerError
from gpt2lab.weights.families import from_hf, table_for, to_hf, with_base

ATOL = 1e-4
SMALL = {"num_hidden_layers": 2, "max_position_embeddings": 32, "intermediate_size": 40}


def llama(vocab_size: int = 64, **changes) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=24, num_attention_heads=3, num_key_value_heads=1, **SMALL
    )
    for key, value in changes.items():
        setattr(config, key, value)
    return LlamaForCausalLM(config).eval()


def gpt1() -> OpenAIGPTLMHeadModel:
    torch.manual_seed(0)
    config = OpenAIGPTConfig(vocab_size=64, n_positions=16, n_embd=24, n_layer=2, n_head=3)
    return OpenAIGPTLMHeadModel(config).eval()


def saved(hf, folder: Path) -> Path:
    hf.save_pretrained(folder)
    return folder


@torch.no_grad()
def assert_same_logits(model, hf) -> None:
    ids = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(0))
    diff = (model(ids) - hf(ids).logits).abs().max().item()
    assert diff <= ATOL, f"max abs logit difference {diff}"


# --- the name tables ------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt1"])
def test_tables_fuse_qkv_transpose_and_round_trip(family):
    if family == "gpt1":
        hf = gpt1()
    elif family == "llama":
        hf = llama()
    else:
        torch.manual_seed(0)
        hf = Qwen2ForCausalLM(
            Qwen2Config(
                vocab_size=64, hidden_size=24, num_attention_heads=4, num_key_value_heads=2, **SMALL
            )
        )
    config = GPT2Config.from_hf_dict(hf.config.to_dict())
    state = {k: v for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    ours = from_hf(with_base(state, table_for(config)), config)
    C, D = config.n_embd, config.head_dim
    H, K = config.n_head, config.n_key_value_heads
    if family != "gpt1":
        attn = hf.model.layers[1].self_attn
        # columns q | k | v of the [in, out] matrix, each nn.Linear weight transposed
        expected = torch.cat([attn.q_proj.weight.T, attn.k_proj.weight.T, attn.v_proj.weight.T], 1)
        assert torch.equal(ours["transformer.h.1.attn.c_attn.weight"], expected)
        assert expected.shape == (C, (H + 2 * K) * D)
        down = hf.model.layers[0].mlp.down_proj.weight
        assert torch.equal(ours["transformer.h.0.mlp.c_proj.weight"], down.T)
        assert ("transformer.h.0.attn.c_attn.bias" in ours) == (family == "qwen2")
    else:
        assert torch.equal(ours["transformer.wpe.weight"], hf.transformer.positions_embed.weight)
    assert torch.equal(ours["transformer.wte.weight"], hf.get_input_embeddings().weight)
    back = to_hf(ours, config)
    assert set(back) == set(state)
    assert all(torch.equal(back[k], state[k]) for k in state)


# --- layouts --------------------------------------------------------------------------------------
def test_llama_pytorch_model_bin_and_shards(tmp_path):
    hf = llama()
    folder = saved(hf, tmp_path / "st")
    state = load_file(folder / "model.safetensors")
    names = sorted(state)
    bin_folder = tmp_path / "bin"
    bin_folder.mkdir()
    shutil.copy(folder / "config.json", bin_folder)
    # as older transformers wrote them: with each block's RoPE frequencies, which are no weights
    inv_freq = {f"model.layers.{i}.self_attn.rotary_emb.inv_freq": torch.ones(4) for i in (0, 1)}
    torch.save(state | inv_freq, bin_folder / "pytorch_model.bin")
    assert_same_logits(gpt2lab.load(bin_folder), hf)

    sharded = tmp_path / "sharded"
    sharded.mkdir()
    shutil.copy(folder / "config.json", sharded)
    weight_map = {}
    for i, part in enumerate((names[:7], names[7:])):
        shard = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({k: state[k] for k in part}, sharded / shard)
        weight_map |= dict.fromkeys(part, shard)
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert_same_logits(gpt2lab.load(sharded), hf)


def test_gpt1_bare_keys_with_mask_buffers(tmp_path):
    """The Hub's openai-gpt pytorch_model.bin: no ``transformer.`` prefix, causal-mask buffers."""
    hf = gpt1()
    folder = saved(hf, tmp_path / "gpt1")
    state = {
        k.removeprefix("transformer."): v
        for k, v in load_file(folder / "model.safetensors").items()
    }
    for layer in range(2):
        state[f"h.{layer}.attn.bias"] = torch.tril(torch.ones(1, 1, 16, 16))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    model = gpt2lab.load(folder)
    assert model.config.norm_position == "post"
    assert_same_logits(model, hf)


# --- errors name the file's tensor ------------------------------------------------------------
def _rewrite(folder: Path, change) -> Path:
    state = load_file(folder / "model.safetensors")
    change(state)
    save_file(state, folder / "model.safetensors")
    return folder


def test_missing_tensor_is_named_as_in_the_file(tmp_path):
    folder = saved(llama(), tmp_path / "m")
    _rewrite(folder, lambda s: s.pop("model.layers.1.mlp.gate_proj.weight"))
    with pytest.raises(
        CheckpointError,
        match=r"^the weights do not fit a llama model with this config: "
        r"missing 1 tensors \(e\.g\. model\.layers\.1\.mlp\.gate_proj\.weight\)$",
    ):
        gpt2lab.load(folder)


def test_misshaped_tensor_is_named_as_in_the_file(tmp_path):
    folder = saved(llama(), tmp_path / "m")
    _rewrite(
        folder, lambda s: s.update({"model.layers.0.self_attn.k_proj.weight": torch.zeros(16, 24)})
    )
    with pytest.raises(
        CheckpointError,
        match=r"^tensor model\.layers\.0\.self_attn\.k_proj\.weight has shape \[16, 24\], "
        r"the config needs \[8, 24\]$",
    ):
        gpt2lab.load(folder)


def test_unexpected_tensor_and_untied_output_of_a_tied_config(tmp_path):
    folder = saved(llama(tie_word_embeddings=True), tmp_path / "m")
    _rewrite(folder, lambda s: s.update({"model.layers.0.self_attn.rotary.weight": torch.zeros(3)}))
    with pytest.raises(
        CheckpointError,
        match=r"unexpected 1 \(e\.g\. model\.layers\.0\.self_attn\.rotary\.weight\)",
    ):
        gpt2lab.load(folder)
    folder = saved(llama(tie_word_embeddings=True), tmp_path / "t")
    _rewrite(folder, lambda s: s.update({"lm_head.weight": torch.zeros(64, 24)}))
    with pytest.raises(CheckpointError, match=r"^lm_head\.weight differs from the token embedding"):
        gpt2lab.load(folder)


def test_config_lying_about_depth_is_refused_before_building(tmp_path):
    folder = saved(llama(), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 10**9}))
    with pytest.raises(CheckpointError, match=r"missing blocks 2 to 999999999"):
        gpt2lab.load(folder)


# --- tokenizers -----------------------------------------------------------------------------------
def trained_byte_level(vocab_size: int = 300) -> tokenizers.Tokenizer:
    """A byte-level BPE with Llama 3's kind of pieces, trained on the shipped stories."""
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre.ByteLevel.alphabet(),
        special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
        show_progress=False,
    )
    tok.train_from_iterator([STORIES.read_text(encoding="utf-8")[:20_000]], trainer)
    return tok


def test_folder_with_only_tokenizer_json(tmp_path):
    tok = trained_byte_level()
    folder = saved(llama(vocab_size=tok.get_vocab_size()), tmp_path / "smol")
    tok.save(str(folder / "tokenizer.json"))
    model = gpt2lab.load(folder)
    text = "Once upon a time, Lily found 3 red balls.<|end_of_text|>"
    assert model.tokenizer.encode(text, allowed_special="all") == tok.encode(text).ids
    assert model.tokenizer.decode(tok.encode(text).ids) == text
    # saving writes the tokenizer.json back, and the folder loads again with it
    again = gpt2lab.load(model.save(tmp_path / "saved"))
    assert again.tokenizer.encode(text, allowed_special="all") == tok.encode(text).ids


def test_tokenizer_json_from_the_hub_cache_offline(offline_hub, tmp_path):  # noqa: F811
    tok = trained_byte_level()
    hf = llama(vocab_size=tok.get_vocab_size())
    folder = saved(hf, tmp_path / "smol")
    tok.save(str(folder / "tokenizer.json"))
    populate_cache_with_blobs(
        offline_hub,
        "SmolOwner/smol-llama",
        {name: folder / name for name in ("config.json", "model.safetensors", "tokenizer.json")},
    )
    model = gpt2lab.load("SmolOwner/smol-llama")
    assert_same_logits(model, hf)
    assert model.tokenizer.encode("Once upon a time") == tok.encode("Once upon a time").ids


def test_sentencepiece_folders_are_refused_naming_what_is_read(tmp_path):
    folder = saved(llama(), tmp_path / "sp")
    (folder / "tokenizer.model").write_bytes(b"\x0a\x0b sentencepiece model proto")
    with pytest.raises(
        TokenizerError, match=r"tokenizer\.model is a SentencePiece tokenizer.*byte-level BPE"
    ):
        gpt2lab.load(folder)
    unigram = tokenizers.Tokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0)], 0))
    unigram.pre_tokenizer = pre.Metaspace()
    unigram.save(str(folder / "tokenizer.json"))
    with pytest.raises(TokenizerError, match=r"Unigram.*gpt2lab reads byte-level BPE"):
        gpt2lab.load(folder)


def test_gpt1_vocabulary_loads_the_model_without_a_tokenizer(tmp_path):
    hf = gpt1()
    folder = saved(hf, tmp_path / "gpt1")
    vocab = {"t": 0, "h": 1, "e</w>": 2, "th": 3, "the</w>": 4}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\nt h\nth e</w>\n")
    with pytest.warns(UserWarning, match=r"GPT-1's BPE .*without a tokenizer"):
        model = gpt2lab.load(folder)
    assert model.tokenizer is None
    assert_same_logits(model, hf)
    # the Hub's openai-gpt also has a tokenizer.json: BPE with an end-of-word suffix
    (folder / "vocab.json").unlink()
    (folder / "merges.txt").unlink()
    gpt1_bpe = tokenizers.Tokenizer(
        models.BPE(vocab, [("t", "h"), ("th", "e</w>")], end_of_word_suffix="</w>")
    )
    gpt1_bpe.save(str(folder / "tokenizer.json"))
    with pytest.warns(UserWarning, match=r"end_of_word_suffix='</w>'.*without a tokenizer"):
        assert gpt2lab.load(folder).tokenizer is None


def test_gpt2_folders_keep_their_vocab_files(tmp_path):
    """A GPT-2 vocabulary beside a llama config is still read (vocab.json + merges.txt)."""
    folder = saved(llama(vocab_size=50257), tmp_path / "big")
    shutil.copy(BUNDLED_TOKENIZER / "encoder.json", folder / "vocab.json")
    shutil.copy(BUNDLED_TOKENIZER / "vocab.bpe", folder / "merges.txt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = gpt2lab.load(folder)
    assert model.tokenizer.encode("Hello, world!") == [15496, 11, 995, 0]


def test_a_llama_trained_with_gpt2s_tokenizer_saves_its_end_token(tmp_path):
    """A LLaMA-style model trained here (no eos_token_id in its config) is saved naming
    <|endoftext|>, so that transformers' generate stops there as gpt2lab's does."""
    config = GPT2Config(
        vocab_size=50257, n_positions=32, n_embd=32, n_layer=1, n_head=4, n_kv_head=2,
        n_inner=64, positions="rope", norm="rmsnorm", activation="swiglu", qkv_bias=False,
        attn_out_bias=False, mlp_bias=False,
    )  # fmt: skip
    model = gpt2lab.GPT2(config)
    model.tokenizer = gpt2lab.load("tiny").tokenizer
    assert config.hf_model_type == "llama" and config.eos_token_id is None
    folder = model.save(tmp_path / "llama")
    assert json.loads((folder / "config.json").read_text())["eos_token_id"] == 50256
    assert LlamaForCausalLM.from_pretrained(folder).config.eos_token_id == 50256
    assert gpt2lab.load(folder).config.eos_token_id == 50256
    assert model.config.eos_token_id is None  # the model itself is left as it was
