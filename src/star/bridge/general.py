"""General speech -> text-embedding distillation set for stage 1 (ordinary speech, not sound requests).

A bridge trained only on sound requests learns a keyword spotter over their words, and `listen` cannot
tell "set an alarm for seven" from a request. This set teaches word meaning beyond the ten categories,
as SpeechCLIP does: ordinary short utterances, each aligned to its text encoder (MiniLM) sentence
embedding. The words come from a mechanical, category-blind source — the English word-frequency list of
the `wordfreq` package (ranks `skip`..`top`, alphabetic, no proper nouns), sampled uniformly with a seed —
put into neutral templates, spoken in training voices (espeak-ng, flite) like every training prompt.

Event targets come from the text teacher, not from hand labels: the sentence's MiniLM embedding is
compared with each category's centroid of *training* captions. A sentence clearly closer to one
category (similarity >= min_sim and ahead of the runner-up by >= margin) gets that category; one far
from every category (< max_neg) gets all-zero targets (a "no sound request" negative); the rest get no
event loss at all (`"bce": false` in the manifest), only the alignment. Neither held-out phrasings nor
festival prompts are seen.

    python -m star.bridge.general --manifest runs/data/esc10_train/prompts.jsonl --out runs/bridge/general \
        --sentences 1500
    python -m star.bridge.general --manifest runs/data/esc10_train/prompts.jsonl --out runs/bridge/general2 \
        --sentences 2500 --seed 1 --top 30000 --extended
    python -m star.bridge.general --manifest runs/data/esc10_train/prompts.jsonl --out runs/bridge/cover_0 \
        --cover 1 --top 30000 --seed 2 --part 0/2      # and --part 1/2 --out runs/bridge/cover_1
    (add --avoid-held-out to leave out the words the held-out phrasings test: STUDY part 12)
writes `out/prompts.jsonl` (train split) and `out/teacher.json` (label counts and thresholds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from star.config import check_part, parse_part
from star.data.manifest import write_jsonl
from star.errors import StarError

# One-word and two-word neutral carriers: ordinary things people say to an assistant.
TEMPLATES_1 = (
    "{a}",
    "the {a}",
    "I said {a}",
    "tell me about {a}",
    "what is {a}",
    "look at the {a}",
    "the sound of {a}",
    "write down {a}",
    "a recording of {a}",
    "search for {a}",
)
TEMPLATES_2 = (
    "{a} and {b}",
    "the {a} is {b}",
    "remind me about the {a} and the {b}",
    "is there any {a} for {b}",
    "my {a} needs {b}",
    "set an alarm for {a} and {b}",
)
# `--extended`: everyday subjects and places around the words, so that request words of the training
# phrasings ("someone", "a ... in the ...") are also heard in sentences that ask for no known sound.
TEMPLATES_X = (
    "someone is {a}",
    "someone with a {a}",
    "a person and a {a}",
    "there is a {a} on the {b}",
    "a {a} in the {b}",
    "the {a} of the {b}",
    "I'd like a {a}",
    "play the {a} video",
    "a man reading about {a}",
    "a woman talking about {b}",
)


def frequency_words(top: int = 20000, skip: int = 150) -> list[str]:
    """Alphabetic English words (3-16 letters) of wordfreq's list, ranks skip..top, in frequency order."""
    try:
        from wordfreq import top_n_list
    except ImportError:
        raise StarError("the general set needs the word list of `wordfreq` (pip install wordfreq)") from None
    from star.bridge.expand import proper_nouns

    names = proper_nouns()
    return [w for w in top_n_list("en", top)[skip:] if w.isalpha() and 3 <= len(w) <= 16 and w not in names]


def without_held_out_words(words: list[str]) -> list[str]:
    """`words` minus the held-out phrasings' own words and any word sharing a stem with one of them."""
    from star.data.captions import held_out_only_words, word_stem

    banned = {word_stem(w) for w in held_out_only_words()}
    return [w for w in words if word_stem(w) not in banned]


def general_sentences(words: list[str], n: int, seed: int = 0, extended: bool = False) -> list[str]:
    """`n` distinct sentences: sampled words in TEMPLATES_1 (two thirds) or TEMPLATES_2 (one third);
    `extended` adds TEMPLATES_X to the two-word pool."""
    if len(words) < 2:
        raise StarError("need at least two words for the general set")
    rng = np.random.default_rng(seed)
    out: dict[str, None] = {}
    for _ in range(n * 20):
        if len(out) >= n:
            break
        a, b = (words[i] for i in rng.choice(len(words), size=2, replace=False))
        if rng.random() < 2 / 3:
            text = TEMPLATES_1[int(rng.integers(len(TEMPLATES_1)))].format(a=a)
        else:
            pool = TEMPLATES_2 + TEMPLATES_X if extended else TEMPLATES_2
            text = pool[int(rng.integers(len(pool)))].format(a=a, b=b)
        out[text] = None
    return list(out)


def coverage_sentences(words: list[str], passes: int = 1, seed: int = 0) -> list[str]:
    """Every word `passes` times, in a shuffled order: half of the words alone in a one-slot template, half
    in pairs in a two-slot one (of all three template lists). Sampling (`general_sentences`) never hears
    most of a 25,000-word list; this hears each word, so the bridge can learn what each one means."""
    if len(words) < 2:
        raise StarError("need at least two words for the general set")
    rng = np.random.default_rng(seed)
    templates = TEMPLATES_1 + TEMPLATES_2 + TEMPLATES_X
    pairs = tuple(t for t in templates if "{a}" in t and "{b}" in t)
    singles = tuple(t.replace("{b}", "{a}") for t in templates if t not in pairs)
    out: list[str] = []  # a sentence may repeat across passes: another voice speaks it
    for _ in range(passes):
        order = [words[i] for i in rng.permutation(len(words))]
        i = 0
        while i < len(order):
            if rng.random() < 0.5 or i + 1 == len(order):
                out.append(singles[int(rng.integers(len(singles)))].format(a=order[i]))
                i += 1
            else:
                out.append(pairs[int(rng.integers(len(pairs)))].format(a=order[i], b=order[i + 1]))
                i += 2
    return out


