"""Sparse autoencoders: training works and resumes exactly, SAE Lens's files mean what sae-lens
says they mean, features are browsed and steered as claimed, the CLI refuses bad input in a line.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import gpt2lab
from gpt2lab.cli import main
from gpt2lab.errors import CheckpointError, UsageError
from gpt2lab.sae import (
    SAE,
    SAEConfig,
    SAETrainConfig,
    activations_at,
    evaluate_sae,
    feature_report,
    load_sae,
    logit_effects,
    promoted_tokens,
    steer,
    train_sae,
)
from gpt2lab.train.data import TokenData, prepare

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "data" / "sae_lens"
STORIES = ROOT / "tests" / "data" / "tinystories"
STEP = "blocks.1.hook_resid_pre"
DOG_FEATURE = 89  # of the bundled tiny-sae: fires on " dog" (docs/sae.md)


# --- fixtures: a small random GPT-2 and a few thousand tokens of stories -----------------------
@pytest.fixture(scope="module")
def small_model() -> str:
    return "tiny"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    text = (STORIES / "first_100k.txt").read_text(encoding="utf-8")[:24_000]
    (folder / "stories.txt").write_text(text, encoding="utf-8")
    prepare([folder / "stories.txt"], folder / "tokens", val_fraction=0.3, progress=False)
    return folder / "tokens"


def config(small_model: str, data: Path, out: Path, **changes) -> SAETrainConfig:
    values = dict(
        data=str(data),
        model=str(small_model),
        step=STEP,
        out_dir=str(out),
        d_sae=64,
        k=4,
        context=16,
        batch_size=8,
        max_steps=40,
        eval_interval=40,
        eval_batches=2,
        checkpoint_interval=20,
        dead_after_tokens=1_000,
        lr=3e-3,
    )
    return SAETrainConfig(**(values | changes))


def log(run: Path) -> list[dict[str, str]]:
    with open(run / "loss.csv", newline="") as f:
        return list(csv.DictReader(f))


# --- training ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(small_model, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "sae"
    final, metrics = train_sae(config(small_model, data, out), progress=False)
    return out, final, metrics


def test_training_reduces_the_reconstruction_error(trained, small_model, data):
    out, final, metrics = trained
    rows = log(out)
    first = sum(float(r["mse"]) for r in rows[:5]) / 5
    last = sum(float(r["mse"]) for r in rows[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    # The SAE as saved explains much of the held-out activations; an untrained one does not.
    model = gpt2lab.load(small_model)
    tokens = TokenData.open(data).val
    trained_sae = load_sae(final)
    after = evaluate_sae(model, trained_sae, tokens, context=16, batch_size=8, max_batches=2)
    assert after == metrics
    untrained = SAE(trained_sae.cfg)
    untrained.init_weights(seed=0, mean=trained_sae.b_dec.detach())
    before = evaluate_sae(model, untrained, tokens, context=16, batch_size=8, max_batches=2)
    assert after.variance_explained > before.variance_explained + 0.3, (after, before)
    assert after.l0 == pytest.approx(4.0)  # TopK: exactly k per token
    assert after.spliced < after.zero_ablated and after.clean < after.zero_ablated
    assert 0 <= after.dead < 64


def test_decoder_rows_stay_unit_length(trained):
    sae = load_sae(trained[1])
    norms = sae.W_dec.norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones(64), atol=1e-5, rtol=0)


def test_resume_continues_exactly(small_model, data, tmp_path, trained):
    out = tmp_path / "sae"
    train_sae(config(small_model, data, out, max_steps=20), progress=False)
    with pytest.raises(UsageError, match="already holds an SAE run"):
        train_sae(config(small_model, data, out), progress=False)
    final, _ = train_sae(config(small_model, data, out), resume=True, progress=False)
    whole = load_sae(trained[1]).state_dict()
    resumed = load_sae(final).state_dict()
    for name, value in whole.items():
        assert torch.equal(value, resumed[name]), name
    # The training columns agree row by row (the first half measured itself at its last step).
    columns = ("step", "tokens", "mse", "l0", "dead")
    assert [[r[c] for c in columns] for r in log(out)] == [
        [r[c] for c in columns] for r in log(trained[0])
    ]


def test_relu_sae_trains_with_l1(small_model, data, tmp_path):
    cfg = config(small_model, data, tmp_path / "relu", activation="relu", max_steps=30)
    cfg.l1_coefficient = 0.05
    cfg.eval_interval = 30
    final, metrics = train_sae(cfg, progress=False)
    assert metrics is not None and metrics.variance_explained > 0.5
    assert metrics.l0 < 64  # the L1 penalty switches features off
    assert json.loads((final / "cfg.json").read_text())["architecture"] == "standard"


# --- SAE Lens's format ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["standard", "topk"])
def test_sae_lens_files_give_sae_lens_numbers(kind):
    """The fixtures were written and computed by sae-lens 6.54.12 (make_fixtures.py)."""
    sae = load_sae(FIXTURES / kind)
    assert sae.hook_name == "blocks.1.hook_resid_pre"
    assert sae.cfg.activation == ("relu" if kind == "standard" else "topk")
    expected = load_file(FIXTURES / "expected.safetensors")
    with torch.no_grad():
        f = sae.encode(expected["x"])
        torch.testing.assert_close(f, expected[f"{kind}_encode"], atol=1e-6, rtol=1e-6)
        x_hat = sae.decode(f)
    torch.testing.assert_close(x_hat, expected[f"{kind}_decode"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("activation", ["relu", "topk"])
def test_written_cfg_has_sae_lens_fields(tmp_path, activation):
    k = 5 if activation == "topk" else None
    sae = SAE(SAEConfig(8, 24, "blocks.0.hook_resid_post", activation, k, "tiny"))
    sae.init_weights(seed=1)
    sae.save(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    reference = json.loads(
        (FIXTURES / ("topk" if activation == "topk" else "standard") / "cfg.json").read_text()
    )
    assert set(cfg) == set(reference)
    assert cfg["metadata"]["hook_name"] == "blocks.0.hook_resid_post"
    assert set(load_file(tmp_path / "sae_weights.safetensors")) == {
        "W_enc",
        "b_enc",
        "W_dec",
        "b_dec",
    }
    again = load_sae(tmp_path)
    assert again.cfg == sae.cfg
    for name, value in sae.state_dict().items():
        assert torch.equal(value, again.state_dict()[name])


def test_pre_6_sae_lens_config_loads(tmp_path):
    """Community SAEs for GPT-2 small (e.g. gpt2-small-res-jb) name the step hook_point."""
    old = {
        "d_in": 8,
        "d_sae": 24,
        "hook_point": "blocks.8.hook_resid_pre",
        "activation_fn_str": "relu",
        "apply_b_dec_to_input": True,
        "normalize_activations": False,
        "model_name": "gpt2-small",
    }
    (tmp_path / "cfg.json").write_text(json.dumps(old))
    tensors = load_file(FIXTURES / "standard" / "sae_weights.safetensors")
    from safetensors.torch import save_file

    save_file({**tensors, "scaling_factor": torch.ones(24)}, tmp_path / "sae_weights.safetensors")
    sae = load_sae(tmp_path)
    assert (sae.hook_name, sae.cfg.activation, sae.cfg.model_name) == (
        "blocks.8.hook_resid_pre",
        "relu",
        "gpt2-small",
    )
    old["normalize_activations"] = "expected_average_only_in"
    (tmp_path / "cfg.json").write_text(json.dumps(old))
    with pytest.raises(CheckpointError, match="normalize_activations"):
        load_sae(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["relu", "topk"])
def test_round_trip_with_the_sae_lens_package(tmp_path, activation):
    """Written by gpt2lab, read by sae-lens, and the reverse: the same encode and decode."""
    sae_lens = pytest.importorskip("sae_lens")
    k = 6 if activation == "topk" else None
    ours = SAE(SAEConfig(16, 48, "blocks.2.hook_resid_pre", activation, k, "tiny"))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in ours.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    ours.save(tmp_path / "ours")
    theirs = sae_lens.SAE.load_from_disk(tmp_path / "ours")
    assert theirs.cfg.metadata.hook_name == "blocks.2.hook_resid_pre"
    x = torch.randn(10, 16, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), theirs.encode(x))
        torch.testing.assert_close(ours.decode(ours.encode(x)), theirs.decode(theirs.encode(x)))
        theirs.W_enc.mul_(1.5)  # the reverse: sae-lens writes, gpt2lab reads
    theirs.save_model(tmp_path / "theirs")
    back = load_sae(tmp_path / "theirs")
    with torch.no_grad():
        torch.testing.assert_close(back.encode(x), theirs.encode(x))
        torch.testing.assert_close(back(x), theirs(x))


# --- features and steering on tiny with its bundled SAE ---------------------------------------
@pytest.fixture(scope="module")
def tiny_and_sae():
    return gpt2lab.load("tiny"), load_sae("tiny-sae")


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    folder = tmp_path_factory.mktemp("held_out")
    prepare([STORIES / "held_out.txt"], folder, val_fraction=0.0, progress=False)
    return TokenData.open(folder).train[:2048]


def test_dashboard_shows_the_top_contexts(tiny_and_sae, held_out, tmp_path):
    model, sae = tiny_and_sae
    feature = DOG_FEATURE
    report = feature_report(model, sae, held_out, feature, n_contexts=3, context=128)
    # Recompute by brute force: the feature on every token, each window's peak.
    ids = torch.from_numpy(held_out.astype("int64")).view(-1, 128)
    with torch.no_grad():
        acts = sae.encode(activations_at(model, ids, sae.hook_name))[..., feature]
    peaks, where = acts.max(dim=1)
    best = torch.argsort(peaks, descending=True)[:3]
    assert [c.peak for c in report.contexts] == pytest.approx([float(peaks[w]) for w in best])
    tok = model.tokenizer
    assert [c.tokens[c.at] for c in report.contexts] == [
        tok.decode([int(ids[w, where[w]])]) for w in best
    ]
    assert report.max_activation == pytest.approx(float(acts.max()))
    path = report.write_html(tmp_path / "feature.html")
    page = path.read_text(encoding="utf-8")
    for c in report.contexts:
        shown = c.tokens[c.at].replace("\n", "↵").replace("&", "&amp;").replace("<", "&lt;")
        peak = re.escape(shown)
        assert re.search(f'class="peak"[^>]*>{peak}</span>', page)
    assert not re.search(r"(src|href)=\"?https?:", page)
    assert report._repr_html_().startswith('<div class="gpt2lab">')


def test_steering_moves_the_next_token_toward_the_feature(tiny_and_sae):
    model, sae = tiny_and_sae
    dog = model.tokenizer.encode(" dog")[0]
    prompt = "Once upon a time, there was a little girl named Lily. She saw a"
    plain = model.run_with_hooks(prompt)[0, -1].softmax(-1)[dog]
    for mode in ("add", "clamp"):
        edits = [steer(sae, DOG_FEATURE, 8.0, mode=mode)]
        steered = model.run_with_hooks(prompt, edits)[0, -1].softmax(-1)[dog]
        assert steered > 3 * plain, (mode, float(steered), float(plain))
    text = model.generate_text(prompt, 20, greedy=True, edits=[steer(sae, DOG_FEATURE, 8.0)])
    assert text != model.generate_text(prompt, 20, greedy=True)


def test_logit_effects_are_what_the_last_step_does(tiny_and_sae):
    """Adding a little of a direction to the last residual stream moves the logits as
    ((d - mean d) ⊙ γ) @ W_U says: ln_final centres the direction and applies its gain."""
    model, sae = tiny_and_sae
    last = SAE(SAEConfig(192, 768, "blocks.5.hook_resid_post", "topk", 16, "tiny"))
    last.load_state_dict({**sae.state_dict()})
    effects = logit_effects(model, last, DOG_FEATURE)
    prompt = "Once upon a time, there was a little girl named Lily. She saw a"
    plain = model.run_with_hooks(prompt)[0, -1]
    moved = model.run_with_hooks(prompt, [steer(last, DOG_FEATURE, 0.5)])[0, -1]
    change = moved - plain
    change, effects = change - change.mean(), effects - effects.mean()
    correlation = float((change * effects).sum() / (change.norm() * effects.norm()))
    assert correlation > 0.95, correlation
    promoted, suppressed = promoted_tokens(model, last, DOG_FEATURE, 5)
    assert [t.id for t in promoted] == torch.topk(
        logit_effects(model, last, DOG_FEATURE), 5
    ).indices.tolist()
    assert promoted[-1].effect > suppressed[0].effect


def test_clamp_to_zero_takes_the_feature_out(tiny_and_sae):
    """Clamping to 0 subtracts exactly the feature's part of the reconstruction, f_i · W_dec[i]."""
    model, sae = tiny_and_sae
    name, fn = steer(sae, DOG_FEATURE, 0.0, mode="clamp")
    ids = torch.tensor([model.tokenizer.encode("The little dog barked at the dog")])
    x = activations_at(model, ids, name)
    with torch.no_grad():
        f = sae.encode(x)[..., DOG_FEATURE : DOG_FEATURE + 1]
        expected = x - f * sae.W_dec[DOG_FEATURE]
        assert float(f.max()) > 1.0  # it fires here, so the test tests something
        torch.testing.assert_close(fn(x, name), expected)


