"""The generator trained from tar shards: statistics and held-out clips from the start of the stream, streamed
batches (plain and length-grouped), cached caption tokens, and a short run that lowers the validation loss."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from test_generator_task import FakeTextEncoder, fake_text_encoder, make_manifest, task_config  # noqa: F401

from star.data.shards import write_shards
from star.errors import StarError
from star.generator import load_generator
from star.train.generator_task import GeneratorTask, train_generator
from star.train.shard_source import CaptionTokens


@pytest.fixture
def sharded(tmp_path):
    """(manifest, shard folder): the six fixture clips and an 8 s scene, in shards of three."""
    manifest = make_manifest(tmp_path / "data")
    write_shards(manifest, tmp_path / "shards", items_per_shard=3)
    return manifest, tmp_path / "shards"


def shard_config(manifest, shards, out, **train):
    cfg = task_config(manifest, out, **train)
    cfg.manifest, cfg.shards = "", str(shards)
    cfg.shuffle_buffer = 4
    return cfg


def test_statistics_and_eval_clips_match_the_manifest_path(sharded, tmp_path):
    manifest, shards = sharded
    streamed = GeneratorTask(shard_config(manifest, shards, tmp_path / "s"))
    cached = GeneratorTask(task_config(manifest, tmp_path / "m"))
    assert [it["id"] for it in streamed.eval_items] == [it["id"] for it in cached.eval_items]
    # same clips (16-bit PCM in the shards), so the same normalisation up to quantisation
    np.testing.assert_allclose(streamed.model.cfg.mel_mean, cached.model.cfg.mel_mean, atol=0.02)
    np.testing.assert_allclose(streamed.model.cfg.mel_std, cached.model.cfg.mel_std, atol=0.02)
    assert not (tmp_path / "s" / "cache").exists(), "streaming caches nothing"
    held_out = write_shards(manifest, tmp_path / "val", split="validation")
    cfg = shard_config(manifest, shards, tmp_path / "s")
    cfg.eval_shards, cfg.eval_split = str(held_out[0]), "none"
    assert [it["id"] for it in GeneratorTask(cfg).eval_items] == ["r0"]
    both = shard_config(manifest, shards, tmp_path / "s")
    both.manifest = str(manifest)
    with pytest.raises(StarError, match="either manifest or shards"):
        GeneratorTask(both)


def test_streamed_batches_cover_the_training_clips(sharded, tmp_path):
    manifest, shards = sharded
    cfg = shard_config(manifest, shards, tmp_path / "run")
    cfg.batch_size, cfg.shuffle_buffer = 3, 0  # no buffer: epochs do not overlap in the stream
    task = GeneratorTask(cfg)
    seen = []
    batches = task.stream.batches(0, 1, 7, lambda items, rng: [it["id"] for it in items])
    for _ in range(4):  # 12 items = two epochs of the six training clips
        seen.extend(next(batches))
    assert sorted(seen) == sorted(2 * ["r1", "r2", "r3", "r4", "r5", "scene"])
    batch = next(iter(task.batches(0, 1)))
    assert batch["mel"].shape[:2] == (3, 64) and batch["mel"].shape[2] <= task.max_frames
    assert batch["cond"].shape[0] == 3 and batch["cond_mask"].any(1).all()


def test_dataloader_workers_decode_the_clips(sharded, tmp_path):
    manifest, shards = sharded
    cfg = shard_config(manifest, shards, tmp_path / "run")
    cfg.loader_workers, cfg.shuffle_buffer = 1, 0
    items = GeneratorTask(cfg).stream.items(0, 1, seed=0)
    got = [next(items) for _ in range(6)]
    assert sorted(it["id"] for it in got) == ["r1", "r2", "r3", "r4", "r5", "scene"]
    assert all(it["mel"].dtype == torch.float16 and it["mel"].shape[0] == 64 for it in got)


def test_length_grouped_streamed_batches_respect_the_frame_budget(sharded, tmp_path):
    manifest, shards = sharded
    cfg = shard_config(manifest, shards, tmp_path / "run")
    cfg.max_seconds, cfg.batch_size, cfg.batch_frames = 10.0, 4, 2 * 313
    task = GeneratorTask(cfg)
    batches = task.stream.batches(0, 1, 3, lambda items, rng: task.make_batch(items, rng))
    for _ in range(12):
        batch = next(batches)
        assert batch["mel"].shape[0] * batch["mel"].shape[2] <= 2 * 313 or batch["mel"].shape[0] == 1


def test_caption_tokens_are_encoded_once_and_bounded(monkeypatch):
    calls = []
    encoder = FakeTextEncoder()
    original = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda texts: calls.append(list(texts)) or original(texts))
    cond = CaptionTokens("minilm", capacity=2)
    cond.encoder = encoder
    items = [{"captions": ["a dog barks", "dog barking loudly"]}, {"captions": ["rain"]}]
    tokens, mask = cond(items, None)
    assert tokens.shape == (2, 3, 384) and mask.tolist() == [[True, True, True], [True, False, False]]
    torch.testing.assert_close(tokens[1, :1], original(["rain"])[0][0], atol=1e-2, rtol=1e-2)
    cond(items, None)
    assert calls == [["a dog barks", "rain"]], "cached captions are not encoded again"
    cond([{"captions": ["wind"]}], None)
    assert list(cond.cache) == ["rain", "wind"], "the least recently used caption is dropped"


def test_training_from_shards_lowers_validation_loss(sharded, tmp_path):
    manifest, shards = sharded
    out = tmp_path / "run"
    cfg = shard_config(manifest, shards, out, steps=30, eval_every=30, ckpt_every=30, warmup=5, lr=2e-3)
    task = GeneratorTask(cfg)
    task.model.eval()
    with torch.no_grad():
        before = task.evaluate(task.model)["val_loss"]
    cfg.save(tmp_path / "cfg.json")
    cfg.manifest, cfg.shards = str(manifest), ""  # the entry point's --shards replaces the manifest
    cfg.save(tmp_path / "manifest_cfg.json")
    result = train_generator(tmp_path / "manifest_cfg.json", out, shards=str(shards))
    assert result["step"] == 30 and np.isfinite(result["loss"])
    saved = json.loads((out / "task_config.json").read_text())
    assert saved["shards"] == str(shards) and saved["manifest"] == ""
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    after = [r["eval"]["val_loss"] for r in log if "eval" in r][-1]
    assert after < 0.9 * before, (before, after)
    model = load_generator(out / "last")
    assert model.cfg.mel_mean == saved["model"]["mel_mean"]


def test_ddp_two_processes_from_shards(sharded, tmp_path):
    manifest, shards = sharded
    cfg = shard_config(manifest, shards, tmp_path / "run", steps=4, eval_every=2, ckpt_every=2)
    cfg.save(tmp_path / "cfg.json")
    job = tmp_path / "job.py"
    job.write_text(textwrap.dedent(f"""
        import json, os, sys, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import star.encoders
        from test_generator_task import FakeTextEncoder
        star.encoders.build_text_encoder = lambda name="minilm": FakeTextEncoder()
        from star.train import Trainer
        from star.train.generator_task import GeneratorTask, GeneratorTaskConfig
        cfg = GeneratorTaskConfig.load({str(tmp_path / "cfg.json")!r})
        task = GeneratorTask(cfg)
        items, seeds = task.stream.items, []
        task.stream.items = lambda rank, world, seed: seeds.append(seed) or items(rank, world, seed)
        Trainer(task, cfg.train, cfg.out_dir).fit()
        w = torch.cat([p.detach().flatten() for p in task.model.parameters()])
        torch.save({{"w": w, "seeds": seeds}}, {str(tmp_path)!r} + f"/r{{os.environ['RANK']}}.pt")
    """))
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", str(job)],
                          capture_output=True, text=True, timeout=240, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = torch.load(tmp_path / "r0.pt"), torch.load(tmp_path / "r1.pt")
    assert torch.allclose(r0["w"], r1["w"]), "DDP replicas diverged"
    assert r0["seeds"] == r1["seeds"] and len(r0["seeds"]) == 1, "both ranks permute the shards alike"
    assert (tmp_path / "run" / "last" / "generator.safetensors").is_file()
