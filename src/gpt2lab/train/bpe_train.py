"""Learn a byte-level BPE vocabulary the GPT-2 way: same regex, same byte alphabet, merges by count.

1. Split the text into words with GPT-2's pre-tokenization regex; count each distinct word.
2. Start every word as its bytes (in ``bytes_to_unicode`` stand-ins): the 256 base tokens.
3. Repeatedly merge the adjacent pair that occurs most often across all words (ties: the
   alphabetically first pair, so training is deterministic) and record the merge.
4. Ids: the 256 bytes in ``bytes_to_unicode`` order, then one id per merge in merge order, then
   ``<|endoftext|>``. That is GPT-2's own layout, so the tiktoken backend works for it too.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable

from tqdm import tqdm

from ..errors import UsageError
from ..tokenizer import ENDOFTEXT, Tokenizer, bytes_to_unicode, merge_pair, pretokenize

Pair = tuple[str, str]


def count_words(texts: Iterable[str]) -> Counter[str]:
    """How often each pre-tokenized word occurs, in byte stand-ins (" the" -> "Ġthe")."""
    table = bytes_to_unicode()
    counts: Counter[str] = Counter()
    for text in texts:
        for document in text.split(ENDOFTEXT):
            for word in pretokenize(document):
                counts["".join(table[b] for b in word.encode("utf-8"))] += 1
    return counts


def learn_merges(word_counts: Counter[str], n_merges: int, *, progress: bool = False) -> list[Pair]:
    """The first ``n_merges`` merges of BPE on these word counts (fewer if nothing is left)."""
    words = [list(w) for w in word_counts]
    counts = list(word_counts.values())
    pair_counts: Counter[Pair] = Counter()
    where: defaultdict[Pair, set[int]] = defaultdict(set)  # pair -> words that contain it
    for i, symbols in enumerate(words):
        for pair in itertools.pairwise(symbols):
            pair_counts[pair] += counts[i]
            where[pair].add(i)
    heap = [(-n, pair) for pair, n in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[Pair] = []
    bar = tqdm(total=n_merges, desc="merges", unit="merge", disable=not progress)
    while len(merges) < n_merges and heap:
        neg, best = heapq.heappop(heap)
        if pair_counts.get(best, 0) != -neg or -neg <= 0:
            continue  # a stale heap entry: the count changed since it was pushed
        merges.append(best)
        bar.update(1)
        changed: set[Pair] = set()
        for i in list(where[best]):
            symbols, n = words[i], counts[i]
            for pair in itertools.pairwise(symbols):  # take the word's old pairs out...
                pair_counts[pair] -= n
                changed.add(pair)
            words[i] = merged = merge_pair(symbols, best)
            for pair in itertools.pairwise(merged):  # ...and its new pairs in
                pair_counts[pair] += n
                where[pair].add(i)
                changed.add(pair)
        del pair_counts[best], where[best]
        for pair in changed - {best}:
            if pair_counts[pair] > 0:
                heapq.heappush(heap, (-pair_counts[pair], pair))
    bar.close()
    return merges


def train_tokenizer(texts: Iterable[str], vocab_size: int, *, progress: bool = False) -> Tokenizer:
    """A byte-level BPE tokenizer with ``vocab_size`` ids (256 bytes + merges + <|endoftext|>)."""
    if vocab_size < 257:
        raise UsageError(f"vocab_size must be at least 257 (256 bytes + {ENDOFTEXT})")
    merges = learn_merges(count_words(texts), vocab_size - 257, progress=progress)
    encoder = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    for a, b in merges:
        encoder.setdefault(a + b, len(encoder))
    encoder[ENDOFTEXT] = len(encoder)
    return Tokenizer(encoder, merges)
