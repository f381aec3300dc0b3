"""Every example in the README runs as written, as on a new user's machine: an empty HOME, no
network, nothing beside the repository (no ../shared), only what the repository ships.

The README loads ``gpt2`` from the Hub; here that id resolves, offline, to a random-weight model of
GPT-2 124M's exact config in a Hugging Face cache made by the test, just as a user's cached copy
would. Python examples are doctests; after each ``$ gpt2lab ...`` line of a console block, any
lines up to the next command are its exact expected output.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

import pytest
from conftest import fresh_user_env, make_hf_model, populate_hub_cache, stories

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
GPT2LAB = Path(sys.executable).with_name("gpt2lab")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """(working folder, environment): ``gpt2`` in an offline Hub cache, an OpenAI checkpoint
    folder and a text file to train on (TinyStories, from tests/data); an empty HOME."""
    root = tmp_path_factory.mktemp("readme")
    source = root / "source"
    make_hf_model(source)  # transformers' default config is GPT-2 124M
    cache = root / "hub"
    populate_hub_cache(cache, "gpt2", source)
    small = make_hf_model(root / "small", n_layer=2, n_embd=64, n_head=4, n_positions=64)
    from weightfiles import write_openai_checkpoint

    write_openai_checkpoint(root / "cwd" / "models" / "124M", small)
    (root / "cwd" / "stories.txt").write_text(stories())  # "Train your own"
    return root / "cwd", fresh_user_env(root / "home", cache)


def console_examples() -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each ``$ `` line in the README's console blocks."""
    examples: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                examples.append((line[2:], []))
            elif examples:
                examples[-1][1].append(line)
    return examples


def test_python_examples(workdir):
    cwd, env = workdir
    result = subprocess.run(
        [sys.executable, "-m", "doctest", str(README)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_has_console_examples():
    commands = [c for c, _ in console_examples()]
    assert any(c.startswith("gpt2lab generate") for c in commands)
    assert any(c.startswith("gpt2lab tokenize") for c in commands)


@pytest.mark.parametrize(
    ("command", "expected"), console_examples(), ids=[c for c, _ in console_examples()]
)
def test_console_example(workdir, command, expected):
    cwd, env = workdir
    argv = shlex.split(command)
    assert argv[0] == "gpt2lab"
    result = subprocess.run(
        [str(GPT2LAB), *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    if expected:
        assert result.stdout.splitlines() == expected
    if argv[1] == "eval":  # offline with no data at hand: the sample in the package, said so
        assert "using the bundled sample" in result.stderr


def test_quick_start_matches_ci():
    """.ci/run installs as the README's quick start says, then runs its test command with the
    slow tests too (the README's command leaves them out: pyproject's addopts)."""
    text = README.read_text()
    commands = re.findall(r"```bash\n(python3 -m venv .*?)\n```", text)
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text().rstrip().splitlines()[-1]
    setup, test = commands[1].rsplit(" && ", 1)
    assert test == ".venv/bin/pytest"
    ci_setup, ci_test = ci.rsplit(" && ", 1)
    assert ci_setup == setup.replace(" install ", " install -q ")
    assert shlex.split(ci_test) == [test, "-m", "slow or not slow"]
    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "-m 'not slow'" in addopts["addopts"]
