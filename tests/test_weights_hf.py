"""Hugging Face weights: folders in every layout transformers writes, the Hub cache, and refusals.

A tiny random transformers GPT2LMHeadModel is the reference: gpt2lab must load its files in each
format with identical logits, write folders transformers reads back, never run pickled code, and
turn every bad input into one clear ModelNotFoundError or CheckpointError.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import pickle
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import populate_hub_cache
from safetensors.torch import save_file

import gpt2lab
from gpt2lab.errors import CheckpointError, ModelNotFoundError

TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "src" / "gpt2lab" / "data" / "tokenizer"
ATOL = 1e-4


# --- helpers --------------------------------------------------------------------------------------
def random_ids(vocab_size: int = 50257, shape: tuple[int, int] = (2, 16)) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1234)
    return torch.randint(0, vocab_size, shape, generator=gen)


@torch.no_grad()
def hf_logits(hf, ids: torch.Tensor) -> torch.Tensor:
    return hf(ids).logits


@torch.no_grad()
def lab_logits(model, ids: torch.Tensor) -> torch.Tensor:
    return model(ids)


def assert_same_logits(model, hf, ids: torch.Tensor | None = None) -> None:
    ids = random_ids() if ids is None else ids
    expected = hf_logits(hf, ids)
    got = lab_logits(model, ids)
    assert got.shape == expected.shape == (*ids.shape, 50257)
    diff = (got.double() - expected.double()).abs().max().item()
    assert diff <= ATOL, f"max abs logit difference {diff}"


def plain_state(hf) -> dict[str, torch.Tensor]:
    """The HF state dict with unshared, contiguous copies and no tied lm_head (safetensors-safe)."""
    return {
        k: v.detach().clone().contiguous()
        for k, v in hf.state_dict().items()
        if k != "lm_head.weight"
    }


def folder_with(tmp: Path, source: Path, files: dict[str, object] | None = None) -> Path:
    """A new folder with ``source``'s config.json and the given weight files.

    ``files`` maps a file name to a state dict; ``.safetensors`` names are written with
    safetensors, anything else with ``torch.save``.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "config.json", tmp / "config.json")
    for name, state in (files or {}).items():
        if name.endswith(".safetensors"):
            save_file(state, tmp / name, metadata={"format": "pt"})
        else:
            torch.save(state, tmp / name)
    return tmp


# --- 1. transformers' own save_pretrained folder --------------------------------------------------
def test_loads_transformers_save_pretrained_folder(small_hf):
    hf, folder = small_hf
    assert (folder / "model.safetensors").is_file()
    model = gpt2lab.load(folder)
    assert isinstance(model, gpt2lab.GPT2)
    assert not model.training
    assert model.config.n_layer == 2
    assert model.config.n_embd == 64
    assert model.config.n_head == 4
    assert model.config.vocab_size == 50257
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not any(p.is_meta for p in model.parameters())
    assert model.tokenizer is not None
    assert model.tokenizer.encode("Hello, world!") == [15496, 11, 995, 0]
    assert_same_logits(model, hf)
    # the tensors are exactly transformers' (no rounding on the way in)
    hf_state = hf.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, hf_state[name]), name


def test_load_with_float64(small_hf):
    hf, folder = small_hf
    model = gpt2lab.load(folder, dtype=torch.float64)
    assert not model.training
    params = list(model.parameters())
    assert params and all(p.dtype == torch.float64 for p in params)
    ids = random_ids()
    got = lab_logits(model, ids)
    assert got.dtype == torch.float64
    assert (got - hf_logits(hf, ids).double()).abs().max().item() <= ATOL


def test_loads_relative_path(small_hf, tmp_path, monkeypatch):
    hf, folder = small_hf
    shutil.copytree(folder, tmp_path / "my-model")
    monkeypatch.chdir(tmp_path)
    assert_same_logits(gpt2lab.load("my-model"), hf)
    assert_same_logits(gpt2lab.load("./my-model"), hf)


