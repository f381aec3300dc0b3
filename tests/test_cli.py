"""The gpt2lab command: exact output for deterministic commands, one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gpt2lab
from gpt2lab.cli import main

PROMPT = "Mike is quick. He moves"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_tokenize_json(capsys):
    code, out, _ = run(capsys, "tokenize", PROMPT, "--json")
    assert code == 0
    assert json.loads(out) == {
        "ids": [16073, 318, 2068, 13, 679, 6100],
        "tokens": ["Mike", "Ġis", "Ġquick", ".", "ĠHe", "Ġmoves"],
    }


def test_tokenize_table_shows_ids_and_bytes(capsys):
    code, out, _ = run(capsys, "tokenize", " Shawshank")
    assert code == 0
    for expected in ("ĠShaw", "18193", "b' Shaw'", "1477", "962", "3 tokens"):
        assert expected in out


def test_generate_greedy_streams_the_library_result(capsys, small_hf):
    folder = str(small_hf[1])
    code, out, _ = run(
        capsys, "generate", PROMPT, "--model", folder, "--greedy", "--max-new-tokens", "8"
    )
    assert code == 0
    expected = gpt2lab.load(folder).generate_text(PROMPT, 8, greedy=True)
    assert out == PROMPT + expected + "\n"


def test_generate_seeded_sampling(capsys, small_hf):
    folder = str(small_hf[1])
    args = (
        "generate",
        PROMPT,
        "--model",
        folder,
        "--seed",
        "3",
        "--top-k",
        "40",
        "--temperature",
        "0.8",
        "--max-new-tokens",
        "6",
    )
    _, first, _ = run(capsys, *args)
    _, second, _ = run(capsys, *args)
    model = gpt2lab.load(folder)
    expected = model.generate_text(PROMPT, 6, seed=3, top_k=40, temperature=0.8)
    assert first == second == PROMPT + expected + "\n"


def test_info_counts_parameters(capsys, small_hf):
    folder = str(small_hf[1])
    code, out, _ = run(capsys, "info", "--model", folder, "--json")
    assert code == 0
    info = json.loads(out)
    model = gpt2lab.load(folder)
    assert info["parameters"]["total"] == model.num_parameters()
    assert info["config"]["n_layer"] == 2
    assert info["parameters"]["MLP (c_fc, c_proj)"] == 2 * (64 * 256 + 256 + 256 * 64 + 64)
    code, out, _ = run(capsys, "info", "--model", folder)
    assert "parameters by component" in out and "attention" in out and "n_embd" in out


def test_convert_writes_a_loadable_copy(capsys, small_hf, tmp_path):
    code, out, _ = run(capsys, "convert", str(small_hf[1]), str(tmp_path / "copy"))
    assert code == 0 and "wrote" in out
    a, b = gpt2lab.load(small_hf[1]), gpt2lab.load(tmp_path / "copy")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize(
    ("argv", "code", "phrase"),
    [
        (["generate", PROMPT, "--model", "./no/such/model"], 1, "no model folder"),
        (["generate", PROMPT, "--temperature", "-1"], 2, "temperature"),
        (["generate", PROMPT, "--top-p", "2"], 2, "top_p"),
        (["generate", "", "--greedy"], 2, "empty"),
        (["tokenize", "a<|endoftext|>b", "--json"], 0, None),
    ],
)
def test_errors_are_one_line_with_exit_codes(capsys, small_hf, argv, code, phrase):
    if argv[0] == "generate" and "--model" not in argv:
        argv = [*argv, "--model", str(small_hf[1])]
    got, _, err = run(capsys, *argv)
    assert got == code
    if phrase:
        assert err.startswith("gpt2lab: error:") and phrase in err
        assert len(err.strip().splitlines()) == 1


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["generate", PROMPT, "--max-new-tokens", "-4"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2


def test_hub_id_offline_without_cache_is_a_clear_error(tmp_path):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
    }
    gpt2lab_exe = Path(sys.executable).with_name("gpt2lab")
    result = subprocess.run(
        [str(gpt2lab_exe), "generate", PROMPT, "--model", "gpt2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("gpt2lab: error:")
    assert "not in the Hugging Face cache" in result.stderr
    assert "Traceback" not in result.stderr
