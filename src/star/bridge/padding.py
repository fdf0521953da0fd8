"""Known requests padded with neutral words, an extra stage-1 training set.

The held-out wordings put words the bridge never heard beside a cue it knows ("a *stormy* sea", "rotor
blades *beating the air*"), and the unknown word then often decides the answer. This set pads each
category's training phrasings (and, optionally, mined synonyms) with common words far from every category
(an adjective in front, a place or an action after) and keeps the category as the target, so the bridge
learns that such words do not change the sound asked for. The words come from festival's WSJ
part-of-speech lexicon, limited to wordfreq's common words; held-out phrasings are never used.

    python -m star.bridge.padding --manifest runs/data/esc10_train/prompts.jsonl --out runs/bridge/padded \
        --per-category 400 --mined runs/bridge/expand_contexts/mined.json
writes `out/prompts.jsonl` (train split, training voices).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from star.data.manifest import write_jsonl
from star.errors import StarError

PREPOSITIONS = ("in", "on", "at", "near", "by", "under", "over", "behind", "beside", "across", "around")
# {p} is the known request; {j} an adjective, {n} a noun, {g} an -ing verb, all from the neutral pools.
SUFFIX_SHAPES = ("{p} {prep} the {n}", "{p} {prep} the {j} {n}", "{p}, {g} the {n}")
ARTICLES = ("a", "an", "the")


def pos_pools(words: list[str], path: str | Path) -> dict[str, list[str]]:
    """`words` grouped by their most likely tag in a festival POS lexicon: "jj" adjectives, "nn" nouns,
    "vbg" -ing verbs (other tags are dropped)."""
    from star.bridge.expand import pos_tags

    if not Path(path).is_file():
        raise StarError(f"{path}: POS lexicon not found (apt-get install festlex-poslex)")
    best = {w: max(tags, key=tags.__getitem__) for w, tags in pos_tags(path).items()}
    pools: dict[str, list[str]] = {"jj": [], "nn": [], "vbg": []}
    for w in words:
        if best.get(w) in pools:
            pools[best[w]].append(w)
    return pools


def with_adjective(phrase: str, adjective: str) -> str | None:
    """The adjective after the phrase's first article ("a dog barking" -> "a quiet dog barking", with
    a/an fixed), or in front of a one-word phrase; None when neither fits ("play rain")."""
    tokens = phrase.split()
    for i, t in enumerate(tokens):
        if t in ARTICLES:
            article = t if t == "the" else "an" if adjective[0] in "aeiou" else "a"
            return " ".join(tokens[:i] + [article, adjective] + tokens[i + 1 :])
    return f"{adjective} {phrase}" if len(tokens) == 1 else None


def padded_caption(phrase: str, pools: dict[str, list[str]], rng: np.random.Generator) -> str:
    """`phrase` with neutral words around it: an adjective in front (a third of the time, where one
    fits) or a place or action after."""

    def pick(tag: str) -> str:
        return pools[tag][int(rng.integers(len(pools[tag])))]

    if rng.random() < 1 / 3:
        front = with_adjective(phrase, pick("jj"))
        if front is not None:
            return front
    shape = SUFFIX_SHAPES[int(rng.integers(len(SUFFIX_SHAPES)))]
    prep = PREPOSITIONS[int(rng.integers(len(PREPOSITIONS)))]
    return shape.format(p=phrase, prep=prep, j=pick("jj"), n=pick("nn"), g=pick("vbg"))


def neutral_pools(rows: list[dict], vocab: list[str], *, top: int, max_sim: float, cache: Path) -> dict[str, list[str]]:
    """POS pools of wordfreq's `top` common words whose MiniLM embedding is far (< max_sim) from every
    category's training captions, so padding never names or hints at a sound we know."""
    from star.bridge.expand import POS_LEXICON, caption_prototypes, embed_words
    from star.bridge.general import frequency_words
    from star.encoders import build_text_encoder

    text = build_text_encoder("minilm")
    words = frequency_words(top)
    emb = embed_words(words, text, cache).astype(np.float32)
    far = (emb @ caption_prototypes(rows, vocab, text).T).max(1) < max_sim
    pools = pos_pools([w for w, ok in zip(words, far) if ok], POS_LEXICON)
    if min(len(p) for p in pools.values()) < 20:
        raise StarError(f"too few neutral words ({ {k: len(v) for k, v in pools.items()} }); raise --max-sim")
    return pools


def padded_jobs(
    vocab: list[str],
    pools: dict[str, list[str]],
    per_category: int,
    rng: np.random.Generator,
    mined: dict[str, list[str]] | None = None,
) -> list[tuple[list[str], str]]:
    """`per_category` padded requests per category; each pads a training or extra phrasing, or (half
    the time, when `mined` gives the category words) a mined synonym."""
    from star.data.captions import default_captions

    caps = default_captions()
    jobs = []
    for cat in vocab:
        phrasings = caps.train(cat) + caps.extra(cat)
        words = (mined or {}).get(cat, [])
        for _ in range(per_category):
            source = words if words and rng.random() < 0.5 else phrasings
            jobs.append(([cat], padded_caption(source[int(rng.integers(len(source)))], pools, rng)))
    return jobs


def build_padded(
    manifest: str | Path,
    out_dir: str | Path,
    *,
    per_category: int = 400,
    mined: str | Path | None = None,
    top: int = 20000,
    max_sim: float = 0.25,
    seed: int = 0,
) -> Path:
    """Build and speak the padded set into `out_dir/prompts.jsonl`; returns its path."""
    from star.bridge.expand import speak_rows
    from star.train.bridge_task import read_manifest, read_vocab

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = read_manifest(manifest)
    vocab = read_vocab(manifest, rows)
    pools = neutral_pools(rows, vocab, top=top, max_sim=max_sim, cache=out / "frequency_minilm.npz")
    mined_words = None
    if mined is not None:
        mined_words = {c: [w for w, _ in found] for c, found in json.loads(Path(mined).read_text()).items()}
    rng = np.random.default_rng(seed)
    jobs = padded_jobs(vocab, pools, per_category, rng, mined_words)
    (out / "pools.json").write_text(json.dumps({k: len(v) for k, v in pools.items()}) + "\n")
    lines = speak_rows(jobs, out, "p", seed, "padded")
    return write_jsonl(out / "prompts.jsonl", lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Speak known requests padded with neutral words (stage-1 set)")
    p.add_argument("--manifest", required=True, help="training prompts manifest (vocab + training captions)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--per-category", type=int, default=400)
    p.add_argument("--mined", help="a mined.json of star.bridge.expand: pad its synonyms too")
    p.add_argument("--top", type=int, default=20000, help="neutral words come from this many common words")
    p.add_argument("--max-sim", type=float, default=0.25, help="neutral: MiniLM similarity below this")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    print(
        build_padded(
            a.manifest, a.out, per_category=a.per_category, mined=a.mined, top=a.top, max_sim=a.max_sim, seed=a.seed
        )
    )


if __name__ == "__main__":
    main()