# --- 2. other layouts: pytorch_model.bin, keys without prefix, shards -----------------------------
def test_loads_pytorch_model_bin(small_hf, tmp_path):
    hf, folder = small_hf
    # transformers 5 always writes safetensors, so write the .bin as older versions did:
    # the full state dict, lm_head.weight tied to (sharing storage with) wte.
    bin_folder = folder_with(tmp_path / "bin", folder, {"pytorch_model.bin": hf.state_dict()})
    assert not (bin_folder / "model.safetensors").exists()
    model = gpt2lab.load(bin_folder)
    assert not model.training
    assert_same_logits(model, hf)


def test_loads_keys_without_transformer_prefix_and_mask_buffers(small_hf, tmp_path):
    """The layout of the original Hub ``gpt2`` pytorch_model.bin: no prefix, causal-mask buffers."""
    hf, folder = small_hf
    state = dict(hf.transformer.state_dict())
    assert state and not any(k.startswith("transformer.") for k in state)
    n_pos = hf.config.n_positions
    for i in range(hf.config.n_layer):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(n_pos, n_pos)).view(1, 1, n_pos, n_pos)
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    bin_folder = folder_with(tmp_path / "bare", folder, {"pytorch_model.bin": state})
    assert_same_logits(gpt2lab.load(bin_folder), hf)

    st_folder = folder_with(
        tmp_path / "bare_st", folder, {"model.safetensors": plain_state(hf.transformer)}
    )
    assert_same_logits(gpt2lab.load(st_folder), hf)


def test_loads_legacy_format_pytorch_model_bin(small_hf, tmp_path):
    """Files written by torch < 1.6 (e.g. old Hub uploads) use the legacy, non-zip format."""
    hf, folder = small_hf
    bin_folder = folder_with(tmp_path / "legacy", folder)
    torch.save(
        hf.state_dict(), bin_folder / "pytorch_model.bin", _use_new_zipfile_serialization=False
    )
    assert_same_logits(gpt2lab.load(bin_folder), hf)


