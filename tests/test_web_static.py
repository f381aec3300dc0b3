"""The page's front end stays plain: native ES modules with no build step, short lines (like
ruff's limit for Python), each checked by `// @ts-check`, and nothing loaded from elsewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[1] / "src" / "gpt2lab" / "web" / "static"
SCRIPTS = sorted(STATIC.rglob("*.js"))
MAX_LINE = 100  # the same limit as ruff's for the Python


def test_there_are_modules_to_check():
    assert {p.name for p in SCRIPTS} >= {"app.js", "api.js", "dom.js", "grid.js"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_lines_are_at_most_100_characters(script: Path):
    lines = script.read_text(encoding="utf-8").splitlines()
    long = [f"{script.name}:{n}" for n, line in enumerate(lines, 1) if len(line) > MAX_LINE]
    assert not long, f"lines over {MAX_LINE} characters: {', '.join(long)}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_each_module_starts_with_ts_check(script: Path):
    assert script.read_text(encoding="utf-8").startswith("// @ts-check\n")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_modules_import_only_local_modules(script: Path):
    text = script.read_text(encoding="utf-8")
    sources = re.findall(r'^import .* from "([^"]+)";$', text, re.MULTILINE)
    assert all(re.fullmatch(r"\./[\w-]+\.js", s) for s in sources), sources
    assert all((STATIC / s).exists() for s in sources), sources
    assert "://" not in text  # no CDN: the page works offline


def test_the_page_loads_only_local_module_scripts():
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts == ['<script type="module" src="/static/app.js">']


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_each_module_is_served_as_javascript(client, script: Path):
    # a browser refuses a module script served with any other type
    response = client.get(f"/static/{script.relative_to(STATIC).as_posix()}")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] in {
        "text/javascript",
        "application/javascript",
    }


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_step_titles_live_in_the_library_not_in_the_page(script: Path):
    # the page heads each step's cell with the title the API gives from hooks.STEPS
    from gpt2lab.hooks import STEPS

    text = script.read_text(encoding="utf-8")
    copied = [s.title for s in STEPS if f'"{s.title}"' in text]
    assert not copied, f"{script.name} keeps its own copy of step titles: {copied}"
