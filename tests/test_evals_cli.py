"""`gpt2lab eval`: finding and downloading data, the paper report, and the command line, on small
files the tests write in the published formats (no network)."""

from __future__ import annotations

import argparse
import json
import re
import zipfile

import pytest
from conftest import EVAL_SAMPLES
from test_evals import CANDIDATES, WIKI, _cbt_file

import gpt2lab
from gpt2lab.cli.evals import add_eval_parser
from gpt2lab.errors import UsageError
from gpt2lab.evals import TABLE3, EvalDataError, Settings, run_paper, run_task
from gpt2lab.evals import data as eval_data
from gpt2lab.evals.paper import paper_size


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    """Downloads go to a fresh cache, never to the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "gpt2lab" / "evals"


@pytest.fixture(scope="module")
def model(small_hf):
    return gpt2lab.load(small_hf[1])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Every Table 3 benchmark but One Billion Word, as tiny files in gpt2lab's layout."""
    root = tmp_path_factory.mktemp("evaldata")
    files = {
        "lambada/lambada_test.jsonl": "".join(
            json.dumps({"text": t}) + "\n" for t in ["The fox ran to the river", "He said yes"]
        ),
        "wikitext-2/wiki.test.tokens": "\n".join(WIKI) + "\n",
        "wikitext-103/wiki.test.tokens": "\n".join(WIKI[:3]) + "\n",
        "ptb/ptb.test.txt": " no it was n't black monday \n but it was n't a good day \n",
        "enwik8/enwik8": "<page><title>Anarchism</title><text>Anarchism is a ...</text></page>\n",
        "text8/text8": " anarchism originated as a term of abuse first used against early",
    }
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True)
        (root / path).write_text(text)
    (root / "cbt").mkdir()
    for kind in ("CN", "NE"):
        _cbt_file(root / "cbt" / f"cbtest_{kind}_valid_2000ex.txt", [CANDIDATES[0]])
    return root


def test_paper_report(model, data_dir, tmp_path):
    settings = Settings(data_dir=str(data_dir), download=False, context=32, stride=16)
    report = run_paper(model, "small", settings)
    assert set(report.skipped) == {"1bw"} and "downloads are off" in report.skipped["1bw"]
    assert (report.size, report.exact_size) == ("117M", False)  # 64 wide: closest is 117M
    md, js = report.write(tmp_path / "report")
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["report.json", "report.md"]
    saved = json.loads(js.read_text())
    rows = {row["column"]: row for row in saved["table3"]}
    assert rows["WikiText2 (PPL)"]["paper"] == 29.41 and rows["1BW (PPL)"]["gpt2lab"] is None
    wiki = next(r for r in report.results if r.task == "wikitext2" and r.detokenized)
    assert rows["WikiText2 (PPL)"]["gpt2lab"] == pytest.approx(wiki.ppl)
    stop = next(r for r in report.results if r.task == "lambada" and r.stop_filter)
    assert rows["LAMBADA (ACC)"]["gpt2lab"] == pytest.approx(100 * stop.accuracy)
    assert rows["enwik8 (BPB)"]["settings"].startswith("raw, context 32, stride 16")
    text = md.read_text()
    assert "| PTB (PPL) |" in text and "| 65.85 |" in text and "## Not run" in text
    assert len(report.results) == 12  # LAMBADA x2, CBT x2, 3 corpora x (detok, raw), 2 bits


def test_paper_sizes_match_table3():
    for name, size in [("gpt2", "117M"), ("gpt2-medium", "345M"), ("gpt2-xl", "1542M")]:
        assert paper_size(gpt2lab.preset(name)) == (size, True)
    assert TABLE3["117M"]["lambada_acc"] == 45.99 and TABLE3["1542M"]["lambada_acc"] == 63.24


