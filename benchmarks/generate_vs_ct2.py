"""Generation speed on a CPU, gpt2lab vs CTranslate2, side by side in one process.

CTranslate2 is the inference engine people pick to run GPT-2 fast on a CPU. Both run the same
random-weight GPT-2 (built by transformers, saved to one folder, loaded by gpt2lab and converted
by CTranslate2's TransformersConverter), the same prompts, greedy, the same thread count
(``torch.set_num_threads`` and CTranslate2's ``intra_threads``). Runs alternate so that none
gets a warmer machine; the median of ``--repeats`` counts.

    pip install -e '.[bench]'   # ctranslate2
    python benchmarks/generate_vs_ct2.py [--preset gpt2] [--repeats 5] [--threads N] [--quick]

Each precision both offer: CTranslate2 float32 and int8 (compute type ``int8_float32``: int8
weights, float32 activations; it offers no bfloat16 on CPUs without bfloat16 instructions),
gpt2lab float32, bfloat16 and int8 weights (bfloat16 activations). Prints:
- a check that both generate the same greedy tokens in float32 (exits with status 1 if not),
  and the largest logit difference of each precision from gpt2lab float32;
- decode tokens/s at batch 1 and at ``--batch``, a prompt of ``--prompt-tokens`` then
  ``--new-tokens`` greedy tokens;
- prefill: a ``--prefill-tokens`` prompt to its first new token (time to first token);
each row with its ratio to CTranslate2 float32 and to CTranslate2 int8.
``--quick`` checks the script in seconds: 2 layers, fewer tokens and repeats; its numbers are
not a benchmark.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from generate_vs_hf import median_rates, our_runner  # benchmarks/ is on sys.path
from twins import twin_models

from gpt2lab import fast
from gpt2lab.tokenizer import BUNDLED_DIR

try:
    import ctranslate2
except ImportError:  # an optional benchmark dependency
    ctranslate2 = None

CT2_TYPES = {"CTranslate2 float32": "float32", "CTranslate2 int8": "int8_float32"}
VOCAB_FILES = {"encoder.json": "vocab.json", "vocab.bpe": "merges.txt"}  # OpenAI's -> HF's


def convert(hf_model: torch.nn.Module, folder: Path) -> tuple[Path, list[str]]:
    """Save the transformers model with GPT-2's tokenizer files to ``folder``/hf and convert it
    to ``folder``/ct2 (float32 weights: each compute type converts them when loaded). Returns
    the converted folder and the vocabulary (token strings by id), as CTranslate2 takes tokens
    as strings."""
    hf_dir, ct2_dir = folder / "hf", folder / "ct2"
    hf_model.save_pretrained(hf_dir)
    for ours, theirs in VOCAB_FILES.items():  # the converter reads the vocabulary from these
        shutil.copy(BUNDLED_DIR / ours, hf_dir / theirs)
    ctranslate2.converters.TransformersConverter(str(hf_dir)).convert(str(ct2_dir))
    ids = json.loads((BUNDLED_DIR / "encoder.json").read_text(encoding="utf-8"))
    return ct2_dir, sorted(ids, key=ids.__getitem__)


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


def print_rates(title: str, rates: dict[str, float], unit: str = "tokens/s") -> None:
    print(f"\n{title}")
    f32, i8 = rates["CTranslate2 float32"], rates["CTranslate2 int8"]
    for name, rate in rates.items():
        print(
            f"{name:>24}: {rate:8.1f} {unit}  x{rate / f32:4.2f} CTranslate2 float32  "
            f"x{rate / i8:4.2f} CTranslate2 int8"
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
    torch.set_num_threads(args.threads)

    hf, ours = twin_models(args.preset, layers=2 if quick else None)
    with tempfile.TemporaryDirectory() as folder:
        ct2_dir, vocab = convert(hf, Path(folder))
        ct2 = {  # loaded (and int8-quantized) into memory: the folder can go
            name: ctranslate2.Generator(
                str(ct2_dir), device="cpu", compute_type=kind, intra_threads=args.threads
            )
            for name, kind in CT2_TYPES.items()
        }
    del hf
    models = {
        "gpt2lab float32": copy.deepcopy(ours),
        "gpt2lab bfloat16": copy.deepcopy(ours).to(torch.bfloat16),
        "gpt2lab int8": ours.to(torch.bfloat16).quantize("int8"),  # as generate_vs_hf.py's
    }
    gen = torch.Generator().manual_seed(0)
    vocab_size = len(vocab)
    prompt = torch.randint(0, vocab_size, (args.batch, args.prompt_tokens), generator=gen)
    long_prompt = torch.randint(0, vocab_size, (1, prefill_tokens), generator=gen)

    # Without bfloat16 matrix kernels (oneDNN has none for this CPU) PyTorch converts element by
    # element: too slow to time on many rows, so bfloat16 then decodes at batch 1 only.
    native_bf16 = fast.kernel_kind(torch.zeros(1, 1, dtype=torch.bfloat16), None) is fast.Prepacked

    def runners(
        ids: torch.Tensor, new: int, bf16: bool = True
    ) -> dict[str, Callable[[], list[list[int]]]]:
        ct2_runs = {name: ct2_runner(g, vocab, ids, new) for name, g in ct2.items()}
        ours_runs = {name: our_runner(m, ids, new) for name, m in models.items()}
        if not bf16:
            del ours_runs["gpt2lab bfloat16"]
        return ct2_runs | ours_runs

    print(
        f"{args.preset}{' (2 layers, --quick)' if quick else ''} on the CPU, "
        f"{args.threads} threads, median of {repeats}; CTranslate2 {ctranslate2.__version__}, "
        f"torch {torch.__version__}"
    )
    if not native_bf16:
        print("no bfloat16 matrix kernels on this CPU: gpt2lab bfloat16 is timed at batch 1 only")
    for rows in (prompt[:1], prompt):
        ours_tokens = our_runner(models["gpt2lab float32"], rows, new_tokens)()
        ct2_tokens = ct2_runner(ct2["CTranslate2 float32"], vocab, rows, new_tokens)()
        same = ours_tokens == ct2_tokens
        print(
            f"same greedy tokens in float32, batch {len(rows)}, {new_tokens} tokens: "
            f"{'yes' if same else 'NO'}"
        )
        if not same:
            sys.exit(1)
    ids = long_prompt[:, :64]
    with torch.no_grad():
        reference = models["gpt2lab float32"](ids).float()
        errors = {name: ct2_logits(g, vocab, ids) for name, g in ct2.items()}
        errors |= {name: m(ids).float() for name, m in models.items()}
    print(
        f"largest logit difference from gpt2lab float32 ({ids.shape[1]} random ids): "
        + ", ".join(
            f"{name} {(logits - reference).abs().max().item():.3f}"
            for name, logits in errors.items()
        )
    )

    decode1 = median_rates(runners(prompt[:1], new_tokens), new_tokens, repeats)
    print_rates(
        f"decode, batch 1, prompt {args.prompt_tokens}, {new_tokens} new tokens greedy", decode1
    )
    work = args.batch * new_tokens
    decode_b = median_rates(runners(prompt, new_tokens, native_bf16), work, repeats)
    print_rates(f"decode, batch {args.batch}, the same, tokens/s of all rows", decode_b)
    prefill = median_rates(runners(long_prompt, 1, native_bf16), prefill_tokens, repeats)
    print_rates(f"prefill: a {prefill_tokens}-token prompt to its first new token", prefill)
    print(
        "time to first token: "
        + ", ".join(
            f"{name} {1000 * prefill_tokens / rate:.0f} ms" for name, rate in prefill.items()
        )
    )


if __name__ == "__main__":
    main()
