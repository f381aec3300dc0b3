"""benchmarks/generate_vs_ct2.py runs end to end (--quick: 2 layers, a few tokens) and finds
gpt2lab and CTranslate2 generating the same greedy tokens from the same weights."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "generate_vs_ct2.py"


def run_script(*args: str, hide_ct2: bool = False) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(SCRIPT.parent), *sys.path])}
    # A None entry in sys.modules makes `import ctranslate2` raise ImportError.
    hide = "sys.modules['ctranslate2'] = None; " if hide_ct2 else ""
    code = f"import runpy, sys; {hide}sys.argv = {[str(SCRIPT), *args]!r}; "
    code += "runpy.run_path(sys.argv[0], run_name='__main__')"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_skips_without_ctranslate2() -> None:
    done = run_script("--quick", hide_ct2=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "skipped: ctranslate2 is not installed (pip install -e '.[bench]')\n"


@pytest.mark.slow
def test_quick_run_agrees_with_ctranslate2() -> None:
    pytest.importorskip("ctranslate2")
    done = run_script("--quick", "--threads", "1")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "same greedy tokens in float32, batch 1, 8 tokens: yes" in out
    assert "same greedy tokens in float32, batch 8, 8 tokens: yes" in out
    assert "CTranslate2 float32 0.000" in out  # the largest logit difference, same weights
    for section in ("decode, batch 1", "decode, batch 8", "prefill: a 128-token prompt"):
        assert section in out
    rows = [line.split(":")[0].strip() for line in out.splitlines() if "tokens/s  x" in line]
    names = ["CTranslate2 float32", "CTranslate2 int8", "gpt2lab float32"]
    all_rows = [*names, "gpt2lab bfloat16", "gpt2lab int8"]
    if "no bfloat16 matrix kernels on this CPU" in out:  # bfloat16 at batch 1 only
        assert rows == all_rows + [*names, "gpt2lab int8"] * 2
    else:
        assert rows == all_rows * 3  # every row in each of the three sections
    # tiny's held-out loss: both engines compute the same model in float32; int8 costs little.
    line = next(line for line in out.splitlines() if line.startswith("tiny's loss"))
    losses = dict(
        re.fullmatch(r"(.+) (\d+\.\d+)", part.strip()).groups()
        for part in line.split("nats/token): ")[1].split(",")
    )
    f32 = float(losses["gpt2lab float32"])
    assert abs(float(losses["CTranslate2 float32"]) - f32) < 1e-3
    assert abs(float(losses["gpt2lab int8"]) - f32) < 0.05
    assert abs(float(losses["CTranslate2 int8"]) - f32) < 0.05
