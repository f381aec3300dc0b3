"""Draw the pictures of docs/views.md: every interactive view on the bundled model, and the web
app showing them.

    python docs/views_pictures.py [folder]        # default: docs/images/views

Each view's picture is its own PNG export (``View.save``), drawn in Chromium by Playwright, so
the docs show what a notebook shows, as it first appears (no hover). The web app's pictures are
screenshots of ``gpt2lab serve``'s page, opened from a link that holds the state.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import gpt2lab
from gpt2lab.lens import logit_lens
from gpt2lab.saliency import saliency
from gpt2lab.trace import run_with_cache
from gpt2lab.viz import views

PROMPT = "Mike is quick. He moves"
CHROMIUM = "/usr/bin/chromium"


def view_pictures(model: gpt2lab.GPT2, folder: Path) -> list[Path]:
    """Save one PNG per view in ``folder``; return their paths."""
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
    return [view.save(folder / f"{name}.png", dpi=100) for name, view in shown.items()]


def web_pictures(model: gpt2lab.GPT2, folder: Path) -> list[Path]:
    """Screenshots of the web app: the model map over the cells, and attention as lines."""
    import uvicorn
    from playwright.sync_api import sync_playwright

    from gpt2lab.web.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app({"tiny": model}), port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/#"
    paths = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            state = {"model": "tiny", "prompt": PROMPT, "layer": 1}
            page.goto(url + urlencode({**state, "cell": "blocks.1.attn.hook_pattern"}))
            page.wait_for_selector("#map-panel .gpt2lab-view[data-ready]")
            page.evaluate("window.scrollTo(0, 0)")
            paths.append(folder / "web_map.png")
            page.screenshot(path=paths[-1])
            page.goto(url + urlencode({**state, "cell": "attention-lines"}))
            cell = page.locator('[data-cell="attention-lines"]')
            cell.locator(".gpt2lab-view[data-ready]").wait_for()
            page.hover('[data-cell="attention-lines"] text.query[data-i="4"]')
            paths.append(folder / "web_attention.png")
            cell.screenshot(path=paths[-1])
            browser.close()
    finally:
        server.should_exit = True
    return paths


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/views")
    out.mkdir(parents=True, exist_ok=True)
    tiny = gpt2lab.load("tiny")
    for path in [*view_pictures(tiny, out), *web_pictures(tiny, out)]:
        print(path)
