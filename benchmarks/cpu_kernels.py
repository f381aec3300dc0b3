"""The matrix kernels of gpt2lab.fast on this CPU, by number of rows, side by side in one run.

``--matrices`` 768x3072 weight matrices (24, two per block of GPT-2 124M: even in int8, 57 MB,
more than the caches of a CPU with 32 MB of L3 hold, so the weights come from memory as in
decoding), multiplied by ``rows`` activations; each kernel in turn, the median of
``--repeats``. Prints milliseconds per pass over the matrices and the ratio to float32 (oneDNN
on the parameter, what float32 decoding uses):

- float32: ``fast.OneDNN`` (oneDNN's linear below 64 rows, addmm from 64);
- bfloat16: ``fast.Dense`` (addmm on the [in, out] parameter), ``fast.Prepacked`` where oneDNN
  has bfloat16 kernels, ``fast.Transposed`` (``F.linear`` on an [out, in] copy);
- int8: torch's weight-only int8 kernel (``fast.Int8`` below ``many_rows``) and the same
  rounded weights dequantized to float32 for the call (``fast.Int8`` from there on CPUs
  without bfloat16 kernels);
- ``--compiled``: also matrix-vector loops that ``torch.compile`` writes for this CPU from
  ``(w.float() * x).sum(-1)`` on the [out, in] bfloat16 copy and the int8 weights (each row of
  w converted in registers and read once); tried for decoding and not used (docs/benchmarks.md).

    python benchmarks/cpu_kernels.py [--rows 1 8 64 256 1023] [--repeats 7] [--threads N]
                                     [--matrices 24] [--compiled]

Rows where a kernel would take minutes (bfloat16 emulated by addmm) are left out ("-").
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from gpt2lab import fast
from gpt2lab.quantize import dequantize_int8

C, HIDDEN = 768, 3072


def median_ms(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def rows_times_weights(x: torch.Tensor, w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """y = (x @ wᵀ) · s for w [out, in] of any dtype, as a product and a sum that torch.compile
    turns into one loop over the rows of w. x [N, in] -> [N, out]"""
    return (w[:, None, :].float() * x[None]).sum(-1).t() * scale


def kernels(weights: list[torch.Tensor], compiled: bool) -> dict[str, tuple[int, Callable]]:
    """name -> (the most rows it is timed at, a function of x [N, C] over the matrices)."""
    bf16 = [w.bfloat16() for w in weights]
    onednn = [fast.OneDNN(w, None) for w in weights]
    dense16 = [fast.Dense(w, None) for w in bf16]
    transposed = [fast.Transposed(w, None) for w in bf16]
    int8 = [fast.Int8(w, None) for w in weights]
    found: dict[str, tuple[int, Callable]] = {
        "float32 OneDNN": (1 << 30, lambda x: [k(x) for k in onednn]),
        "bfloat16 Dense (addmm)": (8, lambda x: [k(x.bfloat16()) for k in dense16]),
    }
    if fast.onednn_has_kernels(torch.bfloat16):
        prepacked = [fast.Prepacked(w, None) for w in bf16]
        found["bfloat16 Prepacked"] = (1 << 30, lambda x: [k(x.bfloat16()) for k in prepacked])
    found["bfloat16 Transposed"] = (64, lambda x: [k(x.bfloat16()) for k in transposed])
    found["int8 kernel"] = (
        256,
        lambda x: [torch.ops.aten._weight_int8pack_mm(x.bfloat16(), k.q, k.scale) for k in int8],
    )
    found["int8 as float32"] = (
        1 << 30,
        lambda x: [F.linear(x, dequantize_int8(k.q, k.scale)) for k in int8],
    )
    if compiled:
        loop = torch.compile(rows_times_weights, dynamic=True, fullgraph=True)
        one = torch.ones(())
        found["bfloat16 compiled"] = (8, lambda x: [loop(x, k.weight_t, one) for k in transposed])
        found["int8 compiled"] = (8, lambda x: [loop(x, k.q, k.scale) for k in int8])
    return found


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8, 64, 256, 1023])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--matrices", type=int, default=24)
    parser.add_argument("--compiled", action="store_true", help="add torch.compile's loops")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    weights = [torch.randn(C, HIDDEN) * 0.02 for _ in range(args.matrices)]  # [in, out]
    found = kernels(weights, args.compiled)
    print(
        f"{args.matrices} matrices {C}x{HIDDEN}, {args.threads} threads, median of {args.repeats}; "
        f"ms per pass (x float32 OneDNN); torch {torch.__version__}, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )
    print(f"{'rows':>6}" + "".join(f"{name:>26}" for name in found))
    for rows in args.rows:
        x = torch.randn(rows, C)
        times = {
            name: median_ms(lambda run=run, x=x: run(x), args.repeats) if rows <= most else None
            for name, (most, run) in found.items()
        }
        base = times["float32 OneDNN"]
        cells = ["-" if t is None else f"{t:.1f} (x{base / t:.2f})" for t in times.values()]
        print(f"{rows:>6}" + "".join(f"{cell:>26}" for cell in cells), flush=True)


if __name__ == "__main__":
    main()
