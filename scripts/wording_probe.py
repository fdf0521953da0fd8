"""Does the text generator make a category from the wordings it was trained on, and from held-out ones?

    python scripts/wording_probe.py [--model DIR] [--seeds 4] [--train-captions 6]

For every category, its first training captions and its held-out captions (`captions.json`) go through the
text generator (the cascade's path, with a perfect transcript), several seeds each, and the evaluation
classifier names each clip. A category made from training wordings but not from held-out ones is a
wording failure (the generator keys on words it has seen), not a failure to make the sound. Prints a
markdown table.
"""

from __future__ import annotations

import argparse
from collections import Counter

from tqdm import tqdm

from star.data.captions import default_captions
from star.eval.classifier import EventClassifier
from star.pipeline import Pipeline


def recognised(pipe: Pipeline, clf: EventClassifier, category: str, texts: list[str], seeds: int) -> tuple[int, int, Counter]:
    """How many of the clips made from `texts` x `seeds` the classifier calls `category`, and what else."""
    hits, other = 0, Counter()
    for text in texts:
        for seed in range(seeds):
            label = clf.predict(*pipe.generate(text=text, seed=seed))
            hits += label == category
            other.update([] if label == category else [label])
    return hits, len(texts) * seeds, other


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model folder (default: the embedded one)")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--train-captions", type=int, default=6, help="how many training captions per category")
    args = ap.parse_args()

    pipe = Pipeline.from_pretrained(args.model)
    clf = EventClassifier.load()
    captions = default_captions()
    print("| category | training wordings | held-out wordings | held-out: heard instead |")
    print("|---|---:|---:|---|")
    for category in tqdm(clf.vocabulary, desc="categories"):
        train = recognised(pipe, clf, category, captions.train(category)[: args.train_captions], args.seeds)
        held = recognised(pipe, clf, category, captions.held_out(category), args.seeds)
        instead = ", ".join(f"{label} {n}" for label, n in held[2].most_common(3))
        print(f"| {category} | {train[0]}/{train[1]} | {held[0]}/{held[1]} | {instead} |", flush=True)


if __name__ == "__main__":
    main()
