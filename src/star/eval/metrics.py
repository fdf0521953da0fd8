"""Evaluation metrics as small update/compute objects (audiocraft `metrics/` style).

Each metric accumulates with `update(...)`, returns a float from `compute()` and starts over with
`reset()`. They take embeddings, classifier posteriors or waveforms, never models, so each is tested
on hand-computable inputs; `star.eval.scoring` wires them to the embedder and the classifier.

Shapes: embeddings [n, d]; posteriors [n, c] (rows sum to 1); frame posteriors [t, c] with times [t].
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from scipy.special import xlogy

_EPS = 1e-8


def _as_2d(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: expected a finite [n, d] array, got shape {x.shape}")
    return x


def _posteriors(p: np.ndarray, name: str) -> np.ndarray:
    p = _as_2d(p, name)
    if np.any(p < 0) or np.any(p.sum(axis=1) <= 0):
        raise ValueError(f"{name}: posteriors must be non-negative with a positive sum")
    return p / p.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------- Fréchet distance


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^1/2) between two Gaussians.

    tr((S1 S2)^1/2) is taken as the sum of square roots of the eigenvalues of S1^1/2 S2 S1^1/2, which
    is symmetric PSD: stable for the singular covariances of small sets (no complex sqrtm residue).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    vals, vecs = np.linalg.eigh(sigma1)
    root1 = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    middle = root1 @ sigma2 @ root1
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    fd = float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_sqrt)
    return max(fd, 0.0)


class _GaussianStats:
    """Streaming mean and unbiased covariance of [n, d] rows (float64 sums)."""

    def __init__(self) -> None:
        self.n, self.total, self.outer = 0, None, None

    def add(self, x: np.ndarray) -> None:
        if self.total is None:
            self.total, self.outer = np.zeros(x.shape[1]), np.zeros((x.shape[1], x.shape[1]))
        elif x.shape[1] != self.total.shape[0]:
            raise ValueError(f"embedding dim {x.shape[1]} differs from earlier {self.total.shape[0]}")
        self.n += len(x)
        self.total += x.sum(axis=0)
        self.outer += x.T @ x

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        mu = self.total / self.n
        cov = (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return mu, cov


class FrechetDistance:
    """FD (FAD when the embeddings are audio embeddings) between a generated and a reference set."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._gen, self._ref = _GaussianStats(), _GaussianStats()

    def update(self, generated: np.ndarray | None = None, reference: np.ndarray | None = None) -> None:
        if generated is not None:
            self._gen.add(_as_2d(generated, "generated"))
        if reference is not None:
            self._ref.add(_as_2d(reference, "reference"))

    @property
    def counts(self) -> tuple[int, int]:
        """(generated, reference) embeddings seen."""
        return self._gen.n, self._ref.n

    def compute(self) -> float:
        if self._gen.n < 2 or self._ref.n < 2:
            raise ValueError(f"FD needs >= 2 embeddings per set, got {self._gen.n} and {self._ref.n}")
        if self._gen.total.shape != self._ref.total.shape:
            raise ValueError("generated and reference embeddings differ in dimension")
        return frechet_distance(*self._gen.mean_cov(), *self._ref.mean_cov())


# ---------------------------------------------------------------- classifier-based metrics


class KLDivergence:
    """Mean KL(p_reference || p_generated) over pairs of posteriors that share a prompt (AudioLDM's
    direction: how much of the reference's class evidence the generated clip misses)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._sum, self._n = 0.0, 0

    def update(self, generated: np.ndarray, reference: np.ndarray) -> None:
        gen, ref = _posteriors(generated, "generated"), _posteriors(reference, "reference")
        if gen.shape != ref.shape:
            raise ValueError(f"paired posteriors differ in shape: {gen.shape} vs {ref.shape}")
        kl = (xlogy(ref, ref) - ref * np.log(np.clip(gen, _EPS, None))).sum(axis=1)
        self._sum += float(kl.sum())
        self._n += len(kl)

    @property
    def count(self) -> int:
        return self._n

    def compute(self) -> float:
        if self._n == 0:
            raise ValueError("KLDivergence: no pairs")
        return self._sum / self._n


class InceptionScore:
    """exp(E_x KL(p(y|x) || p(y))): 1 for identical posteriors, the class count for confident distinct ones."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._rows: list[np.ndarray] = []

    def update(self, posteriors: np.ndarray) -> None:
        self._rows.append(_posteriors(posteriors, "posteriors"))

    def compute(self) -> float:
        if not self._rows:
            raise ValueError("InceptionScore: no posteriors")
        p = np.concatenate(self._rows)
        marginal = p.mean(axis=0, keepdims=True)
        kl = (xlogy(p, p) - xlogy(p, np.broadcast_to(marginal, p.shape))).sum(axis=1)
        return float(np.exp(kl.mean()))


