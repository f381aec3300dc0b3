"""Text -> tokens -> ids: GPT-2's byte-level BPE, written out so it can be read and traced.

GPT-2 never sees characters. It sees bytes (so any string can be encoded, no <unk>), and a
vocabulary of 50,257 pieces built from them:

1. ``bytes_to_unicode``: each of the 256 byte values gets a printable stand-in character
   (space -> "Ġ", newline -> "Ċ"), so merges and vocab files can be plain text.
2. ``PRETOKENIZE_PATTERN``: a regex splits the text into words (letters, digits, punctuation,
   whitespace, with a leading space glued on) so merges never cross a word boundary.
3. ``bpe``: each word starts as single bytes; the adjacent pair with the lowest merge rank in
   ``vocab.bpe`` is merged, again and again, until no pair is in the merge list.
4. Each resulting piece is looked up in ``encoder.json`` to get its id.

``Tokenizer.trace`` records all four steps for every word (the merges that ``encode`` runs,
from the same loop), so the path from text to ids can be read off one word at a time.

``<|endoftext|>`` (id 50256) separates documents. When the ``tiktoken`` package is installed
it is used as a fast backend for the same vocabulary; this module stays the reference and the
tests check that both give the same ids.
"""

from __future__ import annotations

import codecs
import json
import operator
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Literal

import regex

from .errors import OutputError, TokenizerError
from .files import reason, write_files

ENDOFTEXT = "<|endoftext|>"

# The regex from OpenAI's encoder.py: contractions, letters, digits, other symbols, each with
# an optional leading space; runs of whitespace keep their last space for the next word.
PRETOKENIZE_PATTERN = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)
_PRETOKENIZE = regex.compile(PRETOKENIZE_PATTERN)

BUNDLED_DIR = Path(__file__).parent / "data" / "tokenizer"
# (vocabulary, merges) file names: OpenAI's release and Hugging Face's copy of the same files.
FILE_PAIRS = (("encoder.json", "vocab.bpe"), ("vocab.json", "merges.txt"))

Backend = Literal["auto", "python", "tiktoken"]
_NEVER = float("inf")  # rank of a pair that is not in the merge list


@cache
def bytes_to_unicode() -> dict[int, str]:
    """Map every byte 0..255 to a printable unicode character.

    Printable Latin-1 bytes map to themselves; the other 68 (control characters, space,
    ...) are shifted to 256+n so that no vocabulary entry contains whitespace or control codes.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shifted)
            shifted += 1
    return mapping


@cache
def unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


def merge_pair(parts: list[str], pair: tuple[str, str]) -> list[str]:
    """Join each adjacent occurrence of ``pair``, left to right: (a, a, a), (a, a) -> (aa, a)."""
    merged: list[str] = []
    i = 0
    while i < len(parts):
        if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
            merged.append(parts[i] + parts[i + 1])
            i += 2
        else:
            merged.append(parts[i])
            i += 1
    return merged


def pretokenize(text: str) -> list[str]:
    """Split text into the words BPE works on: "Mike is quick." -> ["Mike", " is", " quick", "."]"""
    return _PRETOKENIZE.findall(text)


def _without_lone_surrogates(text: str) -> str:
    """Python strings may hold lone UTF-16 surrogates, which have no UTF-8 form. Like tiktoken,
    re-read the text as UTF-16: paired surrogates become their character, lone ones U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


@dataclass(frozen=True)
class MergeStep:
    """One BPE merge: ``pair`` joined everywhere in the word, ``rank`` its line in the merge
    list (0 = learned first = merged first), ``parts`` the word's pieces after the merge."""

    pair: tuple[str, str]
    rank: int
    parts: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"pair": list(self.pair), "rank": self.rank, "parts": list(self.parts)}


@dataclass(frozen=True)
class WordTrace:
    """How one pre-tokenized word became ids: " Shawshank" -> "ĠShawshank" -> single
    characters ``start`` -> ``merges`` in order -> ``pieces`` -> ``ids``.

    A special token such as ``<|endoftext|>`` is one entry with ``special=True``, no merges
    and a single piece.
    """

    word: str
    symbols: str
    start: tuple[str, ...]
    merges: tuple[MergeStep, ...]
    pieces: tuple[str, ...]
    ids: tuple[int, ...]
    special: bool = False

    def to_dict(self) -> dict:
        return {
            "word": self.word,
            "symbols": self.symbols,
            "start": list(self.start),
            "merges": [m.to_dict() for m in self.merges],
            "pieces": list(self.pieces),
            "ids": list(self.ids),
            "special": self.special,
        }


