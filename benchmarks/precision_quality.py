"""What lower precision costs in quality: float32 vs bfloat16 vs int8 weights, side by side.

- With the bundled ``tiny``: WikiText-2 test perplexity (per word, de-tokenized, context 256,
  stride 128) and LAMBADA accuracy/perplexity (whole last word), one row per mode.
- On the GPT-2 124M config (random weights; no real weights reach our machines): the error of
  each mode's logits against float32 on a prompt of random ids, and how often the argmax
  differs.

    python benchmarks/precision_quality.py [--limit 400] [--lambada-limit 1000]

``--limit`` caps the WikiText-2 windows and ``--lambada-limit`` the passages (0: all) so that a
run takes minutes; every mode sees exactly the same ones.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import gpt2lab
from gpt2lab.evals import score_text
from gpt2lab.evals.tasks import Settings, run_task
from gpt2lab.model import GPT2
from gpt2lab.train.data import is_validation, split_documents

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MODES: dict[str, dict] = {
    "float32": {},
    "bfloat16": {"dtype": torch.bfloat16},
    "int8 (float32 activations)": {"quantize": "int8"},
    "int8 + bfloat16": {"dtype": torch.bfloat16, "quantize": "int8"},
}


def held_out_stories() -> str:
    """The TinyStories documents tiny never trained on (recipes/tiny: 5% held out by hash)."""
    text = (SHARED / "train" / "tinystories" / "tinystories_sample_2M.txt").read_text()
    docs = [d for d in split_documents(text, "<|endoftext|>") if is_validation(d, 0.05)]
    return "\n".join(docs[:-1])  # the file's last story is cut off


def quality_with_tiny(limit: int | None, lambada_limit: int | None) -> None:
    print(
        "tiny: loss on its held-out stories (nats/token), WikiText-2 test (per word, "
        "detokenized, context 256, stride 128), LAMBADA (whole last word)"
    )
    print(
        f"{'mode':>28}  {'held-out loss':>13}  {'wikitext2 ppl':>13}  {'lambada acc':>11}  "
        f"{'lambada ppl':>11}"
    )
    stories = held_out_stories()
    for mode, options in MODES.items():
        model = gpt2lab.load("tiny", **options)
        held_out = score_text(model, stories, context=256, stride=128)
        full = Settings(data_dir=str(SHARED / "eval"))  # the full test sets, not the samples
        wiki = run_task(model, "wikitext2", full.replace(detok="on", limit=limit, stride=128))[0]
        lambada = run_task(model, "lambada", full.replace(limit=lambada_limit))[0]
        print(
            f"{mode:>28}  {held_out.nll / held_out.tokens:13.4f}  {wiki.ppl:13.2f}  "
            f"{100 * lambada.accuracy:10.2f}%  {lambada.ppl:11.1f}"
        )


@torch.no_grad()
def logit_error_124m(tokens: int) -> None:
    torch.manual_seed(0)
    reference = GPT2(gpt2lab.preset("gpt2")).eval()
    ids = torch.randint(0, reference.config.vocab_size, (1, tokens))
    exact = reference(ids)
    state = reference.state_dict()
    print(f"\nGPT-2 124M config (random weights), {tokens} random ids: logits against float32")
    print(f"{'mode':>28}  {'max |error|':>11}  {'mean |error|':>12}  {'argmax differs':>14}")
    for mode, options in MODES.items():
        model = GPT2(reference.config).eval()
        model.load_state_dict(state)
        model = model.to(options.get("dtype", torch.float32))
        if "quantize" in options:
            model.quantize(options["quantize"])
        error = (model(ids).float() - exact).abs()
        differs = (model(ids).argmax(-1) != exact.argmax(-1)).float().mean()
        print(
            f"{mode:>28}  {float(error.max()):11.4f}  {float(error.mean()):12.5f}  "
            f"{100 * float(differs):13.1f}%"
        )
    print(f"(float32 logits: std {float(exact.std()):.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=400, help="WikiText-2 windows (0: all)")
    parser.add_argument("--lambada-limit", type=int, default=1000, help="passages (0: all)")
    parser.add_argument("--tokens", type=int, default=256)
    args = parser.parse_args()
    quality_with_tiny(args.limit or None, args.lambada_limit or None)
    logit_error_124m(args.tokens)


if __name__ == "__main__":
    main()
