"""Natural English phrases for the phonetic bag's text corpus, from WordNet's glosses and examples.

The bag learns what a phoneme string means from MiniLM's embeddings of texts. Its default corpus is common
words alone, random sequences of them and captions, which never shows a word inside a phrase that decides
its meaning ("a stormy sea" is about the sea, not the storm). WordNet 3.0 (Debian's `wordnet-base`,
license in /usr/share/doc/wordnet-base/copyright) has ~150,000 short definitions and example sentences
written by people. `python -m star.data.wordnet_phrases --out FILE` writes them one per line, for
`"corpus": {"phrases": [FILE]}` of `star train phonetic`.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from star.errors import StarError

WORDNET_DIR = "/usr/share/wordnet"
PARTS_OF_SPEECH = ("noun", "verb", "adj", "adv")
QUOTED = re.compile(r'"([^"]+)"')


def gloss_phrases(gloss: str) -> list[str]:
    """The phrases of one gloss: its example sentences (quoted) or, in a clause without examples, the
    definition itself. Clauses are separated by semicolons."""
    phrases = []
    for clause in gloss.split(";"):
        clause = clause.strip()
        examples = QUOTED.findall(clause)
        phrases += [e.strip() for e in examples] if examples else [clause]
    return [p for p in phrases if p]


def wordnet_phrases(folder: str | Path = WORDNET_DIR, min_words: int = 2, max_words: int = 12) -> list[str]:
    """Every gloss phrase of WordNet's four data files with min_words..max_words words, once each, in file
    order (deterministic)."""
    folder = Path(folder)
    files = [folder / f"data.{pos}" for pos in PARTS_OF_SPEECH]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise StarError(f"WordNet data not found ({', '.join(missing)}): install it with `apt-get install wordnet-base`")
    phrases: dict[str, None] = {}
    for path in files:
        for line in path.read_text(encoding="latin-1").splitlines():
            # Lines starting with spaces are the license header; a synset's gloss follows " | ".
            if line.startswith("  ") or " | " not in line:
                continue
            for phrase in gloss_phrases(line.split(" | ", 1)[1]):
                if min_words <= len(phrase.split()) <= max_words:
                    phrases[phrase] = None
    return list(phrases)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Write WordNet's glosses and examples as phrases, one per line")
    p.add_argument("--out", required=True)
    p.add_argument("--wordnet", default=WORDNET_DIR)
    p.add_argument("--min-words", type=int, default=2)
    p.add_argument("--max-words", type=int, default=12)
    args = p.parse_args(argv)
    try:
        phrases = wordnet_phrases(args.wordnet, args.min_words, args.max_words)
    except StarError as e:
        raise SystemExit(f"error: {e}") from None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(phrases) + "\n", encoding="utf-8")
    print(f"{len(phrases)} phrases -> {out}")


if __name__ == "__main__":
    main()
