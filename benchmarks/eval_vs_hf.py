"""Sliding-window evaluation speed, gpt2lab vs a plain `transformers` loop, on the same windows.

Both score the first N windows of WikiText-2's test set (de-tokenized, as ``gpt2lab eval
wikitext2`` reads it) with the same random-weight model (built by transformers from the preset's
config, loaded by gpt2lab from the saved folder), float32, the same thread count:

- gpt2lab: ``gpt2lab.evals.score`` (what ``score_text`` runs), ``--batch-size`` windows per
  forward pass, only the scored positions unembedded;
- transformers: one window at a time, ``GPT2LMHeadModel(window).logits``, log-softmax, the
  scored targets summed: what a hand-written evaluation loop does.

Runs alternate so that neither gets a warmer machine; the median counts. Both totals must agree.

    python benchmarks/eval_vs_hf.py [--preset gpt2] [--windows 16] [--batch-size 8] [--repeats 3]

Ends with ``ratio X.XX`` = transformers' time divided by gpt2lab's (above 1: gpt2lab is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from twins import twin_models  # benchmarks/ is on sys.path when a script runs

import gpt2lab
from gpt2lab.evals import detokenize, score, sliding_windows
from gpt2lab.evals.data import find, read_lines

# The full test files beside the repository; elsewhere the cache, a download or the sample.
SHARED_EVAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="gpt2")
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument("--context", type=int, default=None, help="default: n_positions")
    parser.add_argument("--stride", type=int, default=None, help="default: context / 2")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    c = gpt2lab.preset(args.preset)
    context = args.context or c.n_positions
    stride = args.stride or context // 2
    hf, ours = twin_models(args.preset)
    lines = read_lines(find("wikitext-2/test", data_dir=SHARED_EVAL))
    text = "\n".join(detokenize("wikitext", line) for line in lines) + "\n"
    ids = ours.tokenizer.encode_ordinary(text)
    windows = sliding_windows(ids, context, stride, ours.tokenizer.eot_token)[: args.windows]

    def run_ours() -> float:
        return sum(s.nll for s in score(ours, windows, batch_size=args.batch_size))

    @torch.no_grad()
    def run_hf() -> float:
        total = 0.0
        for w in windows:
            seq = torch.cat([w.context, w.continuation])[None]
            logp = hf(seq).logits[0, -len(w.continuation) - 1 : -1].float().log_softmax(-1)
            total -= float(logp.gather(1, w.continuation[:, None]).sum())
        return total

    runners = {"transformers": run_hf, "gpt2lab": run_ours}
    totals = {name: run() for name, run in runners.items()}  # warm-up, and a correctness check
    if abs(totals["gpt2lab"] - totals["transformers"]) > 1e-4 * abs(totals["transformers"]):
        raise SystemExit(f"the two implementations disagree: {totals}")
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)

    n_tokens = sum(len(w.continuation) for w in windows)
    print(
        f"{args.preset}, float32, {args.threads} threads, WikiText-2 test (de-tokenized), "
        f"{len(windows)} windows of {context} tokens, stride {stride}, {n_tokens:,} tokens "
        f"scored, gpt2lab batch {args.batch_size}, median of {args.repeats}"
    )
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:>13}: {median:7.2f} s  ({n_tokens / median:8.0f} scored tokens/s)")
    ratio = statistics.median(times["transformers"]) / statistics.median(times["gpt2lab"])
    print(f"ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
