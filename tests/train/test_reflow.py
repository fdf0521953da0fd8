"""Reflow: the teacher's pairs, the student's training on them, and what the student is exported as."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "generator"))
from generator_helpers import randomize, tiny_config

from star.errors import StarError
from star.generator import build_generator, load_generator, save_generator
from star.train import reflow
from star.train.reflow import ReflowConfig, ReflowTask, load_pairs, make_pairs, train_student


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A tiny random teacher, 10 training prompts (+1 validation), and fixed stand-in bridge tokens."""
    teacher = randomize(build_generator(tiny_config(mel_min=-12.0, mel_max=3.0)))
    save_generator(teacher, tmp_path / "teacher")
    rows = [{"id": f"p{i}", "speech": f"s{i}.wav", "caption": "x", "split": "train"} for i in range(10)]
    rows.append({"id": "v", "speech": "v.wav", "caption": "x", "split": "validation"})
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def fake_tokens(prompts, bridge, cache):  # prompt i -> tokens of value i/10, the last one masked
        values = torch.tensor([int(p["id"][1:]) / 10 for p in prompts])
        tokens = values[:, None, None].expand(len(prompts), 3, 16).half()
        mask = torch.tensor([True, True, False]).expand(len(prompts), 3).clone()
        return tokens, mask

    monkeypatch.setattr(reflow, "bridge_tokens", fake_tokens)
    cfg = ReflowConfig(
        teacher=str(tmp_path / "teacher"),
        prompts=str(tmp_path / "prompts.jsonl"),
        pairs_dir=str(tmp_path / "pairs"),
        count=8,
        seconds=0.5,
        teacher_steps=3,
        gen_batch=3,
        val_pairs=2,
        batch_size=3,
        bf16=False,
        out_dir=str(tmp_path / "student"),
    )
    cfg.train.steps, cfg.train.eval_every, cfg.train.ckpt_every, cfg.train.warmup = 30, 30, 30, 1
    cfg.train.lr, cfg.train.monitor, cfg.train.monitor_mode = 3e-3, "val_loss", "min"
    return cfg


def test_pairs_are_the_teachers_samples_from_their_noise(setup):
    cfg = setup
    paths = [make_pairs(cfg, k, 2) for k in range(2)]
    assert [p.name for p in paths] == ["pairs-0.pt", "pairs-1.pt"]
    first = torch.load(paths[0], weights_only=True)
    ids = first["ids"] + torch.load(paths[1], weights_only=True)["ids"]
    assert len(ids) == 8 == len(set(ids)) and "v" not in ids  # distinct training prompts only
    pairs = load_pairs(cfg.pairs_dir)
    assert pairs["mel"].shape == pairs["noise"].shape == (8, 64, 32)
    teacher = load_generator(cfg.teacher)
    i = 4  # any pair: the teacher's sampler run again from its noise gives its clip
    again = teacher.sample(
        pairs["cond"][i : i + 1].float(),
        pairs["mask"][i : i + 1],
        32,
        steps=3,
        cfg=cfg.teacher_cfg,
        method="heun",
        shift=1.0,
        noise=pairs["noise"][i : i + 1].float(),
    )
    torch.testing.assert_close(again.half(), pairs["mel"][i : i + 1], atol=2e-2, rtol=0)


def test_student_lowers_the_reflow_loss_and_samples_without_guidance(setup):
    cfg = setup
    make_pairs(cfg)
    task = ReflowTask(cfg)
    with torch.no_grad():
        before = task.evaluate(task.model.eval())["val_loss"]
    path = Path(cfg.pairs_dir) / "reflow.json"
    cfg.save(path)
    train_student(path)
    student = load_generator(Path(cfg.out_dir) / "last")
    with torch.no_grad():
        after = task.evaluate(student)["val_loss"]
    assert after < before
    assert student.cfg.cfg == 1.0 and student.cfg.method == "euler" and student.cfg.steps == cfg.student_steps


def test_missing_pairs_and_bad_parts_are_refused(setup, tmp_path):
    with pytest.raises(StarError, match="no pairs"):
        load_pairs(tmp_path / "nothing")
    with pytest.raises(StarError, match="part"):
        make_pairs(setup, 2, 2)
