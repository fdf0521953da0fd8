"""Reflow: distil a generator's guided many-step sampler into a few guidance-free Euler steps.

The teacher (a stage-2b generator) turns noise into a clip with an accurate but slow sampler (e.g.
Heun, 16 steps, guidance 5: 31 double-batch network calls). Each (noise, clip, condition) triple is a
*pair*; the student, initialised from the teacher, is trained with the flow-matching loss on the straight
line between the pair's noise and clip (Liu et al. 2022, "Flow straight and fast"). Straight paths need
few steps, and the guidance is baked into the targets, so the student samples at guidance 1: one
network call per step instead of two.

    python -m star.train.reflow pairs CONFIG --part 0/2      # generate pairs (run parts in parallel)
    python -m star.train.reflow train CONFIG                 # train the student (resumable)

    b batch, f mel bins, t frames, q condition tokens, c condition width
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from star.audio.mel import MelConfig
from star.config import JsonConfig, check_part, parse_part
from star.data.manifest import read_manifest
from star.errors import StarError
from star.generator import FlowMatching, load_generator, save_generator
from star.train.generator_task import fixed_time_losses
from star.train.speech_condition import bridge_tokens
from star.train.trainer import TrainConfig, Trainer


@dataclass
class ReflowConfig(JsonConfig):
    teacher: str = ""  # generator folder (generator.safetensors/json); the student starts from its weights
    bridge: str = ""  # stage-1 folder: spoken prompts are conditioned as in stage 2b
    prompts: str = ""  # spoken training prompts (prompts.jsonl); only the "train" split is used
    feature_cache: str = "runs/cache/features"
    pairs_dir: str = "runs/reflow/pairs"  # where `pairs` writes pairs-K.pt and `train` reads them
    count: int = 2000  # pairs over all parts, one per distinct prompt (at most the number of prompts)
    seconds: float = 5.0
    teacher_steps: int = 16
    teacher_method: str = "heun"
    teacher_shift: float = 1.0
    teacher_cfg: float = 5.0
    gen_batch: int = 8
    seed: int = 0
    student_shift: float = 1.0  # sampling defaults written into the student's generator.json
    student_steps: int = 8
    val_pairs: int = 48  # the last pairs are held out for the validation loss
    batch_size: int = 12
    bf16: bool = True
    eval_times: list[float] = field(default_factory=lambda: [0.1, 0.3, 0.5, 0.7, 0.9])
    out_dir: str = "runs/reflow/student"
    train: TrainConfig = field(default_factory=TrainConfig)


def pick_prompts(cfg: ReflowConfig) -> list[dict]:
    """The `count` training prompts the pairs are made from, in a seeded order shared by all parts."""
    rows = [r for r in read_manifest(cfg.prompts) if r.get("split", "train") == "train"]
    if not rows:
        raise StarError(f"{cfg.prompts}: no training prompts")
    order = np.random.default_rng(cfg.seed).permutation(len(rows))[: cfg.count]
    return [rows[i] for i in order]


@torch.no_grad()
def make_pairs(cfg: ReflowConfig, part: int = 0, parts: int = 1) -> Path:
    """Generate this part's pairs with the teacher's slow sampler; writes pairs_dir/pairs-{part}.pt."""
    check_part(part, parts)
    prompts = pick_prompts(cfg)[part::parts]
    tokens, masks = bridge_tokens(prompts, cfg.bridge, cfg.feature_cache)  # [p, q, c] float16, [p, q]
    teacher = load_generator(cfg.teacher)
    frames = MelConfig().frames(cfg.seconds)
    rng = torch.Generator().manual_seed(cfg.seed * 1000 + part)
    noise_all, mel_all = [], []
    for s in tqdm(range(0, len(prompts), cfg.gen_batch), desc=f"teacher pairs {part}/{parts}"):
        cond, mask = tokens[s : s + cfg.gen_batch].float(), masks[s : s + cfg.gen_batch]
        noise = torch.randn(cond.shape[0], teacher.cfg.n_mels, frames, generator=rng)  # [b, f, t]
        mel = teacher.sample(
            cond,
            mask,
            frames,
            steps=cfg.teacher_steps,
            cfg=cfg.teacher_cfg,
            method=cfg.teacher_method,
            shift=cfg.teacher_shift,
            noise=noise,
            bf16=cfg.bf16,
        )
        noise_all.append(noise.half())
        mel_all.append(mel.half())
    out = Path(cfg.pairs_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"pairs-{part}.pt"
    torch.save(
        {
            "noise": torch.cat(noise_all),
            "mel": torch.cat(mel_all),
            "cond": tokens,
            "mask": masks,
            "ids": [p["id"] for p in prompts],
        },
        path,
    )
    return path


def load_pairs(folder: str | Path) -> dict[str, torch.Tensor]:
    """All pairs-*.pt of a folder, concatenated (in part order)."""
    files = sorted(Path(folder).glob("pairs-*.pt"))
    if not files:
        raise StarError(f"{folder}: no pairs-*.pt (run `python -m star.train.reflow pairs` first)")
    parts = [torch.load(f, weights_only=True) for f in files]
    q = max(p["cond"].shape[1] for p in parts)
    if any(p["cond"].shape[1] != q for p in parts):
        raise StarError(f"{folder}: pair files hold conditions of different lengths")
    return {k: torch.cat([p[k] for p in parts]) for k in ("noise", "mel", "cond", "mask")}


class ReflowTask:
    """Flow matching on the teacher's (noise, clip) pairs, without condition dropout."""

    def __init__(self, cfg: ReflowConfig):
        self.cfg = cfg
        pairs = load_pairs(cfg.pairs_dir)
        n = pairs["mel"].shape[0]
        if n <= cfg.val_pairs:
            raise StarError(f"{n} pairs leave none for training beside {cfg.val_pairs} validation pairs")
        self.train_pairs = {k: v[: n - cfg.val_pairs] for k, v in pairs.items()}
        self.val_pairs = {k: v[n - cfg.val_pairs :] for k, v in pairs.items()}
        self.model: FlowMatching = load_generator(cfg.teacher).train()
        self.model.cfg.cfg, self.model.cfg.shift = 1.0, cfg.student_shift  # guidance is in the targets
        self.model.cfg.steps, self.model.cfg.method = cfg.student_steps, "euler"

    def batches(self, rank: int, world: int):
        g = torch.Generator().manual_seed(self.cfg.train.seed * 1000 + rank)
        n = self.train_pairs["mel"].shape[0]
        while True:
            for idx in torch.randperm(n, generator=g)[rank::world].split(self.cfg.batch_size):
                yield {k: v[idx] for k, v in self.train_pairs.items()}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cfg.bf16):
            loss = model(
                batch["mel"].float(),
                batch["cond"].float(),
                batch["mask"],
                noise=batch["noise"].float(),
                drop=False,
            )
        return {"loss": loss}

    def evaluate(self, model: FlowMatching) -> dict[str, float]:
        """Loss on the held-out pairs at fixed t (their own noise): lower = straighter, better-fitted paths."""
        v = self.val_pairs
        batch = {"mel": v["mel"].float(), "cond": v["cond"].float(), "cond_mask": v["mask"],
                 "noise": v["noise"].float()}
        return fixed_time_losses(model, [batch], self.cfg.eval_times, self.cfg.bf16)

    def export(self, model: FlowMatching, folder: str | Path) -> None:
        save_generator(model, folder)


def train_student(config_path: str | Path) -> dict[str, Any]:
    cfg = ReflowConfig.load(config_path)
    torch.set_num_threads(cfg.train.threads)
    out = Path(cfg.out_dir)
    task = ReflowTask(cfg)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "reflow_config.json")
    return Trainer(task, cfg.train, out).fit()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Distil the guided many-step sampler into few steps (reflow)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pairs", help="generate (noise, clip) pairs with the teacher's slow sampler")
    p.add_argument("config")
    p.add_argument("--part", default="0/1", help="K/N: generate part K of N (run N processes)")
    t = sub.add_parser("train", help="train the student on the pairs (resumes from its checkpoints)")
    t.add_argument("config")
    args = parser.parse_args(argv)
    if args.command == "pairs":
        try:
            k, n = parse_part(args.part)
        except StarError as exc:
            raise SystemExit(f"--part: {exc}") from None
        cfg = ReflowConfig.load(args.config)
        torch.set_num_threads(cfg.train.threads)
        print(make_pairs(cfg, k, n))
    else:
        print(json.dumps(train_student(args.config)))


if __name__ == "__main__":
    main()
