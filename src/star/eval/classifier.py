"""The independent event classifier used to score generated audio (accuracy, KL, IS, ordering).

It is trained on REAL audio only (real clips, and scenes mixed from real clips), so it judges
generated clips as a listener who has heard only real recordings. Features are aisfx block
embeddings (`star.eval.aisfx_embed`: 2.32 s blocks every 0.23 s); two linear softmax heads on
standardised features:

- clip head: [mean, max] over the clip's blocks [1024] -> class posterior [c];
- frame head: one block [512] -> class posterior per block, placed at the block centres (ordering).

Presence of an event anywhere in a clip is the per-class maximum of the frame posteriors over blocks
(`presence`): on held-out real two-event scenes it ranks both events in the top two more often than
the clip posterior does (overlays 0.46 vs 0.34, sequences 0.90 vs 0.74, ESC-10 fold 4), because a
block where one event dominates still counts. Targets may be soft: two-event scenes mixed from real
clips are trained towards 0.5/0.5 (blocks of a sequence by their share of each half). Linear heads
on a frozen embedding (an MLP did no better) keep the shipped weights tiny.
Release files: `eval_classifier.safetensors` + `eval_classifier.json` (config with the vocabulary
and the training report) in `star/assets/eval_classifier/`; training is `star.eval.train_classifier`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from star.config import JsonConfig
from star.errors import StarError
from star.eval.aisfx_embed import EMBED_DIM, AisfxEmbedder, clip_embedding_from_windows, shared_embedder
from star.weights import load_config, load_weights, save_weights

NAME = "eval_classifier"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "assets" / NAME


@dataclass
class ClassifierConfig(JsonConfig):
    vocabulary: list[str] = field(default_factory=list)
    embed_dim: int = EMBED_DIM
    hop_frames: int = 10  # block hop in aisfx frames (23.2 ms): 0.23 s time resolution for ordering
    clip_l2: float = 1e-2  # weight decay of the softmax regressions (on standardised features)
    frame_l2: float = 1e-2
    report: dict = field(default_factory=dict)  # how it was trained and what it scored


class _Heads(torch.nn.Module):
    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.register_buffer("clip_mean", torch.zeros(2 * dim))
        self.register_buffer("clip_scale", torch.ones(2 * dim))
        self.register_buffer("frame_mean", torch.zeros(dim))
        self.register_buffer("frame_scale", torch.ones(dim))
        self.clip = torch.nn.Linear(2 * dim, n_classes)
        self.frame = torch.nn.Linear(dim, n_classes)


@dataclass
class ClipAnalysis:
    """Everything scoring needs from one embedding pass over a clip."""

    embedding: np.ndarray  # [512] aisfx clip embedding (mean of blocks at hop 50), for FD
    proba: np.ndarray  # [c] clip posterior
    presence: np.ndarray  # [c] max over blocks of the frame posteriors: is the event anywhere in the clip
    frame_proba: np.ndarray  # [t, c] per-block posteriors
    frame_times: np.ndarray  # [t] block centres in seconds


def _clip_features(window_emb: np.ndarray) -> np.ndarray:
    return np.concatenate([window_emb.mean(axis=0), window_emb.max(axis=0)])  # [2d]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _soft(target: int | np.ndarray, n_classes: int) -> np.ndarray:
    if np.ndim(target) == 0:
        return np.eye(n_classes, dtype=np.float32)[int(target)]
    target = np.asarray(target, np.float32)
    if target.shape != (n_classes,) or target.min() < 0 or not np.isclose(target.sum(), 1.0, atol=1e-4):
        raise StarError(f"soft targets must be probability vectors of length {n_classes}")
    return target


def fit_softmax_regression(
    x: np.ndarray, y: np.ndarray, l2: float, steps: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression with soft targets: x [n, d], y [n, c] -> W [c, d], b [c].

    Mean cross-entropy + l2 * |W|^2, full-batch L-BFGS (convex, so deterministic and seconds on CPU).
    """
    xt = torch.from_numpy(np.asarray(x, np.float32))
    yt = torch.from_numpy(np.asarray(y, np.float32))
    layer = torch.nn.Linear(xt.shape[1], yt.shape[1])
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    opt = torch.optim.LBFGS(layer.parameters(), lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = -(yt * torch.log_softmax(layer(xt), dim=1)).sum(1).mean() + l2 * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy()


class EventClassifier:
    """Sound-event posteriors for clips and for 0.23 s-spaced blocks within a clip."""

    def __init__(self, cfg: ClassifierConfig, embedder: AisfxEmbedder | None = None):
        if len(cfg.vocabulary) < 2:
            raise StarError("an event classifier needs a vocabulary of at least two classes")
        self.cfg = cfg
        self.heads = _Heads(cfg.embed_dim, len(cfg.vocabulary))
        self._embedder = embedder

    @property
    def vocabulary(self) -> list[str]:
        return list(self.cfg.vocabulary)

    @property
    def embedder(self) -> AisfxEmbedder:
        if self._embedder is None:
            self._embedder = shared_embedder()
        return self._embedder

    def index(self, category: str) -> int:
        try:
            return self.cfg.vocabulary.index(category)
        except ValueError:
            raise StarError(f"unknown event {category!r}; the classifier knows {self.cfg.vocabulary}") from None

    # ------------------------------------------------------------ training

    def windows(self, wav: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        return self.embedder.windows(wav, sr, self.cfg.hop_frames)

    def fit(self, clips: Iterable[tuple[np.ndarray, int, str]]) -> EventClassifier:
        """Train both heads on (wav, sr, category) real clips."""
        windows, targets = [], []
        for wav, sr, category in clips:
            windows.append(self.windows(wav, sr)[0])
            targets.append(self.index(category))
        return self.fit_windows(windows, targets)

    def fit_windows(
        self,
        windows: Sequence[np.ndarray],
        targets: Sequence[int | np.ndarray],
        frame_targets: Sequence[np.ndarray | None] | None = None,
    ) -> EventClassifier:
        """Train from precomputed block embeddings (one [n_i, 512] array per clip).

        targets: a class index or a soft target [c] per clip. frame_targets: optional [n_i, c] per
        clip (None entries fall back to the clip target on every block).
        """
        n_classes = len(self.cfg.vocabulary)
        soft = np.stack([_soft(t, n_classes) for t in targets])  # [n, c]
        if len(windows) != len(soft) or len(set(soft.argmax(1).tolist())) < 2:
            raise StarError("training needs one target per clip and at least two classes")
        frame_targets = frame_targets or [None] * len(windows)
        frame_y = np.concatenate([
            np.broadcast_to(t, (len(w), n_classes)) if ft is None else ft
            for w, t, ft in zip(windows, soft, frame_targets, strict=True)
        ])
        clip_x = np.stack([_clip_features(w) for w in windows])
        self._fit_head("clip", clip_x, soft, self.cfg.clip_l2)
        self._fit_head("frame", np.concatenate(windows), frame_y, self.cfg.frame_l2)
        return self

    def _fit_head(self, name: str, x: np.ndarray, y: np.ndarray, l2: float) -> None:
        mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
        w, b = fit_softmax_regression((x - mean) / scale, y, l2)
        with torch.no_grad():
            getattr(self.heads, f"{name}_mean").copy_(torch.from_numpy(mean.astype(np.float32)))
            getattr(self.heads, f"{name}_scale").copy_(torch.from_numpy(scale.astype(np.float32)))
            getattr(self.heads, name).weight.copy_(torch.from_numpy(w))
            getattr(self.heads, name).bias.copy_(torch.from_numpy(b))

    # ------------------------------------------------------------ inference

    def _head(self, name: str, x: np.ndarray) -> np.ndarray:
        mean = getattr(self.heads, f"{name}_mean").numpy()
        scale = getattr(self.heads, f"{name}_scale").numpy()
        layer = getattr(self.heads, name)
        z = ((x - mean) / scale) @ layer.weight.detach().numpy().T + layer.bias.detach().numpy()
        return _softmax(z).astype(np.float32)

    def proba_from_windows(self, window_emb: np.ndarray) -> np.ndarray:
        return self._head("clip", _clip_features(window_emb))

    def frame_proba_from_windows(self, window_emb: np.ndarray) -> np.ndarray:
        return self._head("frame", window_emb)

    def presence_from_windows(self, window_emb: np.ndarray) -> np.ndarray:
        return self.frame_proba_from_windows(window_emb).max(axis=0)

    def analyse(self, wav: np.ndarray, sr: int) -> ClipAnalysis:
        emb, times = self.windows(wav, sr)
        frames = self.frame_proba_from_windows(emb)
        return ClipAnalysis(
            embedding=clip_embedding_from_windows(emb, self.cfg.hop_frames),
            proba=self.proba_from_windows(emb),
            presence=frames.max(axis=0),
            frame_proba=frames,
            frame_times=times,
        )

    def predict_proba(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Class posterior [c] for the whole clip."""
        return self.proba_from_windows(self.windows(wav, sr)[0])

    def frame_proba(self, wav: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-block posteriors [t, c] and the block centre times in seconds [t]."""
        emb, times = self.windows(wav, sr)
        return self.frame_proba_from_windows(emb), times

    def predict(self, wav: np.ndarray, sr: int) -> str:
        return self.cfg.vocabulary[int(np.argmax(self.predict_proba(wav, sr)))]

    # ------------------------------------------------------------ files

    def save(self, folder: str | Path) -> Path:
        return save_weights(self.heads, self.cfg, folder, NAME)

    @classmethod
    def load(cls, folder: str | Path | None = None, embedder: AisfxEmbedder | None = None) -> EventClassifier:
        """Load release files from `folder` (default: the copy shipped in the package)."""
        folder = Path(folder) if folder is not None else DEFAULT_DIR
        cfg = load_config(ClassifierConfig, folder, NAME)
        clf = cls(cfg, embedder)
        load_weights(clf.heads, folder, NAME)
        return clf
