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

Later byte-level BPE tokenizers (Llama 3, Qwen2, SmolLM) change only the steps around the merge
loop: another regex (or several, and digits split apart), a Unicode normalization, more special
tokens, and Llama 3's ``ignore_merges`` (a word that is in the vocabulary whole is not merged).
``Tokenizer.from_tokenizer_json`` reads them from a Hugging Face ``tokenizer.json`` into a
``PreTokenizer``; other kinds (SentencePiece, WordPiece, Unigram) are refused, naming what is read.
"""

from __future__ import annotations

import codecs
import json
import operator
import unicodedata
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache, lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

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
TOKENIZER_JSON = "tokenizer.json"  # Hugging Face tokenizers' single file
END_OF_WORD = "</w>"  # GPT-1's BPE marks the last piece of a word; byte-level BPE never does

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


def split_isolated(pieces: list[str], pattern: regex.Pattern) -> list[str]:
    """Cut each piece at the pattern's matches, keeping the matches and the text between them
    as pieces of their own (``tokenizers``' "Isolated" split): "ab12" with \\p{N} -> ab, 1, 2."""
    out: list[str] = []
    for piece in pieces:
        start = 0
        for m in pattern.finditer(piece):
            if m.start() > start:
                out.append(piece[start : m.start()])
            if m.end() > m.start():
                out.append(m.group())
            start = m.end()
        if start < len(piece):
            out.append(piece[start:])
    return out


Normalization = Literal["NFC", "NFD", "NFKC", "NFKD"]
NORMALIZATIONS: tuple[Normalization, ...] = ("NFC", "NFD", "NFKC", "NFKD")


@dataclass(frozen=True)
class PreTokenizer:
    """Text -> the words BPE works on, as a ``tokenizer.json`` describes it. In order:

    1. ``normalization``: a Unicode normal form (Qwen2: NFC), or none (GPT-2, Llama 3).
    2. ``splits``: regexes, each cutting every piece at its matches (Llama 3: one regex with
       numbers of 1-3 digits; SmolLM: ``\\p{N}``, each digit alone).
    3. ``add_prefix_space``: a space before each piece that does not start with one.
    4. ``byte_level_regex``: GPT-2's regex, as ``tokenizers``' ByteLevel step applies it.

    The default is GPT-2's: its regex alone.
    """

    splits: tuple[str, ...] = ()
    normalization: Normalization | None = None
    add_prefix_space: bool = False
    byte_level_regex: bool = True
    _compiled: tuple[regex.Pattern, ...] = field(init=False, repr=False, compare=False)
    _gpt2: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.normalization not in (None, *NORMALIZATIONS):
            raise TokenizerError(f"unknown Unicode normalization {self.normalization!r}")
        try:
            compiled = tuple(regex.compile(p) for p in self.splits)
        except regex.error as e:
            raise TokenizerError(f"pre-tokenizer regex does not compile: {e}") from None
        object.__setattr__(self, "_compiled", compiled)
        gpt2 = not (self.splits or self.normalization or self.add_prefix_space)
        object.__setattr__(self, "_gpt2", gpt2 and self.byte_level_regex)

    @property
    def is_gpt2(self) -> bool:
        """GPT-2's: its regex alone, no normalization."""
        return self._gpt2

    def __call__(self, text: str) -> list[str]:
        if self._gpt2:
            return pretokenize(text)
        if self.normalization is not None:
            text = unicodedata.normalize(self.normalization, text)
        pieces = [text] if text else []
        for pattern in self._compiled:
            pieces = split_isolated(pieces, pattern)
        if self.add_prefix_space:
            pieces = [p if p.startswith(" ") else " " + p for p in pieces]
        return split_isolated(pieces, _PRETOKENIZE) if self.byte_level_regex else pieces


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
        pretokenizer: PreTokenizer | None = None,
        special_tokens: Collection[str] = (ENDOFTEXT,),
        added_tokens: Collection[str] = (),
        ignore_merges: bool = False,
        prefix_ids: tuple[int, ...] = (),
    ) -> None:
        """``encoder``: every token (byte stand-ins; special and added tokens as their text) ->
        id. ``special_tokens`` present in it are encoded only when allowed (see ``encode``);
        ``added_tokens`` are whole pieces of text always cut out first. ``ignore_merges``: a
        word that is in the vocabulary whole is one token (Llama 3). ``prefix_ids``: what the
        tokenizer.json puts before a text (Llama 3's <|begin_of_text|>); ``encode`` does not."""
        self.encoder = encoder  # token string (byte stand-ins) -> id
        self.decoder = {i: s for s, i in encoder.items()}
        if len(self.decoder) != len(encoder):
            raise TokenizerError("vocabulary maps two tokens to the same id")
        self.merge_ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.pretokenizer = pretokenizer or PreTokenizer()
        self.special_tokens = {s: encoder[s] for s in special_tokens if s in encoder}
        self.added_tokens = {s: encoder[s] for s in added_tokens}
        self.ignore_merges = ignore_merges
        self.prefix_ids = prefix_ids
        self._added_splitter = _alternation(self.added_tokens)
        self.tokenizer_json: dict[str, Any] | None = None  # set by from_tokenizer_json
        # A vocabulary may lack some single bytes (a character-level one holds only the
        # characters of its text); encoding text with a byte it lacks is then an error.
        self._byte_encoder = bytes_to_unicode()
        self._token_bytes = [b""] * (max(self.decoder) + 1)
        decode_map = unicode_to_bytes()
        for s, i in encoder.items():
            if s in self.special_tokens or s in self.added_tokens:
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
        if any(token.endswith(END_OF_WORD) for token in encoder):
            raise TokenizerError(
                f"{vocab_path} is GPT-1's BPE (lower-cased words ending in {END_OF_WORD}), not "
                f"byte-level BPE; {SUPPORTED}, or GPT-2's vocab.json + merges.txt"
            )
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
    def from_tokenizer_json(cls, path: str | Path, *, backend: Backend = "auto") -> Tokenizer:
        """Load a Hugging Face ``tokenizer.json`` of byte-level BPE (GPT-2, Llama 3, Qwen2,
        SmolLM...); any other kind is refused, naming what is read."""
        try:
            spec = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TokenizerError(f"tokenizer file not found: {path}") from None
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
            raise TokenizerError(f"cannot read {path}: {e}") from None
        try:
            tokenizer = cls(**read_tokenizer_json(spec), backend=backend)
        except TokenizerError as e:
            raise TokenizerError(f"{path}: {e}") from None
        except (KeyError, TypeError, AttributeError, IndexError) as e:  # a part of the wrong shape
            raise TokenizerError(
                f"{path} is not a tokenizer.json gpt2lab can read ({type(e).__name__}: {e})"
            ) from None
        tokenizer.tokenizer_json = spec
        return tokenizer

    @property
    def is_gpt2_style(self) -> bool:
        """Whether vocab.json + merges.txt say all there is: GPT-2's regex, no normalization,
        no added tokens, at most <|endoftext|> as special token, nothing put before a text."""
        return (
            self.pretokenizer.is_gpt2
            and not self.added_tokens
            and not self.ignore_merges
            and not self.prefix_ids
            and set(self.special_tokens) <= {ENDOFTEXT}
        )

    @classmethod
    def from_folder(cls, folder: str | Path, *, backend: Backend = "auto") -> Tokenizer:
        """Load the tokenizer a folder holds: its tokenizer.json, unless that says no more than
        a pair of vocabulary + merges files beside it (then those, as always for GPT-2)."""
        folder = Path(folder)
        pairs = [
            (folder / vocab, folder / merges)
            for vocab, merges in FILE_PAIRS
            if (folder / vocab).is_file() and (folder / merges).is_file()
        ]
        if (folder / TOKENIZER_JSON).is_file():
            tokenizer = cls.from_tokenizer_json(folder / TOKENIZER_JSON, backend=backend)
            if not (pairs and tokenizer.is_gpt2_style):
                return tokenizer
        if pairs:
            return cls.from_files(*pairs[0], backend=backend)
        raise TokenizerError(
            f"{folder} has no tokenizer files: expected tokenizer.json, encoder.json + vocab.bpe "
            f"or vocab.json + merges.txt"
        )

    def save(self, folder: str | Path, file_names: tuple[str, str] = FILE_PAIRS[1]) -> None:
        """Write the vocabulary and merges; Hugging Face's file names unless told otherwise
        (``FILE_PAIRS[0]`` = OpenAI's ``encoder.json`` + ``vocab.bpe``). Same content either way.
        A tokenizer read from a tokenizer.json that says more than those two files writes that
        tokenizer.json back instead.
        """
        folder = Path(folder)
        if self.tokenizer_json is not None and not self.is_gpt2_style:
            # what vocab.json + merges.txt cannot say (regexes, added tokens): the file as read
            texts = {TOKENIZER_JSON: json.dumps(self.tokenizer_json, ensure_ascii=False)}
        else:
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
        if self._whole(word):
            return
        parts = list(word)
        while len(parts) > 1:
            # Merge the adjacent pair that was learned earliest (lowest rank), everywhere it occurs.
            best = min(pairwise(parts), key=lambda p: self.merge_ranks.get(p, _NEVER))
            rank = self.merge_ranks.get(best)
            if rank is None:
                return
            parts = merge_pair(parts, best)
            yield best, rank, parts

    def _whole(self, word: str) -> bool:
        """``ignore_merges``: a word that is a vocabulary entry is that one token, unmerged."""
        return self.ignore_merges and word in self.encoder and word not in self.added_tokens

    def _bpe_uncached(self, word: str) -> tuple[str, ...]:
        if self._whole(word):
            return (word,)
        parts = list(word)
        for _, _, after in self._merge_steps(word):
            parts = after
        return tuple(parts)

    def word_to_unicode(self, word: str) -> str:
        """A pre-tokenized word as byte stand-ins: " Shaw" -> "ĠShaw"."""
        return "".join(self._byte_encoder[b] for b in word.encode("utf-8"))

    def _encode_ordinary_python(self, text: str) -> list[int]:
        ids: list[int] = []
        for chunk, added in self._split_added(_without_lone_surrogates(text)):
            if added:
                ids.append(self.added_tokens[chunk])
                continue
            for word in self.pretokenizer(chunk):
                symbols = self.word_to_unicode(word)
                try:
                    ids.extend(self.encoder[piece] for piece in self._bpe_cache(symbols))
                except KeyError:
                    raise TokenizerError(
                        f"{word!r} has a character this vocabulary of {len(self.encoder)} "
                        "tokens lacks"
                    ) from None
        return ids

    def _split_added(self, text: str) -> Iterator[tuple[str, bool]]:
        """(chunk, is an added token): added tokens (not special ones) are cut out first."""
        if self._added_splitter is None:
            yield text, False
            return
        for i, chunk in enumerate(self._added_splitter.split(text)):
            if i % 2 or chunk:
                yield chunk, bool(i % 2)

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
            for part, added in self._split_added(_without_lone_surrogates(chunk)):
                if added:
                    one = (part,)
                    traces.append(WordTrace(part, part, one, (), one, (self.added_tokens[part],)))
                    continue
                for word in self.pretokenizer(part):
                    traces.append(self._trace_word(word))
        return traces

    def _trace_word(self, word: str) -> WordTrace:
        symbols = self.word_to_unicode(word)
        merges = tuple(
            MergeStep(pair, rank, tuple(parts)) for pair, rank, parts in self._merge_steps(symbols)
        )
        pieces = merges[-1].parts if merges else self._bpe_cache(symbols)
        ids = tuple(self.encoder[piece] for piece in pieces)
        return WordTrace(word, symbols, tuple(symbols), merges, pieces, ids)

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
        splitter = _alternation(allowed)
        assert splitter is not None
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
        if not self.pretokenizer.is_gpt2 or self.added_tokens or self.ignore_merges:
            return None  # tiktoken would split or merge differently
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


