"""recipes/ladder at a toy size: nine runs on the same tokens, the table, the JSON and the plot;
and the ``arch`` switches of a training run that it is built on."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import struct
import sys
from pathlib import Path

import pytest

import gpt2lab
from gpt2lab import GPT2Config
from gpt2lab.config import parameter_counts
from gpt2lab.errors import UsageError
from gpt2lab.train.bpe_train import train_tokenizer
from gpt2lab.train.config import TrainConfig, parse_arch
from gpt2lab.train.data import prepare

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "ladder_recipe", ROOT / "recipes" / "ladder" / "run.py"
)
assert _spec is not None and _spec.loader is not None
ladder = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = ladder  # (its dataclasses look their module up)
_spec.loader.exec_module(ladder)

NAMES = ["gpt2", "rope", "rmsnorm", "swiglu", "gqa", "no-bias", "llama", "post-ln", "sinusoidal"]
TOY = ladder.SIZES["toy"]  # 1 layer, 4 heads, 32 wide, 16 tokens a window, 4 steps


def toy(data: Path, out: Path, *more: str) -> list[str]:
    """The recipe's arguments at the toy size, on the CPU (the same numbers on every machine)."""
    return ["--data", str(data), "--out", str(out), "--size", "toy", "--device", "cpu", *more]


# --- the arch switches of a training run -----------------------------------------------------
def test_parse_arch_types_each_switch():
    assert parse_arch("positions=rope, n_kv_head=2,qkv_bias=False,rope_theta=5e5") == {
        "positions": "rope",
        "n_kv_head": 2,
        "qkv_bias": False,
        "rope_theta": 500000.0,
    }
    assert parse_arch("") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("positions", "'positions' is not NAME=VALUE"),
        ("n_layer=2", "'n_layer=2' is not NAME=VALUE"),
        ("qkv_bias=yes", "qkv_bias must be true or false, got 'yes'"),
        ("n_kv_head=two", "n_kv_head must be an integer, got 'two'"),
    ],
)
def test_parse_arch_refuses_in_one_line(text, message):
    with pytest.raises(UsageError, match=message):
        parse_arch(text)


def test_arch_builds_the_model_config_and_is_checked():
    cfg = TrainConfig(data="x", n_head=4, n_embd=64, arch={"positions": "rope", "n_kv_head": 2})
    cfg.validate()
    config = cfg.model_config(vocab_size=300)
    assert (config.positions, config.n_key_value_heads, config.n_positions) == ("rope", 2, 256)
    assert TrainConfig(data="x").model_config(300) == GPT2Config(
        vocab_size=300, n_positions=256, n_embd=128, n_layer=4, n_head=4
    )
    with pytest.raises(UsageError, match=r"n_head \(4\) must be a multiple of n_kv_head \(3\)"):
        TrainConfig(data="x", arch={"n_kv_head": 3}).validate()
    with pytest.raises(UsageError, match="n_kv_head must be an integer, got True"):
        TrainConfig(data="x", arch={"n_kv_head": True}).validate()
    with pytest.raises(UsageError, match="arch applies to a model from scratch; --init tiny"):
        TrainConfig(data="x", init="tiny", arch={"norm": "rmsnorm"}).validate()


