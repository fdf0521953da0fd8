"""Is this speech a request for a known sound? A small logistic "request head" on the frozen stage-1 model.

The event head answers "which sound", not "was a sound asked for": ordinary speech that shares a word
with a request ("the sound of a car engine") can still light it up. This head reads the bridge's aligned
embedding [e] plus the highest event probability and is trained *after* the bridge, with the bridge
frozen, so it never changes the tokens the generator consumes. It lives in its own file beside the
model (`request_head.json`); `listen` uses it when present.

Positives: training prompts (the corpus' train split and the extra phrasings). Negatives: spoken
sentences that ask for no known sound (the general distillation sets' rows with all-zero teacher
targets, the lexicon negatives). The threshold keeps `min_recall` of the validation prompts.

    python -m star.bridge.request --model runs/bridge/final --manifest runs/data/esc10_train/prompts.jsonl \
        --positives runs/bridge/phrasings/prompts.jsonl \
        --negatives runs/bridge/general/prompts.jsonl runs/bridge/general2/prompts.jsonl \
        runs/bridge/negatives/prompts.jsonl
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from star.errors import StarError

FILE_NAME = "request_head.json"


@dataclass
class RequestHead:
    """p(request) = sigmoid(features . weights + bias); features = [aligned embedding (e), max event prob]."""

    weights: np.ndarray  # [e + 1]
    bias: float
    threshold: float  # p(request) below this -> "no spoken sound request heard"

    @staticmethod
    def features(embedding: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """embedding [n, e], probs [n, k] -> [n, e + 1]."""
        return np.concatenate([embedding, probs.max(1, keepdims=True)], axis=1).astype(np.float64)

    def prob(self, embedding: np.ndarray, probs: np.ndarray) -> np.ndarray:
        """[n, e], [n, k] -> p(request) [n]."""
        z = self.features(embedding, probs) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-z))

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / FILE_NAME
        data = {"weights": self.weights.round(6).tolist(), "bias": self.bias, "threshold": self.threshold}
        path.write_text(json.dumps(data) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> RequestHead | None:
        """The head saved in `folder`, or None if there is none."""
        path = Path(folder) / FILE_NAME
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        return cls(np.asarray(data["weights"], dtype=np.float64), float(data["bias"]), float(data["threshold"]))


def fit_request_head(
    pos_feats: np.ndarray, neg_feats: np.ndarray, val_feats: np.ndarray, min_recall: float = 0.97
) -> tuple[RequestHead, dict]:
    """Logistic regression (balanced classes) on [n, f] features; threshold = the (1 - min_recall)
    quantile of the validation prompts' probabilities."""
    from sklearn.linear_model import LogisticRegression

    if len(pos_feats) == 0 or len(neg_feats) == 0 or len(val_feats) == 0:
        raise StarError("the request head needs positives, negatives and validation prompts")
    x = np.concatenate([pos_feats, neg_feats])
    y = np.concatenate([np.ones(len(pos_feats)), np.zeros(len(neg_feats))])
    clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(x, y)
    head = RequestHead(clf.coef_[0].astype(np.float64), float(clf.intercept_[0]), 0.5)
    z = val_feats @ head.weights + head.bias
    val_p = 1.0 / (1.0 + np.exp(-z))
    head.threshold = float(min(0.5, np.quantile(val_p, 1.0 - min_recall)))
    train_neg_p = 1.0 / (1.0 + np.exp(-(neg_feats @ head.weights + head.bias)))
    stats = {
        "positives": len(pos_feats),
        "negatives": len(neg_feats),
        "validation_recall": float((val_p >= head.threshold).mean()),
        "train_negative_rejection": float((train_neg_p < head.threshold).mean()),
        "threshold": head.threshold,
    }
    return head, stats


def build_request_head(
    model_dir: str | Path,
    manifest: str | Path,
    positives: list[str],
    negatives: list[str],
    cache_dir: str | Path = "runs/cache/features",
    min_recall: float = 0.97,
    out_dir: str | Path | None = None,
) -> dict:
    """Fit the head on cached features of the frozen model in `model_dir`; save it to `out_dir`
    (default: `model_dir`)."""
    from star.bridge.model import load_stage_one
    from star.train.bridge_task import (
        VAL_SPLITS,
        load_features,
        predict_features,
        read_manifest,
        row_categories,
    )

    model = load_stage_one(model_dir)

    def feats(rows: list[dict]) -> np.ndarray:
        probs, emb = predict_features(model, load_features(rows, model.cfg.speech_encoder, cache_dir))
        return RequestHead.features(emb, probs)

    rows = read_manifest(manifest)
    pos = [r for r in rows if r.get("split", "train") == "train"]
    for m in positives:
        pos += [r for r in read_manifest(m) if row_categories(r)]
    neg = [r for m in negatives for r in read_manifest(m) if not row_categories(r) and r.get("bce", True)]
    val = [r for r in rows if r.get("split") in VAL_SPLITS]
    head, stats = fit_request_head(feats(pos), feats(neg), feats(val), min_recall)
    head.save(out_dir or model_dir)
    return stats


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Fit listen's request head on a frozen stage-1 model")
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", required=True, help="prompts manifest (train split = positives, val = recall)")
    p.add_argument("--positives", nargs="*", default=[], help="more prompt manifests (rows with categories)")
    p.add_argument("--negatives", nargs="+", required=True, help="manifests whose label-less rows are negatives")
    p.add_argument("--cache", default="runs/cache/features")
    p.add_argument("--min-recall", type=float, default=0.97)
    p.add_argument("--out", help="where to write request_head.json (default: the model folder)")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    stats = build_request_head(
        a.model, a.manifest, a.positives, a.negatives, a.cache, a.min_recall, a.out
    )
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