class Tokenizer:
    """GPT-2's byte-level BPE tokenizer.

    >>> tok = get_tokenizer()
    >>> tok.encode("Hello, world!")
    [15496, 11, 995, 0]
    >>> tok.decode([15496, 11, 995, 0])
    'Hello, world!'
    """

    def __init__(
        self,
        encoder: dict[str, int],
        merges: list[tuple[str, str]],
        *,
        backend: Backend = "auto",
    ) -> None:
        self.encoder = encoder  # token string (byte stand-ins) -> id
        self.decoder = {i: s for s, i in encoder.items()}
        if len(self.decoder) != len(encoder):
            raise TokenizerError("vocabulary maps two tokens to the same id")
        self.merge_ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.special_tokens = {s: encoder[s] for s in (ENDOFTEXT,) if s in encoder}
        # A vocabulary may lack some single bytes (a character-level one holds only the
        # characters of its text); encoding text with a byte it lacks is then an error.
        self._byte_encoder = bytes_to_unicode()
        self._token_bytes = [b""] * (max(self.decoder) + 1)
        decode_map = unicode_to_bytes()
        for s, i in encoder.items():
            if s in self.special_tokens:
                self._token_bytes[i] = s.encode()
            else:
                try:
                    self._token_bytes[i] = bytes(decode_map[c] for c in s)
                except KeyError:
                    raise TokenizerError(f"vocabulary entry {s!r} is not byte-level BPE") from None
        self._bpe_cache = lru_cache(maxsize=100_000)(self._bpe_uncached)
        self._fast = self._make_tiktoken() if backend != "python" else None
        if backend == "tiktoken" and self._fast is None:
            raise TokenizerError(
                "backend='tiktoken' needs the tiktoken package (pip install tiktoken) and a "
                "vocabulary whose ids follow merge order"
            )

    # --- loading ------------------------------------------------------------------------------
    @classmethod
    def from_files(
        cls, vocab_path: str | Path, merges_path: str | Path, *, backend: Backend = "auto"
    ) -> Tokenizer:
        """Load OpenAI's encoder.json + vocab.bpe or Hugging Face's vocab.json + merges.txt."""
        try:
            encoder = json.loads(Path(vocab_path).read_text(encoding="utf-8"))
            lines = Path(merges_path).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError as e:
            raise TokenizerError(f"tokenizer file not found: {e.filename}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise TokenizerError(
                f"cannot read tokenizer files {vocab_path}, {merges_path}: {e}"
            ) from None
        if not isinstance(encoder, dict) or not all(isinstance(i, int) for i in encoder.values()):
            raise TokenizerError(f"{vocab_path} is not a JSON object of token -> id")
        merges = []
        for n, line in enumerate(lines, 1):
            if not line or line.startswith("#version"):
                continue
            parts = line.split(" ")
            if len(parts) != 2:
                raise TokenizerError(f"{merges_path}:{n}: expected two tokens, got {line!r}")
            merges.append((parts[0], parts[1]))
        return cls(encoder, merges, backend=backend)

    @classmethod
    def from_folder(cls, folder: str | Path, *, backend: Backend = "auto") -> Tokenizer:
        """Load whichever pair of tokenizer files the folder holds."""
        folder = Path(folder)
        for vocab, merges in FILE_PAIRS:
            if (folder / vocab).is_file() and (folder / merges).is_file():
                return cls.from_files(folder / vocab, folder / merges, backend=backend)
        raise TokenizerError(
            f"{folder} has no tokenizer files: expected encoder.json + vocab.bpe "
            f"or vocab.json + merges.txt"
        )

    def save(self, folder: str | Path, file_names: tuple[str, str] = FILE_PAIRS[1]) -> None:
        """Write the vocabulary and merges; Hugging Face's file names unless told otherwise
        (``FILE_PAIRS[0]`` = OpenAI's ``encoder.json`` + ``vocab.bpe``). Same content either way.
        """
        folder = Path(folder)
        vocab_name, merges_name = file_names
        merges = sorted(self.merge_ranks, key=self.merge_ranks.__getitem__)
        texts = {
            vocab_name: json.dumps(self.encoder, ensure_ascii=False),
            merges_name: "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
        }
        what = f"the tokenizer into {folder}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot write {what}: {reason(e)}") from None
        # Both files or neither: a vocabulary never sits beside the merges of another tokenizer.
        write_files({folder / name: text for name, text in texts.items()}, what=what)

    # --- the algorithm ------------------------------------------------------------------------
    def bpe(self, word: str) -> list[str]:
        """Split one pre-tokenized word (already in byte stand-ins) into vocabulary pieces."""
        return list(self._bpe_cache(word))

    def _merge_steps(self, word: str) -> Iterator[tuple[tuple[str, str], int, list[str]]]:
        """Yield (pair, rank, parts after) for each merge BPE makes in ``word``, in order."""
        parts = list(word)
        while len(parts) > 1:
            # Merge the adjacent pair that was learned earliest (lowest rank), everywhere it occurs.
            best = min(pairwise(parts), key=lambda p: self.merge_ranks.get(p, _NEVER))
            rank = self.merge_ranks.get(best)
            if rank is None:
                return
            parts = merge_pair(parts, best)
            yield best, rank, parts

    def _bpe_uncached(self, word: str) -> tuple[str, ...]:
        parts = list(word)
        for _, _, after in self._merge_steps(word):
            parts = after
        return tuple(parts)

    def word_to_unicode(self, word: str) -> str:
        """A pre-tokenized word as byte stand-ins: " Shaw" -> "ĠShaw"."""
        return "".join(self._byte_encoder[b] for b in word.encode("utf-8"))

    def _encode_ordinary_python(self, text: str) -> list[int]:
        ids: list[int] = []
        for word in pretokenize(_without_lone_surrogates(text)):
            for piece in self._bpe_cache(self.word_to_unicode(word)):
                try:
                    ids.append(self.encoder[piece])
                except KeyError:
                    raise TokenizerError(
                        f"{word!r} has a character this vocabulary of {len(self.encoder)} "
                        "tokens lacks"
                    ) from None
        return ids

    # --- public API -----------------------------------------------------------------------------
    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text, treating any special-token text as plain characters."""
        if self._fast is not None:
            return self._fast.encode_ordinary(text)
        return self._encode_ordinary_python(text)

    def encode(
        self,
        text: str,
        *,
        allowed_special: Collection[str] | Literal["all"] = frozenset(),
        disallowed_special: Collection[str] | Literal["all"] = "all",
    ) -> list[int]:
        """Encode text to ids.

        Like tiktoken, special-token text such as ``<|endoftext|>`` raises an error unless it is
        in ``allowed_special`` (then it becomes its id) or removed from ``disallowed_special``
        (then it is encoded as ordinary characters). This stops a prompt from smuggling in a
        document boundary by accident.
        """
        ids: list[int] = []
        for chunk, special in self._split_special(text, allowed_special, disallowed_special):
            if special:
                ids.append(self.special_tokens[chunk])
            else:
                ids.extend(self.encode_ordinary(chunk))
        return ids

    def trace(
        self,
        text: str,
        *,
        allowed_special: Collection[str] | Literal["all"] = frozenset(),
        disallowed_special: Collection[str] | Literal["all"] = "all",
    ) -> list[WordTrace]:
        """``encode`` step by step: one ``WordTrace`` per word (same arguments, same ids).

        >>> [t.pieces for t in get_tokenizer().trace(" Shawshank")]
        [('ĠShaw', 'sh', 'ank')]
        """
        traces: list[WordTrace] = []
        for chunk, special in self._split_special(text, allowed_special, disallowed_special):
            if special:
                one = (chunk,)
                traces.append(
                    WordTrace(chunk, chunk, one, (), one, (self.special_tokens[chunk],), True)
                )
                continue
            for word in pretokenize(_without_lone_surrogates(chunk)):
                symbols = self.word_to_unicode(word)
                merges = tuple(
                    MergeStep(pair, rank, tuple(parts))
                    for pair, rank, parts in self._merge_steps(symbols)
                )
                pieces = merges[-1].parts if merges else tuple(symbols)
                ids = tuple(self.encoder[piece] for piece in pieces)
                traces.append(WordTrace(word, symbols, tuple(symbols), merges, pieces, ids))
        return traces

    def _split_special(
        self,
        text: str,
        allowed_special: Collection[str] | Literal["all"],
        disallowed_special: Collection[str] | Literal["all"],
    ) -> Iterator[tuple[str, bool]]:
        """Yield (chunk, is_special): the text cut at its allowed special tokens, after
        checking it holds no disallowed one (see ``encode``)."""
        if not isinstance(text, str):
            raise TokenizerError(f"text must be a str, got {type(text).__name__}")
        allowed = set(self.special_tokens) if allowed_special == "all" else set(allowed_special)
        unknown = allowed - set(self.special_tokens)
        if unknown:
            raise TokenizerError(f"unknown special tokens {sorted(unknown)}")
        disallowed = (
            set(self.special_tokens) - allowed
            if disallowed_special == "all"
            else set(disallowed_special)
        )
        for special in sorted(disallowed):
            if special in text:
                how = (
                    f"pass allowed_special={{{special!r}}} to encode it as id "
                    f"{self.special_tokens[special]}, or "
                    if special in self.special_tokens
                    else ""
                )
                raise TokenizerError(
                    f"text contains the disallowed special token {special!r}; {how}pass "
                    f"disallowed_special=() to encode it as plain text"
                )
        if not allowed:
            yield text, False
            return
        splitter = regex.compile("(" + "|".join(regex.escape(s) for s in sorted(allowed)) + ")")
        for i, chunk in enumerate(splitter.split(text)):
            if i % 2 or chunk:
                yield chunk, bool(i % 2)

    def _checked_ids(self, ids: Iterable[int]) -> list[int]:
        """``ids`` as a list of ints, or a TokenizerError if one is not an id of this vocabulary."""
        try:  # numpy and torch integers are fine too
            ids = [operator.index(i) for i in ids]
        except TypeError:
            raise TokenizerError("token ids must be integers") from None
        bad = [i for i in ids if not 0 <= i < len(self._token_bytes)]
        if bad:
            raise TokenizerError(
                f"token ids must be integers in [0, {self.vocab_size}); got {bad[:5]}"
            )
        return ids

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The raw bytes of a sequence of ids (may end in the middle of a UTF-8 character)."""
        table = self._token_bytes
        return b"".join(table[i] for i in self._checked_ids(ids))

    def decode(self, ids: Iterable[int]) -> str:
        """Ids back to text; bytes that do not form valid UTF-8 become U+FFFD."""
        if self._fast is not None:  # (same validation and error as the python path)
            return self._fast.decode(self._checked_ids(ids), errors="replace")
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_stream(self, ids: Iterable[int]) -> Iterator[str]:
        """Decode ids one at a time, yielding text as soon as it forms whole characters.

        A token can end in the middle of a multi-byte character (emoji are often split over
        two tokens), so bytes are held back until the character is complete.
        """
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        if not isinstance(ids, Iterable):
            raise TokenizerError(f"token ids must be a list of integers, not {type(ids).__name__}")
        for i in ids:
            text = decoder.decode(self.decode_bytes([i]))
            if text:
                yield text
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one id stands for: 6100 -> b" moves"."""
        return self.decode_bytes([token_id])

    def id_to_token(self, token_id: int) -> str:
        """The vocabulary entry of an id, in byte stand-ins: 18193 -> "ĠShaw"."""
        self.decode_bytes([token_id])
        return self.decoder[token_id]

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    @property
    def eot_token(self) -> int:
        """Id of ``<|endoftext|>``, the document separator (50256 in GPT-2)."""
        try:
            return self.special_tokens[ENDOFTEXT]
        except KeyError:
            raise TokenizerError(f"this vocabulary has no {ENDOFTEXT} token") from None

    @property
    def backend(self) -> str:
        return "tiktoken" if self._fast is not None else "python"

    # --- the fast backend -----------------------------------------------------------------------
    def _make_tiktoken(self):  # -> tiktoken.Encoding | None
        """Build a tiktoken encoding from these files, if tiktoken is installed and compatible.

        tiktoken ranks each byte string by its id and merges the lowest-ranked concatenation
        first. That is the same algorithm as ``bpe`` only when ids follow merge order (bytes
        first, then merge n -> id 256 + n), which holds for GPT-2; otherwise keep to Python.
        """
        try:
            import tiktoken
        except ImportError:
            return None
        byte_order = bytes_to_unicode()
        expected = {c: b for b, c in enumerate(byte_order.values())}
        for (a, b), rank in self.merge_ranks.items():
            expected[a + b] = 256 + rank
        ordinary = {s: i for s, i in self.encoder.items() if s not in self.special_tokens}
        if expected != ordinary:
            return None
        ranks = {self._token_bytes[i]: i for i in ordinary.values()}
        return tiktoken.Encoding(
            name=f"gpt2lab-{len(self.encoder)}",
            pat_str=PRETOKENIZE_PATTERN,
            mergeable_ranks=ranks,
            special_tokens=self.special_tokens,
        )


@cache
def get_tokenizer(backend: Backend = "auto") -> Tokenizer:
    """The GPT-2 tokenizer (shared by all four GPT-2 sizes), from the files bundled with gpt2lab."""
    return Tokenizer.from_files(
        BUNDLED_DIR / "encoder.json", BUNDLED_DIR / "vocab.bpe", backend=backend
    )
