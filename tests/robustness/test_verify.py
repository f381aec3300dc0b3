"""`gpt2lab verify`: tensor-by-tensor checks of a folder against GPT-2 124M's published sha256s.

No complete GPT-2 is available here, so the reference folder holds the three genuine tensors
from ../shared (wpe, ln_f weight and bias) and random values everywhere else: exactly those three
must verify, in every format gpt2lab reads, and the CLI must say the rest do not (exit 1).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_path
from safetensors.torch import save_file
from weightfiles import hparams_of, write_tf_checkpoint

import gpt2lab.weights.verify as verify_module
from gpt2lab.cli import main
from gpt2lab.config import GPT2Config
from gpt2lab.errors import CheckpointError, ModelNotFoundError
from gpt2lab.weights.verify import (
    Record,
    check_tensor,
    expected_shapes,
    float32_sha256,
    match_orientation,
    parse_records,
    read_records,
    verify,
)

REAL = ("transformer.wpe.weight", "transformer.ln_f.weight", "transformer.ln_f.bias")
SHAPES_124M = expected_shapes()
# One block as wide as GPT-2 small: its wpe and ln_f are the real ones, the rest is small.
ONE_BLOCK = GPT2Config(vocab_size=64, n_positions=1024, n_embd=768, n_layer=1, n_head=12)


def real_tensor(name: str) -> torch.Tensor:
    path = shared_path("gpt2-124M-partial", "tensors", f"{name}.f32le")
    return torch.from_numpy(np.fromfile(path, dtype="<f4").reshape(SHAPES_124M[name]))


def gpt2_state(config: GPT2Config, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights for ``config``, with the three real tensors wherever the shape fits."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in expected_shapes(config).items():
        real = name in REAL and shape == SHAPES_124M[name]
        state[name] = real_tensor(name) if real else torch.rand(shape, generator=gen) - 0.5
    return state


def save_hf(folder: Path, config: GPT2Config, state: dict[str, torch.Tensor]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config.save_json(folder / "config.json")
    save_file(state, folder / "model.safetensors")
    return folder


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["verify", *args])
    out, err = capsys.readouterr()
    return code, out, err


# --- the full-size folder (500 MB of float32, written once) -----------------------------------
@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory) -> Path:
    state = gpt2_state(GPT2Config())
    folder = save_hf(tmp_path_factory.mktemp("gpt2_124M"), GPT2Config(), state)
    del state
    return folder


@pytest.fixture(scope="module")
def report(gpt2_folder):
    return verify(gpt2_folder)


def test_exactly_the_three_real_tensors_match(report):
    assert len(report.rows) == 148  # wte, wpe, 12 blocks x 12, ln_f x 2; the tied lm_head absent
    assert [r.name for r in report.rows if r.status == "ok"] == [
        "transformer.wpe.weight",
        "transformer.ln_f.weight",
        "transformer.ln_f.bias",
    ]
    assert all(r.status == "mismatch" for r in report.rows if r.name not in REAL)
    assert report.counts() == {
        "ok": 3,
        "mismatch": 145,
        "missing": 0,
        "bad-shape": 0,
        "not-finite": 0,
    }
    assert not report.ok and report.problems == [] and report.format == "safetensors"
    assert report.summary == "145 of 148 tensors do not match GPT-2 124M: 145 mismatch"
    published = read_records()
    for row in report.rows:
        assert row.shape == SHAPES_124M[row.name]
        assert (row.sha256 == published[row.name].sha256) == (row.name in REAL)


def test_cli_says_what_mismatches_and_exits_1(gpt2_folder, capsys):
    code, out, err = run_cli(capsys, str(gpt2_folder))
    assert code == 1
    assert "3 ok, 145 mismatch" in out
    assert "transformer.h.0.attn.c_attn.weight" in out  # failing rows are listed
    assert err.strip() == (
        "gpt2lab: error: 145 of 148 tensors do not match GPT-2 124M: 145 mismatch"
    )


def test_cli_json_report(gpt2_folder, capsys):
    code, out, _ = run_cli(capsys, str(gpt2_folder), "--json")
    assert code == 1
    result = json.loads(out)
    assert result["ok"] is False
    assert result["counts"]["ok"] == 3 and result["counts"]["mismatch"] == 145
    assert len(result["tensors"]) == 148
    wpe = next(t for t in result["tensors"] if t["name"] == "transformer.wpe.weight")
    assert wpe["status"] == "ok" and wpe["shape"] == [1024, 768]


# --- every format gpt2lab reads ---------------------------------------------------------------
def _sharded(folder: Path, state: dict[str, torch.Tensor]) -> None:
    names = sorted(state)
    halves = {"model-00001-of-00002.safetensors": names[:5], "model-00002.safetensors": names[5:]}
    for file, part in halves.items():
        save_file({n: state[n] for n in part}, folder / file)
    weight_map = {n: file for file, part in halves.items() for n in part}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def _pickled_zip(folder: Path, state: dict[str, torch.Tensor]) -> None:
    mask = torch.tril(torch.ones(1, 1, 8, 8))  # old HF files carry the causal mask: skipped
    torch.save({**state, "transformer.h.0.attn.bias": mask}, folder / "pytorch_model.bin")


def _pickled_legacy(folder: Path, state: dict[str, torch.Tensor]) -> None:
    unprefixed = {n.removeprefix("transformer."): t for n, t in state.items()}  # GPT2Model names
    torch.save(unprefixed, folder / "pytorch_model.bin", _use_new_zipfile_serialization=False)


def _tensorflow(folder: Path, state: dict[str, torch.Tensor]) -> None:
    write_tf_checkpoint(folder, state, hparams_of(ONE_BLOCK))


WRITERS = {
    "safetensors": lambda folder, state: save_file(state, folder / "model.safetensors"),
    "safetensors, 2 shards": _sharded,
    "pytorch_model.bin": _pickled_zip,
    "pytorch_model.bin (legacy)": _pickled_legacy,
    "OpenAI TensorFlow checkpoint": _tensorflow,
}


@pytest.fixture(scope="module")
def one_block_state():
    return gpt2_state(ONE_BLOCK, seed=1)


@pytest.fixture(scope="module", params=list(WRITERS))
def one_block_folder(request, tmp_path_factory, one_block_state) -> Path:
    folder = tmp_path_factory.mktemp("one_block")
    if request.param != "OpenAI TensorFlow checkpoint":
        ONE_BLOCK.save_json(folder / "config.json")
    WRITERS[request.param](folder, one_block_state)
    return folder


def test_every_format_verifies_the_real_tensors(one_block_folder):
    report = verify(one_block_folder)
    rows = {r.name: r for r in report.rows}
    assert {n for n, r in rows.items() if r.status == "ok"} == set(REAL)
    assert rows["transformer.wte.weight"].status == "bad-shape"  # 64 tokens, not 50257
    assert rows["transformer.wte.weight"].shape == (64, 768)
    block_0 = [r for n, r in rows.items() if n.startswith("transformer.h.0.")]
    assert len(block_0) == 12 and all(r.status == "mismatch" for r in block_0)
    others = [r for n, r in rows.items() if n.startswith("transformer.h.") and r not in block_0]
    assert len(others) == 132 and all(r.status == "missing" and r.shape is None for r in others)
    assert len(report.problems) == 1
    assert "describes another model (vocab_size=64, n_layer=1)" in report.problems[0]
    assert not report.ok


def test_a_transposed_record_still_matches(tmp_path, one_block_state):
    """The published table may hold 2-D layer matrices in [out, in] order: either order counts,
    while a record of any other bytes does not."""
    folder = save_hf(tmp_path / "m", ONE_BLOCK, one_block_state)
    c_attn, c_fc = "transformer.h.0.attn.c_attn.weight", "transformer.h.0.mlp.c_fc.weight"
    c_proj = "transformer.h.0.attn.c_proj.weight"
    sha = {n: float32_sha256(t.numpy()) for n, t in one_block_state.items()}
    lines = [
        "# a synthetic table: a comment line, non-tensor entries, then path<TAB>sha256<TAB>size",
        f"weights/gpt2/params_gpt.json\t{'0' * 64}\t127",
        f"weights/gpt2/transformer.h.0.attn.bias_gpt.bin\t{'1' * 64}\t4194304",
        f"weights/gpt2/{c_attn}_gpt.bin\t{float32_sha256(one_block_state[c_attn].numpy().T)}\t0",
        f"weights/gpt2/{c_fc}_gpt.bin\t{sha[c_fc]}\t0",
        f"weights/gpt2/{c_proj}_gpt.bin\t{sha[c_fc]}\t0",  # another tensor's bytes
        f"weights/gpt2/transformer.wpe.weight_gpt.bin\t{sha['transformer.wpe.weight']}\t0",
    ]
    records = parse_records("\n".join(lines) + "\n")
    assert set(records) == {c_attn, c_fc, c_proj, "transformer.wpe.weight"}
    rows = {r.name: r for r in verify(folder, records).rows}
    assert (rows[c_attn].status, rows[c_attn].detail) == ("ok", "matches the record transposed")
    assert (rows[c_fc].status, rows[c_fc].detail) == ("ok", "")
    assert rows[c_proj].status == "mismatch"
    assert rows["transformer.wpe.weight"].status == "ok"
    assert rows["transformer.ln_f.weight"].detail == "no published checksum"


def test_match_orientation():
    matrix = torch.arange(15, dtype=torch.float32).reshape(3, 5)
    as_stored, transposed = float32_sha256(matrix.numpy()), float32_sha256(matrix.numpy().T)
    assert as_stored != transposed
    assert match_orientation(matrix, as_stored) == ("as stored", as_stored)
    assert match_orientation(matrix, transposed) == ("transposed", as_stored)
    assert match_orientation(matrix + 1, transposed)[0] is None
    assert match_orientation(matrix.T, transposed) == ("as stored", transposed)  # non-contiguous
    # float64 and bfloat16 are hashed as float32 values: what the table records
    assert match_orientation(matrix.double(), as_stored)[0] == "as stored"
    vector = torch.arange(6, dtype=torch.float32)
    assert match_orientation(vector, float32_sha256(vector.numpy()[::-1]))[0] is None


def test_check_tensor_statuses():
    name, shape = "transformer.ln_f.bias", SHAPES_124M["transformer.ln_f.bias"]
    real = real_tensor(name)
    record = read_records()[name]
    assert record == Record(float32_sha256(real.numpy()), 3072)
    assert check_tensor(name, real, shape, record).status == "ok"
    broken = real.clone()
    broken[7] = float("nan")
    assert check_tensor(name, broken, shape, record).status == "not-finite"
    broken[7] = float("-inf")
    assert check_tensor(name, broken, shape, record).status == "not-finite"
    assert check_tensor(name, real[:-1], shape, record).status == "bad-shape"
    half = check_tensor(name, real.half(), shape, record)
    assert (half.status, half.detail) == ("mismatch", "stored as torch.float16")
    ints = check_tensor(name, real.long(), shape, record)
    assert (ints.status, ints.detail) == ("mismatch", "dtype torch.int64, not float")
    assert check_tensor(name, real, shape, None).detail == "no published checksum"


def test_shipped_table_is_the_shared_one():
    records = read_records()
    assert len(records) == 149  # 148 parameters + the tied lm_head; masks and json left out
    assert not [n for n in records if n.endswith((".attn.bias", ".attn.masked_bias"))]
    for name, shape in SHAPES_124M.items():
        assert records[name].size == 4 * int(np.prod(shape)), name
    assert records["lm_head.weight"] == records["transformer.wte.weight"]
    packaged = Path(verify_module.__file__).parents[1] / "data" / "gpt2-124M-sha256.tsv"
    assert packaged.read_text().startswith("# Git LFS pointers from github.com/0hq/WebGPT @ ")
    shared = shared_path("gpt2-124M-partial", "gpt2_tensor_sha256.tsv")
    assert packaged.read_bytes() == shared.read_bytes()


def test_a_malformed_table_is_a_clear_error():
    with pytest.raises(CheckpointError, match="line 2 of the checksum table is malformed"):
        parse_records("# header\nweights/gpt2/x_gpt.bin\tnot-a-sha\t12\n")


def test_exit_0_when_every_tensor_matches(tmp_path, one_block_state, capsys, monkeypatch):
    """With the reference swapped for this small model's own checksums, all rows pass."""
    folder = save_hf(tmp_path / "m", ONE_BLOCK, one_block_state)
    own = {n: Record(float32_sha256(t.numpy()), 4 * t.numel()) for n, t in one_block_state.items()}
    monkeypatch.setattr(verify_module, "GPT2_124M", ONE_BLOCK)
    monkeypatch.setattr(verify_module, "read_records", lambda path=None: own)
    code, out, err = run_cli(capsys, str(folder))
    assert (code, err) == (0, "")
    assert "all 16 tensors match GPT-2 124M as released (safetensors)" in out


