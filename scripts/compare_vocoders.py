"""Compare vocoders on held-out real clips: real wav -> log-mel -> vocoder -> wav, against the original.

    python scripts/compare_vocoders.py --data ../shared/data/esc10 --neural /work/runs/vocoder/best \
        --clips 40 --every 2 --out docs/VOCODER.md

Reports per vocoder: log-mel L1, multi-resolution STFT distance (spectral convergence + log magnitude),
time per 5 s clip (median wall and CPU seconds, 1 and 2 threads) and, when star.eval.aisfx_embed is
available, the aisfx Frechet distance of the resyntheses to the real clips and the mean paired
embedding distance. The table is written between markers in the output Markdown file, so the prose
around it survives a re-run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from star.audio import SAMPLE_RATE, MelSpec, load_audio
from star.data.corpus import load_corpus
from star.vocoder import GRIFFIN_LIM, GriffinLimVocoder, build_vocoder
from star.vocoder.loss import VocoderLoss, spectral_distances

START, END = "<!-- compare_vocoders:start -->", "<!-- compare_vocoders:end -->"
CLIP_SECONDS = 5.0


def _time_per_clip(vocoder, mels: list[torch.Tensor], samples: int, threads: int, repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds for one 5 s clip at `threads` torch threads."""
    torch.set_num_threads(threads)
    walls, cpus = [], []
    with torch.inference_mode():
        vocoder(mels[0], samples=samples)  # warm-up (allocator, FFT plans)
        for _ in range(repeats):
            for mel in mels:
                w0, c0 = time.perf_counter(), time.process_time()
                vocoder(mel, samples=samples)
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def _embedder():
    try:
        from star.eval.aisfx_embed import AisfxEmbedder
        from star.eval.metrics import FrechetDistance
    except ImportError as exc:  # another engineer's module; the spectral figures stand without it
        print(f"aisfx metrics skipped: {exc}", file=sys.stderr)
        return None, None
    return AisfxEmbedder(), FrechetDistance


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="../shared/data/esc10", help="corpus folder (meta.csv + audio/)")
    p.add_argument("--split", default="validation")
    p.add_argument("--clips", type=int, default=40)
    p.add_argument("--skip", type=int, default=0, help="leave out the first N clips of the split")
    p.add_argument("--every", type=int, default=2,
                   help="take every K-th clip (ESC-10 lists clips by category: 2 keeps all 10 categories)")
    p.add_argument("--neural", action="append", default=[], help="neural vocoder folder (repeatable)")
    p.add_argument("--gl-iters", type=int, default=32)
    p.add_argument("--timing-clips", type=int, default=5)
    p.add_argument("--timing-repeats", type=int, default=2)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--no-aisfx", action="store_true")
    p.add_argument("--out", default="docs/VOCODER.md")
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    clips = load_corpus(args.data).split(args.split)[args.skip :: args.every][: args.clips]
    samples = int(CLIP_SECONDS * SAMPLE_RATE)
    wavs = []
    for c in clips:  # every clip at exactly 5 s, so times are "per 5 s of audio"
        wav = load_audio(c.path, allow_silent=True)[:samples]
        wavs.append(torch.from_numpy(np.pad(wav, (0, samples - wav.size)))[None])
    mel_spec, metric = MelSpec(), VocoderLoss()
    mels = [mel_spec(w) for w in wavs]

    vocoders: dict[str, object] = {f"{GRIFFIN_LIM} ({args.gl_iters} it)": GriffinLimVocoder(n_iter=args.gl_iters)}
    for folder in args.neural:
        v = build_vocoder(folder)
        n_params = sum(t.numel() for t in v.parameters())
        size = sum(f.stat().st_size for f in Path(folder).glob("vocoder.safetensors")) / 1e6
        vocoders[f"neural {Path(folder).parent.name}/{Path(folder).name} ({n_params / 1e6:.2f} M, {size:.1f} MB)"] = v

    embedder, fd_cls = (None, None) if args.no_aisfx else _embedder()
    real_emb = [embedder.embed_frames(w[0].numpy(), SAMPLE_RATE) for w in wavs] if embedder else None

    threads = [int(t) for t in args.threads.split(",")]
    rows = []
    for name, vocoder in vocoders.items():
        print(f"== {name}", file=sys.stderr)
        dists, outs = [], []
        with torch.inference_mode():
            for wav, mel in zip(wavs, mels):
                out = vocoder(mel, samples=samples)
                outs.append(out)
                dists.append(spectral_distances(out, wav, metric))
        row = {
            "vocoder": name,
            "mel_l1": float(np.mean([d["mel_l1"] for d in dists])),
            "stft": float(np.mean([d["stft"] for d in dists])),
            "peak": float(max(o.abs().max() for o in outs)),
        }
        for t in threads:
            row[f"wall_{t}"], row[f"cpu_{t}"] = _time_per_clip(
                vocoder, mels[: args.timing_clips], samples, t, args.timing_repeats
            )
        if embedder:
            fd = fd_cls()
            paired = []
            for out, ref in zip(outs, real_emb):
                gen = embedder.embed_frames(out[0].numpy(), SAMPLE_RATE)
                fd.update(generated=gen, reference=ref)
                paired.append(float(np.linalg.norm(gen.mean(0) - ref.mean(0))))
            row["fd"], row["paired"] = fd.compute(), float(np.mean(paired))
        rows.append(row)
        print(row, file=sys.stderr)

    torch.set_num_threads(1)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        START,
        (f"Measured {datetime.date.today().isoformat()} on {len(clips)} {args.split} clips (every {args.every}) "
        f"of `{args.data}` (5 s each), {platform.processor() or platform.machine()}, "
        f"load average during the run {load}."),
        "",
        "```",
        "python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
        "```",
        "",
    ]
    head = ["vocoder", "mel L1", "MR-STFT"]
    if embedder:
        head += ["aisfx FD", "paired emb. dist."]
    for t in threads:
        head += [f"wall s / 5 s ({t} thr)", f"CPU s / 5 s ({t} thr)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["vocoder"], f"{r['mel_l1']:.3f}", f"{r['stft']:.3f}"]
        if embedder:
            cells += [f"{r['fd']:.1f}", f"{r['paired']:.2f}"]
        for t in threads:
            cells += [f"{r[f'wall_{t}']:.3f}", f"{r[f'cpu_{t}']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        ("Lower is better everywhere. mel L1: mean |log-mel difference|; MR-STFT: spectral convergence + "
        "log-magnitude L1 averaged over (n_fft, hop) = (256, 64), (1024, 256), (2048, 512); aisfx FD: Frechet "
        "distance between aisfx window embeddings (1.16 s hop) of the resyntheses and of the real clips; "
        "paired emb. dist.: mean L2 between each resynthesis's clip embedding and its original's. "
        "CPU s counts all threads."),
        END,
    ]
    block = "\n".join(lines)
    out = Path(args.out)
    text = out.read_text() if out.is_file() else "# Vocoder comparison\n\n"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(block)


if __name__ == "__main__":
    main()