# --- Hugging Face tokenizer.json --------------------------------------------------------------
SUPPORTED = (
    "gpt2lab reads byte-level BPE tokenizer.json files (GPT-2, Llama 3, Qwen2, SmolLM: a BPE "
    "model with a ByteLevel pre-tokenizer)"
)


def _kind(part: Any) -> str:
    return part.get("type", "?") if isinstance(part, dict) else repr(part)


def _read_normalizer(part: Any) -> Normalization | None:
    """None, or the one Unicode normal form (NFC, ...) a normalizer applies."""
    if part is None:
        return None
    steps = part.get("normalizers", []) if _kind(part) == "Sequence" else [part]
    forms = [_kind(step) for step in steps]
    if len(forms) > 1 or any(f not in NORMALIZATIONS for f in forms):
        raise TokenizerError(
            f"normalizer {' + '.join(forms)} is not supported (gpt2lab has none or one of "
            f"{', '.join(NORMALIZATIONS)}); {SUPPORTED}"
        )
    return next((n for n in NORMALIZATIONS if forms == [n]), None)


def _split_pattern(step: dict[str, Any]) -> str:
    pattern = step.get("pattern", {})
    if step.get("behavior") != "Isolated" or step.get("invert", False):
        raise TokenizerError(
            f"a Split pre-tokenizer with behavior {step.get('behavior')!r} (invert "
            f"{step.get('invert')}) is not supported; gpt2lab has 'Isolated'"
        )
    if "Regex" in pattern:
        return pattern["Regex"]
    if "String" in pattern:
        return regex.escape(pattern["String"])
    raise TokenizerError(f"a Split pre-tokenizer without a pattern: {step!r}")


