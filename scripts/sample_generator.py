"""Sample a few captions from a generator and save their log-mels as one PNG (to look at what it makes).

    python scripts/sample_generator.py RUN_OR_MODEL --out mels.png [--captions "a dog barks" "rain falls"]
        [--seconds 5] [--steps 8] [--cfg 3] [--seed 0] [--method euler] [--real sounds.jsonl]

RUN_OR_MODEL is a release folder (generator.json + generator.safetensors, e.g. RUN/last), a training
checkpoint (RUN/checkpoints/step-*.pt, EMA weights when present, config from RUN/task_config.json) or a
run folder (its newest checkpoint). With --real, real clips whose first caption matches are drawn below.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

DEFAULT_CAPTIONS = ["a dog barks", "rain falls", "a rooster crows", "a clock ticks",
                    "a baby cries", "a fire crackles", "a dog barks, then a rooster crows"]


def load_any(path: Path, raw: bool = False):
    from star.generator import FlowMatching, load_generator
    from star.train.generator_task import GeneratorTaskConfig

    if (path / "generator.json").is_file():
        return load_generator(path), str(path)
    if path.is_dir():
        found = sorted((path / "checkpoints").glob("step-*.pt"))
        if not found:
            raise SystemExit(f"no generator.json or checkpoints in {path}")
        path = found[-1]
    run = path.parent.parent
    cfg = GeneratorTaskConfig.load(run / "task_config.json").model
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = FlowMatching(cfg)
    use_ema = state.get("ema") is not None and not raw
    model.load_state_dict(state["ema"] if use_ema else state["model"])
    return model.eval(), f"{path} (step {state['step']}, {'EMA' if use_ema else 'raw'} weights)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--out", type=Path, default=Path("generator_samples.png"))
    ap.add_argument("--captions", nargs="+", default=DEFAULT_CAPTIONS)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--cfg", type=float, default=None)
    ap.add_argument("--method", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--raw", action="store_true", help="checkpoints: the raw weights instead of the EMA")
    ap.add_argument("--real", type=Path, help="sounds.jsonl: also draw a real clip per caption when one matches")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from star.encoders import build_text_encoder

    torch.set_num_threads(args.threads)
    model, source = load_any(args.model, args.raw)
    tokens, mask = build_text_encoder("minilm").encode(args.captions)
    frames = model.cfg.frames(args.seconds)
    start = time.perf_counter()
    mels = model.sample(tokens, mask, frames, steps=args.steps, cfg=args.cfg, method=args.method,
                        generator=torch.Generator().manual_seed(args.seed))
    took = time.perf_counter() - start

    real = {}
    if args.real:
        from star.audio import load_audio
        from star.audio.mel import MelSpec
        from star.train.generator_task import read_manifest

        wanted = set(args.captions)
        for item in read_manifest(args.real):
            hit = next((c for c in item["captions"] if c in wanted and c not in real), None)
            if hit:
                real[hit] = MelSpec().of_numpy(load_audio(item["audio"], allow_silent=True))

    rows = len(args.captions)
    cols = 2 if real else 1
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 1.6 * rows), squeeze=False)
    lo, hi = model.cfg.mel_min, model.cfg.mel_max
    for i, caption in enumerate(args.captions):
        axes[i, 0].imshow(mels[i].numpy(), origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma")
        axes[i, 0].set_title(f"generated: {caption}", fontsize=8)
        if real:
            ax = axes[i, 1]
            if caption in real:
                ax.imshow(real[caption], origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma")
            ax.set_title(f"real: {caption}" if caption in real else "(no real clip with this caption)", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{source}: {rows} x {args.seconds:g} s in {took:.2f} s", fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} ({rows} samples in {took:.2f} s from {source})")


if __name__ == "__main__":
    main()