def test_loads_sharded_safetensors(small_hf, tmp_path):
    hf, folder = small_hf
    state = plain_state(hf)
    names = sorted(state)
    halves = {
        "model-00001-of-00002.safetensors": names[: len(names) // 2],
        "model-00002-of-00002.safetensors": names[len(names) // 2 :],
    }
    sharded = folder_with(tmp_path / "sharded", folder)
    weight_map = {}
    for shard, keys in halves.items():
        assert keys
        save_file({k: state[k] for k in keys}, sharded / shard, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(keys, shard))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    assert not (sharded / "model.safetensors").exists()
    assert_same_logits(gpt2lab.load(sharded), hf)

    # a shard named in the index but absent is a broken checkpoint, not a crash
    (sharded / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002"):
        gpt2lab.load(sharded)


def test_sharded_index_that_is_not_json(small_hf, tmp_path):
    _, folder = small_hf
    sharded = folder_with(tmp_path / "bad_index", folder)
    (sharded / "model.safetensors.index.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="shard index"):
        gpt2lab.load(sharded)


def test_folder_tokenizer_files_are_used(small_hf, tmp_path):
    """vocab.json + merges.txt in the folder become model.tokenizer."""
    _, folder = small_hf
    with_tok = shutil.copytree(folder, tmp_path / "tok")
    shutil.copy(TOKENIZER_DIR / "encoder.json", with_tok / "vocab.json")
    shutil.copy(TOKENIZER_DIR / "vocab.bpe", with_tok / "merges.txt")
    model = gpt2lab.load(with_tok)
    assert model.tokenizer.encode("Mike is quick. He moves") == [16073, 318, 2068, 13, 679, 6100]


# --- 3. gpt2lab -> Hugging Face folder --------------------------------------------------------
def test_save_is_read_by_transformers(small_hf, tmp_path):
    from transformers import GPT2LMHeadModel, GPT2Tokenizer, GPT2TokenizerFast

    hf, folder = small_hf
    model = gpt2lab.load(folder)
    out = tmp_path / "saved"
    assert Path(model.save(out)) == out
    for name in ("config.json", "model.safetensors", "vocab.json", "merges.txt"):
        assert (out / name).is_file(), name

    reloaded, info = GPT2LMHeadModel.from_pretrained(out, output_loading_info=True)
    reloaded.eval()
    assert set(info["missing_keys"]) <= {"lm_head.weight"}, info
    assert not info["unexpected_keys"], info
    assert not info.get("mismatched_keys"), info
    assert reloaded.lm_head.weight.data_ptr() == reloaded.transformer.wte.weight.data_ptr()
    assert reloaded.config.n_layer == 2
    assert reloaded.config.n_embd == 64
    assert reloaded.config.n_head == 4
    assert reloaded.config.activation_function == "gelu_new"
    ids = random_ids()
    assert torch.equal(hf_logits(reloaded, ids), hf_logits(hf, ids))
    assert_same_logits(model, reloaded, ids)

    prompt_ids = [16073, 318, 2068, 13, 679, 6100]
    for tok_cls in {GPT2TokenizerFast, GPT2Tokenizer}:
        tok = tok_cls.from_pretrained(out)
        assert tok.encode("Mike is quick. He moves") == prompt_ids
        assert tok.decode(prompt_ids) == "Mike is quick. He moves"

    again = gpt2lab.load(out)
    assert again.tokenizer.encode("Mike is quick. He moves") == prompt_ids
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert torch.equal(a[name], b[name]), name


def test_save_round_trip_without_transformers(tmp_path):
    """A fresh gpt2lab model (not from transformers) saves and loads bit-exactly."""
    config = gpt2lab.GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=32)
    model = gpt2lab.GPT2(config, gpt2lab.get_tokenizer())
    model.init_weights(seed=7)
    model.save(tmp_path / "m")
    again = gpt2lab.load(tmp_path / "m")
    assert again.config == config
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name
    ids = random_ids(shape=(1, 8))
    assert torch.equal(lab_logits(model.eval(), ids), lab_logits(again, ids))


def test_save_under_non_utf8_locale(tmp_path):
    code = (
        "import sys, gpt2lab\n"
        "config = gpt2lab.GPT2Config(n_layer=1, n_embd=8, n_head=2, n_positions=8)\n"
        "gpt2lab.GPT2(config, gpt2lab.get_tokenizer()).save(sys.argv[1])\n"
        "m = gpt2lab.load(sys.argv[1])\n"
        "assert m.tokenizer.encode('Hello, world!') == [15496, 11, 995, 0]\n"
    )
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "m")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]


# --- 4. pickles are never executed ------------------------------------------------------------
def _payloads(marker: Path):
    return {
        "path_touch": (pathlib.Path.touch, (marker,)),
        "os_system": (os.system, (f"touch '{marker}'",)),
    }


@pytest.mark.parametrize("payload", ["path_touch", "os_system"])
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_and_not_run(small_hf, tmp_path, payload, writer):
    _, folder = small_hf
    marker = tmp_path / "pwned"
    reduce_value = _payloads(marker)[payload]

    class Evil:
        def __reduce__(self):
            return reduce_value

    bad = folder_with(tmp_path / "evil", folder)
    state = {"transformer.wte.weight": Evil()}
    if writer == "torch.save":
        torch.save(state, bad / "pytorch_model.bin")
    else:
        with open(bad / "pytorch_model.bin", "wb") as f:
            pickle.dump(state, f)
    assert not marker.exists()

    with pytest.raises(CheckpointError) as excinfo:
        gpt2lab.load(bad)
    assert "pytorch_model.bin" in str(excinfo.value)
    assert not marker.exists(), "gpt2lab executed code from a pickle"

    # the payload is armed: an unsafe loader does run it (proves the test tests something)
    if writer == "torch.save":
        torch.load(bad / "pytorch_model.bin", weights_only=False)
    else:
        with open(bad / "pytorch_model.bin", "rb") as f:
            pickle.load(f)
    assert marker.exists()


def test_bin_that_is_not_a_state_dict(small_hf, tmp_path):
    """A plain pickle of safe objects that is no name -> tensor mapping is refused."""
    _, folder = small_hf
    bad = folder_with(tmp_path / "list", folder, {"pytorch_model.bin": [torch.zeros(2)]})
    with pytest.raises(CheckpointError, match="name -> tensor"):
        gpt2lab.load(bad)


# --- 5. clear errors ----------------------------------------------------------------------------
def test_missing_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError, match=r"^no such folder: \./no/such/folder$"):
        gpt2lab.load("./no/such/folder")
    with pytest.raises(ModelNotFoundError, match=f"^no such folder: {tmp_path / 'absent'}$"):
        gpt2lab.load(tmp_path / "absent")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"config\.json"):
        gpt2lab.load(tmp_path / "empty")


