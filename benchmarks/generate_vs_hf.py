"""Greedy decode speed, gpt2lab vs Hugging Face transformers, side by side in one process.

Both run the same random-weight GPT-2 124M (one set of weights, built by transformers from the
config and loaded by gpt2lab from the saved folder), the same prompt, float32, KV cache, the
same thread count. Runs alternate so that neither gets a warmer machine; the median counts.

    python benchmarks/generate_vs_hf.py [--new-tokens 64] [--prompt-tokens 16] [--repeats 3]

Ends with ``ratio X.XX`` = gpt2lab tokens/s divided by transformers tokens/s.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from twins import twin_models  # benchmarks/ is on sys.path when a script runs

import gpt2lab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="gpt2")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    c = gpt2lab.preset(args.preset)
    hf, ours = twin_models(args.preset)
    prompt = torch.randint(0, c.vocab_size, (1, args.prompt_tokens))

    def run_hf() -> list[int]:
        with torch.no_grad():
            out = hf.generate(
                prompt,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                do_sample=False,
                use_cache=True,
                pad_token_id=50256,
            )
        return out[0, args.prompt_tokens :].tolist()

    def run_ours() -> list[int]:
        return ours.generate(prompt[0].tolist(), args.new_tokens, greedy=True, stop_at_eos=False)

    runners = {"transformers": run_hf, "gpt2lab": run_ours}
    outputs = {name: run() for name, run in runners.items()}  # warm-up, and a correctness check
    if outputs["gpt2lab"] != outputs["transformers"]:
        raise SystemExit("the two implementations generated different tokens")
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            rates[name].append(args.new_tokens / (time.perf_counter() - start))

    print(
        f"{args.preset}, float32, {args.threads} threads, prompt {args.prompt_tokens} tokens, "
        f"{args.new_tokens} new tokens greedy, median of {args.repeats}"
    )
    for name, values in rates.items():
        print(f"{name:>13}: {statistics.median(values):7.1f} tokens/s")
    ratio = statistics.median(rates["gpt2lab"]) / statistics.median(rates["transformers"])
    print(f"ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
