"""Stage 1 training task: the bridge pre-trained on spoken sound-event prompts.

Reads a prompts manifest (JSONL; `speech` wav, `caption`, `events`, `split` per line, paths relative to
the manifest), encodes every speech file once into the on-disk FeatureCache, then trains
`StageOneModel` on cached frames: multi-label BCE over the event vocabulary plus an InfoNCE alignment
between the pooled bridge output and the caption's sentence embedding. Cheap feature augmentation
(speed warp, crops, time and channel masking) stands in for more voices. Early stopping watches the
validation mAP; export writes `bridge.safetensors` + `bridge.json`.

    python -m star.train.bridge_task configs/bridge_qformer.json
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from star.bridge.model import StageOneConfig, StageOneModel, save_stage_one
from star.config import JsonConfig
from star.errors import StarError
from star.train.trainer import TrainConfig, Trainer

VAL_SPLITS = ("val", "validation")  # either spelling marks validation prompts
MAX_LISTEN_CAPTIONS = 600  # phrasings kept in bridge.json for listen's "closest caption"


@dataclass
class AugmentConfig(JsonConfig):
    """Feature-space augmentation of cached encoder frames [t, d]."""

    speed: float = 0.1  # time warp by a factor in [1 - speed, 1 + speed] (frame resampling)
    crop: float = 0.05  # drop up to this share of frames at each end
    time_masks: int = 2  # spans of frames hidden from the bridge (mask False)
    time_mask_frac: float = 0.08  # longest span, as a share of the prompt
    channel_drop: float = 0.1  # probability of zeroing each feature channel (per item)
    noise: float = 0.0  # gaussian noise, as a share of the frames' std
    # Chance that a sound request gets the frames of a no-sound utterance joined before or after it, so
    # words the bridge does not know ("... beating the air") stop pulling it towards some category.
    distractor: float = 0.0

    def apply(self, x: np.ndarray, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
        """x [t, d] float -> (augmented frames [t', d] float32, mask [t'] bool)."""
        x = np.asarray(x, dtype=np.float32)
        t = x.shape[0]
        if self.crop > 0 and t > 10:
            lo = rng.randint(0, int(self.crop * t))
            hi = t - rng.randint(0, int(self.crop * t))
            x, t = x[lo:hi], hi - lo
        if self.speed > 0 and t > 4:
            factor = rng.uniform(1 - self.speed, 1 + self.speed)
            new_t = max(2, round(t / factor))
            idx = np.minimum(np.round(np.linspace(0, t - 1, new_t)).astype(int), t - 1)
            x, t = x[idx], new_t
        mask = np.ones(t, dtype=bool)
        for _ in range(self.time_masks):
            width = rng.randint(0, int(self.time_mask_frac * t))
            if width:
                start = rng.randint(0, t - width)
                mask[start : start + width] = False
        if not mask.any():
            mask[:] = True
        if self.channel_drop > 0:
            keep = np.array([rng.random() >= self.channel_drop for _ in range(x.shape[1])], dtype=np.float32)
            x = x * keep
        if self.noise > 0:
            nrng = np.random.default_rng(rng.getrandbits(32))
            x = x + self.noise * float(x.std()) * nrng.standard_normal(x.shape, dtype=np.float32)
        return x, mask


@dataclass
class BridgeTaskConfig(JsonConfig):
    manifest: str = "runs/data/esc10_train/prompts.jsonl"
    out_dir: str = "runs/bridge"
    cache_dir: str = "runs/cache/features"
    model: StageOneConfig = field(default_factory=StageOneConfig)  # vocab/captions are filled from data
    train: TrainConfig = field(default_factory=lambda: TrainConfig(monitor="val_map", patience=6))
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    batch_size: int = 64
    align_weight: float = 1.0
    order_weight: float = 0.0  # > 0 adds the order head and its loss on sequence prompts ("A, then B")
    sequence_repeats: int = 0  # list the training prompts of two-event sequences this many more times
    # Slots bridges (model.order_slots): BCE of each half's event head against the events of its half of
    # the clip (a sequence: its first, its second event; any other prompt: all of its events), so the
    # generator can read the first half of the tokens for the first half of the clip (time_slots).
    slot_weight: float = 0.0
    extra_manifests: list[str] = field(
        default_factory=list
    )  # more training prompts (e.g. star.bridge.expand)
    report_manifests: list[str] = field(default_factory=list)  # evaluated and logged, never monitored
    limit: int = 0  # use only the first N manifest lines (debug); 0 = all
    init_from: str = ""  # a stage-1 model folder whose weights start training (warm start); "" = random


# ---- data ------------------------------------------------------------------------------------------
def read_manifest(path: str | Path, limit: int = 0) -> list[dict[str, Any]]:
    """Rows of a prompts manifest with `speech` resolved to an absolute path."""
    path = Path(path)
    if not path.is_file():
        raise StarError(f"{path}: no such manifest")
    base = path.resolve().parent
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise StarError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not row.get("speech") or not row.get("caption"):
                raise StarError(f"{path}:{lineno}: a prompt needs 'speech' and 'caption'")
            row["speech"] = str(base / row["speech"])
            rows.append(row)
            if limit and len(rows) >= limit:
                break
    if not rows:
        raise StarError(f"{path}: manifest is empty")
    return rows


def row_categories(row: dict[str, Any]) -> list[str]:
    """The distinct event categories a prompt asks for, in order of first mention."""
    cats = [e["category"] for e in row.get("events", [])]
    if not cats and row.get("category"):
        cats = [row["category"]]
    return list(dict.fromkeys(cats))


def read_vocab(manifest: str | Path, rows: list[dict[str, Any]]) -> list[str]:
    """Event vocabulary: `vocab.json` beside the manifest when present, else the sorted categories seen."""
    path = Path(manifest).parent / "vocab.json"
    if path.is_file():
        data = json.loads(path.read_text())
        if isinstance(data, dict):
            data = data.get("categories", data.get("vocab", list(data)))
        vocab = [c if isinstance(c, str) else c["category"] for c in data]
    else:
        vocab = sorted({c for r in rows for c in row_categories(r)})
    if not vocab:
        raise StarError(f"{manifest}: no event categories found")
    return vocab


def multi_hot(rows: list[dict[str, Any]], vocab: list[str]) -> np.ndarray:
    """rows -> [n, k] float32 targets."""
    index = {c: i for i, c in enumerate(vocab)}
    y = np.zeros((len(rows), len(vocab)), dtype=np.float32)
    for i, r in enumerate(rows):
        for c in row_categories(r):
            if c not in index:
                raise StarError(f"prompt {r.get('id')}: category {c!r} is not in the vocabulary")
            y[i, index[c]] = 1.0
    return y


def order_targets(rows: list[dict[str, Any]], vocab: list[str]) -> np.ndarray:
    """rows -> [n, 2] int64: the classes of the first and the second event of each sequence prompt of two
    distinct categories (events are listed in time order), -1 for every other prompt."""
    index = {c: i for i, c in enumerate(vocab)}
    y = np.full((len(rows), 2), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        cats = row_categories(r)
        if r.get("kind") == "sequence" and len(cats) == 2 and all(c in index for c in cats):
            y[i] = [index[c] for c in cats]  # (an unknown category is multi_hot's error to report)
    return y


def order_accuracy(order_logits: np.ndarray, targets: np.ndarray) -> float:
    """Share of sequence prompts whose order head prefers the true order of their two events to the
    reverse. order_logits [n, 2, k], targets [n, 2] (-1 rows are skipped)."""
    keep = targets[:, 0] >= 0
    if not keep.any():
        return float("nan")
    logp = order_logits[keep] - np.logaddexp.reduce(order_logits[keep], axis=2, keepdims=True)
    first, second = targets[keep, 0], targets[keep, 1]
    rows = np.arange(len(first))
    right = logp[rows, 0, first] + logp[rows, 1, second]
    reverse = logp[rows, 0, second] + logp[rows, 1, first]
    return float((right > reverse).mean())


def load_features(rows: list[dict[str, Any]], encoder_name: str, cache_dir: str | Path,
                  speed: float = 1.0) -> list[np.ndarray]:
    """Cached encoder frames [t_i, d] float16 for each row's speech (encoding only cache misses); with
    `speed`, of the speech played that many times as fast (cached apart)."""
    from star.encoders import build_speech_encoder
    from star.encoders.cache import FeatureCache
    from star.encoders.speech import PlayedAtSpeed

    encoder = build_speech_encoder(encoder_name)
    if speed != 1.0:
        encoder = PlayedAtSpeed(encoder, speed)
    cache = FeatureCache(cache_dir, encoder.name)
    files = cache.ensure([r["speech"] for r in rows], encoder)
    return [np.load(f) for f in files]


def collate(items: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    """[(frames [t_i, d], mask [t_i])] -> (frames [b, t, d], mask [b, t]) zero-padded."""
    t = max(x.shape[0] for x, _ in items)
    d = items[0][0].shape[1]
    frames = torch.zeros(len(items), t, d)
    mask = torch.zeros(len(items), t, dtype=torch.bool)
    for i, (x, m) in enumerate(items):
        frames[i, : x.shape[0]] = torch.from_numpy(np.asarray(x, dtype=np.float32))
        mask[i, : x.shape[0]] = torch.from_numpy(m)
    return frames, mask


def collate_frames(feats: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames of whole prompts [t_i, d] (every frame real) -> (frames [b, t, d], mask [b, t]) zero-padded."""
    return collate([(f, np.ones(len(f), dtype=bool)) for f in feats])