def _read_pretokenizer(part: Any, normalization: Normalization | None) -> PreTokenizer:
    """Split, Digits and a final ByteLevel step as a PreTokenizer."""
    steps = part.get("pretokenizers", []) if _kind(part) == "Sequence" else [part]
    kinds = [_kind(step) for step in steps]
    if "Metaspace" in kinds:
        raise TokenizerError(f"a SentencePiece-style (Metaspace) tokenizer; {SUPPORTED}")
    if not kinds or kinds[-1] != "ByteLevel" or kinds.count("ByteLevel") > 1:
        raise TokenizerError(
            f"pre-tokenizer {' + '.join(kinds) or 'none'} is not byte-level (a ByteLevel step "
            f"last); {SUPPORTED}"
        )
    splits = []
    for step, kind in zip(steps[:-1], kinds):
        if kind == "Split":
            splits.append(_split_pattern(step))
        elif kind == "Digits":
            splits.append(r"\p{N}" if step.get("individual_digits") else r"\p{N}+")
        else:
            raise TokenizerError(f"pre-tokenizer step {kind} is not supported; {SUPPORTED}")
    byte_level = steps[-1]
    return PreTokenizer(
        splits=tuple(splits),
        normalization=normalization,
        add_prefix_space=bool(byte_level.get("add_prefix_space", False)),
        byte_level_regex=bool(byte_level.get("use_regex", True)),
    )


