"""The HTML report (`gpt2lab inspect --html`, Jupyter's _repr_html_) is one self-contained file
that parses, refers to nothing outside itself, and shows the library's own values."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import pytest
import torch

from gpt2lab.cli import main
from gpt2lab.errors import UsageError
from gpt2lab.generate import SamplingSettings, explain_sampling
from gpt2lab.inspection import inspect_prompt
from gpt2lab.lens import logit_lens
from gpt2lab.viz.html import inspection_html, write_html

PROMPT = "Mike is quick. He moves"
VOID = {"meta", "img", "br", "hr", "link", "input"}  # elements with no end tag


class Page(HTMLParser):
    """Every tag with its attributes, and the text of each table cell by table class."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.open: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag not in VOID:
            self.open.append(tag)
        if tag == "table":
            self._table = attrs.get("class", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes <{self.open[-1:]}>"
        self.open.pop()
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def body(self, table: str) -> list[list[str]]:
        """A table's rows without its header row and header column."""
        return [row[1:] for row in self.tables[table][1:]]


def parse(text: str) -> Page:
    page = Page(text)
    assert page.open == [], f"unclosed tags: {page.open}"
    return page


def assert_self_contained(text: str, page: Page) -> None:
    assert "http://" not in text and "https://" not in text
    assert "@import" not in text and "url(" not in text
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "iframe", "object", "embed"), tag
        for name in ("src", "href"):
            if attrs.get(name) is not None:
                assert attrs[name].startswith("data:"), (tag, attrs[name][:40])


@pytest.fixture(scope="module")
def trace(tiny):
    return tiny.run_with_cache(PROMPT, "blocks.*.attn.hook_pattern")


@pytest.fixture(scope="module")
def settings():
    return SamplingSettings(temperature=0.8, top_k=20, seed=3)


@pytest.fixture(scope="module")
def report(tiny, trace, settings):
    ins = inspect_prompt(
        tiny, PROMPT, layer=1, head=2, target="next", sampling=settings, model_name="tiny"
    )
    text = inspection_html(ins, overview=trace)
    return text, parse(text)


def test_report_is_one_document_that_refers_to_nothing_outside(report):
    text, page = report
    assert text.startswith("<!DOCTYPE html>")
    assert [tag for tag, _ in page.tags].count("html") == 1
    assert ("meta", {"charset": "utf-8"}) in page.tags
    assert_self_contained(text, page)


def about(page: Page, table: str) -> dict[str, str]:
    """A one-row table of the report ("model", "settings") as {header: value}."""
    header, values = page.tables[table]
    return dict(zip(header, values, strict=True))


def test_report_names_the_model_its_size_and_every_setting(tiny, report):
    text, page = report
    c = tiny.config
    assert about(page, "model") == {
        "model": "tiny",
        "layers": str(c.n_layer),
        "heads": str(c.n_head),
        "width": str(c.n_embd),
        "parameters": f"{sum(p.numel() for p in tiny.parameters()):,}",
        "positions": f"{c.n_positions:,}",
        "vocabulary": f"{c.vocab_size:,}",
        "weights": "float32",
        "device": "cpu",
    }
    assert about(page, "settings") == {
        "prompt": repr(PROMPT),
        "layer": "1",
        "head": "2",
        "step": "none",
        "top": "5",
        "target": "'next'",
        "sampling": "yes",
        "greedy": "no",
        "temperature": "0.8",
        "top_k": "20",
        "top_p": "none",
        "seed": "3",
    }
    assert f"<title>gpt2lab inspect: tiny: {PROMPT}</title>" in text


def test_report_shows_the_tokens_and_the_next_tokens(tiny, report):
    _, page = report
    ids = tiny.tokenizer.encode(PROMPT)
    tokens = [tiny.tokenizer.decode([i]) for i in ids]
    assert page.body("tokens") == [[repr(t) for t in tokens], [str(i) for i in ids]]
    logits = tiny(torch.tensor([ids]))[0, -1].float()
    probs, top = torch.softmax(logits, -1).topk(5)
    rows = page.body("next")
    assert [row[0] for row in rows] == [str(i) for i in top.tolist()]
    assert [row[1] for row in rows] == [f"{p:.3f}" for p in probs.tolist()]
    names = [r[0] for r in page.tables["next"][1:]]
    assert names == [repr(tiny.tokenizer.decode([i])) for i in top.tolist()]


def test_report_lens_cells_are_the_logit_lens(tiny, report):
    _, page = report
    lens = logit_lens(tiny, PROMPT, k=5, target="next", points="post")
    assert [row[0] for row in page.tables["lens-top"][1:]] == [
        p.replace("blocks.", "b").replace("hook_", "") for p in lens.points
    ]
    expected = [
        [f"{top[0]!r}{probs[0]:.2f}" for top, probs in zip(row, prob_row)]
        for row, prob_row in zip(lens.top_tokens, lens.top_probs.tolist())
    ]
    assert page.body("lens-top") == expected
    ranks = [["–" if r < 0 else str(r) for r in row] for row in lens.target_rank.tolist()]
    assert page.body("lens-rank") == ranks


def test_report_attention_is_the_chosen_heads_pattern(report, trace):
    _, page = report
    pattern = trace["blocks.1.attn.hook_pattern"][0, 2].tolist()
    expected = [
        [f"{w:.2f}" if k <= q else "" for k, w in enumerate(row)] for q, row in enumerate(pattern)
    ]
    assert page.body("attention") == expected
    images = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(images) == 1 and images[0]["alt"] == "attention of every head"
    data = images[0]["src"].removeprefix("data:image/png;base64,")
    assert base64.b64decode(data).startswith(b"\x89PNG")


