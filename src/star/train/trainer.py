"""The training loop every stage uses: warmup + cosine LR, AdamW, gradient clipping, EMA,
rotating checkpoints with resume, early stopping on a monitored metric, a JSONL loss log,
progress, and DistributedDataParallel when launched by `torchrun` (gloo on CPU, nccl on GPU).

A *task* supplies the stage-specific parts:
    task.model                         nn.Module; its forward() must compute what the loss needs
                                       (DDP only synchronises gradients through forward)
    task.batches(rank, world) -> Iterator   an endless stream of batches, sharded by rank
    task.loss(model, batch) -> dict    {"loss": scalar tensor, other scalars to log}
    task.evaluate(model) -> dict       optional, run on rank 0 every cfg.eval_every steps
    task.export(model, folder)         optional, writes release weights (defaults to model.safetensors)
"""

from __future__ import annotations

import json
import math
import os
import time
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from tqdm import tqdm

from star.config import JsonConfig
from star.weights import save_weights


@dataclass
class TrainConfig(JsonConfig):
    steps: int = 1000
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: int = 100
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0
    ema: float = 0.0  # EMA decay; 0 disables
    log_every: int = 20
    eval_every: int = 200
    ckpt_every: int = 200
    keep_ckpts: int = 2
    monitor: str = ""  # key of evaluate()'s dict used for best weights / early stopping
    monitor_mode: str = "max"
    patience: int = 0  # evaluations without improvement before stopping; 0 = never stop early
    threads: int = 1
    seed: int = 0
    max_minutes: float = 0.0  # wall-clock budget per run (checkpoint and stop); 0 = none


class TrainTask(Protocol):
    model: torch.nn.Module

    def batches(self, rank: int, world: int) -> Any: ...

    def loss(self, model: torch.nn.Module, batch: Any) -> dict[str, torch.Tensor]: ...


def _dist_env() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


