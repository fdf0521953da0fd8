"""Score an exported stage-1 model folder on prompt manifests: mAP, top-1 (overall and per voice) and the
phrasings it misses. Uses the feature cache, so scoring a few hundred prompts takes seconds.

    python -m star.bridge.evaluate --model runs/bridge/final \
        --manifest runs/data/esc10_train/prompts.jsonl runs/data/esc10_festival/prompts.jsonl --json out.json
The training manifest contributes its validation split only; other manifests are scored whole.
`--heard M...` (the manifests the bridge was trained on) also splits top-1 by how often the prompt's best
cue for its category was heard in training (`cue_strength`): never (the bridge must generalise), 1-9,
10-99 times (synonyms), 100 or more (the category's own words in an unseen phrasing).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from star.bridge.model import load_stage_one
from star.bridge.phonetic import WEIGHTS_NAME, fuse_readings, load_phonetic
from star.data.captions import words as caption_words
from star.errors import StarError
from star.eval.metrics import grouped_interval
from star.train.bridge_task import (
    VAL_SPLITS,
    collate_frames,
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


def cue_counts(manifests: list[str]) -> dict[str, Counter]:
    """For each word, in how many training prompts (train split) of `manifests` it was heard with each
    category: word -> Counter(category -> prompts); "" counts prompts that ask for no known sound.
    Scenes and sequences name several categories at once and are left out."""
    out: dict[str, Counter] = {}
    for m in manifests:
        for r in read_manifest(m):
            cats = row_categories(r)
            if r.get("split", "train") == "train" and len(cats) <= 1:
                for w in caption_words(r["caption"]):
                    out.setdefault(w, Counter())[cats[0] if cats else ""] += 1
    return out


def cue_strength(caption: str, category: str, cues: dict[str, Counter]) -> int:
    """How often the bridge heard the best cue of `caption` for `category`: the most training prompts of
    that category any of its words was heard in, among words heard mostly (>= half) with that category
    ("a", "the", "sound" are heard with every category, or in no-sound prompts, and cue none)."""
    best = 0
    for w in caption_words(caption):
        seen = cues.get(w, Counter())
        if seen[category] * 2 >= sum(seen.values()) > 0:
            best = max(best, seen[category])
    return best


# Buckets of cue strength: (name, fewest, most training prompts).
CUE_BUCKETS = (("no cue", 0, 0), ("1-9", 1, 9), ("10-99", 10, 99), ("100+", 100, 10**9))


def score_rows(
    model, rows: list[dict[str, Any]], cache_dir: str | Path, cues: dict[str, Counter] | None = None,
    phonetic=None, fusion_weights: list[float] | None = None,
) -> dict[str, Any]:
    """Figures for one set of prompts: map, top1 (with "top1_interval", its 95 % interval when whole wordings
    are resampled, and "wordings"), top1 per voice, and misses (caption -> count); with
    `cues` (`cue_counts` of the training manifests) also "top1_by_cue": for each of CUE_BUCKETS, [top1,
    prompts] of the single-event prompts whose cue was heard that often, and "words_never_heard".
    With a `phonetic` reader (star.bridge.phonetic) also "phonetic" (its own top-1 and mAP), "phoneme_error" (its CTC head) and "fused"
    (both routes, at the reader's fusion weight and each of `fusion_weights`, averaged over the reader's
    `reading_speeds` as `listen` does), and "true_phonemes" (`true_phoneme_figures`); the headline figures
    and misses are then the fused ones."""
    vocab = model.cfg.vocab
    feats = load_features(rows, model.cfg.speech_encoder, cache_dir)
    probs, _, halves = predict_features(model, feats)
    targets = multi_hot(rows, vocab)
    phonetic_figures = None
    if phonetic is not None:
        readings = spoken_readings(model, phonetic, rows, cache_dir, feats, probs)
        probs, phonetic_figures = fuse_routes(phonetic, readings, targets, vocab, fusion_weights or [])
        phonetic_figures.update(phoneme_errors(phonetic, feats, rows))
        phonetic_figures["true_phonemes"] = true_phoneme_figures(phonetic, readings, rows, targets)
    single = np.array([i for i, r in enumerate(rows) if len(row_categories(r)) == 1], dtype=int)
    right, misses = single_event_misses(rows, single, probs, targets, vocab)
    out: dict[str, Any] = {
        "prompts": len(rows),
        "single": len(single),
        "map": mean_average_precision(probs, targets),
        "top1": top1_accuracy(probs[single], targets[single]),
        "top1_per_voice": {},
    }
    if len(single):
        # The renditions of one wording are right or wrong together, so the wordings are the sample size.
        captions = [rows[i]["caption"] for i in single]
        out["wordings"] = len(set(captions))
        out["top1_interval"] = list(grouped_interval(right, captions))
    for voice in sorted({voice_name(rows[i]) for i in single}):
        idx = [i for i in single if voice_name(rows[i]) == voice]
        out["top1_per_voice"][voice] = top1_accuracy(probs[idx], targets[idx])
    out["misses"] = misses
    if phonetic_figures is not None:
        out.update(phonetic_figures)
    if cues is not None:
        strength = {i: cue_strength(rows[i]["caption"], row_categories(rows[i])[0], cues) for i in single}
        unheard = {w for i in single for w in caption_words(rows[i]["caption"]) if w not in cues}
        out["top1_by_cue"] = {"words_never_heard": sorted(unheard)}
        for name, lo, hi in CUE_BUCKETS:
            idx = [i for i in single if lo <= strength[i] <= hi]
            out["top1_by_cue"][name] = [top1_accuracy(probs[idx], targets[idx]) if idx else float("nan"), len(idx)]
    if halves is not None and model.cfg.order_slots:
        out["slots"] = slot_accuracy(halves, order_targets(rows, vocab), targets, single)
    return out


def single_event_misses(rows: list[dict[str, Any]], single: np.ndarray, scores: np.ndarray, targets: np.ndarray,
                        vocab: list[str]) -> tuple[np.ndarray, dict[str, int]]:
    """For the single-event prompts (indices `single`): whether each one's top answer in `scores` [n, k] is the
    asked event, and the misses ("caption -> answer" -> count, most first)."""
    answer = scores[single].argmax(1)
    right = targets[single, answer] > 0
    misses = Counter(f"{rows[i]['caption']} -> {vocab[int(a)]}" for i, a, ok in zip(single, answer, right) if not ok)
    return right, dict(misses.most_common())


def route_similarities(phonetic, feats: list[np.ndarray]) -> np.ndarray:
    """The phonetic route's cosine of each prompt's frames to each category's centroid [n, k], 64 at a time."""
    return np.concatenate([phonetic.similarities(*collate_frames(feats[s : s + 64])).numpy() for s in range(0, len(feats), 64)])


