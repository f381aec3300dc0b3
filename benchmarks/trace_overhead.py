"""What looking inside costs: a traced forward pass against a plain one, side by side.

All runs use one random-weight GPT-2 124M (built by transformers from the config, loaded by
gpt2lab from the saved folder), one prompt of random ids, float32, the same threads. Runs
alternate so that none gets a warmer machine; the median of each counts.

    python benchmarks/trace_overhead.py [--tokens 1024] [--repeats 5]

Prints, as ratios to gpt2lab's plain forward pass through the named steps with no hooks (what a
trace adds to; ``model.fast_path = False``):
- the fast path (``model(ids)`` in eval mode with no hooks: gpt2lab.fast), the default;
- transformers' forward pass;
- the forward pass with every hook site live but no function at any of them;
- ``run_with_cache`` keeping every named step (the target: at most 1.5x);
- ``run_with_cache`` keeping only the attention patterns.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from twins import twin_models  # benchmarks/ is on sys.path when a script runs

import gpt2lab
from gpt2lab.hooks import Hooks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="gpt2")
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    c = gpt2lab.preset(args.preset)
    hf, model = twin_models(args.preset)
    model.fast_path = False  # a trace runs the named steps: compare with them (and the fast path)
    ids = torch.randint(0, c.vocab_size, (1, args.tokens))
    kept: list[int] = []

    def plain() -> None:
        with torch.no_grad():
            model(ids)

    def fast() -> None:
        with torch.no_grad():
            model.fast_path = True
            model(ids)
            model.fast_path = False

    def transformers() -> None:
        with torch.no_grad():
            hf(ids)

    def empty_hooks() -> None:
        with torch.no_grad():
            model(ids, hooks=Hooks())

    def trace_all() -> None:
        trace = model.run_with_cache(ids)
        kept.append(trace.nbytes)

    def trace_patterns() -> None:
        model.run_with_cache(ids, "blocks.*.attn.hook_pattern")

    runs: dict[str, Callable[[], None]] = {
        "plain forward, named steps": plain,
        "fast path (gpt2lab.fast)": fast,
        "transformers forward": transformers,
        "hook sites live, no hooks": empty_hooks,
        "run_with_cache, every step": trace_all,
        "run_with_cache, patterns only": trace_patterns,
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up
        run()
    for _ in range(args.repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["plain forward, named steps"])
    print(
        f"{args.preset}, {args.tokens} tokens, float32, {args.threads} threads, "
        f"median of {args.repeats}; a full trace keeps {kept[-1] / 1e9:.2f} GB"
    )
    for name, ts in times.items():
        median = statistics.median(ts)
        print(f"{name:32s} {median * 1e3:9.1f} ms   ratio {median / base:5.2f}")


if __name__ == "__main__":
    main()
