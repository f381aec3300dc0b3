"""Generation speed on a CPU, gpt2lab vs CTranslate2, side by side in one run.

CTranslate2 is the inference engine people pick to run GPT-2 fast on a CPU. Both run the same
random-weight GPT-2 (built by transformers, saved to one folder, loaded by gpt2lab and converted
by CTranslate2's TransformersConverter), the same prompts, greedy, the same thread count
(``torch.set_num_threads`` and CTranslate2's ``intra_threads``). Each engine and precision runs
in a process of its own, as a user runs one engine: in one shared process, gpt2lab decoded
about a quarter slower once CTranslate2 had run, its threads idle part of the time
(docs/benchmarks.md). Runs alternate so that none gets a warmer machine, the others waiting idle;
the median of ``--repeats`` counts.

    pip install -e '.[bench]'   # ctranslate2
    python benchmarks/generate_vs_ct2.py [--preset gpt2] [--repeats 5] [--threads N] [--quick]

Each precision both offer: CTranslate2 float32 and int8 (compute type ``int8_float32``: int8
weights and activations; it offers no bfloat16 on CPUs without bfloat16 instructions), gpt2lab
float32, bfloat16 and int8 weights (with bfloat16 activations where the CPU has bfloat16
matrix kernels, float32 where not). Prints:
- decode tokens/s at batch 1 and at ``--batch``, a prompt of ``--prompt-tokens`` then
  ``--new-tokens`` greedy tokens;
- prefill: a ``--prefill-tokens`` prompt to its first new token (time to first token);
each row with its ratio to CTranslate2 float32 and to CTranslate2 int8; then a check that both
generate the same greedy tokens in float32 (exits with status 1 if not) and the largest logit
difference of each precision from gpt2lab float32, and each engine's float32 and int8 loss
with ``tiny`` on held-out TinyStories (int8's cost in quality). The checks come last because
CTranslate2 float32 decoded slower in a process that had returned logits.
``--quick`` checks the script in seconds: 2 layers, fewer tokens and repeats; its numbers are
not a benchmark.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import sys
import tempfile
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from generate_vs_hf import median_rates, our_runner  # benchmarks/ is on sys.path
from twins import twin_models

import gpt2lab
from gpt2lab import fast
from gpt2lab.model import GPT2
from gpt2lab.tokenizer import BUNDLED_DIR

try:
    import ctranslate2
except ImportError:  # an optional benchmark dependency
    ctranslate2 = None

CT2_TYPES = {"CTranslate2 float32": "float32", "CTranslate2 int8": "int8_float32"}
OURS = ("gpt2lab float32", "gpt2lab bfloat16", "gpt2lab int8")
VOCAB_FILES = {"encoder.json": "vocab.json", "vocab.bpe": "merges.txt"}  # OpenAI's -> HF's
# TinyStories that tiny never trained on (CDLA-Sharing-1.0, shipped with the tests)
HELD_OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "tinystories" / "held_out.txt"


def vocabulary() -> list[str]:
    """GPT-2's token strings by id: CTranslate2 takes tokens as strings."""
    ids = json.loads((BUNDLED_DIR / "encoder.json").read_text(encoding="utf-8"))
    return sorted(ids, key=ids.__getitem__)


def convert(save: Callable[[Path], object], folder: Path) -> tuple[Path, Path]:
    """Save a model with ``save`` (a Hugging Face folder) and GPT-2's tokenizer files to
    ``folder``/hf and convert it to ``folder``/ct2 (float32 weights: each compute type converts
    them when loaded). Returns both folders."""
    hf_dir, ct2_dir = folder / "hf", folder / "ct2"
    save(hf_dir)
    for ours, theirs in VOCAB_FILES.items():  # the converter reads the vocabulary from these
        shutil.copy(BUNDLED_DIR / ours, hf_dir / theirs)
    ctranslate2.converters.TransformersConverter(str(hf_dir)).convert(str(ct2_dir))
    return hf_dir, ct2_dir


def ct2_runner(
    generator: ctranslate2.Generator, vocab: list[str], ids: torch.Tensor, new: int
) -> Callable[[], list[list[int]]]:
    """A call that generates ``new`` greedy tokens after each row of ``ids`` [B, T] with
    CTranslate2 (the prompt in one forward pass, no end token) and returns them."""
    prompts = [[vocab[i] for i in row] for row in ids.tolist()]

    def run() -> list[list[int]]:
        results = generator.generate_batch(
            prompts,
            max_length=new,
            sampling_topk=1,
            end_token=[],
            include_prompt_in_result=False,
        )
        return [result.sequences_ids[0] for result in results]

    return run


