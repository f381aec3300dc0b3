"""De-tokenizers: undo the tokenization artifacts of benchmark text so GPT-2 reads ordinary prose.

WikiText, PTB, One Billion Word and CBT were tokenized for word-level models: "the guest @-@
starring role , he said" instead of "the guest-starring role, he said". GPT-2 never saw such text
in WebText, so it pays for the artifacts, not the words. Radford et al. (2019, section 3.1) ran
the text through "invertible de-tokenizers" first (2.5 to 5 points of perplexity). Because a
de-tokenizer is invertible, the probability of the de-tokenized text is the probability of the
original, and the loss can still be divided by the number of original tokens.

Each rule is one regular expression applied to one line, in order. Rules come in groups, each
with its inverse; ``retokenize`` applies the inverses in the reverse order. The rules are few and
simple. They invert exactly on every line of PTB and on 95% of WikiText's (tests check both);
the others hold an abbreviation the original already wrote attached ("No. 6"). The inverse
cannot tell it from a word followed by a full stop, and detaches it ("No . 6").
OpenAI did not publish its de-tokenizers; these are ours.
"""

from __future__ import annotations

import re

from ..errors import UsageError

Rule = tuple[str, str]  # (pattern, replacement) for re.sub
Group = tuple[list[Rule], list[Rule] | None]  # rules and their inverse (None: not invertible)

LINE_EDGES: Group = (  # WikiText and PTB lines: " a b \n" -> "a b"
    [(r"^ ?(.*?) ?$", r"\1")],
    [(r"^(.+)$", r" \1 "), (r"^$", " ")],
)
# WikiText's number and word separators: "guest @-@ starring", "1 @,@ 000" -> "guest-starring"
SEPARATORS: Group = ([(r" @([-,.])@ ", r"\1")], [(r"(?<=[^\s.])([-,.])(?=[^\s.])", r" @\1@ ")])
HEADINGS: Group = ([(r"(?<==) (?==)", "")], [(r"(?<==)(?==)", " ")])  # "= = A = =" -> "== A =="
PUNCT: Group = (  # "word ," -> "word,"
    [(r" ([.,;:!?])(?= |$)", r"\1")],
    [(r"(?<=[^\s.,;:!?])([.,;:!?])(?= |$)", r" \1")],
)
BRACKETS: Group = (  # "( a )" -> "(a)"
    [(r"([(\[]) ", r"\1"), (r" ([)\]])", r"\1")],
    [(r"([(\[])(?! )", r"\1 "), (r"(?<! )([)\]])", r" \1")],
)
QUOTES: Group = ([(r'" ([^"]*?) "', r'"\1"')], [(r'"([^"]*?)"', r'" \1 "')])  # pairs in a line
# Moses-style contractions (WikiText, 1BW): "don 't", "it 's" -> "don't", "it's"
APOSTROPHE: Group = (
    [(r" '(s|t|re|ve|m|ll|d)(?= |$)", r"'\1")],
    [(r"(?<=\S)'(s|t|re|ve|m|ll|d)(?= |$)", r" '\1")],
)
# Treebank-style contractions (PTB, CBT): "was n't", "it 's" -> "wasn't", "it's"
NT: Group = (
    [(r" (n't|'s|'re|'ve|'m|'ll|'d)(?= |$)", r"\1")],
    [(r"(?<=\S)(n't|'s|'re|'ve|'m|'ll|'d)(?= |$)", r" \1")],
)
LATEX_QUOTES: Group = ([(r"``|''", '"')], None)  # CBT's opening `` and closing '' -> "


def _chain(*groups: Group) -> Group:
    """The groups' rules in order; their inverses in the reverse order."""
    inverses = [inverse for _, inverse in reversed(groups)]
    forward = [rule for rules, _ in groups for rule in rules]
    known = [inverse for inverse in inverses if inverse is not None]
    if len(known) < len(inverses):
        return forward, None
    return forward, [rule for inverse in known for rule in inverse]


DETOKENIZERS: dict[str, Group] = {
    "wikitext": _chain(LINE_EDGES, SEPARATORS, HEADINGS, APOSTROPHE, PUNCT, BRACKETS, QUOTES),
    "ptb": _chain(LINE_EDGES, NT),
    "1bw": _chain(APOSTROPHE, PUNCT, BRACKETS, QUOTES),
    "cbt": _chain(LATEX_QUOTES, NT, PUNCT, BRACKETS, QUOTES),
}


def _rules(name: str, inverse: bool) -> list[Rule]:
    if name not in DETOKENIZERS:
        raise UsageError(f"no de-tokenizer {name!r}; choose from {sorted(DETOKENIZERS)}")
    rules = DETOKENIZERS[name][inverse]
    if rules is None:
        raise UsageError(f"the {name!r} de-tokenizer is not invertible")
    return rules


def _apply(rules: list[Rule], line: str) -> str:
    for pattern, replacement in rules:
        line = re.sub(pattern, replacement, line)
    return line


def detokenize(name: str, line: str) -> str:
    """One line of a tokenized benchmark as ordinary text: "it 's" -> "it's". No newline inside."""
    return _apply(_rules(name, False), line)


def retokenize(name: str, line: str) -> str:
    """The inverse of ``detokenize``: the line as the benchmark tokenized it."""
    return _apply(_rules(name, True), line)
