"""Score a set of generated clips against what was requested: one function, every metric.

    scores = evaluate_clips([(wav, sr, request), ...], references=[(wav, sr) or None, ...])

A request is {"kind": "single" | "overlay" | "sequence" | "repeat", "events": [{"category", "onset",
"offset"}, ...]} (or any object with `kind` and `events` attributes, e.g. `EvalPrompt`). `references`,
when given, pairs each generated clip with the real clip its prompt describes: KL is taken over those
pairs and FD between the generated set and the distinct reference clips (or `fd_reference` if given:
clips, or precomputed aisfx clip embeddings [n, 512] so a fixed real set is embedded once).

Which metric reads which clips:
- event_accuracy: requests with one distinct category (single, repeat): clip top-1 is that category;
- both_events_present: requests with two distinct categories: they are the top two of the clip's
  event presence (per-class max of the frame posteriors over time);
- ordering_error: sequences of two distinct categories, from the frame posteriors;
  ordering_error_heard: the same over the sequences whose two events are both present (an absent
  event has no place in time, so ordering_error mixes misplaced and missing events);
- inception_score, silence_rate, clipping_rate: every generated clip;
- kl: generated clips with a paired reference; fd: aisfx clip embeddings, generated vs reference.
A metric with nothing to score is None.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from star.eval.classifier import ClipAnalysis, EventClassifier
from star.eval.metrics import (
    BothEventsPresent,
    ClippingRate,
    EventAccuracy,
    FrechetDistance,
    InceptionScore,
    KLDivergence,
    OrderingError,
    SilenceRate,
)

Clip = tuple[np.ndarray, int]


def requested_events(request: Any) -> tuple[str, list[str]]:
    """(kind, categories in time order: onset, then listed order) of a request mapping or object."""
    get = request.get if isinstance(request, Mapping) else lambda k, d=None: getattr(request, k, d)
    events = get("events")
    if not events:
        raise ValueError(f"request without events: {request!r}")
    ordered = sorted(enumerate(events), key=lambda ie: (float(ie[1].get("onset", 0.0) or 0.0), ie[0]))
    categories = [str(e["category"]) for _, e in ordered]
    kind = str(get("kind") or ("single" if len(set(categories)) == 1 else "overlay"))
    return kind, categories


class _Analyser:
    """Classifier + embedding per clip, computed once per distinct waveform."""

    def __init__(self, classifier: EventClassifier):
        self.classifier = classifier
        self._done: dict[str, ClipAnalysis] = {}

    def __call__(self, wav: np.ndarray, sr: int) -> ClipAnalysis:
        wav = np.ascontiguousarray(wav, dtype=np.float32)
        key = hashlib.sha1(wav.tobytes() + str(sr).encode()).hexdigest()
        if key not in self._done:
            self._done[key] = self.classifier.analyse(wav, sr)
        return self._done[key]


def evaluate_clips(
    generated: Sequence[tuple[np.ndarray, int, Any]],
    references: Sequence[Clip | None] | None = None,
    *,
    fd_reference: Sequence[Clip] | np.ndarray | None = None,
    classifier: EventClassifier | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """All metrics for `generated` [(wav, sr, request)]; per-clip details under "clips"."""
    from tqdm import tqdm

    if not generated:
        raise ValueError("evaluate_clips: no generated clips")
    if references is not None and len(references) != len(generated):
        raise ValueError(f"{len(generated)} generated clips but {len(references)} references")
    clf = classifier or EventClassifier.load()
    analyse = _Analyser(clf)
    accuracy, both, order, order_heard = EventAccuracy(), BothEventsPresent(), OrderingError(), OrderingError()
    inception, kl, fd = InceptionScore(), KLDivergence(), FrechetDistance()
    silence, clipping = SilenceRate(), ClippingRate()
    clips, paired = [], {}

    for i, (wav, sr, request) in enumerate(tqdm(generated, desc="score", disable=not progress)):
        kind, categories = requested_events(request)
        targets = list(dict.fromkeys(clf.index(c) for c in categories))  # distinct, in time order
        a = analyse(wav, sr)
        silence.update(wav)
        clipping.update(wav)
        inception.update(a.proba)
        fd.update(generated=a.embedding[None])
        top = np.argsort(-a.proba, kind="stable")
        row: dict[str, Any] = {
            "index": i, "kind": kind, "requested": categories,
            "top1": clf.vocabulary[top[0]], "top2": [clf.vocabulary[j] for j in top[:2]],
            "p_requested": [round(float(a.proba[t]), 4) for t in targets],
        }
        if len(targets) == 1:
            accuracy.update(a.proba, targets)
            row["correct"] = bool(top[0] == targets[0])
        elif len(targets) == 2:
            both.update(a.presence, [tuple(targets)])
            present = np.argsort(-a.presence, kind="stable")[:2]
            row["both_present"] = set(present.tolist()) == set(targets)
            row["present2"] = [clf.vocabulary[j] for j in present]  # what both_present compares, not top2
            if kind == "sequence":
                row["order_wrong"] = order.update(a.frame_proba, a.frame_times, targets[0], targets[1])
                if row["both_present"]:
                    order_heard.update(a.frame_proba, a.frame_times, targets[0], targets[1])
        if references is not None and references[i] is not None:
            ref_wav, ref_sr = references[i]
            r = analyse(ref_wav, ref_sr)
            kl.update(generated=a.proba, reference=r.proba)
            paired[id(r)] = r
        clips.append(row)

    # An explicit FD set (clips, or their aisfx clip embeddings [n, 512]) replaces the paired references;
    # a reference clip shared by several prompts counts once.
    if isinstance(fd_reference, np.ndarray):
        fd.update(reference=fd_reference)
    else:
        fd_refs = list(paired.values()) if fd_reference is None else [analyse(w, s) for w, s in fd_reference]
        for r in {id(r): r for r in fd_refs}.values():
            fd.update(reference=r.embedding[None])

    def value(metric) -> float | None:
        try:
            return float(metric.compute())
        except ValueError:
            return None

    return {
        "n": len(generated),
        "event_accuracy": value(accuracy),
        "event_accuracy_n": accuracy.count,
        "both_events_present": value(both),
        "both_events_present_n": both.count,
        "ordering_error": value(order),
        "ordering_error_n": order.count,
        "ordering_error_heard": value(order_heard),
        "ordering_error_heard_n": order_heard.count,
        "kl": value(kl),
        "kl_n": kl.count,
        "inception_score": value(inception),
        "fd": value(fd),
        "fd_n_reference": fd.counts[1],
        "silence_rate": value(silence),
        "clipping_rate": value(clipping),
        "clips": clips,
    }
