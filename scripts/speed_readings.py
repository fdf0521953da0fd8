"""Does `listen` hear a prompt better when it also reads it played faster and slower? (STUDY part 19)

    python scripts/speed_readings.py --val runs/data/esc10_train/prompts.jsonl \
        --freetts runs/data/esc10_freetts/prompts.jsonl --festival runs/data/esc10_festival/prompts.jsonl

Every prompt of each set is resampled by each factor (played `factor` times as fast: tempo and pitch move
together) and read by both routes of a model folder; an arm averages the fused event logits of its factors.
For each arm, the fusion weight is chosen by part 13's criterion (mean fused top-1 of the two validation
sets); festival is only reported. Also prints each factor read alone and, with `--misses`, the wordings each
factor misses. The resampled prompts are written under `--work` (one folder per set and factor, as file
names repeat across sets) and their features cached like any prompt's.
"""

from __future__ import annotations

import argparse
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly
from tqdm import tqdm

from star.audio import SAMPLE_RATE
from star.audio.io import load_audio, write_wav
from star.bridge.evaluate import route_similarities, scored_rows
from star.bridge.model import load_stage_one
from star.bridge.phonetic import fuse, load_phonetic
from star.train.bridge_task import load_features, multi_hot, predict_features, row_categories, top1_accuracy

WEIGHTS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)
ARMS = {"as shipped": (1.0,), "A: 0.9 1.0 1.1": (0.9, 1.0, 1.1), "B: 0.85 1.0 1.15": (0.85, 1.0, 1.15)}


def speed_rows(rows: list[dict], factor: float, folder: Path) -> list[dict]:
    """`rows` with each prompt's speech played `factor` times as fast (written once into `folder`)."""
    if factor == 1.0:
        return rows
    ratio = Fraction(factor).limit_denominator(40)
    out = []
    for r in rows:
        dst = folder / Path(r["speech"]).name
        if not dst.exists():
            wav = load_audio(r["speech"])
            dst.parent.mkdir(parents=True, exist_ok=True)
            write_wav(dst, resample_poly(wav, ratio.denominator, ratio.numerator).astype(np.float32), SAMPLE_RATE)
        out.append({**r, "speech": str(dst)})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--val", required=True)
    p.add_argument("--freetts", required=True)
    p.add_argument("--festival", required=True)
    p.add_argument("--model", default="src/star/assets/default")
    p.add_argument("--work", default="runs/speed_readings")
    p.add_argument("--cache", default="runs/cache/features")
    p.add_argument("--misses", action="store_true", help="also list the wordings each factor misses (weight 24)")
    a = p.parse_args()
    model, reader = load_stage_one(a.model), load_phonetic(a.model)
    vocab = model.cfg.vocab
    factors = sorted({f for fs in ARMS.values() for f in fs})
    top1: dict[str, dict[str, dict[int, float]]] = {}
    for name, manifest in {"val": a.val, "freetts": a.freetts, "festival": a.festival}.items():
        rows = scored_rows(manifest)[0]
        targets = multi_hot(rows, vocab)
        single = np.array([i for i, r in enumerate(rows) if len(row_categories(r)) == 1])
        logits = {}  # factor -> weight -> fused logits [n, k]
        for f in tqdm(factors, desc=name):
            feats = load_features(speed_rows(rows, f, Path(a.work) / name / str(f)), model.cfg.speech_encoder, a.cache)
            probs = predict_features(model, feats)[0]
            sims = route_similarities(reader, feats)
            logits[f] = {w: fuse(probs, sims, w) for w in WEIGHTS}
            if a.misses:
                miss = Counter(rows[i]["caption"] for i in single if targets[i, logits[f][24][i].argmax()] == 0)
                print(f"{name} x{f}: {sum(miss.values())} missed: {dict(miss.most_common(6))}")
        single_scores = {f"x{f} alone": {w: top1_accuracy(logits[f][w][single], targets[single]) for w in WEIGHTS}
                         for f in factors if f != 1.0}  # 1.0 alone is the shipped arm
        arm_scores = {arm: {w: top1_accuracy(np.mean([logits[f][w] for f in fs], 0)[single], targets[single])
                            for w in WEIGHTS} for arm, fs in ARMS.items()}
        top1[name] = {**arm_scores, **single_scores}
    print("| arm | w | validation | FreeTTS | criterion | festival (reported) |\n|---|---:|---:|---:|---:|---:|")
    for arm in top1["val"]:
        crit = {w: (top1["val"][arm][w] + top1["freetts"][arm][w]) / 2 for w in WEIGHTS}
        w = max(WEIGHTS, key=lambda x: crit[x])
        print(f"| {arm} | {w} | {top1['val'][arm][w]:.3f} | {top1['freetts'][arm][w]:.3f} | {crit[w]:.5f} "
              f"| {top1['festival'][arm][w]:.3f} |")


if __name__ == "__main__":
    main()
