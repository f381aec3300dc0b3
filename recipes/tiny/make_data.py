"""Build the training data for the bundled `tiny` model from ../shared TinyStories text.

* ``tinystories_sample_2M.txt`` (original casing, stories separated by <|endoftext|>): the only
  source of held-out stories (5%, chosen by hash).
* ``tinystories_slice_4M_lowercased.txt``: the same kind of stories, lower-cased, one story per
  line group. Its first half repeats the 2M sample; only stories NOT in the sample are kept (so
  no held-out story leaks into training in lower case), re-cased by rules learned from the
  sample (sentence starts, "I", and words the sample always capitalises, i.e. names), and used
  for training only.

    python recipes/tiny/make_data.py --out work/tiny-data
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

from gpt2lab.train.data import prepare

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "train" / "tinystories"


def normalize(text: str) -> str:
    return " ".join(text.lower().split())


def learn_capitalised_words(text: str) -> set[str]:
    """Words written capitalised mid-sentence at least 95% of the time (names: Lily, Tom, ...)."""
    upper, lower = Counter(), Counter()
    for match in re.finditer(r"(?<=[a-z,;] )([A-Za-z]+)\b", text):
        word = match.group(1)
        (upper if word[0].isupper() else lower)[word.lower()] += 1
    return {w for w, n in upper.items() if n >= 3 and n >= 19 * lower[w] and len(w) > 1}


def recase(story: str, names: set[str]) -> str:
    """Capitalise sentence starts (also inside quotes), the pronoun I, and known names."""
    story = re.sub(r"\b(i)(?=\b|')", "I", story)
    story = re.sub(
        r"\b([a-z]+)\b",
        lambda m: m.group(1).capitalize() if m.group(1) in names else m.group(1),
        story,
    )
    # Sentence starts, line starts, and the first word after an opening quote.
    return re.sub(
        r'(^"?|[.!?]\s+"?|\n\s*"?|\s")([a-z])', lambda m: m.group(1) + m.group(2).upper(), story
    )


def story_openers(sample_docs: list[str]) -> set[str]:
    """First two words that start at least 3 stories of the sample ("once upon", "one day")."""
    counts = Counter(" ".join(normalize(d).split()[:2]) for d in sample_docs)
    return {opener for opener, n in counts.items() if n >= 3}


def split_stories(lowered: str, openers: set[str]) -> list[str]:
    """Stories of the lower-cased slice: a line starts a new story only if it opens like one."""
    stories: list[str] = []
    for line in re.split(r"(?<!\n)\n(?!\n)", lowered):
        if not line.strip():
            continue
        if stories and " ".join(normalize(line).split()[:2]) not in openers:
            stories[-1] += "\n" + line
        else:
            stories.append(line)
    return [s.strip() for s in stories]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sample_path = SHARED / "tinystories_sample_2M.txt"
    sample = sample_path.read_text(encoding="utf-8")
    docs = [d for d in sample.split("<|endoftext|>") if d.strip()]
    seen = {normalize(d) for d in docs}
    names = learn_capitalised_words(sample)
    lowered = (SHARED / "tinystories_slice_4M_lowercased.txt").read_text(encoding="utf-8")
    stories = split_stories(lowered, story_openers(docs))
    fresh = [recase(s, names) for s in stories if normalize(s) not in seen]
    extra = args.out / "extra_recased.txt"
    extra.write_text("<|endoftext|>".join(fresh), encoding="utf-8")
    print(
        f"{len(stories)} lower-cased stories, {len(fresh)} not in the sample; "
        f"{len(names)} capitalised words learned"
    )
    prepare([sample_path], args.out / "data", train_only=[extra], val_fraction=0.05)


if __name__ == "__main__":
    main()
