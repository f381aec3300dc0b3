"""Bad input gets a clear error: every `gpt2lab` command, and the public Python functions.

A command given bad input exits non-zero (2 for usage errors, 1 otherwise) with exactly one
line on stderr, ``gpt2lab: error: ...`` (or argparse's usage message), and never a traceback.
The same mistakes made through the Python API raise gpt2lab's own exceptions (subclasses of
``GPT2LabError``), never a raw IndexError, KeyError or RuntimeError.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY_CONFIG, stories

import gpt2lab
from gpt2lab import lens
from gpt2lab import trace as tr
from gpt2lab.cli import build_parser, main
from gpt2lab.errors import (
    CheckpointError,
    ContextLengthError,
    GPT2LabError,
    ModelNotFoundError,
    TokenizerError,
    UsageError,
)

L, H, C = TINY_CONFIG.n_layer, TINY_CONFIG.n_head, TINY_CONFIG.n_embd  # tiny's sizes
PROMPT = "Once upon a time"
LONG = " the" * 300  # 300 tokens: more than tiny's context of 256
BUNDLED_TOKENIZER = Path(gpt2lab.__file__).parent / "data" / "tokenizer"
COMMANDS = sorted(
    next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
)


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, str]:
    """Files and folders that are wrong in one way each, plus a small prepared data folder."""
    from gpt2lab.train.data import prepare

    root = tmp_path_factory.mktemp("bad_input")
    (root / "empty").mkdir()
    text = stories(6000)
    (root / "stories.txt").write_text(text, encoding="utf-8")
    (root / "latin1.txt").write_bytes("Caf\xe9 au lait\n".encode("latin-1"))
    garbage = root / "garbage_model"  # config.json and a weight file that is not one
    garbage.mkdir()
    shutil.copy(Path(gpt2lab.__file__).parent / "models" / "tiny" / "config.json", garbage)
    (garbage / "model.safetensors").write_bytes(b"\x00" * 100)
    half = root / "half_tokenizer"  # encoder.json without vocab.bpe
    half.mkdir()
    shutil.copy(BUNDLED_TOKENIZER / "encoder.json", half)
    prepare([root / "stories.txt"], root / "data", val_fraction=0.2, progress=False)
    # Data prepared with a tokenizer folder that has since lost its merges file.
    gone = root / "gone_tokenizer"
    gone.mkdir()
    shutil.copy(BUNDLED_TOKENIZER / "encoder.json", gone)
    shutil.copy(BUNDLED_TOKENIZER / "vocab.bpe", gone)
    tokenizer = gpt2lab.Tokenizer.from_folder(gone)
    prepare(
        [root / "stories.txt"],
        root / "data_gone_tokenizer",
        tokenizer=tokenizer,
        tokenizer_name=str(gone),
        val_fraction=0.2,
        progress=False,
    )
    (gone / "vocab.bpe").unlink()
    return {
        "root": str(root),
        "missing": str(root / "no" / "such" / "model"),
        "empty": str(root / "empty"),
        "text": str(root / "stories.txt"),
        "latin1": str(root / "latin1.txt"),
        "garbage_model": str(garbage),
        "half_tokenizer": str(half),
        "data": str(root / "data"),
        "data_gone_tokenizer": str(root / "data_gone_tokenizer"),
    }


@pytest.fixture(autouse=True)
def no_server(monkeypatch):
    """`serve` must fail on its arguments; should it get as far as starting, the test fails."""
    import uvicorn

    def refuse(*args, **kwargs):
        raise AssertionError("the server was started")

    monkeypatch.setattr(uvicorn, "run", refuse)


PROGRESS_BAR = re.compile(r"\d+%\|")  # tqdm's lines on stderr are not messages


def run_main(capsys, argv: list[str]) -> tuple[int, str, str, bool]:
    """(exit code, stdout, stderr, whether argparse rejected the arguments)."""
    try:
        code, by_argparse = main(argv), False
    except SystemExit as e:
        code, by_argparse = e.code, True
    out, err = capsys.readouterr()
    return code, out, err, by_argparse


def assert_clear_error(capsys, argv: list[str], code: int, phrase: str) -> None:
    got, out, err, by_argparse = run_main(capsys, argv)
    assert "Traceback" not in out + err
    assert got == code, err
    if by_argparse:
        assert code == 2
        assert err.startswith("usage: gpt2lab")
        last = err.strip().splitlines()[-1]  # (unknown flags: the top parser reports them)
        assert re.match(rf"gpt2lab( {re.escape(argv[0])})?: error: ", last), err
        assert phrase in last
    else:
        assert out == "", "a refused command printed on stdout first"
        lines = [line for line in err.strip().splitlines() if not PROGRESS_BAR.search(line)]
        assert len(lines) == 1, err
        assert lines[0].startswith("gpt2lab: error: ")
        assert phrase in lines[0]


TRAIN = [
    "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--block-size", "16",
    "--batch-size", "2", "--max-steps", "2", "--eval-batches", "1", "--sample-tokens", "2",
]  # fmt: skip

# (argv with {placeholders} from ``paths``, exit code, phrase of the one error line)
CLI_CASES = {
    # generate: model paths
    "generate-missing-model": (
        ["generate", PROMPT, "--model", "{missing}"],
        1,
        "no such folder: {missing}",
    ),
    "generate-model-is-a-file": (["generate", PROMPT, "--model", "{text}"], 1, "is a file"),
    "generate-not-a-model": (["generate", PROMPT, "--model", "{empty}"], 1, "not a model folder"),
    # names that are no folder, no bundled model and no Hub id: not blamed on the network
    "generate-misspelt-model": (
        ["generate", PROMPT, "--model", "tinyy"],
        1,
        "unknown model 'tinyy': not a folder, not a bundled model (chars, tiny) and not a "
        "Hugging Face Hub id in the cache; did you mean tiny?",
    ),
    "generate-model-in-capitals": (
        ["generate", PROMPT, "--model", "TINY"],
        1,
        "unknown model 'TINY'",
    ),
    "info-model-near-a-hub-id": (["info", "--model", "gpt-2"], 1, "did you mean gpt2?"),
    "inspect-relative-missing-folder": (
        ["inspect", PROMPT, "--model", "./no/such/model"],
        1,
        "no such folder: ./no/such/model",
    ),
    "generate-garbage-weights": (
        ["generate", PROMPT, "--model", "{garbage_model}"],
        1,
        "cannot read weights",
    ),
    # generate: prompts and sampling values
    "generate-empty-prompt": (["generate", "", "--model", "tiny"], 2, "the prompt is empty"),
    "generate-prompt-too-long": (
        ["generate", LONG, "--model", "tiny"],
        2,
        "exceeds the context of 256",
    ),
    "generate-more-tokens-than-context": (
        ["generate", PROMPT, "--model", "tiny", "--max-new-tokens", "300"],
        2,
        "context of 256",
    ),
    "generate-top-p-0": (["generate", PROMPT, "--model", "tiny", "--top-p", "0"], 2, "top_p"),
    "generate-top-p-1.5": (["generate", PROMPT, "--model", "tiny", "--top-p", "1.5"], 2, "top_p"),
    "generate-top-p-nan": (["generate", PROMPT, "--model", "tiny", "--top-p", "nan"], 2, "top_p"),
    "generate-top-p-not-a-number": (
        ["generate", PROMPT, "--top-p", "half"],
        2,
        "invalid float value: 'half'",
    ),
    "generate-negative-temperature": (
        ["generate", PROMPT, "--model", "tiny", "--temperature", "-0.5"],
        2,
        "temperature must be >= 0",
    ),
    "generate-negative-token-count": (
        ["generate", PROMPT, "--model", "tiny", "--max-new-tokens", "-1"],
        2,
        "argument --max-new-tokens: must be >= 0, got -1",
    ),
    "generate-top-k-above-vocab": (
        ["generate", PROMPT, "--model", "tiny", "--top-k", "50258"],
        2,
        "top_k must be an integer in [1, 50257], got 50258",
    ),
    "generate-top-k-0": (["generate", PROMPT, "--model", "tiny", "--top-k", "0"], 2, "top_k"),
    "generate-truncate-right": (
        ["generate", PROMPT, "--truncate", "right"],
        2,
        "invalid choice: 'right'",
    ),
    "generate-seed-too-big": pytest.param(
        ["generate", PROMPT, "--model", "tiny", "--seed", str(10**30)],
        2,
        "seed",
    ),
    "generate-unknown-device": pytest.param(
        ["generate", PROMPT, "--model", "tiny", "--device", "gpu0"],
        2,
        "device",
    ),
    # tokenize
    "tokenize-no-text": (["tokenize"], 2, "the following arguments are required: text"),
    "tokenize-unknown-flag": (["tokenize", "hi", "--ids"], 2, "unrecognized arguments: --ids"),
    # info
    "info-missing-model": (["info", "--model", "{missing}"], 1, "no such folder: {missing}"),
    "info-not-a-model": (["info", "--model", "{empty}"], 1, "not a model folder"),
    # steps
    "steps-layer-out-of-range": (
        ["steps", "--layer", "99", "--model", "tiny"],
        2,
        f"layer must be an integer in [0, {L}), got 99",
    ),
    "steps-missing-model": (["steps", "--model", "{missing}"], 1, "no such folder: {missing}"),
    "sae-train-missing-data": (
        [
            "sae",
            "train",
            "--model",
            "tiny",
            "--data",
            "{missing}",
            "--step",
            "blocks.2.hook_resid_pre",
        ],
        2,
        "is not a prepared data folder",
    ),
    "sae-steer-feature-out-of-range": (
        ["sae", "steer", "99999", "--prompt", "x", "--strength", "3"],
        2,
        "feature must be an integer in [0, 768), got 99999",
    ),
    "spreadsheet-empty-prompt": (
        ["spreadsheet", "", "--model", "chars", "--out", "x.xlsx"],
        2,
        "the prompt is empty",
    ),
    "spreadsheet-missing-model": (
        ["spreadsheet", "ab", "--model", "{missing}", "--out", "x.xlsx"],
        1,
        "no such folder: {missing}",
    ),
    "steps-layer-not-a-number": (["steps", "--layer", "one"], 2, "invalid int value: 'one'"),
    # inspect
    "inspect-layer-99": (
        ["inspect", PROMPT, "--model", "tiny", "--layer", "99"],
        2,
        f"layer must be an integer in [0, {L}), got 99",
    ),
    "inspect-unknown-step": (
        ["inspect", PROMPT, "--model", "tiny", "--step", "blocks.99.hook_resid_pre"],
        2,
        f"did you mean blocks.{L - 1}.hook_resid_pre",
    ),
    "inspect-top-k-above-vocab": (
        ["inspect", PROMPT, "--model", "tiny", "--top-k", "50258"],
        2,
        "top_k",
    ),
    "inspect-top-p-0": (["inspect", PROMPT, "--model", "tiny", "--top-p", "0"], 2, "top_p"),
    "inspect-missing-model": (
        ["inspect", PROMPT, "--model", "{missing}"],
        1,
        "no such folder: {missing}",
    ),
    "inspect-html-into-a-folder": (
        ["inspect", PROMPT, "--model", "tiny", "--html", "{empty}"],
        2,
        "--html {empty} is a folder; give a file name",
    ),
    "inspect-html-in-missing-folder": (
        ["inspect", PROMPT, "--model", "tiny", "--html", "{root}/no/dir/r.html"],
        2,
        "--html {root}/no/dir/r.html: folder {root}/no/dir does not exist; create it first",
    ),
    "inspect-plots-in-missing-folder": (
        ["inspect", PROMPT, "--model", "tiny", "--plots", "{root}/no/dir/pictures"],
        2,
        "--plots {root}/no/dir/pictures: folder {root}/no/dir does not exist; create it first",
    ),
    "inspect-style-without-plots": (
        ["inspect", PROMPT, "--model", "tiny", "--style", "slides"],
        2,
        "--style sets the look of the --plots pictures; add --plots FOLDER",
    ),
    "inspect-empty-prompt": (["inspect", "", "--model", "tiny"], 2, "the prompt is empty"),
    "inspect-temperature-negative": (
        ["inspect", PROMPT, "--model", "tiny", "--temperature", "-1"],
        2,
        "temperature must be >= 0",
    ),
    "inspect-top-k-0": (
        ["inspect", PROMPT, "--model", "tiny", "--top-k", "0"],
        2,
        "top_k must be an integer >= 1, got 0",
    ),
    "inspect-top-0": (["inspect", PROMPT, "--top", "0"], 2, "argument --top: must be >= 1"),
    "inspect-negative-layer": (
        ["inspect", PROMPT, "--layer", "-1"],
        2,
        "argument --layer: must be >= 0, got -1",
    ),
    # convert
    "convert-missing-source": (
        ["convert", "{missing}", "{root}/out"],
        1,
        "no such folder: {missing}",
    ),
    "convert-no-dest": (["convert", "tiny"], 2, "the following arguments are required: dest"),
    "convert-dest-is-a-file": (["convert", "tiny", "{text}"], 2, "dest {text} is a file"),
    "convert-dest-in-missing-folder": (
        ["convert", "tiny", "{root}/no/dir/out"],
        2,
        "folder {root}/no/dir does not exist",
    ),
    "convert-missing-openai-folder": (
        ["convert", "models/124M", "{root}/out"],
        1,
        "no such folder: models/124M",
    ),
    # prepare
    "prepare-missing-file": (
        ["prepare", "{root}/nope.txt", "--out", "{root}/p"],
        2,
        "no such text file",
    ),
    "prepare-not-utf8": (["prepare", "{latin1}", "--out", "{root}/p"], 2, "is not UTF-8 text"),
    "prepare-tokenizer-missing-files": (
        ["prepare", "{text}", "--out", "{root}/p", "--tokenizer", "{half_tokenizer}"],
        1,
        "has no tokenizer files: expected tokenizer.json, encoder.json + vocab.bpe",
    ),
    "prepare-out-is-a-file": (["prepare", "{text}", "--out", "{text}"], 2, "is a file"),
    "prepare-out-in-missing-folder": (
        ["prepare", "{text}", "--out", "{root}/no/dir/data"],
        2,
        "folder {root}/no/dir does not exist",
    ),
    "prepare-empty-separator": (
        ["prepare", "{text}", "--out", "{root}/p", "--separator", ""],
        2,
        "separator must not be empty",
    ),
    "prepare-val-fraction-1.5": (
        ["prepare", "{text}", "--out", "{root}/p", "--val-fraction", "1.5"],
        2,
        "val_fraction must be in [0, 1)",
    ),
    "prepare-no-out": (["prepare", "{text}"], 2, "the following arguments are required: --out"),
    "prepare-bad-escape-in-separator": pytest.param(
        ["prepare", "{text}", "--out", "{root}/p", "--separator", "\\x"],
        2,
        "separator",
    ),
    # train-tokenizer
    "train-tokenizer-missing-file": (
        ["train-tokenizer", "{root}/nope.txt", "--vocab-size", "300", "--out", "{root}/t"],
        2,
        "cannot read",
    ),
    "train-tokenizer-vocab-too-small": (
        ["train-tokenizer", "{text}", "--vocab-size", "10", "--out", "{root}/t"],
        2,
        "vocab_size must be at least 257",
    ),
    "train-tokenizer-out-is-a-file": (
        ["train-tokenizer", "{text}", "--vocab-size", "260", "--out", "{text}"],
        2,
        "is a file",
    ),
    "train-tokenizer-out-in-missing-folder": (
        ["train-tokenizer", "{text}", "--vocab-size", "260", "--out", "{root}/no/dir/tok"],
        2,
        "folder {root}/no/dir does not exist",
    ),
    # train
    "train-no-data": (["train"], 2, "no training data"),
    "train-data-not-prepared": (["train", "--data", "{empty}"], 2, "gpt2lab prepare"),
    "train-zero-layers": (["train", "--data", "{data}", "--n-layer", "0"], 2, "n_layer must be"),
    "train-lr-nan": (["train", "--data", "{data}", "--lr", "nan"], 2, "lr > 0"),
    "train-beta1-2": (["train", "--data", "{data}", "--beta1", "2"], 2, "beta1 must be in"),
    "train-negative-sample-tokens": (
        ["train", "--data", "{data}", "--sample-tokens", "-3"],
        2,
        "sample_tokens must be >= 0",
    ),
    "train-negative-warmup": (
        ["train", "--data", "{data}", "--warmup-steps", "-5"],
        2,
        "warmup_steps must be >= 0",
    ),
    "train-unknown-device": (
        ["train", "--data", "{data}", "--out-dir", "{root}/r", *TRAIN, "--device", "gpu0"],
        2,
        "device must be",
    ),
    "train-out-dir-is-a-file": (
        ["train", "--data", "{data}", "--out-dir", "{text}", *TRAIN],
        2,
        "is a file",
    ),
    "train-out-dir-inside-a-file": (
        ["train", "--data", "{data}", "--out-dir", "{text}/run", *TRAIN],
        2,
        "--out-dir {text}/run: {text} is a file, not a folder",
    ),
    "train-out-dir-in-missing-folder": (
        ["train", "--data", "{data}", "--out-dir", "{root}/no/dir/run", *TRAIN],
        2,
        "folder {root}/no/dir does not exist",
    ),
    "train-init-missing-model": (
        ["train", "--data", "{data}", "--out-dir", "{root}/r", *TRAIN, "--init", "{missing}"],
        1,
        "no such folder: {missing}",
    ),
    "train-tokenizer-folder-lost-files": (
        ["train", "--data", "{data_gone_tokenizer}", "--out-dir", "{root}/r", *TRAIN],
        1,
        "has no tokenizer files",
    ),
    "train-not-a-number": (["train", "--n-layer", "two"], 2, "invalid int value: 'two'"),
    "train-missing-config": (["train", "--config", "{root}/nope.toml"], 2, "cannot read"),
    # eval
    "eval-unknown-task": (["eval", "squad"], 2, "invalid choice: 'squad'"),
    "eval-missing-model": (
        ["eval", "lambada", "--no-download", "--model", "{missing}"],
        1,
        "no such folder: {missing}",
    ),
    "eval-missing-data": (
        ["eval", "ptb", "--model", "tiny", "--data", "{root}/nope.txt"],
        2,
        "--data {root}/nope.txt is not a file",
    ),
    "eval-missing-data-dir": (
        ["eval", "ptb", "--model", "tiny", "--data-dir", "{root}/nope"],
        2,
        "--data-dir {root}/nope is not a folder",
    ),
    "eval-data-not-utf8": (
        ["eval", "ptb", "--model", "tiny", "--data", "{latin1}"],
        1,
        "cannot read",
    ),
    "eval-context-above-the-models": (
        ["eval", "ptb", "--model", "tiny", "--data", "{text}", "--context", "100000"],
        2,
        "context must be in [2, 256]",
    ),
    "eval-json-in-missing-folder": (
        ["eval", "ptb", "--json", "{root}/no/such/out.json"],
        2,
        "does not exist",
    ),
    "eval-paper-out-is-a-file": (["eval", "paper", "--out", "{text}"], 2, "is a file"),
    "eval-paper-out-in-missing-folder": (
        ["eval", "paper", "--out", "{root}/no/dir/report"],
        2,
        "folder {root}/no/dir does not exist",
    ),
    "eval-limit-0": (["eval", "ptb", "--limit", "0"], 2, "must be >= 1"),
    # serve: argument checks only; the autouse fixture fails the test if a server starts
    "serve-port-0": (["serve", "--port", "0"], 2, "must be in [1, 65535]"),
    "serve-max-new-tokens-0": (["serve", "--max-new-tokens", "0"], 2, "must be >= 1"),
    "serve-missing-model": (["serve", "--model", "{missing}"], 1, "no such folder: {missing}"),
    "serve-misspelt-model": (["serve", "--model", "tinyy"], 1, "did you mean tiny?"),
}
if "verify" in COMMANDS:
    CLI_CASES["verify-missing-path"] = (["verify", "{missing}"], 1, "no model folder")
    CLI_CASES["verify-not-a-model"] = (["verify", "{empty}"], 1, "not a model folder")


def _values(case) -> tuple:
    return case.values if hasattr(case, "values") else case


def _argv(case) -> list[str]:
    return _values(case)[0]


def test_every_command_has_bad_input_cases():
    covered = {_argv(case)[0] for case in CLI_CASES.values()}
    assert set(COMMANDS) <= covered, f"no bad-input case for {set(COMMANDS) - covered}"
    assert {"generate", "train", "prepare", "eval", "serve"} <= set(COMMANDS)


@pytest.mark.parametrize(("argv", "code", "phrase"), list(CLI_CASES.values()), ids=list(CLI_CASES))
def test_cli_bad_input_is_one_clear_line(capsys, cached_tiny, paths, argv, code, phrase):
    assert_clear_error(capsys, [arg.format(**paths) for arg in argv], code, phrase.format(**paths))
    assert not Path(paths["root"], "no").exists()  # no folder was created on the way


# Mistakes a command can see in its arguments alone: refused before a model is loaded (that
# takes seconds for GPT-2), and so before the prompt is echoed.
NEED_THE_MODEL = {  # the model itself, or bounds that come from it (checked once it is loaded)
    "generate-missing-model",
    "generate-model-is-a-file",
    "generate-misspelt-model",
    "generate-model-in-capitals",
    "inspect-relative-missing-folder",
    "inspect-missing-model",
    "generate-not-a-model",
    "generate-garbage-weights",
    "generate-prompt-too-long",
    "generate-more-tokens-than-context",
    "generate-top-k-above-vocab",
    "inspect-layer-99",
    "inspect-unknown-step",
    "inspect-top-k-above-vocab",
}
BEFORE_LOADING = [
    *(n for n in CLI_CASES if n.startswith(("generate-", "inspect-")) and n not in NEED_THE_MODEL),
    "convert-dest-is-a-file",
    "convert-dest-in-missing-folder",
    "eval-missing-data",
    "eval-missing-data-dir",
    "eval-json-in-missing-folder",
    "eval-paper-out-is-a-file",
    "eval-paper-out-in-missing-folder",
    "serve-port-0",
]


@pytest.mark.parametrize("name", BEFORE_LOADING)
def test_bad_arguments_are_refused_before_loading_a_model(capsys, monkeypatch, paths, name):
    import gpt2lab.weights

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(gpt2lab.weights, "load", no_loading)
    monkeypatch.setattr(gpt2lab.weights, "resolve", no_loading)
    argv, code, phrase = _values(CLI_CASES[name])
    assert_clear_error(capsys, [arg.format(**paths) for arg in argv], code, phrase.format(**paths))


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--temperature", "inf"),
        ("--temperature", "1e-30"),
        ("--top-p", "1e-40"),
        pytest.param("--top-p", "1e-300"),
        pytest.param("--temperature", "1e-300"),
    ],
)
def test_extreme_sampling_values_still_generate(capsys, cached_tiny, flag, value):
    """Valid values at the edges (found by test_fuzz.py): sampling must not crash on NaN."""
    argv = ["generate", "Once", "--model", "tiny", "--max-new-tokens", "3", "--seed", "1"]
    code, out, err, _ = run_main(capsys, [*argv, flag, value])
    assert code == 0 and "Traceback" not in err, err
    assert out.startswith("Once") and len(out) > len("Once\n")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_model_folder(capsys, tmp_path):
    folder = tmp_path / "model"
    gpt2lab.load("tiny").save(folder)
    (folder / "model.safetensors").chmod(0)
    assert_clear_error(capsys, ["steps", "--model", str(folder)], 1, "cannot read weights")


def test_train_resume_from_a_corrupted_state_names_the_file(paths, tmp_path):
    """The Python side of the corrupted-checkpoint case: train() raises CheckpointError."""
    from gpt2lab.train.trainer import STATE_FILE, TrainConfig, latest_checkpoint, train

    cfg = TrainConfig(
        data=paths["data"],
        out_dir=str(tmp_path / "run"),
        n_layer=1,
        n_embd=32,
        n_head=2,
        block_size=16,
        batch_size=2,
        max_steps=1,
        eval_batches=1,
        sample_tokens=1,
    )
    train(cfg, progress=False)
    state = latest_checkpoint(tmp_path / "run") / STATE_FILE
    state.write_bytes(state.read_bytes()[:200])  # truncated
    cfg.max_steps = 2
    with pytest.raises(CheckpointError, match=r"cannot read the training state .*state\.pt"):
        train(cfg, resume=True, progress=False)


def test_cli_resume_from_a_corrupted_state(capsys, paths, tmp_path):
    run = str(tmp_path / "run")
    assert main(["train", "--data", paths["data"], "--out-dir", run, *TRAIN]) == 0
    capsys.readouterr()
    state = Path(run) / "checkpoints" / "step-0000002" / "training_state.pt"
    state.write_bytes(b"not a checkpoint")
    argv = ["train", "--resume", "--out-dir", run]
    assert_clear_error(capsys, argv, 1, f"cannot read the training state {state}")


# --- the Python API ---------------------------------------------------------------------------
def _cached(model):
    return model.run_with_cache(PROMPT, names=["blocks.0.hook_resid_pre"])


API_CASES = {
    "load-missing": (lambda m, p: gpt2lab.load(p["missing"]), ModelNotFoundError, "no such folder"),
    "load-misspelt": (lambda m, p: gpt2lab.load("Tiny"), ModelNotFoundError, "did you mean tiny?"),
    "load-openai-layout": (
        lambda m, p: gpt2lab.load("models/124M"),
        ModelNotFoundError,
        "no such folder: models/124M",
    ),
    "load-not-a-model": (lambda m, p: gpt2lab.load(p["empty"]), ModelNotFoundError, "not a model"),
    "load-garbage-weights": (
        lambda m, p: gpt2lab.load(p["garbage_model"]),
        CheckpointError,
        "cannot read weights",
    ),
    "generate-empty": (lambda m, p: m.generate("", 3), UsageError, "empty"),
    "generate-too-long": (lambda m, p: m.generate(LONG, 3), ContextLengthError, "context of 256"),
    "generate-ids-too-long": (
        lambda m, p: m.generate(list(range(257)), 0),
        ContextLengthError,
        "context of 256",
    ),
    "generate-top-p-0": (lambda m, p: m.generate(PROMPT, 3, top_p=0.0), UsageError, "top_p"),
    "generate-top-p-2": (lambda m, p: m.generate(PROMPT, 3, top_p=2.0), UsageError, "top_p"),
    "generate-temperature": (
        lambda m, p: m.generate(PROMPT, 3, temperature=-1.0),
        UsageError,
        "temperature",
    ),
    "generate-negative-count": (lambda m, p: m.generate(PROMPT, -2), UsageError, "max_new_tokens"),
    "generate-top-k": (lambda m, p: m.generate(PROMPT, 3, top_k=50258), UsageError, "top_k"),
    "generate-id-out-of-vocab": (lambda m, p: m.generate([50257], 3), UsageError, "token ids"),
    "run_with_cache-block-99": (
        lambda m, p: m.run_with_cache(PROMPT, names=["blocks.99.hook_resid_pre"]),
        UsageError,
        f"{L}-layer model; did you mean",
    ),
    "run_with_cache-unknown-name": (
        lambda m, p: m.run_with_cache(PROMPT, names=["hook_everything"]),
        UsageError,
        "no step is named",
    ),
    "run_with_cache-name-not-a-string": (
        lambda m, p: m.run_with_cache(PROMPT, names=[5]),
        UsageError,
        "step names must be strings",
    ),
    "run_with_cache-negative-id": (lambda m, p: m.run_with_cache([-5]), UsageError, "token ids"),
    "run_with_cache-too-long": (lambda m, p: m.run_with_cache(LONG), UsageError, "context"),
    "run_to-block-99": (
        lambda m, p: m.run_to(PROMPT, "blocks.99.hook_resid_mid"),
        UsageError,
        "no step is named",
    ),
    "run_to-wrong-shape-on-resume": (
        lambda m, p: m.run_to(PROMPT, "blocks.0.hook_resid_pre").resume(torch.zeros(3)),
        UsageError,
        "shape",
    ),
    "ablate_head-layer-99": (
        lambda m, p: m.run_with_hooks(PROMPT, [tr.ablate_head(99, 0)]),
        UsageError,
        f"{L}-layer model",
    ),
    "ablate_head-head-99": (
        lambda m, p: m.run_with_hooks(PROMPT, [tr.ablate_head(0, 99)]),
        UsageError,
        f"head must be an integer in [0, {H})",
    ),
    "ablate_mlp-layer-99": (
        lambda m, p: m.run_with_hooks(PROMPT, [tr.ablate_mlp(99)]),
        UsageError,
        f"{L}-layer model",
    ),
    "scale_neuron-99999": (
        lambda m, p: m.run_with_hooks(PROMPT, [tr.scale_neuron(0, 99999, 0.0)]),
        UsageError,
        f"neuron must be an integer in [0, {4 * C})",
    ),
    "add_vector-wrong-width": (
        lambda m, p: m.run_with_hooks(PROMPT, [tr.add_vector(0, torch.zeros(5))]),
        UsageError,
        f"shape [{C}]",
    ),
    "patch-position-99": (
        lambda m, p: m.run_with_hooks(
            PROMPT, [tr.patch("blocks.0.hook_resid_pre", _cached(m), positions=[99])]
        ),
        UsageError,
        "patch positions must be integers in [-4, 4), got 99",
    ),
    "trace-tokens-batch-3": (lambda m, p: _cached(m).tokens(3), UsageError, "batch must be"),
    "trace-to_frame-batch-3": (
        lambda m, p: _cached(m).to_frame("blocks.0.hook_resid_pre", batch=3),
        UsageError,
        "batch must be",
    ),
    "logit_difference-answer-out-of-vocab": (
        lambda m, p: tr.logit_difference(99999)(m.run_with_hooks(PROMPT)),
        UsageError,
        "answer must be an integer in [0, 50257)",
    ),
    "lens-k-0": (lambda m, p: lens.logit_lens(m, PROMPT, k=0), UsageError, "k must be"),
    "lens-target-out-of-vocab": (
        lambda m, p: lens.logit_lens(m, PROMPT, target=99999),
        UsageError,
        "outside the vocabulary",
    ),
    "lens-empty-prompt": (lambda m, p: lens.logit_lens(m, ""), UsageError, "empty"),
    "lens-too-long": (lambda m, p: lens.logit_lens(m, LONG), UsageError, "context of 256"),
    "attribution-position-99": (
        lambda m, p: lens.direct_logit_attribution(m, PROMPT, 262, position=99),
        UsageError,
        "position must be",
    ),
    "tokenizer-folder-missing-files": (
        lambda m, p: gpt2lab.Tokenizer.from_folder(p["half_tokenizer"]),
        TokenizerError,
        "has no tokenizer files",
    ),
    "tokenizer-decode-not-a-list": (
        lambda m, p: m.tokenizer.decode(None),
        TokenizerError,
        "token ids must be",
    ),
    "tokenizer-decode-out-of-vocab": (
        lambda m, p: m.tokenizer.decode([50257]),
        TokenizerError,
        "[0, 50257)",
    ),
    "forward-id-out-of-vocab": pytest.param(
        lambda m, p: m(torch.tensor([[50257]])),
        UsageError,
        "vocabulary",
    ),
}


@pytest.mark.parametrize(("call", "kind", "phrase"), list(API_CASES.values()), ids=list(API_CASES))
def test_python_api_raises_gpt2lab_errors(tiny, paths, call, kind, phrase):
    with pytest.raises(GPT2LabError) as info:
        call(tiny, paths)
    assert isinstance(info.value, kind), f"{type(info.value).__name__}: {info.value}"
    assert phrase in str(info.value)
