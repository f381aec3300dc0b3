"""benchmarks/cpu_kernels.py times every matrix kernel of the fast path at the rows asked for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "cpu_kernels.py"


def test_a_row_per_count_and_a_column_per_kernel() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--rows",
            "1",
            "300",
            "--repeats",
            "1",
            "--threads",
            "1",
            "--matrices",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("2 matrices 768x3072, 1 threads, median of 1")
    header = lines[1].split()
    assert header[:3] == ["rows", "float32", "OneDNN"]
    assert "Transposed" in header and "kernel" in header
    one, many = (line.split() for line in lines[2:4])
    assert one[0] == "1" and one[1:3] != ["-"] and "-" not in one  # every kernel at 1 row
    assert many[0] == "300" and many[2] == "(x1.00)" and "-" in many  # slow ones left out
