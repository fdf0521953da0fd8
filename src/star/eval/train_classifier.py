"""Training of the evaluation event classifier on a corpus of real clips (ESC-10 style folders).

    python -m star.eval.train_classifier CORPUS_DIR [OUT_DIR] [--cache emb.npz]

Train folds: the real clips plus two-event scenes mixed from them (overlay, or sequence "A then B"),
so that the classifier knows what a scene of two real events sounds like. Test folds: the same for
held-out clips, reported as single-clip accuracy, both-events-in-top-2 on scenes, and ordering error
on sequences. The weight decay is picked by leave-one-fold-out over the training folds.

Corpus layout: meta.csv (filename, fold, category) and audio/, read by `star.data.corpus` (so a
corpus.json beside meta.csv can rename the columns); every clip needs an integer fold. Block
embeddings are cached in an npz (resumable): embedding is the slow part (about 1 s per 5 s clip on
one thread).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from star.audio.io import SAMPLE_RATE, load_audio
from star.data.corpus import load_corpus
from star.errors import StarError
from star.eval.aisfx_embed import AisfxEmbedder, window_centres
from star.eval.classifier import DEFAULT_DIR, ClassifierConfig, EventClassifier
from star.eval.metrics import BothEventsPresent, OrderingError

SCENE_SECONDS = 5.0
L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)


def read_corpus(corpus_dir: str | Path) -> list[dict]:
    """Rows {path, fold, category} of a corpus folder (`star.data.corpus`), in meta.csv order.

    The classifier's train/test split is by fold, so every clip needs an integer fold.
    """
    corpus = load_corpus(corpus_dir)
    rows = []
    for clip in corpus.clips:
        if not clip.fold.lstrip("-").isdigit():
            raise StarError(f"{corpus.root}: clip {clip.id} has fold {clip.fold!r}; the classifier needs an "
                            f"integer fold for every clip (column {corpus.config.fold_column!r})")
        rows.append({"path": clip.path, "fold": int(clip.fold), "category": clip.category})
    return rows


@dataclass
class Scene:
    """Two real clips of different classes from one fold, mixed as an overlay or a sequence."""

    key: str
    fold: int
    kind: str  # "overlay" | "sequence"
    first: int  # row indices into the corpus
    second: int
    gain_db: float  # overlay: level of the second event against the first (both peak-normalised)


def plan_scenes(rows: list[dict], per_fold: int, seed: int = 0) -> list[Scene]:
    """Deterministic scene list: `per_fold` scenes per fold, both clips from that fold."""
    rng = np.random.default_rng(seed)
    scenes = []
    for fold in sorted({r["fold"] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r["fold"] == fold]
        if len({rows[i]["category"] for i in idx}) < 2:
            continue
        for k in range(per_fold):
            a = int(rng.choice(idx))
            b = int(rng.choice([i for i in idx if rows[i]["category"] != rows[a]["category"]]))
            kind = "overlay" if k % 2 == 0 else "sequence"
            scenes.append(Scene(f"scene{fold}-{k}", fold, kind, a, b, float(rng.uniform(-6.0, 6.0))))
    return scenes


def _peak_norm(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.max(np.abs(x))), 1e-4)


def _fit_length(x: np.ndarray, n: int) -> np.ndarray:
    return np.pad(x, (0, max(0, n - len(x))))[:n]


def _loudest(x: np.ndarray, n: int) -> np.ndarray:
    """The `n`-sample stretch of `x` around its loudest 0.1 s (where a sparse event actually is)."""
    x = _fit_length(x, max(n, len(x)))
    energy = np.convolve(x.astype(np.float64) ** 2, np.ones(SAMPLE_RATE // 10), "same")
    centre = int(np.clip(np.argmax(energy), n // 2, len(x) - (n - n // 2)))
    return x[centre - n // 2 : centre - n // 2 + n]


def render_scene(scene: Scene, a: np.ndarray, b: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The scene's waveform (5 s, peak 0.9)."""
    n = int(SCENE_SECONDS * sr)
    if scene.kind == "overlay":
        a, b = _peak_norm(_fit_length(a, n)), _peak_norm(_fit_length(b, n))
        mix = a + b * 10 ** (scene.gain_db / 20)
    else:
        mix = np.concatenate([_peak_norm(_loudest(a, n // 2)), _peak_norm(_loudest(b, n - n // 2))])
    return (0.9 * _peak_norm(mix)).astype(np.float32)


def sequence_frame_targets(times: np.ndarray, first: int, second: int, n_classes: int,
                           boundary: float = SCENE_SECONDS / 2) -> np.ndarray:
    """[t, c]: each block's share of the first and the second half (blocks span 2.32 s)."""
    half = 1.16
    share = np.clip((boundary - (times - half)) / (2 * half), 0.0, 1.0)
    out = np.zeros((len(times), n_classes), np.float32)
    out[:, first], out[:, second] = share, 1.0 - share
    return out


class _EmbeddingCache:
    """Block embeddings by key in an npz, saved every few additions so a killed run resumes."""

    def __init__(self, path: Path | None):
        self.path, self.items, self._dirty = path, {}, 0
        if path is not None and path.is_file():
            with np.load(path) as z:
                self.items = {k: z[k] for k in z.files}

    def get(self, key: str, make) -> np.ndarray:
        if key not in self.items:
            self.items[key] = make()
            self._dirty += 1
            if self._dirty >= 20:
                self.flush()
        return self.items[key]

    def flush(self) -> None:
        if self.path is not None and self._dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(self.path, **self.items)
            self._dirty = 0


def _cv_l2(cfg: ClassifierConfig, data: dict[int, list], folds: Sequence[int]) -> float:
    """Weight decay with the best mean (clip accuracy + scene both-in-top-2) over held-out train folds."""
    best, best_score = L2_GRID[1], -1.0
    for l2 in L2_GRID:
        scores = []
        for held in folds:
            train = [x for f in folds if f != held for x in data[f]]
            clf = EventClassifier(ClassifierConfig(**{**cfg.to_dict(), "clip_l2": l2, "frame_l2": l2}))
            clf.fit_windows([x[0] for x in train], [x[1] for x in train], [x[2] for x in train])
            scores.append(_score(clf, data[held])["score"])
        if np.mean(scores) > best_score:
            best, best_score = l2, float(np.mean(scores))
    return best


def _score(clf: EventClassifier, items: list) -> dict:
    """Held-out figures: clip accuracy, both events in the top 2 (per scene kind), ordering error."""
    single = [x for x in items if x[3] is None]
    scenes = [x for x in items if x[3] is not None]
    acc = float(np.mean([np.argmax(clf.proba_from_windows(w)) == int(t) for w, t, _, _ in single]))
    both = {"overlay": BothEventsPresent(), "sequence": BothEventsPresent()}
    order = OrderingError()
    for w, _, _, (kind, a, b, times) in scenes:
        both[kind].update(clf.presence_from_windows(w), [(a, b)])
        if kind == "sequence":
            order.update(clf.frame_proba_from_windows(w), times, a, b)
    out = {"accuracy": acc, "n_single": len(single), "n_scenes": len(scenes)}
    for kind, metric in both.items():
        if metric.count:
            out[f"both_events_present_{kind}"] = metric.compute()
    if order.count:
        out["ordering_error"] = order.compute()
    out["score"] = acc + np.mean([out.get(f"both_events_present_{k}", 0.0) for k in both])
    return out


def train_event_classifier(
    corpus_dir: str | Path,
    out_dir: str | Path = DEFAULT_DIR,
    train_folds: Sequence[int] = (1, 2, 3),
    test_folds: Sequence[int] = (4,),
    cache: str | Path | None = None,
    scenes_per_fold: int = 100,
    l2: float | None = None,
    progress: bool = True,
) -> dict:
    """Fit on `train_folds` (clips + scenes), report on `test_folds`, save release files to `out_dir`.

    `l2` fixes the weight decay; by default it is chosen by leave-one-fold-out over `train_folds`.
    """
    from tqdm import tqdm

    rows = read_corpus(corpus_dir)
    use = set(train_folds) | set(test_folds)
    rows = [r for r in rows if r["fold"] in use]
    if not any(r["fold"] in train_folds for r in rows):
        raise StarError(f"no clips in training folds {list(train_folds)}")
    vocabulary = sorted({r["category"] for r in rows})
    cfg = ClassifierConfig(vocabulary=vocabulary)
    embedder, hop, n_cls = AisfxEmbedder(), cfg.hop_frames, len(vocabulary)
    store = _EmbeddingCache(Path(cache) if cache else None)
    audio: dict[int, np.ndarray] = {}

    def wav(i: int) -> np.ndarray:
        if i not in audio:
            audio[i] = load_audio(rows[i]["path"], SAMPLE_RATE, allow_silent=True)
        return audio[i]

    labels = [vocabulary.index(r["category"]) for r in rows]
    data: dict[int, list] = {f: [] for f in use}  # per fold: (windows, target, frame_targets, scene_info)
    for i, r in enumerate(tqdm(rows, desc="clips", disable=not progress)):
        emb = store.get(f"{Path(r['path']).name}@{hop}", lambda i=i: embedder.windows(wav(i), SAMPLE_RATE, hop)[0])
        data[r["fold"]].append((emb, labels[i], None, None))
    scenes = plan_scenes(rows, scenes_per_fold)
    for s in tqdm(scenes, desc="scenes", disable=not progress):
        emb = store.get(
            f"{s.key}@{hop}",
            lambda s=s: embedder.windows(render_scene(s, wav(s.first), wav(s.second)), SAMPLE_RATE, hop)[0],
        )
        a, b = labels[s.first], labels[s.second]
        times = window_centres(len(emb), hop)
        target = np.zeros(n_cls, np.float32)
        target[[a, b]] = 0.5
        frames = sequence_frame_targets(times, a, b, n_cls) if s.kind == "sequence" else None
        data[s.fold].append((emb, target, frames, (s.kind, a, b, times)))
    store.flush()

    train_folds = [f for f in train_folds if data.get(f)]
    if l2 is None:
        l2 = _cv_l2(cfg, data, train_folds) if len(train_folds) > 1 else cfg.clip_l2
    cfg.clip_l2 = cfg.frame_l2 = l2
    clf = EventClassifier(cfg)
    train = [x for f in train_folds for x in data[f]]
    clf.fit_windows([x[0] for x in train], [x[1] for x in train], [x[2] for x in train])
    report = {
        "corpus": Path(corpus_dir).name,
        "train_folds": list(train_folds),
        "test_folds": list(test_folds),
        "scenes_per_fold": scenes_per_fold,
        "l2": l2,
    }
    test = [x for f in test_folds for x in data.get(f, [])]
    if test:
        report["test"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in _score(clf, test).items()
                          if k != "score"}
    cfg.report = report
    clf.save(out_dir)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the evaluation event classifier on real clips.")
    parser.add_argument("corpus_dir", help="folder with meta.csv (filename, fold, category) and audio/")
    parser.add_argument("out_dir", nargs="?", default=str(DEFAULT_DIR))
    parser.add_argument("--train-folds", default="1,2,3")
    parser.add_argument("--test-folds", default="4")
    parser.add_argument("--scenes-per-fold", type=int, default=100)
    parser.add_argument("--l2", type=float, default=None, help="weight decay (default: cross-validated)")
    parser.add_argument("--cache", default=None, help="npz cache of block embeddings (resumable)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = train_event_classifier(
        args.corpus_dir,
        args.out_dir,
        [int(f) for f in args.train_folds.split(",") if f],
        [int(f) for f in args.test_folds.split(",") if f],
        args.cache,
        args.scenes_per_fold,
        args.l2,
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