# --- errors: one line, gpt2lab's exit codes, never a traceback --------------------------------
@pytest.fixture
def small_folder(tmp_path, one_block_state) -> Path:
    return save_hf(tmp_path / "small", ONE_BLOCK, one_block_state)


def test_truncated_safetensors_is_a_clear_error(small_folder, capsys):
    weights = small_folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cannot read weights from .*model\.safetensors"):
        verify(small_folder)
    code, out, err = run_cli(capsys, str(small_folder))
    assert code == 1 and out == ""
    assert err.startswith("gpt2lab: error: cannot read weights from") and err.count("\n") == 1


def test_truncated_real_tf_checkpoint_is_a_clear_error(tmp_path, capsys):
    """OpenAI's genuine index with only the first 3 MiB of its 475 MiB data file."""
    for f in shared_path("gpt2-124M-partial", "tf-checkpoint-prefix").iterdir():
        shutil.copy(f, tmp_path / f.name.replace(".first3MiB", ""))
    with pytest.raises(CheckpointError, match=r"truncated.*model/h0/attn/c_attn/w"):
        verify(tmp_path)
    code, _, err = run_cli(capsys, str(tmp_path))
    assert code == 1 and "is truncated" in err and "download it again" in err


def test_a_data_file_with_a_suffix_is_not_the_data_file():
    """The shared copy is named ...00001.first3MiB: no data file (this used to be a ValueError)."""
    with pytest.raises(CheckpointError, match=r"no data file model\.ckpt\.data-00000-of-00001"):
        verify(shared_path("gpt2-124M-partial", "tf-checkpoint-prefix"))