def test_config_without_weights(small_hf, tmp_path):
    _, folder = small_hf
    only_config = folder_with(tmp_path / "cfg_only", folder)
    with pytest.raises(ModelNotFoundError, match="not a model folder"):
        gpt2lab.load(only_config)


def test_file_instead_of_folder(small_hf):
    _, folder = small_hf
    with pytest.raises(ModelNotFoundError, match="is a file"):
        gpt2lab.load(folder / "model.safetensors")


def test_truncated_safetensors(small_hf, tmp_path):
    _, folder = small_hf
    bad = shutil.copytree(folder, tmp_path / "truncated")
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read weights"):
        gpt2lab.load(bad)


def test_garbage_bin(small_hf, tmp_path):
    _, folder = small_hf
    bad = folder_with(tmp_path / "garbage", folder)
    (bad / "pytorch_model.bin").write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin"):
        gpt2lab.load(bad)


def test_wrong_shape_names_the_tensor(small_hf, tmp_path):
    hf, folder = small_hf
    state = plain_state(hf)
    state["transformer.h.1.mlp.c_fc.weight"] = torch.zeros(64, 100)
    bad = folder_with(tmp_path / "shape", folder, {"model.safetensors": state})
    with pytest.raises(CheckpointError, match=r"transformer\.h\.1\.mlp\.c_fc\.weight") as excinfo:
        gpt2lab.load(bad)
    assert "[64, 100]" in str(excinfo.value)
    assert "[64, 256]" in str(excinfo.value)


def test_missing_and_unexpected_tensors(small_hf, tmp_path):
    hf, folder = small_hf
    state = plain_state(hf)
    del state["transformer.ln_f.weight"]
    bad = folder_with(tmp_path / "missing", folder, {"model.safetensors": state})
    with pytest.raises(CheckpointError, match=r"missing 1 .*transformer\.ln_f\.weight"):
        gpt2lab.load(bad)

    state = plain_state(hf)
    state["transformer.h.2.ln_1.weight"] = torch.ones(64)  # a third layer the config lacks
    bad = folder_with(tmp_path / "extra", folder, {"model.safetensors": state})
    with pytest.raises(CheckpointError, match=r"unexpected 1 .*transformer\.h\.2\.ln_1\.weight"):
        gpt2lab.load(bad)


