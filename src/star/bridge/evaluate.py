"""Score an exported stage-1 model folder on prompt manifests: mAP, top-1 (overall and per voice) and the
phrasings it misses. Uses the feature cache, so scoring a few hundred prompts takes seconds.

    python -m star.bridge.evaluate --model runs/bridge/final \
        --manifest runs/data/esc10_train/prompts.jsonl runs/data/esc10_festival/prompts.jsonl --json out.json
The training manifest contributes its validation split only; other manifests are scored whole.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from star.bridge.model import load_stage_one
from star.train.bridge_task import (
    VAL_SPLITS,
    load_features,
    mean_average_precision,
    multi_hot,
    order_targets,
    predict_features,
    read_manifest,
    row_categories,
    top1_accuracy,
    voice_name,
)


def score_rows(model, rows: list[dict[str, Any]], cache_dir: str | Path) -> dict[str, Any]:
    """Figures for one set of prompts: map, top1, top1 per voice, and misses (caption -> count)."""
    vocab = model.cfg.vocab
    probs, _, halves = predict_features(model, load_features(rows, model.cfg.speech_encoder, cache_dir))
    targets = multi_hot(rows, vocab)
    single = np.array([i for i, r in enumerate(rows) if len(row_categories(r)) == 1], dtype=int)
    out: dict[str, Any] = {
        "prompts": len(rows),
        "single": len(single),
        "map": mean_average_precision(probs, targets),
        "top1": top1_accuracy(probs[single], targets[single]),
        "top1_per_voice": {},
    }
    for voice in sorted({voice_name(rows[i]) for i in single}):
        idx = [i for i in single if voice_name(rows[i]) == voice]
        out["top1_per_voice"][voice] = top1_accuracy(probs[idx], targets[idx])
    misses = Counter(
        f"{rows[i]['caption']} -> {vocab[int(probs[i].argmax())]}"
        for i in single
        if targets[i, probs[i].argmax()] == 0
    )
    out["misses"] = dict(misses.most_common())
    if halves is not None and model.cfg.order_slots:
        out["slots"] = slot_accuracy(halves, order_targets(rows, vocab), targets, single)
    return out


def slot_accuracy(halves: np.ndarray, seq: np.ndarray, targets: np.ndarray, single: np.ndarray) -> dict[str, float]:
    """A slots bridge's halves [n, 2, k] of event logits: the share of two-event sequences (seq [n, 2],
    `order_targets`) whose first half names the first event and second half the second ("sequences"), and
    of the single-event prompts (indices `single`, targets [n, k]) whose halves both name the prompt's
    event ("single")."""
    keep = seq[:, 0] >= 0
    top = halves.argmax(2)  # [n, 2]
    truth = targets[single].argmax(1)  # [s] the one event of each single-event prompt
    return {
        "sequences": float((top[keep] == seq[keep]).all(1).mean()) if keep.any() else float("nan"),
        "single": float((top[single] == truth[:, None]).all(1).mean()) if len(single) else float("nan"),
    }


def evaluate_folder(model_dir: str | Path, manifests: list[str], cache_dir: str | Path) -> dict[str, Any]:
    model = load_stage_one(model_dir)
    result = {}
    for m in manifests:
        rows = read_manifest(m)
        val = [r for r in rows if r.get("split") in VAL_SPLITS]
        name = Path(m).parent.name
        if val:
            rows, name = val, f"{name}:validation"
        result[name] = score_rows(model, rows, cache_dir)
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Score a stage-1 model folder on prompt manifests")
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", nargs="+", required=True)
    p.add_argument("--cache", default="runs/cache/features")
    p.add_argument("--json", help="also write the figures here")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    res = evaluate_folder(a.model, a.manifest, a.cache)
    for name, r in res.items():
        per_voice = r["top1_per_voice"] if len(r["top1_per_voice"]) <= 8 else {}  # not the 100+ training voices
        voices = " ".join(f"{v}={t:.3f}" for v, t in per_voice.items())
        print(f"{name}: mAP {r['map']:.3f} top-1 {r['top1']:.3f} ({r['single']} single) {voices}")
        if "slots" in r:
            print(f"   halves right: sequences {r['slots']['sequences']:.3f}, single events {r['slots']['single']:.3f}")
        for miss, n in list(r["misses"].items())[:25]:
            print(f"   {n:3d}  {miss}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
