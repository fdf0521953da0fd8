"""The shared trainer: loss goes down, checkpoints resume exactly, early stopping, DDP with 2 processes."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from star.train import TrainConfig, Trainer


class LinearTask:
    """Fit y = 3x - 1 with noise; forward() returns the loss so DDP syncs gradients."""

    def __init__(self):
        torch.manual_seed(0)
        self.model = _Regressor()

    def batches(self, rank, world):
        g = torch.Generator().manual_seed(rank)
        while True:
            x = torch.randn(32, 1, generator=g)
            yield x, 3 * x - 1 + 0.01 * torch.randn(32, 1, generator=g)

    def loss(self, model, batch):
        return {"loss": model(*batch)}

    def evaluate(self, model):
        x = torch.linspace(-1, 1, 50)[:, None]
        return {"neg_mse": -float(((model.net(x) - (3 * x - 1)) ** 2).mean())}


class _Regressor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(1, 1)

    def forward(self, x, y):
        return ((self.net(x) - y) ** 2).mean()


def _cfg(**kw):
    base = {"steps": 60, "lr": 0.3, "warmup": 5, "log_every": 10, "eval_every": 20, "ckpt_every": 20,
            "monitor": "neg_mse"}
    base.update(kw)
    return TrainConfig(**base)


def test_loss_decreases_and_exports(tmp_path):
    result = Trainer(LinearTask(), _cfg(), tmp_path).fit()
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < losses[0] / 10
    assert result["step"] == 60
    assert (tmp_path / "best" / "model.safetensors").is_file()
    assert (tmp_path / "last" / "model.safetensors").is_file()


def test_resume_continues_from_checkpoint(tmp_path):
    Trainer(LinearTask(), _cfg(steps=40), tmp_path).fit()
    resumed = Trainer(LinearTask(), _cfg(steps=60), tmp_path)
    result = resumed.fit()
    assert result["step"] == 60
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps), "resume must not restart from step 0"
    # rotation keeps only the newest checkpoints
    assert len(list((tmp_path / "checkpoints").glob("step-*.pt"))) <= 2


def test_resume_restores_weights_exactly(tmp_path):
    t1 = Trainer(LinearTask(), _cfg(steps=20), tmp_path)
    t1.fit()
    t2 = Trainer(LinearTask(), _cfg(steps=20), tmp_path)
    t2._setup()
    t2._resume()
    for a, b in zip(t1.model.state_dict().values(), t2.model.state_dict().values()):
        assert torch.equal(a, b)
    assert t2.step == 20


def test_early_stopping(tmp_path):
    class Stalled(LinearTask):
        def evaluate(self, model):
            return {"neg_mse": -1.0}  # never improves after the first evaluation

    result = Trainer(Stalled(), _cfg(steps=1000, eval_every=5, patience=2), tmp_path).fit()
    assert result["stopped_early"] and result["step"] == 15


def test_ddp_two_processes(tmp_path):
    job = tmp_path / "job.py"
    job.write_text(textwrap.dedent(f"""
        import os, sys, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_trainer import LinearTask, _cfg
        from star.train import Trainer
        task = LinearTask()
        out = Trainer(task, _cfg(steps=20, eval_every=10), {str(tmp_path / "run")!r}).fit()
        w = torch.cat([p.detach().flatten() for p in task.model.parameters()])
        torch.save(w, {str(tmp_path)!r} + f"/w{{os.environ['RANK']}}.pt")
    """))
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node=2", str(job)],
        capture_output=True, text=True, timeout=240, env=env, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0, w1 = torch.load(tmp_path / "w0.pt"), torch.load(tmp_path / "w1.pt")
    assert torch.allclose(w0, w1), "DDP replicas diverged"
    assert (tmp_path / "run" / "last" / "model.safetensors").is_file()


def test_interrupt_keeps_checkpoint_and_exports(tmp_path):
    class Interrupted(LinearTask):
        def batches(self, rank, world):
            for i, batch in enumerate(super().batches(rank, world)):
                if i == 7:
                    raise KeyboardInterrupt
                yield batch

    result = Trainer(Interrupted(), _cfg(steps=100), tmp_path).fit()
    assert result["interrupted"] and result["step"] == 7
    assert (tmp_path / "checkpoints" / "step-0000007.pt").is_file()
    assert (tmp_path / "last" / "model.safetensors").is_file()