def _read_bpe_model(model: Any) -> tuple[dict[str, int], list[tuple[str, str]]]:
    if _kind(model) != "BPE":
        raise TokenizerError(
            f"the model is {_kind(model)} (WordPiece, Unigram and WordLevel are not BPE); "
            f"{SUPPORTED}"
        )
    if model.get("byte_fallback"):
        raise TokenizerError(f"a SentencePiece-style BPE (byte_fallback); {SUPPORTED}")
    for key in ("continuing_subword_prefix", "end_of_word_suffix", "dropout"):
        if model.get(key):
            raise TokenizerError(f"BPE with {key}={model[key]!r} is not supported; {SUPPORTED}")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
        raise TokenizerError("model.vocab is not a JSON object of token -> id")
    merges = []
    for n, merge in enumerate(model.get("merges", [])):
        pair = merge.split(" ") if isinstance(merge, str) else merge  # "a b" or ["a", "b"]
        if not isinstance(pair, list) or len(pair) != 2:
            raise TokenizerError(f"merge {n}: expected two tokens, got {merge!r}")
        merges.append((pair[0], pair[1]))
    return dict(vocab), merges


def _read_prefix_ids(part: Any) -> tuple[int, ...]:
    """The special tokens a TemplateProcessing post-processor puts before a single text."""
    steps = part.get("processors", []) if _kind(part) == "Sequence" else [part]
    for step in steps:
        if _kind(step) == "TemplateProcessing":
            ids: list[int] = []
            for item in step.get("single", []):
                if "Sequence" in item:
                    return tuple(ids)
                ids += step["special_tokens"][item["SpecialToken"]["id"]]["ids"]
    return ()


def read_tokenizer_json(spec: Any) -> dict[str, Any]:
    """A tokenizer.json's content as ``Tokenizer``'s arguments, or a TokenizerError naming what
    is not byte-level BPE."""
    if not isinstance(spec, dict) or "model" not in spec:
        raise TokenizerError(f"not a tokenizer.json (no model); {SUPPORTED}")
    encoder, merges = _read_bpe_model(spec["model"])
    normalization = _read_normalizer(spec.get("normalizer"))
    special: list[str] = []
    added: list[str] = []
    for token in spec.get("added_tokens", []):
        flags = [f for f in ("single_word", "lstrip", "rstrip") if token.get(f)]
        if flags:
            raise TokenizerError(
                f"added token {token['content']!r} sets {', '.join(flags)}; gpt2lab matches "
                "added tokens exactly"
            )
        encoder[token["content"]] = token["id"]
        (special if token.get("special") else added).append(token["content"])
    return {
        "encoder": encoder,
        "merges": merges,
        "pretokenizer": _read_pretokenizer(spec.get("pre_tokenizer"), normalization),
        "special_tokens": special,
        "added_tokens": added,
        "ignore_merges": bool(spec["model"].get("ignore_merges", False)),
        "prefix_ids": _read_prefix_ids(spec.get("post_processor")),
    }


def _alternation(tokens: Collection[str]) -> regex.Pattern | None:
    """A regex that cuts text at these tokens (one capture group: they are kept); at one place
    the longest wins, as in ``tokenizers``."""
    if not tokens:
        return None
    ordered = sorted(tokens, key=lambda t: (-len(t), t))
    return regex.compile("(" + "|".join(regex.escape(t) for t in ordered) + ")")


@cache
def get_tokenizer(backend: Backend = "auto") -> Tokenizer:
    """The GPT-2 tokenizer (shared by all four GPT-2 sizes), from the files bundled with gpt2lab."""
    return Tokenizer.from_files(
        BUNDLED_DIR / "encoder.json", BUNDLED_DIR / "vocab.bpe", backend=backend
    )
