"""`gpt2lab steps` and `gpt2lab inspect`: the CLI shows the library's own values, and bad
arguments end in one line with exit code 2."""

from __future__ import annotations

import json

import pytest
import torch

from gpt2lab.cli import main
from gpt2lab.generate import SamplingSettings, explain_sampling
from gpt2lab.hooks import STEPS, layer_of, step_names
from gpt2lab.lens import lens_points, logit_lens

PROMPT = "Mike is quick. He moves"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def as_json(value: object) -> object:
    """What a value becomes after a trip through JSON (tuples -> lists, NaN -> None...)."""
    return json.loads(json.dumps(value))


# --- steps ------------------------------------------------------------------------------------
def test_steps_lists_the_templates_without_loading_a_model(capsys, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("`gpt2lab steps` without --model must not load one")

    monkeypatch.setattr("gpt2lab.weights.load", no_model)
    code, out, _ = run(capsys, "steps", "--json")
    assert code == 0
    assert json.loads(out) == [vars(step) for step in STEPS]
    code, out, _ = run(capsys, "steps")
    assert code == 0
    for text in ("blocks.{L}.attn.hook_pattern", "[B, H, T, S]", "softmax(masked scores)"):
        assert text in out


def test_steps_of_one_block_have_the_models_sizes(capsys, monkeypatch, tiny):
    monkeypatch.setenv("COLUMNS", "200")
    c = tiny.config
    code, out, _ = run(capsys, "steps", "--model", "tiny", "--layer", "0", "--json")
    assert code == 0
    rows = {row["name"]: row for row in json.loads(out)}
    assert list(rows) == [n for n in step_names(c) if layer_of(n) in (None, 0)]
    assert rows["blocks.0.attn.hook_pattern"]["shape"] == f"[B, {c.n_head}, T, S]"
    assert rows["blocks.0.attn.hook_q"]["shape"] == f"[B, T, {c.n_head}, {c.head_dim}]"
    assert rows["blocks.0.ln1.hook_scale"]["shape"] == "[B, T, 1]"
    assert rows["blocks.0.mlp.hook_pre"]["shape"] == f"[B, T, {4 * c.n_embd}]"
    assert rows["hook_logits"]["shape"] == f"[B, T, {c.vocab_size}]"
    code, out, _ = run(capsys, "steps", "--model", "tiny", "--layer", "0")
    assert code == 0
    assert "blocks.0.attn.hook_pattern" in out and f"[B, {c.n_head}, T, S]" in out
    assert "{L}" not in out


# --- inspect ----------------------------------------------------------------------------------
def test_inspect_json_is_the_librarys_result(capsys, tiny):
    layer, head, top = tiny.config.n_layer - 1, tiny.config.n_head - 1, 4
    code, out, _ = run(
        capsys,
        *("inspect", PROMPT, "--model", "tiny", "--json"),
        *("--layer", str(layer), "--head", str(head), "--top", str(top)),
    )
    assert code == 0
    got = json.loads(out)
    ids = tiny.tokenizer.encode(PROMPT)
    assert got["ids"] == ids
    assert got["tokens"] == [tiny.tokenizer.decode([i]) for i in ids]
    with torch.no_grad():
        probs = torch.softmax(tiny(torch.tensor([ids]))[0, -1], dim=-1)
    expected = torch.topk(probs, top)
    assert got["next"]["ids"] == expected.indices.tolist()
    assert got["next"]["tokens"] == [tiny.tokenizer.decode([i]) for i in expected.indices]
    assert got["next"]["probs"] == pytest.approx(expected.values.tolist(), abs=1e-6)

    trace = tiny.run_with_cache(PROMPT)
    pattern = torch.tensor(got["attention"]["pattern"])
    assert (got["attention"]["layer"], got["attention"]["head"]) == (layer, head)
    assert torch.equal(pattern, trace[f"blocks.{layer}.attn.hook_pattern"][0, head])
    assert torch.allclose(pattern.sum(dim=-1), torch.ones(len(ids)))
    assert got["lens"] == as_json(logit_lens(tiny, trace, k=top, points="post").to_dict())
    assert got["lens"]["points"] == lens_points(tiny.config.n_layer, "post")
    assert got["step"] is None and got["sampling"] is None


def test_inspect_json_step_target_and_sampling(capsys, tiny):
    name = "blocks.1.hook_resid_mid"
    code, out, _ = run(
        capsys,
        *("inspect", PROMPT, "--model", "tiny", "--json", "--step", name, "--target", " fast"),
        *("--temperature", "0.8", "--top-k", "5", "--seed", "1", "--top", "6"),
    )
    assert code == 0
    got = json.loads(out)
    trace = tiny.run_with_cache(PROMPT)
    assert got["step"]["name"] == name
    assert got["step"]["shape"] == list(trace[name].shape)
    assert torch.equal(torch.tensor(got["step"]["values"]), trace[name])
    lens = logit_lens(tiny, trace, k=6, target=" fast", points="post")
    assert got["lens"] == as_json(lens.to_dict())
    assert got["lens"]["target_rank"] is not None
    settings = SamplingSettings(temperature=0.8, top_k=5, seed=1)
    ex = explain_sampling(trace.logits[0, -1], settings, top=6, tokenizer=tiny.tokenizer)
    assert got["sampling"] == as_json(ex.to_dict()) | {
        "chosen_token": tiny.tokenizer.decode([ex.chosen])
    }


def test_inspect_tables(capsys, monkeypatch, tiny):
    monkeypatch.setenv("COLUMNS", "250")  # wide enough that rich wraps no cell
    c = tiny.config
    code, out, _ = run(
        capsys,
        *("inspect", PROMPT, "--model", "tiny", "--step", "blocks.0.attn.hook_q"),
        *("--target", " fast", "--sampling", "--top-p", "0.9"),
    )
    assert code == 0
    for token in ("'Mike'", "' is'", "' quick'", "' moves'"):
        assert token in out
    for header in ("token", "logit lens", "b0.resid_pre", f"b{c.n_layer - 1}.resid_post"):
        assert header in out
    assert "rank of the target token" in out
    assert "attention pattern of head 0 in block 0" in out
    assert f"shape [1, 6, {c.n_head}, {c.head_dim}], head 0" in out
    assert "q = ln1(x) @ W_Q + b_Q" in out and "…" in out
    for header in ("logit/T", "p before", "top-k", "top-p", "final p", "effective k", "chosen"):
        assert header in out


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["inspect", PROMPT, "--layer", "99"], "layer must be"),
        (["inspect", PROMPT, "--head", "99"], "head must be"),
        (["inspect", PROMPT, "--top", "60000"], "top must be"),
        (["inspect", PROMPT, "--step", "blocks.0.attn.hook_patern"], "did you mean"),
        (["inspect", PROMPT, "--step", "blocks.*.hook_z"], "pattern"),
        (["inspect", PROMPT, "--target", " quickly moving"], "not one"),
        (["inspect", PROMPT, "--temperature", "-1"], "temperature"),
        (["inspect", ""], "empty"),
        (["inspect", " the" * 2000], "context"),
        (["steps", "--layer", "99"], "layer must be"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(capsys, argv, phrase):
    if argv[0] == "inspect" or "99" in argv:
        argv = [*argv, "--model", "tiny"]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("gpt2lab: error:") and phrase in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["inspect", PROMPT, "--layer", "-1"], "argument --layer: must be >= 0, got -1"),
        (["inspect", PROMPT, "--head", "-2"], "argument --head: must be >= 0, got -2"),
        (["inspect", PROMPT, "--top", "0"], "argument --top: must be >= 1, got 0"),
        (["steps", "--layer", "-1"], "argument --layer: must be >= 0, got -1"),
    ],
)
def test_negative_indices_are_refused_by_the_parser(capsys, argv, message):
    """Before any model is loaded: these need no model to be known wrong."""
    with pytest.raises(SystemExit) as info:
        main([*argv, "--model", "tiny"])
    assert info.value.code == 2
    assert capsys.readouterr().err.endswith(f"gpt2lab {argv[0]}: error: {message}\n")


