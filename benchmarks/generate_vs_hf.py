"""Generation speed, gpt2lab vs Hugging Face transformers, side by side in one process.

Both run the same random-weight GPT-2 (one set of weights, built by transformers from the config
and loaded by gpt2lab from the saved folder), the same prompts, greedy, KV cache, the same thread
count. Runs alternate so that none gets a warmer machine; the median of ``--repeats`` counts.

    python benchmarks/generate_vs_hf.py [--preset gpt2] [--new-tokens 64] [--repeats 3]
                                        [--device cpu|cuda]

Prints:
- the machine's memory read bandwidth (a STREAM-like sum over a buffer larger than the caches)
  and a float32 matrix-vector product's bandwidth, measured here;
- decode tokens/s at batch 1 for transformers (float32, bfloat16) and gpt2lab (named steps,
  fast path in float32, bfloat16 and int8 weights), each as a ratio to transformers float32,
  with the weight bandwidth achieved (bytes of weights read per token x tokens/s) and its
  share of the measured read bandwidth;
- prefill: a ``--prefill-tokens`` prompt to its first new token, gpt2lab vs transformers;
- batch-8 throughput as a multiple of batch 1.
On a GPU, decoding replays one CUDA graph per token; the "no graphs" rows launch the same
kernels one by one.
Ends with ``ratio X.XX`` = gpt2lab float32 decode tokens/s / transformers float32 decode tokens/s.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from twins import twin_models  # benchmarks/ is on sys.path when a script runs

from gpt2lab import fast
from gpt2lab.model import GPT2


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def best_time(fn: Callable[[], object], device: str, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def memory_bandwidth(device: str, gib: float) -> tuple[float, float]:
    """(read GB/s of a sum over ``gib`` GiB, GB/s of a float32 matrix-vector product)."""
    n = int(gib * 2**30) // 4
    buffer = torch.ones(n, device=device)
    read = n * 4 / best_time(buffer.sum, device)
    matrix = buffer.view(-1, 4096)
    vector = torch.ones(4096, device=device)
    matvec = n * 4 / best_time(lambda: torch.mv(matrix, vector), device)
    return read / 1e9, matvec / 1e9


def weight_bytes_per_token(model: GPT2) -> int:
    """Bytes of weights one decode step reads: every matrix (int8 kernels: one byte + a bfloat16
    scale per output channel), vector, and the tied unembedding; of W_P only one row."""
    with torch.no_grad():
        int8 = isinstance(fast.fast_weights(model).unembed, fast.Int8)
    total = 0
    for name, p in model.named_parameters():
        if name.endswith("wpe.weight"):
            total += p.shape[1] * p.element_size()
        elif p.dim() == 2 and int8:
            total += p.numel() + 2 * (p.shape[0] if name.endswith("wte.weight") else p.shape[1])
        else:
            total += p.numel() * p.element_size()
    return total


def our_runner(
    model: GPT2, ids: torch.Tensor, new: int, graphs: bool = True
) -> Callable[[], list[list[int]]]:
    """A call that generates ``new`` greedy tokens after each row of ``ids`` [B, T] with gpt2lab
    (never stopping at end-of-text) and returns them."""
    rows = ids.tolist()

    def run() -> list[list[int]]:
        model.cuda_graphs = graphs  # False: the same kernels, launched one by one
        try:
            return model.generate(rows, new, greedy=True, stop_at_eos=False)
        finally:
            model.cuda_graphs = True

    return run


def median_rates(
    runners: dict[str, Callable[[], object]], work: int, repeats: int, device: str = "cpu"
) -> dict[str, float]:
    """Median units of work per second of each runner over ``repeats`` rounds; within a round
    the runners take turns, so that none gets a warmer machine. One warm-up call each first."""
    for run in runners.values():
        run()  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            sync(device)
            start = time.perf_counter()
            run()
            sync(device)
            rates[name].append(work / (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="gpt2")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--prefill-tokens", type=int, default=1023)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--probe-gib", type=float, default=2.0, help="bandwidth probe buffer")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device

    read_bw, matvec_bw = memory_bandwidth(device, args.probe_gib)
    hf, ours = twin_models(args.preset)
    hf32, hf16 = copy.deepcopy(hf).to(device), hf.to(device, torch.bfloat16)
    steps32 = copy.deepcopy(ours).to(device)
    steps32.fast_path = False
    ours32 = copy.deepcopy(ours).to(device)
    ours16 = copy.deepcopy(ours).to(device, torch.bfloat16)
    int8_dtype = fast.int8_activations(device)  # bfloat16 where the device multiplies it
    ours8 = ours.to(device, int8_dtype).quantize("int8")
    int8_name = f"gpt2lab fast int8 ({'bf16' if int8_dtype == torch.bfloat16 else 'fp32'})"
    hf_models = {"transformers float32": hf32, "transformers bfloat16": hf16}
    our_models = {
        "gpt2lab named steps float32": steps32,
        "gpt2lab fast float32": ours32,
        "gpt2lab fast bfloat16": ours16,
        int8_name: ours8,
    }
    vocab = ours32.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, vocab, (args.batch, args.prompt_tokens), generator=gen)
    long_prompt = torch.randint(0, vocab, (1, args.prefill_tokens), generator=gen)

    def hf_runner(model, ids: torch.Tensor, new: int) -> Callable[[], list[list[int]]]:
        def run() -> list[list[int]]:
            with torch.no_grad():
                out = model.generate(
                    ids.to(device),
                    max_new_tokens=new,
                    min_new_tokens=new,
                    do_sample=False,
                    use_cache=True,
                    pad_token_id=50256,
                )
            return out[:, ids.shape[1] :].tolist()

        return run

    def race(runners: dict[str, Callable[[], object]], work: int) -> dict[str, float]:
        return median_rates(runners, work, args.repeats, device)

    one = prompt[:1]
    if our_runner(ours32, one, 16)() != hf_runner(hf32, one, 16)():
        raise SystemExit("gpt2lab and transformers generated different tokens")

    print(
        f"{args.preset} on {device}, {args.threads} threads, median of {args.repeats}; "
        f"memory read {read_bw:.1f} GB/s, float32 matrix-vector {matvec_bw:.1f} GB/s "
        f"({args.probe_gib:g} GiB probe)"
    )
    print(f"\ndecode, batch 1, prompt {args.prompt_tokens}, {args.new_tokens} new tokens greedy")
    runners = {n: hf_runner(m, one, args.new_tokens) for n, m in hf_models.items()}
    runners |= {n: our_runner(m, one, args.new_tokens) for n, m in our_models.items()}
    if fast.decodes_with_graphs(torch.device(device)):
        runners |= {
            f"{name} no graphs": our_runner(our_models[name], one, args.new_tokens, graphs=False)
            for name in ("gpt2lab fast float32", "gpt2lab fast bfloat16")
        }
    decode = race(runners, args.new_tokens)
    base = decode["transformers float32"]
    for name, rate in decode.items():
        model = our_models.get(name, ours32 if "float32" in name else ours16)
        gbs = weight_bytes_per_token(model) * rate / 1e9
        print(
            f"{name:>38}: {rate:7.1f} tokens/s  x{rate / base:4.2f} transformers float32  "
            f"weights {gbs:5.1f} GB/s = {100 * gbs / read_bw:3.0f}% of read bandwidth"
        )

    print(f"\nprefill: a {args.prefill_tokens}-token prompt to its first new token, batch 1")
    runners = {n: hf_runner(m, long_prompt, 1) for n, m in hf_models.items()}
    runners |= {n: our_runner(m, long_prompt, 1) for n, m in our_models.items() if "steps" not in n}
    prefill = race(runners, args.prefill_tokens)
    for name, rate in prefill.items():
        print(
            f"{name:>38}: {rate:7.0f} tokens/s  x{rate / prefill['transformers float32']:4.2f} "
            f"transformers float32  x{rate / prefill['transformers bfloat16']:4.2f} bfloat16"
        )

    print(f"\nbatch {args.batch} vs batch 1, {args.new_tokens} new tokens each")
    for name, model in our_models.items():
        if "steps" in name:
            continue
        work = args.batch * args.new_tokens
        rate = race({name: our_runner(model, prompt, args.new_tokens)}, work)[name]
        print(f"{name:>38}: {rate:7.1f} tokens/s = x{rate / decode[name]:4.2f} batch 1")

    print(f"\nratio {decode['gpt2lab fast float32'] / base:.2f}")


if __name__ == "__main__":
    main()
