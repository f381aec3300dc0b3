"""OpenAI's TensorFlow checkpoint reader: the genuine GPT-2 124M index and data prefix, a full round
trip through a bundle written here, and malformed input."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import shutil

import numpy as np
import pytest
import torch
from conftest import shared_path
from weightfiles import write_openai_checkpoint

import gpt2lab
from gpt2lab.errors import CheckpointError
from gpt2lab.weights.openai_tf import load_tf_checkpoint, read_index, read_tensor


# --- the genuine GPT-2 124M files -------------------------------------------------------------
@pytest.fixture(scope="module")
def real_index():
    return read_index(shared_path("gpt2-124M-partial", "tf-checkpoint-prefix", "model.ckpt.index"))


@pytest.fixture
def real_prefix_copy(tmp_path):
    """The real index + the first 3 MiB of the data file, named as in the release."""
    source = shared_path("gpt2-124M-partial", "tf-checkpoint-prefix")
    for f in source.iterdir():
        shutil.copy(f, tmp_path / f.name.replace(".first3MiB", ""))
    return tmp_path


def test_real_index_lists_every_tensor(real_index):
    assert len(real_index) == 148  # wte, wpe, ln_f (2) + 12 blocks x 12 tensors
    assert real_index["model/wte"].shape == (50257, 768)
    assert real_index["model/wpe"].shape == (1024, 768)
    assert real_index["model/h11/mlp/c_proj/w"].shape == (1, 3072, 768)
    assert real_index["model/h0/attn/c_attn/w"].shape == (1, 768, 2304)
    assert all(e.dtype == np.float32 for e in real_index.values())
    assert all(e.size == 4 * int(np.prod(e.shape)) for e in real_index.values())
    assert sum(e.size for e in real_index.values()) == 497_759_232  # the data file's size
    first = min(real_index.values(), key=lambda e: e.offset)
    assert (first.name, first.offset, first.shape) == ("model/h0/attn/c_attn/b", 0, (2304,))


def test_real_first_tensor_passes_crc_and_matches_published_sha256(real_index, real_prefix_copy):
    entry = real_index["model/h0/attn/c_attn/b"]
    values = read_tensor(real_prefix_copy / "model.ckpt", entry)  # raises on a CRC mismatch
    assert values.shape == (2304,) and np.isfinite(values).all()
    tsv = shared_path("gpt2-124M-partial", "gpt2_tensor_sha256.tsv").read_text()
    published = next(
        line.split("\t")
        for line in tsv.splitlines()
        if line.startswith("weights/gpt2/transformer.h.0.attn.c_attn.bias_gpt.bin")
    )
    assert hashlib.sha256(values.astype("<f4").tobytes()).hexdigest() == published[1]


def test_corrupted_tensor_fails_its_crc(real_index, real_prefix_copy):
    data = real_prefix_copy / "model.ckpt.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0x01
    data.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="CRC"):
        read_tensor(real_prefix_copy / "model.ckpt", real_index["model/h0/attn/c_attn/b"])


def test_truncated_data_file_is_a_clear_error(real_prefix_copy):
    with pytest.raises(CheckpointError, match=r"truncated.*download it again"):
        load_tf_checkpoint(real_prefix_copy)
    with pytest.raises(CheckpointError, match="truncated"):
        gpt2lab.load(real_prefix_copy)


def test_malformed_index_bytes_always_give_checkpoint_error(real_prefix_copy, real_index):
    index = real_prefix_copy / "model.ckpt.index"
    original = index.read_bytes()
    rng = random.Random(0)
    broken = [original[:n] for n in (0, 10, 47, 48, 1000, len(original) - 1)]
    broken += [bytes(rng.randrange(256) for _ in range(rng.randrange(200))) for _ in range(20)]
    for blob in broken:
        index.write_bytes(blob)
        with pytest.raises(CheckpointError):
            read_index(index)
    # A flipped bit is caught by a block CRC, the magic or the parser, or it fell on bytes the
    # reader does not use (footer padding): then the entries must be exactly the original ones.
    for _ in range(60):
        flipped = bytearray(original)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        index.write_bytes(bytes(flipped))
        with contextlib.suppress(CheckpointError):
            assert read_index(index) == real_index


# --- a whole checkpoint, written here ---------------------------------------------------------
@pytest.fixture(scope="module")
def tf_pair(tmp_path_factory):
    from conftest import make_hf_model

    root = tmp_path_factory.mktemp("tf")
    hf = make_hf_model(root / "hf", n_layer=2, n_embd=64, n_head=4, n_positions=32)
    write_openai_checkpoint(root / "124M", hf)
    return hf, root / "124M"


def test_round_trip_gives_the_original_tensors(tf_pair):
    hf, folder = tf_pair
    config, state = load_tf_checkpoint(folder)
    assert (config.n_layer, config.n_embd, config.n_head, config.n_positions) == (2, 64, 4, 32)
    reference = {
        f"transformer.{k}": v
        for k, v in hf.transformer.state_dict().items()
        if not k.endswith(".attn.bias")
    }
    assert set(state) == set(reference)
    for name, tensor in state.items():
        assert torch.equal(tensor, reference[name]), name


def test_openai_checkpoint_gives_transformers_logits(tf_pair, tmp_path):
    hf, folder = tf_pair
    ids = torch.randint(0, 50257, (2, 12))
    model = gpt2lab.load(folder)
    with torch.no_grad():
        assert (model(ids) - hf(ids).logits).abs().max().item() <= 1e-4
    model.save(tmp_path / "hf")  # what `gpt2lab convert` writes
    from transformers import GPT2LMHeadModel

    converted = GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        assert (converted(ids).logits - hf(ids).logits).abs().max().item() <= 1e-4


def test_hparams_that_do_not_fit_the_tensors(tf_pair, tmp_path):
    _, folder = tf_pair
    shutil.copytree(folder, tmp_path / "bad")
    hparams = json.loads((tmp_path / "bad" / "hparams.json").read_text())
    (tmp_path / "bad" / "hparams.json").write_text(json.dumps({**hparams, "n_layer": 3}))
    with pytest.raises(CheckpointError, match="missing"):
        gpt2lab.load(tmp_path / "bad")
    (tmp_path / "bad" / "hparams.json").write_text(
        json.dumps({**hparams, "n_embd": 96, "n_head": 4})
    )
    with pytest.raises(CheckpointError, match="shape"):
        gpt2lab.load(tmp_path / "bad")