def test_integer_tensor(small_hf, tmp_path):
    hf, folder = small_hf
    state = plain_state(hf)
    state["transformer.ln_f.bias"] = torch.zeros(64, dtype=torch.int64)
    bad = folder_with(tmp_path / "int", folder, {"model.safetensors": state})
    with pytest.raises(CheckpointError, match=r"transformer\.ln_f\.bias.*dtype"):
        gpt2lab.load(bad)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weight(small_hf, tmp_path, value):
    hf, folder = small_hf
    state = plain_state(hf)
    state["transformer.h.0.attn.c_proj.weight"][3, 5] = value
    bad = folder_with(tmp_path / "nan", folder, {"model.safetensors": state})
    with pytest.raises(CheckpointError, match="NaN") as excinfo:
        gpt2lab.load(bad)
    assert "transformer.h.0.attn.c_proj.weight" in str(excinfo.value)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("scale_attn_by_inverse_layer_idx", True, "scale_attn_by_inverse_layer_idx"),
        ("reorder_and_upcast_attn", True, "reorder_and_upcast_attn"),
        # switches gpt2lab runs, on weights that do not fit them
        ("n_inner", 100, r"tensor transformer\.h\.0\.mlp\.c_fc\.weight has shape \[64, 256\]"),
        ("tie_word_embeddings", False, r"missing 1 tensors \(e\.g\. lm_head\.weight\)"),
        ("model_type", "llama", "model_type 'llama'"),
    ],
)
def test_unsupported_config(small_hf, tmp_path, key, value, message):
    _, folder = small_hf
    bad = shutil.copytree(folder, tmp_path / "cfg")
    config = json.loads((bad / "config.json").read_text())
    config[key] = value
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        gpt2lab.load(bad)


def test_config_not_json(small_hf, tmp_path):
    _, folder = small_hf
    bad = shutil.copytree(folder, tmp_path / "notjson")
    (bad / "config.json").write_text("n_layer = 2\n")
    with pytest.raises(CheckpointError, match=r"config\.json"):
        gpt2lab.load(bad)
    (bad / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="not a JSON object"):
        gpt2lab.load(bad)


def test_config_with_invalid_numbers(small_hf, tmp_path):
    _, folder = small_hf
    bad = shutil.copytree(folder, tmp_path / "cfgnum")
    config = json.loads((bad / "config.json").read_text())
    config["n_head"] = 5  # 64 is not divisible by 5
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="divisible"):
        gpt2lab.load(bad)


def test_untied_lm_head_in_bin(small_hf, tmp_path):
    hf, folder = small_hf
    state = plain_state(hf)
    state["lm_head.weight"] = state["transformer.wte.weight"] + 1.0
    bad = folder_with(tmp_path / "untied", folder, {"pytorch_model.bin": state})
    with pytest.raises(CheckpointError, match=r"lm_head\.weight differs"):
        gpt2lab.load(bad)
    # an equal (but separately stored) lm_head is fine
    state["lm_head.weight"] = state["transformer.wte.weight"].clone()
    ok = folder_with(tmp_path / "tied_copy", folder, {"pytorch_model.bin": state})
    assert_same_logits(gpt2lab.load(ok), hf)


def test_errors_are_gpt2lab_errors_without_chained_tracebacks(small_hf, tmp_path):
    _, folder = small_hf
    bad = shutil.copytree(folder, tmp_path / "trunc2")
    (bad / "model.safetensors").write_bytes(b"\x08")
    with pytest.raises(gpt2lab.GPT2LabError) as excinfo:
        gpt2lab.load(bad)
    assert isinstance(excinfo.value, CheckpointError)
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__suppress_context__
    assert "\n" not in str(excinfo.value)


