"""Does `listen` hear a prompt better when it also reads it played faster and slower? (STUDY parts 19-21)

    python scripts/speed_readings.py --val runs/data/esc10_train/prompts.jsonl \
        --freetts runs/data/esc10_freetts/prompts.jsonl --festival runs/data/esc10_festival/prompts.jsonl \
        [--pico runs/data/esc10_pico/prompts.jsonl] [--surest]

Every prompt of each set is resampled by each factor (played `factor` times as fast: tempo and pitch move
together) and read by both routes of a model folder; an arm averages the fused event logits of its factors.
For each arm, the fusion weight is chosen by part 13's criterion (mean fused top-1 of the two validation
sets; with `--pico`, of the three, as in part 20); festival is only reported. Also prints each factor
read alone and, with `--misses`, the wordings each factor misses. The resampled prompts' features are
cached like any prompt's (`load_features(speed=...)`).
With `--surest` (part 21), two more arms use one reading per prompt, chosen as VTLN chooses a warp factor:
the one the recogniser is surest of (`surety`), among all five factors or among arm B's three.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
import torch
from tqdm import tqdm

from star.bridge.evaluate import route_similarities, scored_rows
from star.bridge.model import load_stage_one
from star.bridge.phonetic import BLANK, fuse, load_phonetic
from star.train.bridge_task import (
    collate_frames,
    load_features,
    multi_hot,
    predict_features,
    row_categories,
    top1_accuracy,
)

WEIGHTS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)
ARMS = {"one reading (v12)": (1.0,), "A: 0.9 1.0 1.1": (0.9, 1.0, 1.1), "B: 0.85 1.0 1.15": (0.85, 1.0, 1.15)}
SUREST = {"surest of 0.85-1.15": (0.85, 0.9, 1.0, 1.1, 1.15), "surest of B's three": (0.85, 1.0, 1.15)}


@torch.no_grad()
def surety(reader, feats: list[np.ndarray]) -> np.ndarray:
    """How sure the recogniser is of each prompt [n]: the mean log posterior of the best label over the frames
    whose best label is a phoneme (blank frames are sure at every speed); -inf where no frame is."""
    out = []
    for s in range(0, len(feats), 64):
        frames, mask = collate_frames(feats[s : s + 64])
        best, label = reader.ctc(frames, mask).max(-1)
        heard = mask.bool() & (label != BLANK)
        out += [float(b[h].mean()) if h.any() else -np.inf for b, h in zip(best, heard)]
    return np.array(out)


def surest_factor(sure: dict[float, np.ndarray], factors: tuple[float, ...]) -> np.ndarray:
    """The index into `factors` of each prompt's surest reading [n]."""
    return np.stack([sure[f] for f in factors]).argmax(0)


def surest_logits(logits: dict[float, np.ndarray], sure: dict[float, np.ndarray], factors: tuple[float, ...]) -> np.ndarray:
    """Each prompt's fused logits [n, k] from the one of `factors` the recogniser is surest of."""
    stacked = np.stack([logits[f] for f in factors])  # [factors, n, k]
    return stacked[surest_factor(sure, factors), np.arange(stacked.shape[1])]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--val", required=True)
    p.add_argument("--freetts", required=True)
    p.add_argument("--festival", required=True)
    p.add_argument("--pico", help="a third validation set (SVOX Pico's voices, STUDY part 20): joins the criterion")
    p.add_argument("--model", default="src/star/assets/default")
    p.add_argument("--cache", default="runs/cache/features")
    p.add_argument("--misses", action="store_true", help="also list the wordings each factor misses (weight 24)")
    p.add_argument("--surest", action="store_true", help="also score one reading per prompt, the surest (part 21)")
    a = p.parse_args()
    model, reader = load_stage_one(a.model), load_phonetic(a.model)
    vocab = model.cfg.vocab
    factors = sorted({f for fs in ARMS.values() for f in fs})
    top1: dict[str, dict[str, dict[int, float]]] = {}
    choosing = {"val": a.val, "freetts": a.freetts} | ({"pico": a.pico} if a.pico else {})
    for name, manifest in {**choosing, "festival": a.festival}.items():
        rows = scored_rows(manifest)[0]
        targets = multi_hot(rows, vocab)
        single = np.array([i for i, r in enumerate(rows) if len(row_categories(r)) == 1])
        logits, sure = {}, {}  # factor -> weight -> fused logits [n, k]; factor -> surety [n]
        for f in tqdm(factors, desc=name):
            feats = load_features(rows, model.cfg.speech_encoder, a.cache, speed=f)
            probs = predict_features(model, feats)[0]
            sims = route_similarities(reader, feats)
            logits[f] = {w: fuse(probs, sims, w) for w in WEIGHTS}
            if a.surest:
                sure[f] = surety(reader, feats)
            if a.misses:
                miss = Counter(rows[i]["caption"] for i in single if targets[i, logits[f][24][i].argmax()] == 0)
                print(f"{name} x{f}: {sum(miss.values())} missed: {dict(miss.most_common(6))}")
        single_scores = {f"x{f} alone": {w: top1_accuracy(logits[f][w][single], targets[single]) for w in WEIGHTS}
                         for f in factors if f != 1.0}  # 1.0 alone is the first arm
        arm_scores = {arm: {w: top1_accuracy(np.mean([logits[f][w] for f in fs], 0)[single], targets[single])
                            for w in WEIGHTS} for arm, fs in ARMS.items()}
        if a.surest:
            print(f"{name}: median surety " + " ".join(f"x{f} {np.median(sure[f]):.4f}" for f in factors))
            picks = Counter(np.array(factors)[surest_factor(sure, tuple(factors))[single]].tolist())
            print(f"{name}: single-event prompts by surest factor " + " ".join(f"x{f} {picks[f]}" for f in factors))
            arm_scores |= {arm: {w: top1_accuracy(surest_logits({f: logits[f][w] for f in fs}, sure, fs)[single],
                                                  targets[single]) for w in WEIGHTS} for arm, fs in SUREST.items()}
        top1[name] = {**arm_scores, **single_scores}
    titles = {"val": "validation", "freetts": "FreeTTS", "pico": "Pico"}
    print(f"| arm | w | {' | '.join(titles[n] for n in choosing)} | criterion | festival (reported) |")
    print("|---|" + "---:|" * (len(choosing) + 3))
    for arm in top1["val"]:
        crit = {w: float(np.mean([top1[n][arm][w] for n in choosing])) for w in WEIGHTS}
        w = max(WEIGHTS, key=lambda x: crit[x])
        print(f"| {arm} | {w} | {' | '.join(f'{top1[n][arm][w]:.3f}' for n in choosing)} | {crit[w]:.5f} "
              f"| {top1['festival'][arm][w]:.3f} |")


if __name__ == "__main__":
    main()