def spoken_readings(model, phonetic, rows: list[dict[str, Any]], cache_dir: str | Path, feats: list[np.ndarray],
                    probs: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(bridge probabilities, route similarities) [n, k] of the prompts at each of the reader's reading
    speeds, the prompts as spoken (`feats`, `probs`) first."""
    readings = [(probs, route_similarities(phonetic, feats))]
    for speed in phonetic.cfg.reading_speeds:
        if speed != 1.0:
            played = load_features(rows, model.cfg.speech_encoder, cache_dir, speed=speed)
            readings.append((predict_features(model, played)[0], route_similarities(phonetic, played)))
    return readings


def fuse_routes(phonetic, readings: list[tuple[np.ndarray, np.ndarray]], targets: np.ndarray, vocab: list[str],
                weights: list[float]) -> tuple[np.ndarray, dict[str, Any]]:
    """The bridge's probabilities fused with the phonetic route's similarities, averaged over `readings`
    (`spoken_readings`); returns the fused scores [n, k] (at the reader's weight) and {"bridge",
    "phonetic" (both as spoken), "fused": {weight: ...}} top-1 and mAP."""
    phonetic.require_vocab(vocab)
    probs, sims = readings[0]
    weight = phonetic.cfg.fusion_weight
    fused = {str(w): route_figures(fuse_readings(readings, w), targets) for w in sorted({weight, *weights})}
    return fuse_readings(readings, weight), {"bridge": route_figures(probs, targets), "phonetic": route_figures(sims, targets),
                                             "fused": fused}


def route_figures(scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Top-1 over the single-event prompts and mAP over all, of scores [n, k]."""
    single = targets.sum(1) == 1
    return {"top1": top1_accuracy(scores[single], targets[single]), "map": mean_average_precision(scores, targets)}


def true_phoneme_figures(phonetic, readings: list[tuple[np.ndarray, np.ndarray]], rows: list[dict[str, Any]],
                         targets: np.ndarray) -> dict[str, Any]:
    """What the prompts would score if the CTC head heard every phoneme right: the bag reads each caption's
    own phonemes (espeak-ng's, as in its training) in place of the head's reading at every reading speed, and
    the bridge's readings stay as they are. {"phonetic", "fused" (at the reader's weight): top-1 and mAP,
    "misses": fused misses of single-event prompts}. An error that is gone here is one of hearing; one
    that stays is the bag's reading or the bridge's (STUDY part 26)."""
    import torch

    from star.data.phonemes import text_phoneme_ids

    ids = text_phoneme_ids([r["caption"] for r in rows], phonetic.cfg.word_boundaries)
    with torch.no_grad():
        sims = np.concatenate([(phonetic.bag(ids[s : s + 256]) @ phonetic.prototypes.T).numpy() for s in range(0, len(ids), 256)])
    fused = fuse_readings([(probs, sims) for probs, _ in readings], phonetic.cfg.fusion_weight)
    _, misses = single_event_misses(rows, np.flatnonzero(targets.sum(1) == 1), fused, targets, phonetic.cfg.vocab)
    return {"phonetic": route_figures(sims, targets), "fused": route_figures(fused, targets), "misses": misses}


def voice_groups(rows: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Row indices by voice; espeak's hundreds of voices count as one ("espeak"), flite's and festival's
    apart (the recogniser's error differs most between synthesisers)."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        engine = str(r.get("engine", ""))
        groups.setdefault("espeak" if engine == "espeak" else voice_name(r), []).append(i)
    return dict(sorted(groups.items()))


def phoneme_errors(phonetic, feats: list[np.ndarray], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The reader's CTC head against the espeak-ng phonemes of each prompt's caption (edits per phoneme,
    word boundaries left out so readers with and without them compare): "phoneme_error" over all prompts
    and "phoneme_error_per_voice" (`voice_groups`), from one decoding."""
    from star.data.phonemes import WORD_BOUNDARY_ID, text_phoneme_ids
    from star.train.phonetic_task import error_rate, phoneme_edits

    boundary = WORD_BOUNDARY_ID if phonetic.cfg.word_boundaries else None
    edits = phoneme_edits(phonetic.ctc, list(zip(feats, text_phoneme_ids([r["caption"] for r in rows]))), boundary)
    return {
        "phoneme_error": error_rate(edits),
        "phoneme_error_per_voice": {v: error_rate([edits[i] for i in idx]) for v, idx in voice_groups(rows).items()},
    }


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


def scored_rows(manifest: str) -> tuple[list[dict[str, Any]], str]:
    """The prompts of `manifest` that are scored, and the set's name: a training manifest's validation
    split ("<folder>:validation"), or every prompt of any other manifest ("<folder>")."""
    rows = read_manifest(manifest)
    val = [r for r in rows if r.get("split") in VAL_SPLITS]
    name = Path(manifest).parent.name
    return (val, f"{name}:validation") if val else (rows, name)


def evaluate_folder(
    model_dir: str | Path, manifests: list[str], cache_dir: str | Path, cues: dict[str, Counter] | None = None,
    phonetic_dir: str | Path | None = None, fusion_weights: list[float] | None = None,
) -> dict[str, Any]:
    model = load_stage_one(model_dir)
    phonetic = load_phonetic(phonetic_dir) if phonetic_dir else None
    result = {}
    for m in manifests:
        rows, name = scored_rows(m)
        result[name] = score_rows(model, rows, cache_dir, cues, phonetic, fusion_weights)
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Score a stage-1 model folder on prompt manifests")
    p.add_argument("--model", required=True)
    p.add_argument("--manifest", nargs="+", required=True)
    p.add_argument("--cache", default="runs/cache/features")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--heard", nargs="+", help="the training manifests: split top-1 by how often the cue was heard")
    p.add_argument("--phonetic", help="a phonetic reader folder (star train phonetic): fuse both routes")
    p.add_argument("--fusion-weights", nargs="+", type=float, default=[], help="also score these fusion weights")
    p.add_argument("--choose-fusion-weight", action="store_true",
                   help="write the weight with the best validation top-1 (then mAP; mean over every manifest's validation "
                        "prompts) into the phonetic folder's config")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    try:
        res = evaluate_folder(a.model, a.manifest, a.cache, cue_counts(a.heard) if a.heard else None, a.phonetic,
                              a.fusion_weights)
    except StarError as exc:  # a missing folder or manifest, mismatched vocabularies: said plainly
        raise SystemExit(f"error: {exc}") from None
    for name, r in res.items():
        per_voice = r["top1_per_voice"] if len(r["top1_per_voice"]) <= 8 else {}  # not the 100+ training voices
        voices = " ".join(f"{v}={t:.3f}" for v, t in per_voice.items())
        interval = " [{:.3f}-{:.3f} over {} wordings]".format(*r["top1_interval"], r["wordings"]) if "wordings" in r else ""
        print(f"{name}: mAP {r['map']:.3f} top-1 {r['top1']:.3f}{interval} ({r['single']} single) {voices}")
        if "fused" in r:
            print("   bridge alone: top-1 {top1:.3f} mAP {map:.3f}; ".format(**r["bridge"])
                  + "phonetic route alone: top-1 {top1:.3f} mAP {map:.3f}".format(**r["phonetic"])
                  + f"; phoneme error {r['phoneme_error']:.3f}")
            print("   phoneme error by voice: " + " ".join(f"{v}={e:.3f}" for v, e in r["phoneme_error_per_voice"].items()))
            true = r["true_phonemes"]
            print("   with every phoneme heard right: phonetic route alone top-1 {:.3f}, fused top-1 {:.3f} ({} misses)".format(
                true["phonetic"]["top1"], true["fused"]["top1"], sum(true["misses"].values())))
            print("   fused, by weight: " + ", ".join(f"{w}: top-1 {f['top1']:.3f} mAP {f['map']:.3f}" for w, f in r["fused"].items()))
        if "slots" in r:
            print(f"   halves right: sequences {r['slots']['sequences']:.3f}, single events {r['slots']['single']:.3f}")
        if "top1_by_cue" in r:
            by_cue = r["top1_by_cue"]
            print("   top-1 by how often the cue was heard: " + ", ".join(f"{b} {by_cue[b][0]:.3f} ({by_cue[b][1]})" for b, _, _ in CUE_BUCKETS))
            print(f"   words never heard: {' '.join(by_cue['words_never_heard'])}")
        for miss, n in list(r["misses"].items())[:25]:
            print(f"   {n:3d}  {miss}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")
    if a.choose_fusion_weight:
        print(f"fusion weight chosen on validation: {choose_fusion_weight(res, a.phonetic)}")


def choose_fusion_weight(results: dict[str, Any], phonetic_dir: str | Path | None) -> float:
    """The weight of the best validation top-1 (ties: mAP), averaged over every validation set given (e.g.
    the training voices' and a held-out rendition's, STUDY part 13), saved into the phonetic folder's
    config. Only validation prompts choose it, never a test set."""
    val = [r["fused"] for name, r in results.items() if name.endswith(":validation") and "fused" in r]
    if not val or phonetic_dir is None:
        raise StarError("choosing the fusion weight needs --phonetic and a manifest with validation prompts")
    best = max(val[0], key=lambda w: (np.mean([f[w]["top1"] for f in val]), np.mean([f[w]["map"] for f in val])))
    reader = load_phonetic(phonetic_dir)
    reader.cfg.fusion_weight = float(best)
    reader.cfg.save(Path(phonetic_dir) / f"{WEIGHTS_NAME}.json")
    return float(best)


if __name__ == "__main__":
    main()
