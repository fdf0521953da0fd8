"""Reference rows for the results page: what the metrics say about REAL audio and its Griffin-Lim copy.

    /work/venv/bin/python scripts/eval_reference.py --corpus ../shared/data/esc10 \
        --out runs/eval_reference [--cache runs/eval_classifier/cache.npz] [--scenes 40]

Rows (all scored by `star.eval.scoring.evaluate_clips` with the shipped classifier, FD against the
aisfx embeddings of the training folds 1-3):
- real: held-out fold-4 clips as they are (FD real-vs-real, accuracy on real clips);
- griffin-lim: the same clips through our 64-bin log-mel and back with Griffin-Lim (mel pseudo-inverse,
  64 iterations): the floor a generator with this vocoder cannot beat;
- real scenes: fold-4 two-event scenes mixed from real clips (both events in top 2, ordering error).

The Griffin-Lim here is a measuring device kept inside this script; the product's vocoder is `star.vocoder`.
Writes OUT/reference.json and OUT/reference.md, prints the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from star.audio import SAMPLE_RATE, MelSpec, load_audio
from star.audio.mel import mel_filterbank
from star.eval.aisfx_embed import clip_embedding_from_windows
from star.eval.classifier import EventClassifier
from star.eval.scoring import evaluate_clips
from star.eval.train_classifier import Scene, plan_scenes, read_corpus, render_scene


def griffin_lim_from_logmel(logmel: np.ndarray, mel: MelSpec, n_iter: int = 64, seed: int = 0) -> np.ndarray:
    """log-mel [64, t] -> waveform: mel pseudo-inverse to a linear magnitude, then Griffin-Lim."""
    cfg = mel.cfg
    fb = mel_filterbank(cfg).astype(np.float64)  # [64, 513]
    magnitude = np.clip(np.linalg.pinv(fb) @ np.exp(logmel.astype(np.float64)), 0.0, None)  # [513, t]
    mag = torch.from_numpy(magnitude.astype(np.float32))
    window = torch.hann_window(cfg.n_fft)
    length = (mag.shape[1] - 1) * cfg.hop
    gen = torch.Generator().manual_seed(seed)
    angles = torch.exp(2j * np.pi * torch.rand(mag.shape, generator=gen))
    for _ in range(n_iter):
        wav = torch.istft(mag * angles, cfg.n_fft, cfg.hop, window=window, length=length)
        spec = torch.stft(wav, cfg.n_fft, cfg.hop, window=window, center=True, return_complex=True)
        angles = torch.exp(1j * torch.angle(spec))
    wav = torch.istft(mag * angles, cfg.n_fft, cfg.hop, window=window, length=length).numpy()
    return wav.astype(np.float32)


def _cached_clip_embeddings(classifier: EventClassifier, rows: list[dict], cache: Path | None) -> np.ndarray:
    """aisfx clip embeddings [n, 512], reusing block embeddings from the classifier's training cache."""
    hop = classifier.cfg.hop_frames
    store = dict(np.load(cache)) if cache is not None and cache.is_file() else {}
    out = []
    for r in tqdm(rows, desc="reference embeddings"):
        key = f"{Path(r['path']).name}@{hop}"
        if key not in store:
            store[key] = classifier.windows(load_audio(r["path"], SAMPLE_RATE, allow_silent=True), SAMPLE_RATE)[0]
        out.append(clip_embedding_from_windows(store[key], hop))
    return np.stack(out)