# --- 6. the Hub, offline ------------------------------------------------------------------------
@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty HF cache under tmp_path, offline mode on, and every socket connect refused."""
    import huggingface_hub.constants as hf_constants

    cache = tmp_path / "hf_cache"
    cache.mkdir()
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(home))
    # huggingface_hub reads these at import time; patch the module too
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HOME", str(home))

    def no_network(*args, **kwargs):
        raise AssertionError("the test tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.chdir(tmp_path)  # so "gpt2" cannot be a local folder
    return cache


def populate_cache_with_blobs(cache: Path, repo_id: str, files: dict[str, Path]) -> Path:
    """The cache as huggingface_hub writes it: blobs named by hash, snapshot symlinks to them."""
    commit = "fedcba9876543210fedcba9876543210fedcba98"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    snapshot.mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    for name, source in files.items():
        data = source.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


@pytest.mark.parametrize("repo_id", ["gpt2", "openai-community/gpt2"])
def test_hub_id_not_in_cache_offline(offline_hub, repo_id):
    with pytest.raises(ModelNotFoundError) as excinfo:
        gpt2lab.load(repo_id)
    message = str(excinfo.value)
    assert repo_id in message
    assert "not in the Hugging Face cache" in message
    assert "offline" in message
    assert "no such folder" not in message  # a GPT-2 id is only ever a Hub id
    assert "\n" not in message
    assert "Traceback" not in message
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__suppress_context__
    assert not any(offline_hub.rglob("*.safetensors"))


def test_hub_id_from_prepopulated_cache_offline(offline_hub, small_hf):
    hf, folder = small_hf
    snapshot = populate_cache_with_blobs(
        offline_hub,
        "gpt2",
        {
            "config.json": folder / "config.json",
            "model.safetensors": folder / "model.safetensors",
            "vocab.json": TOKENIZER_DIR / "encoder.json",
            "merges.txt": TOKENIZER_DIR / "vocab.bpe",
        },
    )
    assert (snapshot / "model.safetensors").is_symlink()
    model = gpt2lab.load("gpt2")
    assert not model.training
    assert model.config.n_layer == 2
    assert model.config.n_embd == 64
    assert model.tokenizer.encode("Mike is quick. He moves") == [16073, 318, 2068, 13, 679, 6100]
    assert_same_logits(model, hf)
    # the resolved folder is the snapshot itself: nothing downloaded or copied
    from gpt2lab.weights import resolve

    assert resolve("gpt2") == snapshot


def test_namespaced_hub_id_from_cache_offline(offline_hub, small_hf):
    hf, folder = small_hf
    populate_hub_cache(offline_hub, "openai-community/gpt2", folder)
    assert_same_logits(gpt2lab.load("openai-community/gpt2"), hf)
    with pytest.raises(ModelNotFoundError, match="not in the Hugging Face cache"):
        gpt2lab.load("gpt2")  # a different repo id is a different cache entry


def test_hub_cache_with_only_pytorch_model_bin_offline(offline_hub, small_hf, tmp_path):
    """Older caches hold pytorch_model.bin and no safetensors; offline that must still load."""
    hf, folder = small_hf
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    populate_cache_with_blobs(
        offline_hub,
        "gpt2",
        {
            "config.json": folder / "config.json",
            "pytorch_model.bin": tmp_path / "pytorch_model.bin",
        },
    )
    model = gpt2lab.load("gpt2")
    assert model.tokenizer.encode("Hello, world!") == [15496, 11, 995, 0]  # bundled fallback
    assert_same_logits(model, hf)


def test_hub_cache_with_config_but_no_weights_offline(offline_hub, small_hf):
    _, folder = small_hf
    populate_cache_with_blobs(offline_hub, "gpt2", {"config.json": folder / "config.json"})
    with pytest.raises(ModelNotFoundError, match="gpt2"):
        gpt2lab.load("gpt2")


def test_hub_cache_without_weights_offline_says_not_cached(offline_hub, small_hf):
    _, folder = small_hf
    populate_cache_with_blobs(offline_hub, "gpt2", {"config.json": folder / "config.json"})
    with pytest.raises(ModelNotFoundError) as excinfo:
        gpt2lab.load("gpt2")
    message = str(excinfo.value)
    assert "holds no GPT-2 weights" not in message
    assert "cache" in message
    assert "offline" in message


def test_int8_folder_round_trips_to_the_quantized_model(small_hf, tmp_path):
    from safetensors.torch import load_file

    from gpt2lab.weights.hf import save_hf_folder

    _, folder = small_hf
    model = gpt2lab.load(folder)
    save_hf_folder(model.config, model.state_dict(), tmp_path / "q", int8=True)
    stored = load_file(tmp_path / "q" / "model.safetensors")
    assert stored["transformer.wte.weight"].dtype == torch.int8
    assert stored["transformer.wte.weight.scale"].shape == (50257, 1)  # a scale per token row
    assert stored["transformer.h.0.mlp.c_fc.weight.scale"].shape == (1, 256)  # per output column
    assert stored["transformer.wpe.weight"].dtype == torch.float32  # added, not multiplied
    loaded = gpt2lab.load(tmp_path / "q")
    quantized = gpt2lab.load(folder).quantize("int8")
    for name, value in quantized.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    assert loaded.quantized is None  # int8 on disk, float32 in memory: the fast path is float32

    stored["transformer.wte.weight.scale"] = stored["transformer.wte.weight.scale"].T
    save_file(stored, tmp_path / "q" / "model.safetensors")
    with pytest.raises(CheckpointError, match="does not scale an int8 matrix"):
        gpt2lab.load(tmp_path / "q")


# --- 7. names that are not Hub ids never reach the network -------------------------------------
@pytest.mark.parametrize(
    ("text", "hub"),
    [
        ("gpt2", True),
        ("gpt2-xl", True),
        ("distilgpt2", True),
        ("openai-community/gpt2-medium", True),
        ("someone/my-gpt2", True),  # any well-formed owner/name
        ("tiny", False),
        ("tinyy", False),  # a new Hub id always has an owner
        ("GPT2", False),
        ("models/124M", False),  # huggingface.co/models is a page, not an owner
        ("runs/a/b", False),
        ("bad name/x", False),
        ("a--b/c", False),
    ],
)
def test_is_hub_id(text, hub):
    from gpt2lab.weights.hf import is_hub_id

    assert is_hub_id(text) is hub


@pytest.fixture
def no_download(offline_hub, monkeypatch):
    """The offline Hub, and resolve must not even try it."""
    import gpt2lab.weights

    def refuse(repo_id, *args, **kwargs):
        raise AssertionError(f"{repo_id!r} was taken for a Hub id")

    monkeypatch.setattr(gpt2lab.weights, "download", refuse)


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("tinyy", "did you mean tiny?"),
        ("TINY", "did you mean tiny?"),
        ("Tiny", "did you mean tiny?"),
        ("gpt-2", "did you mean gpt2?"),
        ("GPT2-Medium", "did you mean gpt2-medium?"),
    ],
)
def test_unknown_names_suggest_the_nearest_model(no_download, name, suggestion):
    with pytest.raises(ModelNotFoundError) as excinfo:
        gpt2lab.load(name)
    assert str(excinfo.value) == (
        f"unknown model {name!r}: not a folder, not a bundled model (chars, tiny) and not a "
        f"Hugging Face Hub id in the cache; {suggestion}"
    )


def test_unknown_name_far_from_any_model_says_what_names_look_like(no_download):
    with pytest.raises(ModelNotFoundError, match=r"a Hub id such as gpt2 or owner/name$"):
        gpt2lab.load("xylophone")


@pytest.mark.parametrize("name", ["models/124M", "runs/latest-run", "out/a/b"])
def test_missing_folders_are_no_hub_ids(no_download, tmp_path, name):
    (tmp_path / "runs").mkdir()  # an existing first folder makes runs/x a path
    with pytest.raises(ModelNotFoundError, match=f"^no such folder: {name}$"):
        gpt2lab.load(name)


def test_owner_name_missing_offline_says_both(offline_hub):
    """owner/name could be a folder or a Hub id; offline nothing tells them apart."""
    with pytest.raises(ModelNotFoundError) as excinfo:
        gpt2lab.load("someone/my-gpt2")
    message = str(excinfo.value)
    assert message.startswith("no such folder: someone/my-gpt2; as a Hub id: 'someone/my-gpt2' ")
    assert "not in the Hugging Face cache and the Hub cannot be reached" in message


def test_a_cached_id_without_owner_loads_offline(offline_hub, small_hf):
    hf, folder = small_hf
    populate_hub_cache(offline_hub, "my-gpt", folder)
    assert_same_logits(gpt2lab.load("my-gpt"), hf)
