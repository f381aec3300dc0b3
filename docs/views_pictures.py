"""Draw every interactive view of docs/views.md on the bundled model and save its picture.

    python docs/views_pictures.py [folder]        # default: docs/images/views

Each picture is the view's own PNG export (``View.save``), drawn in Chromium with Playwright, so
the docs show what a notebook shows. A hover is not part of a picture: the views are drawn as
they first appear.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gpt2lab
from gpt2lab.lens import logit_lens
from gpt2lab.saliency import saliency
from gpt2lab.trace import run_with_cache
from gpt2lab.viz import views

PROMPT = "Mike is quick. He moves"


def pictures(folder: Path) -> list[Path]:
    """Save one PNG per view in ``folder``; return their paths."""
    model = gpt2lab.load("tiny")
    trace = run_with_cache(model, PROMPT)
    shown = {
        "model_map": views.model_map(
            model,
            trace,
            layer=1,
            here="blocks.1.attn.hook_pattern",
            selected="blocks.1.attn.hook_pattern",
            name="tiny",
        ),
        "attention_lines": views.attention_lines(trace, layer=1),
        "attention_heads": views.attention_heads(trace),
        "neuron_text": views.neuron_text(trace, 2, 7),
        "head_norm_text": views.head_norm_text(model, trace, 1, 3),
        "next_tokens": views.next_tokens(trace, k=4),
        "logit_lens": views.lens_view(logit_lens(model, trace, target="next", points="post")),
        "saliency": views.saliency_view(saliency(model, PROMPT, " fast", position=-1)),
    }
    folder.mkdir(parents=True, exist_ok=True)
    return [view.save(folder / f"{name}.png", dpi=100) for name, view in shown.items()]


if __name__ == "__main__":
    for path in pictures(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/views")):
        print(path)