def test_corrupted_config_is_a_clear_error(small_folder, capsys):
    (small_folder / "config.json").write_text('{"n_layer": [1]')
    code, _, err = run_cli(capsys, str(small_folder))
    assert code == 1 and "config.json is not valid JSON" in err


@pytest.mark.parametrize("content", ["empty", "text file", "config only", "weights only"])
def test_a_folder_that_is_not_a_model(tmp_path, capsys, content):
    folder = tmp_path / "folder"
    folder.mkdir()
    if content == "text file":
        (folder / "notes.txt").write_text("hello")
    elif content == "config only":
        ONE_BLOCK.save_json(folder / "config.json")
    elif content == "weights only":
        save_file({"x": torch.ones(2)}, folder / "model.safetensors")
    with pytest.raises(ModelNotFoundError, match="is not a model folder"):
        verify(folder)
    code, _, err = run_cli(capsys, str(folder))
    assert code == 1 and "is not a model folder: expected config.json" in err


def test_missing_path_and_file_path(tmp_path, capsys):
    code, _, err = run_cli(capsys, str(tmp_path / "nowhere"))
    assert code == 1 and err.startswith("gpt2lab: error: no model folder at")
    (tmp_path / "model.safetensors").write_bytes(b"x")
    code, _, err = run_cli(capsys, str(tmp_path / "model.safetensors"))
    assert code == 1 and "is a file; pass the model's folder" in err


@pytest.mark.parametrize("args", [[], ["a", "b"], ["--bogus", "a"]])
def test_usage_errors_exit_2(capsys, args):
    with pytest.raises(SystemExit) as exc:
        main(["verify", *args])
    assert exc.value.code == 2
    assert "usage: gpt2lab" in capsys.readouterr().err