class Trainer:
    def __init__(self, task: TrainTask, cfg: TrainConfig, out_dir: str | Path):
        self.task, self.cfg, self.out = task, cfg, Path(out_dir)
        self.rank, self.world = _dist_env()
        self.ckpt_dir = self.out / "checkpoints"
        self.step = 0
        self.best: float | None = None
        self.evals_since_best = 0
        self.owns_process_group = False

    # ---- setup -------------------------------------------------------------------------------
    def _setup(self) -> None:
        torch.set_num_threads(self.cfg.threads)
        torch.manual_seed(self.cfg.seed + self.rank)
        if self.world > 1 and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend)
            self.owns_process_group = True
        self.model = self.task.model
        self.ema = deepcopy(self.model).eval().requires_grad_(False) if self.cfg.ema > 0 else None
        params = [p for p in self.model.parameters() if p.requires_grad]
        # fused: one kernel for all parameters, ~4x faster optimizer steps on CPU for a 12M-parameter DiT
        self.opt = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay, fused=True)
        self.train_model = self.model
        if self.world > 1:
            self.train_model = torch.nn.parallel.DistributedDataParallel(self.model)
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            self.cfg.save(self.out / "train_config.json")

    def lr_at(self, step: int) -> float:
        c = self.cfg
        if step < c.warmup:
            return c.lr * (step + 1) / c.warmup
        progress = min(1.0, (step - c.warmup) / max(1, c.steps - c.warmup))
        return c.lr * (c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    # ---- checkpoints -------------------------------------------------------------------------
    def _ckpt_path(self, step: int) -> Path:
        return self.ckpt_dir / f"step-{step:07d}.pt"

    def latest_checkpoint(self) -> Path | None:
        found = sorted(self.ckpt_dir.glob("step-*.pt")) if self.ckpt_dir.is_dir() else []
        return found[-1] if found else None

    def save_checkpoint(self) -> None:
        if self.rank != 0:
            return
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "opt": self.opt.state_dict(),
            "step": self.step,
            "best": self.best,
            "evals_since_best": self.evals_since_best,
            "rng": torch.get_rng_state(),
        }
        tmp = self._ckpt_path(self.step).with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self._ckpt_path(self.step))  # atomic: an interrupted save never corrupts resume
        for old in sorted(self.ckpt_dir.glob("step-*.pt"))[: -self.cfg.keep_ckpts]:
            old.unlink()

    def _resume(self) -> None:
        path = self.latest_checkpoint()
        if path is None:
            return
        state = torch.load(path, map_location="cpu", weights_only=False)
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["opt"])
        self.step = state["step"]
        self.best = state.get("best")
        self.evals_since_best = state.get("evals_since_best", 0)
        torch.set_rng_state(state["rng"])
        if self.rank == 0:
            tqdm.write(f"resumed from {path} at step {self.step}")

    # ---- loop --------------------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        if self.rank == 0:
            with open(self.out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def _export(self, folder: Path) -> None:
        model = self.ema if self.ema is not None else self.model
        export = getattr(self.task, "export", None)
        if export is not None:
            export(model, folder)
        else:
            save_weights(model, None, folder, "model")

    def _evaluate(self) -> bool:
        """Run evaluation on rank 0; returns True when early stopping should end training."""
        evaluate = getattr(self.task, "evaluate", None)
        stop = False
        if evaluate is not None and self.rank == 0:
            model = self.ema if self.ema is not None else self.model
            model.eval()
            with torch.no_grad():
                metrics = evaluate(model)
            self.model.train()
            self._log({"step": self.step, "eval": metrics})
            tqdm.write(f"step {self.step} eval " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
            key = self.cfg.monitor
            if key and key in metrics:
                value = metrics[key] if self.cfg.monitor_mode == "max" else -metrics[key]
                if self.best is None or value > self.best:
                    self.best, self.evals_since_best = value, 0
                    self._export(self.out / "best")
                else:
                    self.evals_since_best += 1
                stop = self.cfg.patience > 0 and self.evals_since_best >= self.cfg.patience
        if self.world > 1:
            flag = torch.tensor([int(stop)])
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        return stop

    def fit(self) -> dict[str, Any]:
        """Train to cfg.steps (or early stop / time budget); returns the last logged losses."""
        self._setup()
        self._resume()
        self.model.train()
        batches = iter(self.task.batches(self.rank, self.world))
        start = time.monotonic()
        last: dict[str, float] = {}
        bar = tqdm(total=self.cfg.steps, initial=self.step, disable=self.rank != 0, desc=self.out.name)
        stopped_early = interrupted = False
        try:
            while self.step < self.cfg.steps:
                for group in self.opt.param_groups:
                    group["lr"] = self.lr_at(self.step)
                losses = self.task.loss(self.train_model, next(batches))
                self.opt.zero_grad(set_to_none=True)
                losses["loss"].backward()
                if self.cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
                self.opt.step()
                if self.ema is not None:
                    with torch.no_grad():
                        torch._foreach_lerp_(list(self.ema.parameters()), list(self.model.parameters()),
                                             1 - self.cfg.ema)
                self.step += 1
                bar.update(1)
                last = {k: float(v.detach()) for k, v in losses.items()}
                if self.step % self.cfg.log_every == 0:
                    self._log({"step": self.step, "lr": self.lr_at(self.step), **last})
                    bar.set_postfix(loss=f"{last['loss']:.4f}")
                if self.step % self.cfg.eval_every == 0 and self._evaluate():
                    stopped_early = True
                    break
                if self.step % self.cfg.ckpt_every == 0:
                    self.save_checkpoint()
                if self.cfg.max_minutes and time.monotonic() - start > 60 * self.cfg.max_minutes:
                    break
        except KeyboardInterrupt:
            # Ctrl-C / SIGINT is a normal way to stop a long run: keep the checkpoint and export weights.
            interrupted = True
        finally:
            # Interruption (Ctrl-C, time budget) still leaves a resumable checkpoint.
            self.save_checkpoint()
            bar.close()
        if self.rank == 0:
            if self.best is None or not self.cfg.monitor:
                self._export(self.out / "best")
            self._export(self.out / "last")
        if self.owns_process_group:
            # Tear the group down before the interpreter exits: gloo threads left running at exit can abort
            # a rank ("terminate called without an active exception") after training has succeeded.
            dist.barrier()
            dist.destroy_process_group()
        return {"step": self.step, "stopped_early": stopped_early, "interrupted": interrupted, **last}
