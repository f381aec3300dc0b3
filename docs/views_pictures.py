"""Draw the pictures of docs/views.md: every interactive view on the bundled model, the web
app showing them, and a notebook showing them.

    python docs/views_pictures.py [folder]        # default: docs/images/views
    python docs/views_pictures.py --llama work/ladder-cpu/runs/llama   # docs/architectures.md

Each view's picture is its own PNG export (``View.save``), drawn in Chromium by Playwright, so
the docs show what a notebook shows, as it first appears (no hover). The web app's pictures are
screenshots of ``gpt2lab serve``'s page, opened from a link that holds the state. The
notebook's is a screenshot of a small notebook, executed in a Jupyter kernel (nbclient) and
drawn as Jupyter draws it: each code cell, then its output, the view's own HTML and script.
Nothing is fetched from the network.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from html import escape
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


@contextmanager
def serving(model: gpt2lab.GPT2, name: str) -> Iterator[str]:
    """``gpt2lab serve``'s app for ``model`` (called ``name``) on a free port: its URL."""
    import uvicorn

    from gpt2lab.web.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app({name: model}), port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/#"
    finally:
        server.should_exit = True


def map_screenshot(page, url: str, state: dict, cell: str, path: Path) -> Path:
    """The page opened on ``cell`` from a link holding ``state``, the model map on top."""
    page.goto(url + urlencode({**state, "cell": cell}))
    page.wait_for_selector("#map-panel .gpt2lab-view[data-ready]")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=path)
    return path


def web_pictures(model: gpt2lab.GPT2, folder: Path) -> list[Path]:
    """Screenshots of the web app: the model map over the cells, and attention as lines."""
    from playwright.sync_api import sync_playwright

    paths = []
    with serving(model, "tiny") as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        state = {"model": "tiny", "prompt": PROMPT, "layer": 1}
        cell = "blocks.1.attn.hook_pattern"
        paths.append(map_screenshot(page, url, state, cell, folder / "web_map.png"))
        page.goto(url + urlencode({**state, "cell": "attention-lines"}))
        cell = page.locator('[data-cell="attention-lines"]')
        cell.locator(".gpt2lab-view[data-ready]").wait_for()
        page.hover('[data-cell="attention-lines"] text.query[data-i="4"]')
        paths.append(folder / "web_attention.png")
        cell.screenshot(path=paths[-1])
        shown = {
            "web_text": {"cell": "colored-text", "color": "head", "head": 3},
            "web_saliency": {"cell": "saliency", "target": " fast"},
        }
        for name, more in shown.items():
            page.goto(url + urlencode({**state, **more}))
            cell = page.locator(f'[data-cell="{more["cell"]}"]')
            cell.locator(".gpt2lab-view[data-ready]").wait_for()
            cell.locator('g.token[data-i="4"]').first.hover()
            paths.append(folder / f"{name}.png")
            cell.screenshot(path=paths[-1])
        browser.close()
    return paths


def llama_picture(folder: Path, model_dir: Path) -> Path:
    """The web app on a LLaMA-style model (the ladder's ``runs/llama``): its map, open on the
    queries after RoPE, as docs/images/web_llama.png."""
    from playwright.sync_api import sync_playwright

    model = gpt2lab.load(model_dir)
    with serving(model, "llama") as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        state = {"model": "llama", "prompt": "Lily saw a big dog. She", "layer": 1}
        path = map_screenshot(
            page, url, state, "blocks.1.attn.hook_rot_q", folder / "web_llama.png"
        )
        browser.close()
    return path


# The notebook of the picture: what a reader types to see attention as lines.
NOTEBOOK = [
    "from gpt2lab.trace import run_with_cache\nfrom gpt2lab.viz import views\nimport gpt2lab\n\n"
    f'tiny = gpt2lab.load("tiny")\ntrace = run_with_cache(tiny, {PROMPT!r})',
    "views.attention_lines(trace, layer=1)",
    "views.neuron_text(trace, 2, 7)",
]
# Jupyter's look, in short: a prompt column, code on grey, outputs below.
NOTEBOOK_CSS = """
body { font-family: system-ui, sans-serif; margin: 16px 24px; width: 900px; background: #fff; }
.cell { display: grid; grid-template-columns: 64px 1fr; margin: 6px 0; }
.prompt { font: 13px monospace; color: #303f9f; padding-top: 6px; }
.prompt.out { color: #d84315; }
pre { margin: 0; padding: 6px 8px; background: #f5f5f5; border: 1px solid #e0e0e0;
      border-radius: 2px; font-size: 13px; }
"""


def run_notebook(cells: list[str]):  # -> nbformat.NotebookNode
    """A notebook of ``cells``, executed in a fresh Python kernel (as Run All does)."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(code) for code in cells]
    NotebookClient(notebook, kernel_name="python3", timeout=120).execute()
    return notebook


def notebook_page(notebook) -> str:
    """The executed notebook as a page, as Jupyter shows it: each cell's code, then its HTML
    output (a view's <div> and inline script) or its text."""
    parts = []
    for cell in notebook.cells:
        n = cell.execution_count
        parts.append(
            f'<div class="cell"><div class="prompt">In [{n}]:</div>'
            f"<pre>{escape(cell.source)}</pre></div>"
        )
        for output in cell.outputs:
            data = output.get("data", {})
            if "text/html" in data:
                shown = data["text/html"]
            elif "text/plain" in data or "text" in output:
                shown = f"<pre>{escape(data.get('text/plain', output.get('text', '')))}</pre>"
            else:
                continue
            parts.append(
                f'<div class="cell"><div class="prompt out">Out[{n}]:</div><div>{shown}</div></div>'
            )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        f"<style>{NOTEBOOK_CSS}</style></head><body>{''.join(parts)}</body></html>"
    )


def notebook_pictures(folder: Path) -> list[Path]:
    """A screenshot of the views in an executed notebook."""
    from playwright.sync_api import sync_playwright

    page_html = notebook_page(run_notebook(NOTEBOOK))
    path = folder / "notebook_views.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 960, "height": 600})
        page.route("**/*", lambda route: route.abort())  # nothing from the network
        page.set_content(page_html)
        page.wait_for_function("document.querySelectorAll('.gpt2lab-view[data-ready]').length == 2")
        page.hover('text.query[data-i="4"]')
        page.screenshot(path=path, full_page=True)
        browser.close()
    return [path]


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--llama":  # docs/architectures.md's picture
        made = [llama_picture(Path("docs/images"), Path(sys.argv[2]))]
    else:
        out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/views")
        out.mkdir(parents=True, exist_ok=True)
        tiny = gpt2lab.load("tiny")
        made = [*view_pictures(tiny, out), *web_pictures(tiny, out), *notebook_pictures(out)]
    for path in made:
        print(path, f"{path.stat().st_size // 1000} kB")