def test_download_from_an_archive(model, empty_cache, tmp_path, monkeypatch):
    archive = tmp_path / "ptb.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data/ptb.test.txt", " the cat sat \n")
    source = eval_data.Source("ptb/ptb.test.txt", archive.as_uri(), "data/ptb.test.txt")
    monkeypatch.setitem(eval_data.SOURCES, "ptb/test", source)
    found = eval_data.find("ptb/test")
    assert found == empty_cache / "ptb" / "ptb.test.txt"
    assert found.read_text() == " the cat sat \n"
    assert (empty_cache / "downloads" / "ptb.zip").is_file()
    [result] = run_task(model, "ptb", Settings(detok="off", context=8, stride=4))
    assert result.units == 4  # "the cat sat" + end-of-line, read from the cache


def test_offline_download_says_what_to_do(monkeypatch, tmp_path):
    source = eval_data.Source("text8/text8", "http://127.0.0.1:9/text8.zip", "text8")
    monkeypatch.setitem(eval_data.SOURCES, "text8", source)
    with pytest.raises(EvalDataError, match=r"cannot download .*text8.zip.*--data"):
        eval_data.find("text8")
    with pytest.raises(EvalDataError, match="downloads are off"):
        eval_data.find("text8", download=False)


def test_data_lookup_order(tmp_path):
    mine = tmp_path / "mine" / "ptb" / "ptb.test.txt"
    mine.parent.mkdir(parents=True)
    mine.write_text(" a \n")
    assert eval_data.find("ptb/test", data_dir=tmp_path / "mine") == mine
    assert eval_data.find("ptb/test", mine) == mine
    cached = eval_data.cache_dir() / "ptb" / "ptb.test.txt"  # the empty_cache fixture's
    cached.parent.mkdir(parents=True)
    cached.write_text(" b \n")
    assert eval_data.find("ptb/test", download=False) == cached
    assert eval_data.find("ptb/test", data_dir=tmp_path / "mine") == mine  # before the cache
    with pytest.raises(EvalDataError, match="is not a file"):
        eval_data.find("ptb/test", tmp_path / "nope.txt")


@pytest.fixture
def offline(monkeypatch):
    """Every public source unreachable, as on a machine with no network."""
    for key, source in eval_data.SOURCES.items():
        dead = eval_data.Source(source.path, "http://127.0.0.1:9/x.zip", source.member)
        monkeypatch.setitem(eval_data.SOURCES, key, dead)


@pytest.mark.parametrize(
    ("key", "download", "file", "first"),
    [
        ("lambada/test", True, "lambada_test_first300.jsonl", '{"text": "In my palm is a clear'),
        ("wikitext-2/test", False, "wikitext2_test_first3.tokens", " \n = Robert <unk> = \n"),
    ],
)
def test_offline_with_no_file_the_bundled_sample_is_used(offline, key, download, file, first):
    found = eval_data.find(key, download=download)
    assert found == EVAL_SAMPLES / file
    assert found.read_text().startswith(first)  # the published file's first passage / lines
    note = eval_data.sample_note(found)
    assert note.startswith("using the bundled sample: the first ") and "--data FILE" in note


def test_bundled_samples_hold_what_their_notes_say():
    passages = eval_data.read_lambada(EVAL_SAMPLES / "lambada_test_first300.jsonl")
    assert len(passages) == 300 and "300 of 5,153" in eval_data.SAMPLES["lambada/test"].what
    lines = eval_data.read_lines(EVAL_SAMPLES / "wikitext2_test_first3.tokens")
    headings = [line for line in lines if re.fullmatch(r" = [^=].* = ", line)]
    assert len(lines) == 177 and len(headings) == 3
    assert "3 WikiText-2 test articles (177 of" in eval_data.SAMPLES["wikitext-2/test"].what
    assert eval_data.sample_note(EVAL_SAMPLES.parent / "gpt2-124M-sha256.tsv") is None


def test_offline_without_a_sample_is_still_an_error(offline):
    with pytest.raises(EvalDataError, match=r"cannot download .*--data"):
        eval_data.find("ptb/test")


