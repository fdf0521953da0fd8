"""Does `listen` hear better when the phonetic route is averaged over several readers? (STUDY part 24)

    python scripts/route_ensemble.py --val runs/data/esc10_train/prompts.jsonl \
        --freetts runs/data/esc10_freetts/prompts.jsonl --pico runs/data/esc10_pico/prompts.jsonl \
        --festival runs/data/esc10_festival/prompts.jsonl \
        --reader v13=src/star/assets/default --reader d0=runs/deeper_ctc/release --reader d1=runs/deeper_ctc_s1/release \
        --arm E3=v13,d0,d1

A reader is a phonetic folder (CTC head + bag + centroids). Each reader decodes every reading on its own, and an
arm averages the fused event logits over its readers and over the model's reading speeds (the first reader's
`reading_speeds`); since the fusion is linear in the route's cosines, that is the bridge fused with the averaged
cosines. Every reader alone is an arm too. The fusion weight of each arm is chosen by part 20's criterion (mean
fused top-1 of the three validation sets); festival is only reported. Features come from the prompt cache.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from tqdm import tqdm

from star.bridge.evaluate import route_similarities, scored_rows
from star.bridge.model import load_stage_one
from star.bridge.phonetic import fuse, load_phonetic
from star.train.bridge_task import load_features, multi_hot, predict_features, row_categories, top1_accuracy

WEIGHTS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)
CHOOSING = ("val", "freetts", "pico")


def named(pair: str) -> tuple[str, str]:
    name, _, value = pair.partition("=")
    if not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {pair!r}")
    return name, value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name in (*CHOOSING, "festival"):
        p.add_argument(f"--{name}", required=True, help=f"the {name} prompt manifest")
    p.add_argument("--model", default="src/star/assets/default", help="the bridge (and its speech encoder)")
    p.add_argument("--cache", default="runs/cache/features")
    p.add_argument("--reader", type=named, action="append", required=True, help="NAME=phonetic folder")
    p.add_argument("--arm", type=named, action="append", default=[], help="NAME=reader,reader,...")
    a = p.parse_args()
    torch.set_num_threads(2)
    model = load_stage_one(a.model)
    readers = {name: load_phonetic(folder) for name, folder in a.reader}
    arms = {name: [name] for name in readers} | {name: members.split(",") for name, members in a.arm}
    if unknown := {m for members in arms.values() for m in members} - set(readers):
        raise SystemExit(f"arms name readers that were not given: {sorted(unknown)}")
    speeds = next(iter(readers.values())).cfg.reading_speeds
    top1: dict[str, dict[str, dict[int, float]]] = {}
    for set_name in (*CHOOSING, "festival"):
        rows = scored_rows(getattr(a, set_name))[0]
        targets = multi_hot(rows, model.cfg.vocab)
        single = np.array([i for i, r in enumerate(rows) if len(row_categories(r)) == 1])
        probs, sims = {}, {}  # speed -> bridge probabilities [n, k]; (speed, reader) -> route cosines [n, k]
        for speed in tqdm(speeds, desc=set_name):
            feats = load_features(rows, model.cfg.speech_encoder, a.cache, speed=speed)
            probs[speed] = predict_features(model, feats)[0]
            sims |= {(speed, name): route_similarities(r, feats) for name, r in readers.items()}
        top1[set_name] = {
            arm: {w: top1_accuracy(np.mean([fuse(probs[s], sims[s, m], w) for s in speeds for m in members], 0)[single],
                                   targets[single]) for w in WEIGHTS}
            for arm, members in arms.items()}
    print("| arm | readers | w | validation | FreeTTS | Pico | criterion | festival (reported) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for arm, members in arms.items():
        crit = {w: float(np.mean([top1[n][arm][w] for n in CHOOSING])) for w in WEIGHTS}
        w = max(WEIGHTS, key=lambda x: (crit[x], -x))
        print(f"| {arm} | {' + '.join(members)} | {w} | {' | '.join(f'{top1[n][arm][w]:.3f}' for n in CHOOSING)} "
              f"| {crit[w]:.5f} | {top1['festival'][arm][w]:.3f} |")


if __name__ == "__main__":
    main()
