"""The gpt2lab command: exact output for deterministic commands, one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import socket
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
    assert info["parameters"]["mlp"] == 2 * (64 * 256 + 256 + 256 * 64 + 64)
    code, out, _ = run(capsys, "info", "--model", folder)
    assert "parameters by component" in out and "attention" in out and "width" in out


def test_info_reads_a_folders_config_alone(capsys, tmp_path):
    """A Llama folder is described from its config.json, though the model cannot run it yet."""
    config = gpt2lab.preset("smollm2-135m")
    config.save_json(tmp_path / "config.json")
    (tmp_path / "model.safetensors").write_bytes(b"")  # never read
    code, out, _ = run(capsys, "info", "--model", str(tmp_path), "--json")
    assert code == 0
    info = json.loads(out)
    assert info["parameters"]["total"] == 134_515_008
    assert info["architecture"]["kv heads"] == 3 and info["note"].startswith("config.json of")


def test_info_compares_presets_without_weights(capsys, monkeypatch):
    def no_weights(*args, **kwargs):
        raise AssertionError("a preset needs no weights")

    monkeypatch.setattr("gpt2lab.weights.load", no_weights)
    code, out, _ = run(capsys, "info", "--model", "gpt2", "--model", "llama-3.1-405b", "--json")
    assert code == 0
    gpt2, llama = json.loads(out)
    assert gpt2["parameters"]["total"] == 124_439_808
    assert llama["parameters"]["total"] == 405_853_388_800
    assert llama["architecture"]["kv heads"] == 8
    assert llama["architecture"]["positions"] == "rope θ=500,000, llama3 ×8"
    assert llama["kv_cache_bytes_per_token"] == {"float32": 1_032_192, "bfloat16": 516_096}
    assert llama["config"]["rope_scaling"]["factor"] == 8.0
    code, out, _ = run(capsys, "info", "--model", "gpt2", "--model", "llama-3.1-405b")
    rows: dict[str, str] = {}  # label -> its first row ("positions": the architecture's)
    for line in out.splitlines():
        if "│" in line:
            rows.setdefault(line.split("│")[1].strip(), line)
    assert "124,439,808" in rows["total"] and "405,853,388,800" in rows["total"]
    assert "learned" in rows["positions"] and "swiglu" in rows["activation"]


def test_convert_writes_a_loadable_copy(capsys, small_hf, tmp_path):
    code, out, _ = run(capsys, "convert", str(small_hf[1]), str(tmp_path / "copy"))
    assert code == 0 and "wrote" in out
    a, b = gpt2lab.load(small_hf[1]), gpt2lab.load(tmp_path / "copy")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize(
    ("argv", "code", "phrase"),
    [
        (["generate", PROMPT, "--model", "./no/such/model"], 1, "no such folder: ./no/such/model"),
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


@pytest.fixture
def no_hub(monkeypatch):
    """Any attempt to reach the Hub (or any network) fails the test."""
    import gpt2lab.weights

    def refuse(*args, **kwargs):
        raise AssertionError("the Hub was asked")

    monkeypatch.setattr(gpt2lab.weights, "download", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["generate", PROMPT, "--model", "tinyy"],
            "gpt2lab: error: unknown model 'tinyy': not a folder, not a bundled model "
            "(chars, tiny) and not a Hugging Face Hub id in the cache; did you mean tiny?",
        ),
        (
            ["generate", PROMPT, "--model", "TINY"],
            "gpt2lab: error: unknown model 'TINY': not a folder, not a bundled model "
            "(chars, tiny) and not a Hugging Face Hub id in the cache; did you mean tiny?",
        ),
        (["convert", "models/124M", "dest"], "gpt2lab: error: no such folder: models/124M"),
    ],
)
def test_mistakes_are_not_blamed_on_the_network(
    capsys, no_hub, tmp_path, monkeypatch, argv, message
):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert (code, out, err) == (1, "", message + "\n")
    assert not (tmp_path / "dest").exists()


def test_generate_refuses_a_long_prompt_without_echoing_it(capsys):
    code, out, err = run(capsys, "generate", "Once" + " the" * 300, "--model", "tiny")
    assert code == 2 and out == ""
    assert err.startswith("gpt2lab: error: the prompt has 301 tokens")


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--temperature", "-1", "temperature must be >= 0, got -1.0"),
        ("--top-p", "1.5", "top_p must be in (0, 1], got 1.5"),
        ("--top-k", "0", "top_k must be an integer >= 1, got 0"),
        ("--seed", "-9223372036854775809", "seed must be an integer in [-2**63, 2**64)"),
    ],
)
def test_sampling_values_are_checked_before_loading(capsys, monkeypatch, flag, value, message):
    import gpt2lab.weights

    loaded = []
    monkeypatch.setattr(gpt2lab.weights, "load", lambda *a, **k: loaded.append(a))
    code, out, err = run(capsys, "generate", PROMPT, "--model", "tiny", flag, value)
    assert (code, out, loaded) == (2, "", [])
    assert err.startswith(f"gpt2lab: error: {message}")


def test_serve_on_a_busy_port_is_one_line(capsys, monkeypatch):
    import uvicorn

    import gpt2lab.weights

    def refuse(*args, **kwargs):
        raise AssertionError("got past the port check")

    monkeypatch.setattr(gpt2lab.weights, "load", refuse)
    monkeypatch.setattr(uvicorn, "run", refuse)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run(capsys, "serve", "--model", "tiny", "--port", str(port))
    assert (code, out) == (1, "")
    assert err == (
        f"gpt2lab: error: port {port} on 127.0.0.1 is in use (another server?); "
        "pick another with --port\n"
    )


def test_output_folders_are_created_only_inside_the_current_folder(capsys, tmp_path, monkeypatch):
    from gpt2lab.cli.common import prepare_output
    from gpt2lab.errors import UsageError

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert prepare_output("reports/may/r.html", "--html") == Path("reports/may/r.html")
    assert (work / "reports" / "may").is_dir()
    assert capsys.readouterr().err == "gpt2lab: created folder reports/may for --html\n"
    assert prepare_output("reports/may/again.html", "--html") == Path("reports/may/again.html")
    assert capsys.readouterr().err == ""  # nothing new to create, nothing said
    outside = tmp_path / "elsewhere" / "r.html"
    with pytest.raises(UsageError, match=f"folder {tmp_path / 'elsewhere'} does not exist"):
        prepare_output(outside, "--html")
    with pytest.raises(UsageError, match="does not exist"):
        prepare_output("../up/run", "--out-dir", folder=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_convert_into_a_new_folder_in_the_current_one_says_so(
    capsys, small_hf, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "convert", str(small_hf[1]), "models/copy")
    assert code == 0
    assert err == "gpt2lab: created folder models for dest\n"
    assert out.startswith("wrote models/copy")
    assert (tmp_path / "models" / "copy" / "model.safetensors").is_file()