# --- the command ------------------------------------------------------------------------------
def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sae", "train", "--data", "no/such/folder"], "is not a prepared data folder"),
        (["sae", "train", "--data", "x", "--k", "0"], "k must be >= 1"),
        (
            ["sae", "train", "--data", "x", "--activation", "gelu"],
            "activation must be topk or relu",
        ),
        (["sae", "features", "--sae", "no/such", "--prompt", "Hi"], "no SAE there"),
        (["sae", "train", "--data", "x", "--step", "blocks.0.attn.hook_q"], "one vector per token"),
        (["sae", "train", "--data", "x", "--step", "blocks.0.hook_resid"], "unknown step"),
        (
            ["sae", "steer", "100000", "--prompt", "Hi", "--strength", "2"],
            "feature must be an integer in",
        ),
        (["sae", "features", "--prompt", ""], "empty"),
    ],
)
def test_cli_errors_are_one_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code != 0 and out == ""
    assert err.startswith("gpt2lab: error:") and err.count("\n") == 1, err
    assert message in err


def test_cli_refuses_a_per_head_step(capsys, small_model, data, tmp_path):
    code, _, err = run(
        capsys, "sae", "train", "--model", str(small_model), "--data", str(data),
        "--step", "blocks.0.attn.hook_pattern", "--out-dir", str(tmp_path / "r"),
    )  # fmt: skip
    assert code != 0 and "one vector per token" in err and err.count("\n") == 1


def test_cli_strength_must_be_finite(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sae", "steer", "3", "--prompt", "Hi", "--strength", "nan"])
    assert e.value.code == 2
    assert "must be a finite number" in capsys.readouterr().err


def test_cli_feature_and_steer(capsys, held_out, tmp_path):
    data = tmp_path / "data"
    prepare([STORIES / "held_out.txt"], data, val_fraction=0.0, progress=False)
    html = tmp_path / "f.html"
    code, out, _ = run(
        capsys, "sae", "feature", str(DOG_FEATURE), "--data", str(data), "--split", "train",
        "--max-tokens", "2048", "--contexts", "2", "--html", str(html),
    )  # fmt: skip
    assert code == 0 and "promotes:" in out and html.is_file()
    code, out, _ = run(
        capsys, "sae", "steer", str(DOG_FEATURE), "--prompt", "Once upon a time",
        "--strength", "8", "--max-new-tokens", "5",
    )  # fmt: skip
    assert code == 0 and out.count("---") == 2