def test_train_command_takes_arch(toy_data, tmp_path, capsys):
    """`gpt2lab train --arch ...` trains that architecture; a bad switch is one line, exit 2."""
    from gpt2lab.cli import main

    run = tmp_path / "run"
    small = ["--n-layer", "1", "--n-head", "4", "--n-embd", "32", "--block-size", "16"]
    steps = ["--batch-size", "2", "--max-steps", "1", "--sample-tokens", "0"]
    argv = ["train", "--data", str(toy_data), "--out-dir", str(run), *small, *steps]
    assert main([*argv, "--arch", "positions=rope,n_kv_head=2,mlp_bias=false"]) == 0
    config = json.loads((run / "checkpoints" / "step-0000001" / "config.json").read_text())
    assert (config["positions"], config["n_kv_head"], config["mlp_bias"]) == ("rope", 2, False)
    capsys.readouterr()
    assert main([*argv[:4], str(tmp_path / "other"), *argv[5:], "--arch", "norm=batchnorm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "gpt2lab: error: config: norm must be one of layernorm, rmsnorm; got 'batchnorm'"
    ]


# --- the recipe ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    """Short stories, a 300-token BPE learned from them, as token files (a fifth held out)."""
    work = tmp_path_factory.mktemp("ladder-data")
    names, pets = ["Lily", "Tom", "Sam", "Mia"], ["dog", "cat", "bird", "fish"]
    stories = [
        f"{names[i % 4]} had a {pets[i // 4 % 4]}. The {pets[i // 4 % 4]} was happy. "
        f"{names[i % 4]} and the {pets[i // 4 % 4]} played in the park on day {i}."
        for i in range(80)
    ]
    text = work / "stories.txt"
    text.write_text("<|endoftext|>".join(stories), encoding="utf-8")
    tok = train_tokenizer(stories, vocab_size=300)
    tok.save(work / "tokenizer")
    prepare(
        [text],
        work / "data",
        tokenizer=tok,
        tokenizer_name=str(work / "tokenizer"),
        val_fraction=0.2,
        progress=False,
    )
    return work / "data"


@pytest.fixture(scope="module")
def toy_ladder(toy_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ladder")
    assert ladder.main(toy(toy_data, out)) == 0
    return out


def test_the_runs_and_their_numbers(toy_ladder):
    summary = json.loads((toy_ladder / "ladder.json").read_text())
    runs = {r["name"]: r for r in summary["runs"]}
    assert list(runs) == NAMES and summary["failed"] == {}
    tokens = TOY.steps * TOY.batch_size * TOY.block_size
    assert summary["tokens"] == tokens == 256
    for name, r in runs.items():
        config = GPT2Config(**r["config"])
        assert r["parameters"] == parameter_counts(config), name
        model = gpt2lab.load(toy_ladder / "runs" / name)  # its checkpoint: that architecture
        end = model.tokenizer.special_tokens["<|endoftext|>"]  # saved as its end token
        assert model.config == dataclasses.replace(config, eos_token_id=end)
        assert model.num_parameters() == r["parameters"]["total"]
        assert r["tokens"] == tokens
        assert [t for t, _ in r["curve"]] == [128, 256]  # evaluated at steps 2 and 4
        assert r["held_out_loss"] == r["curve"][-1][1]
        assert 0 < r["held_out_loss"] < math.log(300) + 0.5 and r["tokens_per_s"] > 0
    # every run is the same shape; only its switches differ
    shape = {k: runs["gpt2"]["config"][k] for k in ("n_layer", "n_head", "n_embd", "n_positions")}
    assert shape == {"n_layer": 1, "n_head": 4, "n_embd": 32, "n_positions": 16}
    for r in runs.values():
        assert {k: r["config"][k] for k in shape} == shape
        assert GPT2Config(**r["config"]) == GPT2Config(**{**runs["gpt2"]["config"], **r["arch"]})
    # SwiGLU at GPT-2's MLP parameters: hidden 2/3 · 4 · 32 = 85.3 -> 88
    assert runs["swiglu"]["config"]["n_inner"] == runs["llama"]["config"]["n_inner"] == 88
    mlp = runs["gpt2"]["parameters"]["mlp"]
    assert mlp == 2 * 32 * 128 + 128 + 32 == 8352
    assert runs["swiglu"]["parameters"]["mlp"] == 3 * 32 * 88 + 2 * 88 + 32 == 8656
    # RoPE and sinusoids have no position parameters: learned ones are 16 × 32
    positions = {n: r["parameters"]["positions"] for n, r in runs.items()}
    assert positions == {n: 0 if n in ("rope", "llama", "sinusoidal") else 512 for n in NAMES}
    # KV cache: 2 (k and v) · 1 layer · 4 heads · 8 dims · 4 bytes; GQA keeps 2 of the 4 heads
    kv = {n: r["kv_cache_bytes_per_token"] for n, r in runs.items()}
    assert kv == {n: 128 if n in ("gqa", "llama") else 256 for n in NAMES}


def test_the_table(toy_ladder):
    summary = json.loads((toy_ladder / "ladder.json").read_text())
    lines = (toy_ladder / "ladder.md").read_text().splitlines()
    assert lines[0] == "# The ladder, size toy: 256 tokens per run, seed 1337, on cpu"
    rows = [line.split(" | ") for line in lines if line.startswith("| ") and "---" not in line]
    assert rows[0][2:] == [
        "held-out loss",
        "Δ vs GPT-2",
        "tokens/s",
        "parameters",
        "in the blocks",
        "KV cache bytes/token (float32) |",
    ]
    gpt2 = summary["runs"][0]["held_out_loss"]
    for row, r in zip(rows[1:], summary["runs"], strict=True):
        p = r["parameters"]
        assert row[0] == f"| {r['label']}"
        assert row[2:4] == [f"{r['held_out_loss']:.4f}", f"{r['held_out_loss'] - gpt2:+.4f}"]
        assert row[5:] == [
            f"{p['total']:,}",
            f"{p['attention'] + p['mlp'] + p['norms']:,}",
            f"{r['kv_cache_bytes_per_token']:,} |",
        ]
    assert rows[1][3] == "+0.0000"


def test_the_plot(toy_ladder):
    png = (toy_ladder / "loss_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width > 800 and height > 400


def test_a_second_call_reuses_the_runs(toy_ladder, toy_data, capsys):
    before = (toy_ladder / "ladder.json").read_text()
    assert ladder.main(toy(toy_data, toy_ladder)) == 0
    out = capsys.readouterr().out
    assert out.count("done before, reusing") == 9 and "train" not in out.split("wrote")[0]
    assert (toy_ladder / "ladder.json").read_text() == before
    # killed after its last checkpoint, before its result: resumed from the checkpoint
    result = toy_ladder / "runs" / "llama" / "result.json"
    kept = json.loads(result.read_text())
    result.unlink()
    assert ladder.main(toy(toy_data, toy_ladder)) == 0
    assert "steps 4->4" in capsys.readouterr().out
    assert json.loads(result.read_text()) == kept
    # other settings in the same folder: refused, in one line
    with pytest.raises(UsageError, match="holds a run with other settings; pass another --out"):
        ladder.main(toy(toy_data, toy_ladder, "--steps", "2"))


def test_a_failing_run_says_so_in_one_line_and_the_next_is_the_same(
    toy_ladder, toy_data, tmp_path, monkeypatch, capsys
):
    """+RoPE fails (one line, the others go on); sinusoidal, trained again from nothing, gives
    the same numbers to the last digit (same seed, same batches)."""
    real = ladder.train

    def train(cfg, resume=False):
        if cfg.arch.get("positions") == "rope":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
        return real(cfg, resume=resume)

    monkeypatch.setattr(ladder, "train", train)
    out = tmp_path / "out"
    assert ladder.main(toy(toy_data, out, "--only", "rope,sinusoidal")) == 1
    err = capsys.readouterr().err
    line = "ladder: +RoPE failed: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert line in err.splitlines() and "more detail" not in err and "Traceback" not in err
    summary = json.loads((out / "ladder.json").read_text())
    (rerun,) = summary["runs"]
    runs = json.loads((toy_ladder / "ladder.json").read_text())["runs"]
    assert rerun["curve"] == next(r["curve"] for r in runs if r["name"] == "sinusoidal")
    assert summary["failed"] == {"+RoPE": line.removeprefix("ladder: +RoPE failed: ")}
    table = (out / "ladder.md").read_text()
    assert "| +RoPE | failed: RuntimeError: CUDA out of memory." in table
    assert (
        f"| sinusoidal | fixed sin/cos positions (2017) | {rerun['held_out_loss']:.4f} | — |"
        in table
    )


def test_bad_arguments_are_one_line(toy_data, tmp_path):
    with pytest.raises(UsageError, match="--only: no run nope; runs: gpt2, rope, rmsnorm"):
        ladder.main(["--data", str(toy_data), "--out", str(tmp_path), "--only", "gpt2,nope"])
    with pytest.raises(UsageError, match="is not a prepared data folder"):
        ladder.main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path)])