def ct2_logits(
    generator: ctranslate2.Generator, vocab: list[str], ids: torch.Tensor
) -> torch.Tensor:
    """CTranslate2's logits [B, T, V] for ``ids`` [B, T]."""
    out = generator.forward_batch([[vocab[i] for i in row] for row in ids.tolist()])
    return torch.from_numpy(np.asarray(out)).float()  # a CPU StorageView reads as an array


def load_ours(name: str, hf_dir: str) -> GPT2:
    """gpt2lab's model of row ``name``, from the saved folder."""
    model = gpt2lab.load(hf_dir).eval()
    if name == "gpt2lab bfloat16":
        return model.to(torch.bfloat16)
    if name == "gpt2lab int8":  # bfloat16 activations only where the CPU multiplies them
        return model.to(fast.int8_activations("cpu")).quantize("int8")
    return model


def serve(conn: Connection, name: str, hf_dir: str, ct2_dir: str, threads: int) -> None:
    """One engine's process: load it, then answer ("generate", ids, new) with the new tokens,
    ("logits", ids, 0) with the logits and ("loss", windows, 0) with the mean loss, until None
    comes."""
    torch.set_num_threads(threads)
    if name in CT2_TYPES:
        vocab = vocabulary()
        generator = ctranslate2.Generator(
            ct2_dir, device="cpu", compute_type=CT2_TYPES[name], intra_threads=threads
        )

        def generate(ids: torch.Tensor, new: int) -> list[list[int]]:
            return ct2_runner(generator, vocab, ids, new)()

        def logits(ids: torch.Tensor) -> torch.Tensor:
            return ct2_logits(generator, vocab, ids)
    else:
        model = load_ours(name, hf_dir)

        def generate(ids: torch.Tensor, new: int) -> list[list[int]]:
            return our_runner(model, ids, new)()

        def logits(ids: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return model(ids).float()

    def loss(windows: torch.Tensor) -> float:
        """Mean next-token loss (nats/token) over the rows of ``windows`` [N, T]."""
        total = sum(
            F.cross_entropy(logits(row[None])[0, :-1], row[1:], reduction="sum").item()
            for row in windows
        )
        return total / (windows.shape[0] * (windows.shape[1] - 1))

    answers = {
        "generate": generate,
        "logits": lambda ids, _: logits(ids),
        "loss": lambda ids, _: loss(ids),
    }
    conn.send("ready")
    while (request := conn.recv()) is not None:
        op, ids, new = request
        conn.send(answers[op](ids, new))


class Engine:
    """One engine and precision in a process of its own; the calls below run there."""

    def __init__(self, name: str, hf_dir: Path, ct2_dir: Path, threads: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, theirs = context.Pipe()
        self.process = context.Process(
            target=serve, args=(theirs, name, str(hf_dir), str(ct2_dir), threads), daemon=True
        )
        self.process.start()
        theirs.close()
        if self.conn.recv() != "ready":
            raise RuntimeError(f"{name} did not start")

    def ask(self, op: str, ids: torch.Tensor, new: int = 0) -> Any:
        """Run ``op`` (see ``serve``) in the engine's process and return its answer."""
        self.conn.send((op, ids, new))
        return self.conn.recv()

    def generate(self, ids: torch.Tensor, new: int) -> list[list[int]]:
        return self.ask("generate", ids, new)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.ask("logits", ids)

    def loss(self, windows: torch.Tensor) -> float:
        return self.ask("loss", windows)

    def runner(self, ids: torch.Tensor, new: int) -> Callable[[], list[list[int]]]:
        return lambda: self.generate(ids, new)

    def close(self) -> None:
        self.conn.send(None)
        self.process.join()


def print_rates(title: str, rates: dict[str, float], unit: str = "tokens/s") -> None:
    print(f"\n{title}")
    f32, i8 = rates["CTranslate2 float32"], rates["CTranslate2 int8"]
    for name, rate in rates.items():
        print(
            f"{name:>24}: {rate:8.1f} {unit}  x{rate / f32:4.2f} CTranslate2 float32  "
            f"x{rate / i8:4.2f} CTranslate2 int8",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="gpt2")
    parser.add_argument("--new-tokens", type=int)
    parser.add_argument("--prompt-tokens", type=int, default=12)
    parser.add_argument("--prefill-tokens", type=int)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--quick", action="store_true", help="a check of the script, in seconds")
    args = parser.parse_args()
    if ctranslate2 is None:
        print("skipped: ctranslate2 is not installed (pip install -e '.[bench]')")
        return
    quick = args.quick
    new_tokens = args.new_tokens or (8 if quick else 64)
    prefill_tokens = args.prefill_tokens or (128 if quick else 1023)
    repeats = args.repeats or (1 if quick else 5)

    hf, _ = twin_models(args.preset, layers=2 if quick else None)
    vocab_size = hf.config.vocab_size
    with tempfile.TemporaryDirectory() as folder:
        hf_dir, ct2_dir = convert(hf.save_pretrained, Path(folder) / args.preset)
        del hf
        engines = {
            name: Engine(name, hf_dir, ct2_dir, args.threads) for name in [*CT2_TYPES, *OURS]
        }
        try:
            run(args, engines, vocab_size, new_tokens, prefill_tokens, repeats)
        finally:
            for engine in engines.values():
                engine.close()
        tiny_quality(Path(folder) / "tiny", args.threads, windows=2 if quick else 32)


def tiny_quality(folder: Path, threads: int, windows: int) -> None:
    """int8's cost in quality, both engines: tiny's loss on held-out stories."""
    tiny = gpt2lab.load("tiny")
    hf_dir, ct2_dir = convert(tiny.save, folder)
    T = 256
    text = HELD_OUT.read_text(encoding="utf-8")
    ids = torch.tensor(tiny.tokenizer.encode(text, allowed_special={"<|endoftext|>"}))
    rows = ids[: windows * T].view(windows, T)
    losses = {}
    for name in ("CTranslate2 float32", "CTranslate2 int8", "gpt2lab float32", "gpt2lab int8"):
        engine = Engine(name, hf_dir, ct2_dir, threads)
        losses[name] = engine.loss(rows)
        engine.close()
    print(
        f"tiny's loss on held-out stories ({windows} windows of {T} tokens, nats/token): "
        + ", ".join(f"{name} {loss:.4f}" for name, loss in losses.items())
    )


def run(
    args: argparse.Namespace,
    engines: dict[str, Engine],
    vocab_size: int,
    new_tokens: int,
    prefill_tokens: int,
    repeats: int,
) -> None:
    """The three timings, then the checks, each engine in its own process."""
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, vocab_size, (args.batch, args.prompt_tokens), generator=gen)
    long_prompt = torch.randint(0, vocab_size, (1, prefill_tokens), generator=gen)

    # Without bfloat16 matrix kernels (oneDNN has none for this CPU) PyTorch converts element by
    # element: too slow to time on many rows, so bfloat16 then decodes at batch 1 only.
    bf16 = fast.onednn_has_kernels(torch.bfloat16)

    def runners(ids: torch.Tensor, new: int, with_bf16: bool = True) -> dict[str, Callable]:
        names = [n for n in engines if with_bf16 or n != "gpt2lab bfloat16"]
        return {name: engines[name].runner(ids, new) for name in names}

    int8_activations = str(fast.int8_activations("cpu")).removeprefix("torch.")
    print(
        f"{args.preset}{' (2 layers, --quick)' if args.quick else ''} on the CPU, "
        f"{args.threads} threads, median of {repeats}, each engine in its own process; "
        f"CTranslate2 {ctranslate2.__version__}, torch {torch.__version__}; "
        f"gpt2lab int8 with {int8_activations} activations"
    )
    if not bf16:
        print("no bfloat16 matrix kernels on this CPU: gpt2lab bfloat16 is timed at batch 1 only")
    decode1 = median_rates(runners(prompt[:1], new_tokens), new_tokens, repeats)
    print_rates(
        f"decode, batch 1, prompt {args.prompt_tokens}, {new_tokens} new tokens greedy", decode1
    )
    work = args.batch * new_tokens
    decode_b = median_rates(runners(prompt, new_tokens, bf16), work, repeats)
    print_rates(f"decode, batch {args.batch}, the same, tokens/s of all rows", decode_b)
    prefill = median_rates(runners(long_prompt, 1, bf16), prefill_tokens, repeats)
    print_rates(f"prefill: a {prefill_tokens}-token prompt to its first new token", prefill)
    print(
        "time to first token: "
        + ", ".join(
            f"{name} {1000 * prefill_tokens / rate:.0f} ms" for name, rate in prefill.items()
        )
    )

    # The checks come last: after a forward pass that returned logits, CTranslate2 float32
    # decoded markedly slower in the same process (docs/benchmarks.md).
    for rows in (prompt[:1], prompt):
        ours_tokens = engines["gpt2lab float32"].generate(rows, new_tokens)
        ct2_tokens = engines["CTranslate2 float32"].generate(rows, new_tokens)
        same = ours_tokens == ct2_tokens
        print(
            f"same greedy tokens in float32, batch {len(rows)}, {new_tokens} tokens: "
            f"{'yes' if same else 'NO'}"
        )
        if not same:
            sys.exit(1)
    ids = long_prompt[:, :64]
    logits = {name: engine.logits(ids) for name, engine in engines.items()}
    reference = logits["gpt2lab float32"]
    print(
        f"largest logit difference from gpt2lab float32 ({ids.shape[1]} random ids): "
        + ", ".join(
            f"{name} {(values - reference).abs().max().item():.3f}"
            for name, values in logits.items()
        )
    )


if __name__ == "__main__":
    main()