class _Rate:
    """Fraction of items for which a per-item test holds."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._hits, self._n = 0, 0

    @property
    def count(self) -> int:
        """Items scored so far."""
        return self._n

    def _add(self, hits: np.ndarray) -> None:
        self._hits += int(np.sum(hits))
        self._n += int(np.size(hits))

    def compute(self) -> float:
        if self._n == 0:
            raise ValueError(f"{type(self).__name__}: nothing to score")
        return self._hits / self._n


class EventAccuracy(_Rate):
    """Top-1 accuracy: the argmax class is the requested one."""

    def update(self, posteriors: np.ndarray, targets: int | Sequence[int]) -> None:
        p = _as_2d(posteriors, "posteriors")
        t = np.atleast_1d(np.asarray(targets))
        if len(t) != len(p):
            raise ValueError(f"{len(p)} posteriors but {len(t)} targets")
        self._add(p.argmax(axis=1) == t)


class BothEventsPresent(_Rate):
    """Two-event scenes: the two highest classes are exactly the two requested events."""

    def update(self, posteriors: np.ndarray, targets: Sequence[tuple[int, int]] | tuple[int, int]) -> None:
        p = _as_2d(posteriors, "posteriors")
        t = np.asarray(targets).reshape(-1, 2)
        if len(t) != len(p):
            raise ValueError(f"{len(p)} posteriors but {len(t)} target pairs")
        top2 = np.argsort(-p, axis=1, kind="stable")[:, :2]
        self._add([set(top.tolist()) == set(pair.tolist()) for top, pair in zip(top2, t, strict=True)])


def grouped_interval(correct: Sequence[bool], groups: Sequence, level: float = 0.95, resamples: int = 2000,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the share of `correct` items when items come in `groups` that tend to
    succeed or fail together (the renditions of one spoken wording): whole groups are resampled, so the width
    reflects how many groups there are, not how many items."""
    hits = np.asarray(correct, dtype=np.float64)
    if hits.ndim != 1 or len(hits) == 0 or len(groups) != len(hits):
        raise ValueError(f"need one group per item and at least one item: {len(hits)} items, {len(groups)} groups")
    if not 0 < level < 1 or resamples < 1:
        raise ValueError(f"level must lie in (0, 1) and resamples be positive, got {level}, {resamples}")
    _, index = np.unique([str(g) for g in groups], return_inverse=True)
    sums, counts = np.bincount(index, weights=hits), np.bincount(index).astype(np.float64)
    draws = np.random.default_rng(seed).integers(0, len(sums), size=(resamples, len(sums)))
    shares = sums[draws].sum(1) / counts[draws].sum(1)
    tail = (1 - level) / 2
    return float(np.quantile(shares, tail)), float(np.quantile(shares, 1 - tail))


def event_time(frame_proba: np.ndarray, times: np.ndarray, cls: int, method: str = "centroid") -> float | None:
    """When class `cls` happens in a clip, from frame posteriors [t, c] at `times` [t] (seconds).

    centroid: centre of mass of the class's posterior above its own minimum (the baseline it never
    drops below is not evidence of the event). onset: first frame reaching half of the class's range.
    None when the posterior is flat (no evidence where the event is).
    """
    track = np.asarray(frame_proba, np.float64)[:, cls]
    times = np.asarray(times, np.float64)
    lifted = track - track.min()
    if lifted.max() <= 1e-6:
        return None
    if method == "centroid":
        return float((lifted * times).sum() / lifted.sum())
    if method == "onset":
        return float(times[np.argmax(lifted >= 0.5 * lifted.max())])
    raise ValueError(f"unknown method {method!r} (centroid|onset)")


class OrderingError(_Rate):
    """Sequence prompts "A then B": fraction whose predicted order of A and B is not the requested one.

    A clip whose order cannot be read (flat posterior for either event, or equal times) counts as an error.
    """

    def __init__(self, method: str = "centroid") -> None:
        self.method = method
        super().__init__()

    def update(self, frame_proba: np.ndarray, times: np.ndarray, first: int, second: int) -> bool:
        """Score one clip; returns whether its order is wrong (or unreadable)."""
        p = _as_2d(frame_proba, "frame_proba")
        if len(np.asarray(times)) != len(p):
            raise ValueError(f"{len(p)} frames but {len(times)} times")
        t1 = event_time(p, times, first, self.method)
        t2 = event_time(p, times, second, self.method)
        wrong = t1 is None or t2 is None or not t1 < t2
        self._add([wrong])
        return wrong


# ---------------------------------------------------------------- waveform sanity


class SilenceRate(_Rate):
    """Fraction of clips whose peak |x| is below `threshold` (default 1e-3, -60 dBFS)."""

    def __init__(self, threshold: float = 1e-3) -> None:
        self.threshold = threshold
        super().__init__()

    def update(self, wav: np.ndarray) -> None:
        wav = np.asarray(wav)
        self._add([wav.size == 0 or float(np.max(np.abs(wav))) < self.threshold])


class ClippingRate(_Rate):
    """Fraction of clips with more than `max_fraction` of their samples at |x| >= `level`."""

    def __init__(self, level: float = 0.999, max_fraction: float = 1e-3) -> None:
        self.level, self.max_fraction = level, max_fraction
        super().__init__()

    def update(self, wav: np.ndarray) -> None:
        wav = np.asarray(wav)
        frac = float(np.mean(np.abs(wav) >= self.level)) if wav.size else 0.0
        self._add([frac > self.max_fraction])


# ---------------------------------------------------------------- word error rate


def normalize_text(text: str) -> list[str]:
    """Lowercase words with punctuation stripped ("Dog's bark!" -> ["dogs", "bark"])."""
    text = text.lower().replace("'", "").replace("\u2019", "")
    return re.sub(r"[^\w\s]|_", " ", text).split()


def word_edits(hypothesis: Sequence[str], reference: Sequence[str]) -> int:
    """Levenshtein distance over words (substitutions + insertions + deletions)."""
    prev = list(range(len(reference) + 1))
    for i, h in enumerate(hypothesis, 1):
        cur = [i]
        for j, r in enumerate(reference, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (h != r)))
        prev = cur
    return prev[-1]


class WordErrorRate:
    """Corpus WER: total word edits / total reference words, over normalised text."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._edits, self._words = 0, 0

    def update(self, hypothesis: str, reference: str) -> None:
        ref = normalize_text(reference)
        self._edits += word_edits(normalize_text(hypothesis), ref)
        self._words += len(ref)

    def compute(self) -> float:
        if self._words == 0:
            raise ValueError("WordErrorRate: no reference words")
        return self._edits / self._words