def join_frames(
    first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Two (frames [t, d], mask [t]) items, one after the other."""
    return np.concatenate([first[0], second[0]]), np.concatenate([first[1], second[1]])


@dataclass
class PromptSet:
    """Prompts with their cached frames, targets and caption ids."""

    rows: list[dict[str, Any]]
    feats: list[np.ndarray]
    targets: np.ndarray  # [n, k]
    caption_ids: np.ndarray  # [n] index into the task's caption list
    bce_weight: np.ndarray | None = None  # [n] 0 = no event loss (a distillation row without a label)
    order: np.ndarray | None = None  # [n, 2] first and second event class of sequence prompts, else -1

    def single(self) -> np.ndarray:
        """Indices of prompts asking for exactly one event category (used for top-1)."""
        return np.array([i for i, r in enumerate(self.rows) if len(row_categories(r)) == 1], dtype=int)


def voice_name(row: dict[str, Any]) -> str:
    """Short voice name of a prompt: "festival:ked_diphone" -> "ked_diphone"."""
    return str(row.get("voice", "unknown")).split(":")[-1]


# ---- metrics ---------------------------------------------------------------------------------------
def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Macro mAP over classes with at least one positive. scores, targets [n, k]."""
    from sklearn.metrics import average_precision_score

    cols = [j for j in range(targets.shape[1]) if 0 < targets[:, j].sum() < len(targets)]
    if not cols:
        return float("nan")
    return float(np.mean([average_precision_score(targets[:, j], scores[:, j]) for j in cols]))


def top1_accuracy(scores: np.ndarray, targets: np.ndarray) -> float:
    """Share of single-label rows whose highest score is the true class. scores, targets [n, k]."""
    if len(scores) == 0:
        return float("nan")
    return float((targets[np.arange(len(scores)), scores.argmax(1)] > 0).mean())


@torch.no_grad()
def predict_features(
    model: StageOneModel, feats: list[np.ndarray], batch: int = 128
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Frames list -> (event probabilities [n, k], aligned embeddings [n, e], order logits [n, 2, k] or
    None without an order head)."""
    probs, embs, orders = [], [], []
    for s in range(0, len(feats), batch):
        frames, mask = collate_frames(feats[s : s + batch])
        out = model.predict(frames, mask)
        probs.append(torch.sigmoid(out.logits).numpy())
        embs.append(out.embedding.numpy())
        if out.order_logits is not None:
            orders.append(out.order_logits.numpy())
    return np.concatenate(probs), np.concatenate(embs), np.concatenate(orders) if orders else None


# ---- task ------------------------------------------------------------------------------------------
class BridgeTask:
    """Trainer task for stage 1 (see module docstring)."""

    def __init__(self, cfg: BridgeTaskConfig):
        from star.encoders import build_text_encoder

        self.cfg = cfg
        rows = read_manifest(cfg.manifest, cfg.limit)
        vocab = read_vocab(cfg.manifest, rows)
        train_rows = [r for r in rows if r.get("split", "train") == "train"]
        listen_rows = list(train_rows)  # listen reports the corpus' own phrasings, not mined extras
        for extra in cfg.extra_manifests:
            train_rows += [r for r in read_manifest(extra) if r.get("split", "train") == "train"]
        # Sequences are ~4 % of the prompts: repeating them gives the order loss enough examples per batch.
        sequences = order_targets(train_rows, vocab)[:, 0] >= 0
        train_rows += [r for r, s in zip(train_rows, sequences, strict=True) if s] * cfg.sequence_repeats
        val_rows = [r for r in rows if r.get("split") in VAL_SPLITS]
        if not train_rows or not val_rows:
            raise StarError(f"{cfg.manifest}: needs prompts with split 'train' and 'validation'")
        self.captions = list(dict.fromkeys(r["caption"] for r in train_rows))
        text = build_text_encoder(cfg.model.text_encoder)
        self.caption_emb = text.embed(self.captions).float()  # [n_captions, e]
        cap_index = {c: i for i, c in enumerate(self.captions)}
        cfg.model.vocab = vocab
        cfg.model.captions = self._listen_captions(listen_rows)
        cfg.model.text_dim = int(self.caption_emb.shape[1])
        cfg.model.order_head = cfg.model.order_head or cfg.order_weight > 0 or cfg.slot_weight > 0
        if cfg.slot_weight > 0 and not cfg.model.order_slots:
            raise StarError("slot_weight needs a slots bridge (model.order_slots: true)")
        torch.manual_seed(cfg.train.seed)
        self.model = StageOneModel(cfg.model)
        if cfg.init_from:
            self._warm_start(cfg.init_from)
        with torch.no_grad():
            self.model.caption_emb.copy_(self.caption_emb[[cap_index[c] for c in cfg.model.captions]])

        def prompt_set(part: list[dict[str, Any]], with_ids: bool) -> PromptSet:
            feats = load_features(part, cfg.model.speech_encoder, cfg.cache_dir)
            ids = np.array([cap_index.get(r["caption"], -1) for r in part]) if with_ids else np.zeros(0)
            weight = np.array([0.0 if r.get("bce", True) is False else 1.0 for r in part], dtype=np.float32)
            return PromptSet(part, feats, multi_hot(part, vocab), ids, weight, order_targets(part, vocab))

        self.train_set = prompt_set(train_rows, True)
        # No-sound utterances with an event loss (all-zero targets): the distractors of AugmentConfig.
        ts = self.train_set
        self.no_sound = np.flatnonzero((ts.targets.sum(1) == 0) & (ts.bce_weight > 0))
        # Category centroids of the training captions in the text space: the "zero-shot" read-out of the
        # aligned embedding, logged beside the event head's top-1 (a diagnostic, not what listen uses).
        cents = []
        for j in range(len(vocab)):
            ids = sorted({int(c) for c, t in zip(self.train_set.caption_ids, self.train_set.targets)
                          if t[j] == 1 and t.sum() == 1})
            cents.append(torch.nn.functional.normalize(self.caption_emb[ids].mean(0), dim=0))
        self.class_emb = torch.stack(cents).numpy()  # [k, e]
        self.val_set = prompt_set(val_rows, False)
        self.report_sets = {
            Path(m).parent.name: prompt_set(read_manifest(m), False) for m in cfg.report_manifests
        }

    def _warm_start(self, folder: str) -> None:
        from safetensors.torch import load_file

        path = Path(folder) / "bridge.safetensors"
        if not path.is_file():
            raise StarError(f"init_from: missing {path}")
        state = {k: v for k, v in load_file(str(path)).items() if k != "caption_emb"}  # captions are rebuilt
        own = self.model.state_dict()
        wrong = [k for k in state if k not in own or own[k].shape != state[k].shape]
        new_head = {k for k in own if k.startswith("order.")}  # an order head may start fresh on a bridge without one
        if wrong or set(own) - set(state) - {"caption_emb"} - new_head:
            raise StarError(f"init_from {folder}: weights do not fit this model ({wrong[:3]})")
        self.model.load_state_dict(state, strict=False)

    def _listen_captions(self, rows: list[dict[str, Any]]) -> list[str]:
        # Single-event phrasings first (they name one sound plainly), then scenes, capped in size.
        single = [r["caption"] for r in rows if len(row_categories(r)) == 1]
        scenes = [r["caption"] for r in rows if len(row_categories(r)) > 1]
        return list(dict.fromkeys(single + scenes))[:MAX_LISTEN_CAPTIONS]

    def batches(self, rank: int, world: int) -> Iterator[tuple[torch.Tensor, ...]]:
        rng = random.Random(self.cfg.train.seed * 1000 + rank)
        n = len(self.train_set.rows)
        order: list[int] = []
        while True:
            if len(order) < self.cfg.batch_size:
                perm = list(range(n))
                rng.shuffle(perm)
                order.extend(perm[rank::world] if world > 1 else perm)
            idx, order = order[: self.cfg.batch_size], order[self.cfg.batch_size :]
            frames, mask = collate([self._augmented(i, rng) for i in idx])
            ids = torch.from_numpy(self.train_set.caption_ids[idx])
            targets = torch.from_numpy(self.train_set.targets[idx])
            weight = torch.from_numpy(self.train_set.bce_weight[idx])
            first_second = torch.from_numpy(self.train_set.order[idx])
            yield (frames, mask, targets, self.caption_emb[ids], ids, weight, first_second)

    def _augmented(self, i: int, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
        """Prompt i's augmented frames and mask, joined with a no-sound utterance's (`distractor`)."""
        aug, ts = self.cfg.augment, self.train_set
        item = aug.apply(ts.feats[i], rng)
        if aug.distractor > 0 and len(self.no_sound) and ts.targets[i].any() and rng.random() < aug.distractor:
            other = aug.apply(ts.feats[int(self.no_sound[rng.randrange(len(self.no_sound))])], rng)
            item = join_frames(other, item) if rng.random() < 0.5 else join_frames(item, other)
        return item

    def loss(self, model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        frames, mask, targets, cap_emb, ids, weight, order = batch
        return model(frames, mask, targets, cap_emb, ids, self.cfg.align_weight, weight, order, self.cfg.order_weight,
                     self.cfg.slot_weight)

    def evaluate(self, model: StageOneModel) -> dict[str, float]:
        metrics = {}
        for name, ps in {"val": self.val_set, **self.report_sets}.items():
            probs, emb, order = predict_features(model, ps.feats)
            single = ps.single()
            metrics[f"{name}_map"] = mean_average_precision(probs, ps.targets)
            if order is not None:
                metrics[f"{name}_order_acc"] = order_accuracy(order, ps.order)
            metrics[f"{name}_top1"] = top1_accuracy(probs[single], ps.targets[single])
            metrics[f"{name}_zs_top1"] = top1_accuracy((emb @ self.class_emb.T)[single], ps.targets[single])
            if name != "val":  # held-out sets: top-1 per voice too (festival ked is the unseen speaker)
                for voice in sorted({voice_name(ps.rows[i]) for i in single}):
                    idx = [i for i in single if voice_name(ps.rows[i]) == voice]
                    metrics[f"{name}_top1_{voice}"] = top1_accuracy(probs[idx], ps.targets[idx])
        return metrics

    def export(self, model: StageOneModel, folder: Path) -> None:
        save_stage_one(model, folder)


def train_bridge(config_path: str | Path, **overrides: Any) -> dict[str, Any]:
    """Train stage 1 from a BridgeTaskConfig JSON file; returns the trainer's summary.

    `overrides` replace top-level config keys (e.g. out_dir=...)."""
    cfg = BridgeTaskConfig.load(config_path)
    for key, value in overrides.items():
        if not hasattr(cfg, key):
            raise StarError(f"unknown bridge config key {key!r}")
        setattr(cfg, key, value)
    torch.set_num_threads(cfg.train.threads)
    task = BridgeTask(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "bridge_task.json")
    return Trainer(task, cfg.train, out).fit()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Stage 1: pre-train the speech bridge on spoken sound events"
    )
    parser.add_argument("config", help="BridgeTaskConfig JSON (see configs/bridge_*.json)")
    parser.add_argument("--out-dir", help="override the config's out_dir")
    args = parser.parse_args(argv)
    overrides = {"out_dir": args.out_dir} if args.out_dir else {}
    print(json.dumps(train_bridge(args.config, **overrides)))


if __name__ == "__main__":
    main()