def test_report_sampling_table_is_the_sampling_lab(tiny, report, settings):
    _, page = report
    logits = tiny(torch.tensor([tiny.tokenizer.encode(PROMPT)]))[0, -1]
    ex = explain_sampling(logits, settings, top=5, tokenizer=tiny.tokenizer)
    rows = page.tables["sampling"][1:]
    assert [row[0] for row in rows] == [repr(r.token) for r in ex.rows]
    assert [row[-1] for row in rows] == [f"{r.prob:.3f}" for r in ex.rows]
    assert [row[5] for row in rows] == ["kept" if r.kept_top_k else "cut" for r in ex.rows]


def test_tokens_are_escaped_not_read_as_markup(tiny):
    prompt = 'a <b>bold</b> & "quoted" <script>'
    ins = inspect_prompt(tiny, prompt)
    text = inspection_html(ins)
    page = parse(text)
    assert not any(tag in ("b", "script") for tag, _ in page.tags)
    tokens = [tiny.tokenizer.decode([i]) for i in tiny.tokenizer.encode(prompt)]
    assert page.body("tokens")[0] == [repr(t) for t in tokens]


def test_overview_must_be_of_the_same_prompt(tiny):
    ins = inspect_prompt(tiny, PROMPT)
    other = tiny.run_with_cache("Mike is slow. He waits", "blocks.*.attn.hook_pattern")
    with pytest.raises(UsageError, match="inspected prompt"):
        inspection_html(ins, overview=other)


def test_write_html_and_the_views_in_jupyter(tiny, trace, tmp_path):
    ins = inspect_prompt(tiny, PROMPT)
    path = write_html(ins, tmp_path / "out" / "report.html")
    assert path.read_text(encoding="utf-8") == inspection_html(ins)

    fragment = ins._repr_html_()
    page = parse(fragment)
    assert fragment.startswith('<div class="gpt2lab">') and "<html" not in fragment
    assert_self_contained(fragment, page)
    assert page.body("lens-top") == parse(inspection_html(ins)).body("lens-top")

    lens = logit_lens(tiny, PROMPT, k=2)
    page = parse(lens._repr_html_())
    assert page.body("lens-top") == [
        [f"{top[0]!r}{probs[0]:.2f}" for top, probs in zip(row, prob_row)]
        for row, prob_row in zip(lens.top_tokens, lens.top_probs.tolist())
    ]
    assert "lens-rank" not in page.tables

    text = trace._repr_html_()
    page = parse(text)
    assert_self_contained(text, page)
    steps = page.tables["steps"][1:]
    assert [row[0] for row in steps] == list(trace)
    assert [row[1] for row in steps] == [str(list(trace[name].shape)) for name in trace]
    full = tiny.run_with_cache(PROMPT)
    assert "hook_probs" in [row[0] for row in parse(full._repr_html_()).tables["steps"]]
    assert full._values["hook_probs"] is None  # showing the trace did not compute them


def test_cli_writes_the_report_and_still_prints(capsys, tmp_path, tiny):
    path = tmp_path / "report.html"
    code = main(["inspect", PROMPT, "--model", "tiny", "--html", str(path)])
    out, _ = capsys.readouterr()
    assert code == 0
    assert f"wrote {path}" in out and "logit lens" in out
    text = path.read_text(encoding="utf-8")
    page = parse(text)
    assert_self_contained(text, page)
    lens = logit_lens(tiny, PROMPT, k=5, points="post")
    first = [
        f"{row[0][0]!r}{probs[0][0]:.2f}" for row, probs in zip(lens.top_tokens, lens.top_probs)
    ]
    assert [row[0] for row in page.body("lens-top")] == first
    assert any(tag == "img" for tag, _ in page.tags)  # the overview of every head

    code = main(["inspect", PROMPT, "--model", "tiny", "--json", "--html", str(path)])
    out, err = capsys.readouterr()
    assert code == 0
    assert json.loads(out)["tokens"][0] == "Mike"  # stdout is the JSON alone
    assert f"wrote {path}" in err


def test_cli_report_names_the_model_dtype_quantization_and_settings(capsys, tmp_path, tiny):
    path = tmp_path / "report.html"
    argv = ["inspect", PROMPT, "--model", "tiny", "--dtype", "bfloat16", "--quantize", "int8"]
    argv += ["--head", "3", "--step", "blocks.0.hook_resid_mid", "--top", "3", "--top-p", "0.9"]
    assert main([*argv, "--seed", "11", "--html", str(path)]) == 0
    capsys.readouterr()
    page = parse(path.read_text(encoding="utf-8"))
    model, shown = about(page, "model"), about(page, "settings")
    assert model["model"] == "tiny" and model["layers"] == str(tiny.config.n_layer)
    assert model["weights"] == "bfloat16, int8 quantized"
    assert [shown[name] for name in ("layer", "head", "step", "top", "target")] == [
        "0",
        "3",
        "'blocks.0.hook_resid_mid'",
        "3",
        "none",
    ]
    assert [shown[name] for name in ("temperature", "top_k", "top_p", "seed")] == [
        "1.0",
        "none",
        "0.9",
        "11",
    ]