def test_cli_says_it_used_the_sample(offline, small_hf, tmp_path, capsys):
    out = tmp_path / "lambada.json"
    run_cli("lambada", "--model", str(small_hf[1]), "--limit", "2", "--json", str(out))
    err = capsys.readouterr().err
    assert "lambada: using the bundled sample: the first 300 of 5,153 LAMBADA" in err
    saved = json.loads(out.read_text())
    assert saved["data"] == str(EVAL_SAMPLES / "lambada_test_first300.jsonl")
    assert saved["sample"] in err and saved["results"][0]["n"] == 2


def test_paper_report_names_the_samples(offline, model, tmp_path):
    settings = Settings(download=False, limit=1, context=32, stride=16)
    report = run_paper(model, "small", settings)
    assert set(report.samples) == {"lambada", "wikitext2"}
    assert "wikitext103" in report.skipped and "lambada" not in report.skipped
    md = report.to_markdown()
    assert "**Sample data** (lambada, wikitext2): not comparable." in md
    assert "## Run on a bundled sample" in md and "300 of 5,153" in md


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("lambada.jsonl", '{"txt": "x"}\n', 'expected {"text"'),
        ("cbt.txt", "1 A .\n21 The XXXXX ran .\tdog\t\tcat|fox\n", "answer among the candidates"),
        ("cbt.txt", "1 A .\n", "no CBT question"),
    ],
)
def test_malformed_files(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    reader = eval_data.read_lambada if name.endswith("jsonl") else eval_data.read_cbt
    with pytest.raises(EvalDataError, match=message):
        reader(path)


# --- command line -----------------------------------------------------------------------------
def run_cli(*argv: str) -> None:
    parser = argparse.ArgumentParser(prog="gpt2lab")
    add_eval_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", *argv])
    args.func(args)


def test_cli_task_table_and_json(small_hf, data_dir, tmp_path, capsys):
    out = tmp_path / "ptb.json"
    data = str(data_dir / "ptb" / "ptb.test.txt")
    run_cli(
        "ptb", "--model", str(small_hf[1]), "--data", data, "--context", "16", "--json", str(out)
    )
    shown = capsys.readouterr().out
    assert "ppl per word" in shown and "de-tokenized" in shown and "raw" in shown
    saved = json.loads(out.read_text())
    assert [r["detokenized"] for r in saved["results"]] == [True, False]
    assert saved["results"][0]["units"] == 15  # 2 lines: 6 + 7 words, 2 ends of line


def test_cli_lambada_switches(small_hf, data_dir, tmp_path):
    out = tmp_path / "lambada.json"
    args = ["--model", str(small_hf[1]), "--data-dir", str(data_dir), "--json", str(out)]
    run_cli("lambada", *args, "--last-token", "--stop-filter", "--limit", "1")
    [result] = json.loads(out.read_text())["results"]
    assert (result["n"], result["last_token"], result["stop_filter"]) == (1, True, True)


def test_cli_paper_writes_the_report(small_hf, data_dir, tmp_path, capsys):
    out = tmp_path / "report"
    args = ["--model", str(small_hf[1]), "--data-dir", str(data_dir), "--no-download"]
    run_cli("paper", *args, "--limit", "1", "--out", str(out))
    assert "wrote" in capsys.readouterr().out
    assert "Partial run" in (out / "report.md").read_text()


@pytest.mark.parametrize("argv", [["ptb", "--stride", "0"], ["squad"], ["ptb", "--split", "x"]])
def test_cli_rejects_bad_arguments(argv):
    with pytest.raises(SystemExit) as e:
        run_cli(*argv)
    assert e.value.code == 2


def test_cli_checks_the_json_folder_before_running(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        run_cli("ptb", "--json", str(tmp_path / "no" / "such.json"))


def test_cli_missing_data_is_a_clear_error(small_hf, tmp_path):
    with pytest.raises(EvalDataError, match="downloads are off") as e:
        run_cli("1bw", "--model", str(small_hf[1]), "--data-dir", str(tmp_path), "--no-download")
    assert e.value.exit_code == 1