def test_json_is_strict_for_masked_scores(capsys):
    argv = ["inspect", PROMPT, "--model", "tiny", "--step", "blocks.0.attn.hook_attn_scores"]
    code, out, _ = run(capsys, *argv, "--json")
    assert code == 0
    out = json.loads(out, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    scores = out["step"]["values"][0][0]  # batch 0, head 0: [T, T]
    assert scores[0][1] is None and isinstance(scores[1][0], float)


# --- pictures ---------------------------------------------------------------------------------
def test_inspect_saves_the_pictures_in_the_chosen_style(capsys, tmp_path, tiny):
    from PIL import Image

    from gpt2lab.inspection import inspect_prompt
    from gpt2lab.viz import plots

    folder = tmp_path / "slides"
    argv = ["inspect", PROMPT, "--model", "tiny", "--layer", "2", "--head", "1", "--json"]
    code, out, err = run(
        capsys, *argv, "--target", "next", "--plots", str(folder), "--style", "slides"
    )
    assert code == 0 and json.loads(out)["tokens"][0] == "Mike"  # stdout is still the JSON alone
    names = ["next_tokens", "logit_lens", "rank_lines", "attention", "attention_overview"]
    assert err == f"wrote {', '.join(f'{name}.png' for name in names)} in {folder}\n"

    for name in names:
        with Image.open(folder / f"{name}.png") as image:
            assert image.info["dpi"] == pytest.approx((200, 200), abs=0.01)
    ins = inspect_prompt(tiny, PROMPT, target="next")
    with plots.style("slides"):  # two of them drawn here: the same bytes, so slides it was
        bars = plots.save(plots.next_token_bars(ins), tmp_path / "bars.png")
        ranks = plots.save(plots.rank_lines(ins.lens), tmp_path / "ranks.png")
    assert (folder / "next_tokens.png").read_bytes() == bars.read_bytes()
    assert (folder / "rank_lines.png").read_bytes() == ranks.read_bytes()