def _summary(scores: dict) -> dict:
    return {k: v for k, v in scores.items() if k != "clips"}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="../shared/data/esc10")
    parser.add_argument("--out", default="runs/eval_reference")
    parser.add_argument("--classifier", default=None, help="classifier folder (default: the shipped one)")
    parser.add_argument("--cache", default=None, help="block-embedding npz from train_classifier (optional)")
    parser.add_argument("--reference-folds", default="1,2,3")
    parser.add_argument("--test-fold", type=int, default=4)
    parser.add_argument("--scenes", type=int, default=40, help="fold-4 real scenes to score (0: none)")
    parser.add_argument("--gl-iters", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None, help="score only this many test clips (quick look)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    clf = EventClassifier.load(args.classifier)
    rows = read_corpus(args.corpus)
    ref_folds = {int(f) for f in args.reference_folds.split(",")}
    ref_rows = [r for r in rows if r["fold"] in ref_folds]
    test_rows = [r for r in rows if r["fold"] == args.test_fold][: args.limit]
    ref_emb = _cached_clip_embeddings(clf, ref_rows, Path(args.cache) if args.cache else None)

    real = [load_audio(r["path"], SAMPLE_RATE, allow_silent=True) for r in test_rows]
    requests = [{"kind": "single", "events": [{"category": r["category"], "onset": 0.0, "offset": len(w) / SAMPLE_RATE}]}
                for r, w in zip(test_rows, real, strict=True)]
    mel = MelSpec()
    gl, gl_seconds = [], []
    for w in tqdm(real, desc="griffin-lim"):
        t0 = time.perf_counter()
        gl.append(griffin_lim_from_logmel(mel.of_numpy(w), mel, args.gl_iters))
        gl_seconds.append(time.perf_counter() - t0)

    result: dict = {"command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
                    "classifier": clf.cfg.report, "n_reference": len(ref_rows), "n_test": len(test_rows)}
    result["real"] = _summary(evaluate_clips(
        [(w, SAMPLE_RATE, q) for w, q in zip(real, requests, strict=True)], fd_reference=ref_emb, classifier=clf,
        progress=True))
    result["griffin_lim"] = _summary(evaluate_clips(
        [(w, SAMPLE_RATE, q) for w, q in zip(gl, requests, strict=True)],
        references=[(w, SAMPLE_RATE) for w in real], fd_reference=ref_emb, classifier=clf, progress=True))
    result["griffin_lim"]["seconds_per_clip_median"] = round(float(np.median(gl_seconds)), 3)

    if args.scenes:
        scenes: list[Scene] = [s for s in plan_scenes(rows, args.scenes, seed=1) if s.fold == args.test_fold]
        cache: dict[int, np.ndarray] = {}

        def wav(i: int) -> np.ndarray:
            if i not in cache:
                cache[i] = load_audio(rows[i]["path"], SAMPLE_RATE, allow_silent=True)
            return cache[i]

        items = []
        for s in scenes:
            cats = [rows[s.first]["category"], rows[s.second]["category"]]
            onsets = [0.0, 0.0] if s.kind == "overlay" else [0.0, 2.5]
            events = [{"category": c, "onset": o, "offset": 5.0 if s.kind == "overlay" else o + 2.5}
                      for c, o in zip(cats, onsets, strict=True)]
            items.append((render_scene(s, wav(s.first), wav(s.second)), SAMPLE_RATE,
                          {"kind": s.kind, "events": events}))
        for kind in ("overlay", "sequence"):
            subset = [x for x in items if x[2]["kind"] == kind]
            if subset:
                result[f"real_{kind}"] = _summary(evaluate_clips(subset, fd_reference=ref_emb, classifier=clf,
                                                                 progress=True))

    (out / "reference.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "reference.md").write_text(_markdown(result))
    print(json.dumps(result))
    return result


def _markdown(r: dict) -> str:
    def f(v, d=3):
        return "–" if v is None else f"{v:.{d}f}"

    lines = [
        (f"Reference rows (`{r['command']}`); classifier trained on real clips only "
         f"({r['classifier'].get('corpus')} folds {r['classifier'].get('train_folds')})."),
        "",
        "| audio | n | FD (aisfx) vs folds 1-3 | event acc. | KL vs real | IS | both events top-2 | ordering err. |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, name in (("real", "real fold-4 clips"), ("griffin_lim", "Griffin-Lim of fold-4 log-mels"),
                      ("real_overlay", "real overlay scenes"), ("real_sequence", "real sequence scenes")):
        if key in r:
            s = r[key]
            lines.append(f"| {name} | {s['n']} | {f(s['fd'], 1)} | {f(s['event_accuracy'])} | {f(s['kl'])} | "
                         f"{f(s['inception_score'], 2)} | {f(s['both_events_present'])} | {f(s['ordering_error'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