def teacher_labels(
    sims: np.ndarray, vocab: list[str], *, min_sim: float = 0.45, margin: float = 0.08, max_neg: float = 0.3
) -> list[list[str] | None]:
    """sims [n, k] cosine to category centroids -> [category] / [] (negative) / None (no event loss)."""
    order = np.sort(sims, axis=1)
    best, second = order[:, -1], order[:, -2]
    out: list[list[str] | None] = []
    for i, c in enumerate(sims.argmax(1)):
        if best[i] >= min_sim and best[i] - second[i] >= margin:
            out.append([vocab[int(c)]])
        elif best[i] < max_neg:
            out.append([])
        else:
            out.append(None)
    return out


def build_general(
    manifest: str | Path,
    out_dir: str | Path,
    *,
    sentences: int = 1500,
    top: int = 20000,
    seed: int = 0,
    min_sim: float = 0.45,
    margin: float = 0.08,
    max_neg: float = 0.3,
    extended: bool = False,
    cover: int = 0,
    part: tuple[int, int] = (0, 1),
    avoid_held_out: bool = False,
) -> Path:
    """Write `out_dir/prompts.jsonl` (spoken general sentences) and `out_dir/teacher.json`; return the first.

    `cover` > 0 speaks every word of the list that many times (`coverage_sentences`) instead of
    `sentences` sampled ones. `part` (k, n) speaks only every n-th sentence from the k-th, so n
    processes (each with its own `out_dir`) share the work. `avoid_held_out` drops the words the held-out
    phrasings test (`held_out_only_words`, and words sharing their stem), so no voice ever speaks them."""
    k, n_parts = part
    check_part(k, n_parts)
    from star.bridge.expand import caption_prototypes, speak_rows
    from star.encoders import build_text_encoder
    from star.train.bridge_task import read_manifest, read_vocab

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = read_manifest(manifest)
    vocab = read_vocab(manifest, rows)
    text = build_text_encoder("minilm")
    words = frequency_words(top)
    if avoid_held_out:
        words = without_held_out_words(words)
    texts = (
        coverage_sentences(words, cover, seed)
        if cover
        else general_sentences(words, sentences, seed, extended)
    )
    texts = texts[k::n_parts]
    emb = np.concatenate([text.embed(texts[s : s + 256]).numpy() for s in range(0, len(texts), 256)])
    labels = teacher_labels(
        emb @ caption_prototypes(rows, vocab, text).T, vocab, min_sim=min_sim, margin=margin, max_neg=max_neg
    )
    prefix = ("c" if cover else "g") + (str(k) if n_parts > 1 else "")
    lines = speak_rows(
        [(lab or [], t) for lab, t in zip(labels, texts)], out, prefix, seed + k, "general-distillation"
    )
    for line, lab in zip(lines, labels):
        line["kind"] = "general"
        if lab is None:
            line["bce"] = False
    counts = {c: sum(lab == [c] for lab in labels) for c in vocab}
    report = {
        "sentences": len(texts),
        "negatives": sum(lab == [] for lab in labels),
        "no_event_loss": sum(lab is None for lab in labels),
        "labelled": counts,
        "thresholds": {"min_sim": min_sim, "margin": margin, "max_neg": max_neg},
        "examples": {c: [t for t, lab in zip(texts, labels) if lab == [c]][:20] for c in vocab},
    }
    (out / "teacher.json").write_text(json.dumps(report, indent=1) + "\n")
    return write_jsonl(out / "prompts.jsonl", lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Speak ordinary sentences as a stage-1 distillation set")
    p.add_argument("--manifest", required=True, help="training prompts manifest (vocab + training captions)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--sentences", type=int, default=1500)
    p.add_argument("--top", type=int, default=20000, help="words are drawn from this many most frequent")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-sim", type=float, default=0.45)
    p.add_argument("--margin", type=float, default=0.08)
    p.add_argument("--max-neg", type=float, default=0.3)
    p.add_argument("--extended", action="store_true", help="also use the TEMPLATES_X sentence shapes")
    p.add_argument(
        "--cover", type=int, default=0, help="speak every word this many times (ignores --sentences)"
    )
    p.add_argument(
        "--avoid-held-out", action="store_true", help="never speak the words the held-out phrasings test"
    )
    p.add_argument(
        "--part", default="0/1", help="K/N: speak only part K of N (run N processes, one --out each)"
    )
    a = p.parse_args(argv)
    try:
        part = parse_part(a.part)
    except StarError as exc:
        raise SystemExit(f"--part: {exc}") from None
    import torch

    torch.set_num_threads(1)
    print(
        build_general(
            a.manifest,
            a.out,
            sentences=a.sentences,
            top=a.top,
            seed=a.seed,
            min_sim=a.min_sim,
            margin=a.margin,
            max_neg=a.max_neg,
            extended=a.extended,
            cover=a.cover,
            part=part,
            avoid_held_out=a.avoid_held_out,
        )
    )


if __name__ == "__main__":
    main()
