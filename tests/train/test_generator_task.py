"""The generator's training task: manifest reading, event-keeping crops, batches, a short run that lowers the
validation loss on real log-mels, export/load, the config entry point, and DDP with 2 processes."""

import csv
import json
import os
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from star.audio import SAMPLE_RATE, write_wav
from star.errors import StarError
from star.generator import load_generator
from star.train import TrainConfig
from star.train.generator_task import (
    GeneratorTask,
    GeneratorTaskConfig,
    TextCondition,
    add_extra_captions,
    crop_start,
    mix_log_mels,
    read_manifest,
    train_generator,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DEBUG_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "generator_debug.json"


class FakeTextEncoder:
    """Deterministic stand-in for MiniLM: one fixed random 384-d vector per word (no model load in tests)."""

    name, dim = "fake", 384

    def encode(self, texts):
        rows = [[torch.randn(384, generator=torch.Generator().manual_seed(zlib.crc32(w.encode())))
                 for w in t.split()] for t in texts]
        n = max(len(r) for r in rows)
        tokens, mask = torch.zeros(len(texts), n, 384), torch.zeros(len(texts), n, dtype=torch.bool)
        for i, r in enumerate(rows):
            tokens[i, : len(r)], mask[i, : len(r)] = torch.stack(r), True
        return tokens, mask


@pytest.fixture(autouse=True)
def fake_text_encoder(monkeypatch):
    import star.encoders

    monkeypatch.setattr(star.encoders, "build_text_encoder", lambda name="minilm": FakeTextEncoder())


def make_manifest(folder: Path) -> Path:
    """Real clips from tests/fixtures when present, else synthetic tones/noise; plus one 8 s two-event scene."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    meta = FIXTURES / "esc10_mini" / "meta.csv"
    lines = []
    if meta.is_file():  # six real CC0 ESC-10 clips
        for i, row in enumerate(csv.DictReader(meta.open())):
            label = row["category"].replace("_", " ")
            lines.append({"id": f"r{i}", "audio": str(meta.parent / "audio" / row["filename"]),
                          "captions": [f"the sound of {label}", label], "events": [],
                          "split": "validation" if i == 0 else "train"})
    else:
        t = np.arange(int(5 * SAMPLE_RATE)) / SAMPLE_RATE
        kinds = {"a low hum": lambda: 0.3 * np.sin(2 * np.pi * 150 * t),
                 "a high whistle": lambda: 0.3 * np.sin(2 * np.pi * 3000 * t),
                 "hissing noise": lambda: 0.1 * rng.standard_normal(t.size)}
        for i in range(6):
            caption = list(kinds)[i % 3]
            write_wav(folder / f"c{i}.wav", kinds[caption]().astype(np.float32), SAMPLE_RATE)
            lines.append({"id": f"c{i}", "audio": f"c{i}.wav", "captions": [caption, caption + " sound"],
                          "events": [{"label": caption, "onset": 0.0, "offset": 5.0}],
                          "split": "validation" if i == 2 else "train"})
    scene = np.zeros(8 * SAMPLE_RATE, dtype=np.float32)
    scene[6 * SAMPLE_RATE : 7 * SAMPLE_RATE] = 0.3 * np.sin(2 * np.pi * 800 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)
    write_wav(folder / "scene.wav", scene, SAMPLE_RATE)
    lines.append({"id": "scene", "audio": "scene.wav", "captions": ["a beep near the end"],
                  "events": [{"label": "beep", "onset": 6.0, "offset": 7.0}], "split": "train", "seconds": 8.0})
    path = folder / "sounds.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def task_config(manifest: Path, out: Path, **train) -> GeneratorTaskConfig:
    cfg = GeneratorTaskConfig.load(DEBUG_CONFIG)
    cfg.manifest, cfg.out_dir = str(manifest), str(out)
    cfg.max_seconds = 5.0
    cfg.train = TrainConfig(**{**cfg.train.to_dict(), **train})
    return cfg


def test_read_manifest_resolves_paths_and_checks_keys(tmp_path):
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "a", "audio": "x/a.wav", "captions": "a dog"}) + "\n")
    items = read_manifest(tmp_path / "m.jsonl")
    assert items[0]["audio"] == str(tmp_path / "x" / "a.wav") and items[0]["captions"] == ["a dog"]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"id": "a", "audio": "a.wav"}) + "\n")
    with pytest.raises(StarError, match="captions"):
        read_manifest(tmp_path / "bad.jsonl")
    with pytest.raises(StarError, match="not found"):
        read_manifest(tmp_path / "missing.jsonl")


def test_augmentation_changes_training_batches_only(tmp_path):
    cfg = task_config(make_manifest(tmp_path / "data"), tmp_path / "run")
    cfg.gain_db, cfg.roll_single = 6.0, True
    task = GeneratorTask(cfg)
    lo = task.model.cfg.mel_min
    mel = torch.full((64, 100), lo)
    mel[:, 10:30] = torch.linspace(-6.0, -2.0, 64)[:, None]  # a sound, then digital silence
    rng = np.random.default_rng(0)
    scene = task.augment(mel, {"kind": "sequence"}, rng)
    sound = mel > lo
    delta = scene[sound] - mel[sound]
    assert (scene[~sound] == lo).all()  # silence stays silent
    assert 0 < delta.abs().max() <= 6.0 * np.log(10) / 20 + 1e-5 and torch.allclose(delta, delta[0])
    assert torch.equal(scene > lo, sound)  # a scene keeps its timing
    moved = [task.augment(mel, {"kind": "single"}, rng) > lo for _ in range(5)]
    assert any(not torch.equal(m, sound) for m in moved)  # a single event may move in time...
    assert all(int(m.sum()) == int(sound.sum()) for m in moved)  # ...whole
    items = task.train_items[:2]
    fixed = task.make_batch(items, None)["mel"]  # evaluation batches are never augmented
    assert torch.equal(fixed, task.make_batch(items, None)["mel"])
    assert not torch.equal(fixed, task.make_batch(items, np.random.default_rng(1))["mel"])


def test_mix_same_overlays_a_clip_of_the_same_category(tmp_path):
    cfg = task_config(make_manifest(tmp_path / "data"), tmp_path / "run")
    cfg.mix_same = 1.0
    task = GeneratorTask(cfg)
    lo = task.model.cfg.mel_min
    quiet = torch.full((64, 50), lo)
    quiet[:, :10] = -4.0
    loud = torch.full((64, 80), -2.0)
    dog = {"kind": "single", "events": [{"category": "dog"}], "mel": quiet}
    task.same_category = {"dog": [dog, {"kind": "single", "events": [{"category": "dog"}], "mel": loud}],
                          "rain": [{"mel": torch.full((64, 50), 3.0)}]}
    rng = np.random.default_rng(0)
    mixes = [task.augment(quiet, dog, rng) for _ in range(20)]
    for mixed in mixes:
        assert mixed.shape == quiet.shape and (mixed >= quiet - 1e-5).all()  # adding a sound never removes one
        assert mixed.max() < 0.0  # never the other category's (rain's) level
    heard = [bool((m[:, 10:] > lo).all()) for m in mixes]
    assert any(heard) and not all(heard)  # the partner is itself or the loud dog, drawn at random
    # two equal sounds sum to twice the magnitude; silence plus silence stays digital silence
    both = torch.tensor([[-3.0, lo]])
    assert torch.allclose(mix_log_mels(both, both, lo), torch.tensor([[-3.0 + float(np.log(2.0)), lo]]))
    scene = {"kind": "sequence", "events": [{"category": "dog"}], "mel": quiet}
    assert torch.equal(task.augment(quiet, scene, rng), quiet)  # scenes are never mixed


def test_extra_captions_widen_single_event_training_clips_only(tmp_path):
    items = [
        {"kind": "single", "events": [{"category": "dog"}], "captions": ["a dog barks", "a canine barking"]},
        {"kind": "sequence", "events": [{"category": "dog"}, {"category": "rain"}], "captions": ["a dog, then rain"]},
        {"kind": "single", "events": [{"category": "kazoo"}], "captions": ["a kazoo"]},
    ]
    add_extra_captions(items)
    dog = items[0]["captions"]
    assert dog[0] == "a dog barks" and len(dog) == len(set(dog)) > 30  # the 40 extras, no duplicate
    assert "a pooch barking" in dog
    assert items[1]["captions"] == ["a dog, then rain"] and items[2]["captions"] == ["a kazoo"]

    manifest = make_manifest(tmp_path / "data")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for row in rows[:-1]:  # the clips (the last row is the scene) become single dog barks
        row.update(kind="single", events=[{"category": "dog", "onset": 0.0, "offset": 1.0}])
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = task_config(manifest, tmp_path / "run")
    cfg.extra_captions = True
    task = GeneratorTask(cfg)
    singles = [it for it in task.train_items if it.get("kind") == "single"]
    assert len(singles) >= 2 and all(len(it["captions"]) > 30 for it in singles)
    assert all(len(it["captions"]) == 2 for it in task.eval_items)  # validation keeps its own captions


@pytest.mark.parametrize("option, value", [("mix_same", 0.5), ("extra_captions", True)])
def test_manifest_only_options_are_refused_for_streamed_shards(tmp_path, option, value):
    cfg = task_config(make_manifest(tmp_path / "data"), tmp_path / "run")
    cfg.manifest, cfg.shards = "", str(tmp_path / "none")
    setattr(cfg, option, value)
    with pytest.raises(StarError, match=f"{option} needs a manifest"):
        GeneratorTask(cfg)


def test_crop_keeps_the_events():
    rng = np.random.default_rng(0)
    fps = 62.5
    events = [{"onset": 6.0, "offset": 7.0}, {"onset": 8.5, "offset": 9.0}]
    for _ in range(200):
        s = crop_start(626, 313, events, fps, rng)
        assert 0 <= s <= 313 and s <= 6.0 * fps and s + 313 >= 9.0 * fps
    assert crop_start(626, 313, events, fps, None) == crop_start(626, 313, events, fps, None)
    # events that cannot fit together: every crop still holds the start of one of them
    wide = [{"onset": 0.5, "offset": 1.0}, {"onset": 9.0, "offset": 9.5}]
    for _ in range(100):
        s = crop_start(626, 313, wide, fps, rng)
        assert any(s <= e["onset"] * fps and e["offset"] * fps <= s + 313 for e in wide)
    assert crop_start(300, 313, events, fps, rng) == 0


def test_batches_pad_with_mask_and_condition(tmp_path):
    manifest = make_manifest(tmp_path / "data")
    cfg = task_config(manifest, tmp_path / "run")
    cfg.max_seconds = 10.0
    task = GeneratorTask(cfg)
    scene = next(it for it in task.train_items if it["id"] == "scene")
    clip = next(it for it in task.train_items if it["id"] != "scene")
    batch = task.make_batch([clip, scene], np.random.default_rng(0))
    assert batch["mel"].shape == (2, 64, scene["mel"].shape[1])
    assert batch["mel_mask"][0].sum() == clip["mel"].shape[1] and batch["mel_mask"][1].all()
    assert batch["cond"].shape[0] == 2 and batch["cond"].shape[2] == 384
    assert batch["cond_mask"].any(1).all()
    # per-bin statistics of the training clips go into the model config (inference de-normalises with them)
    assert len(task.model.cfg.mel_mean) == 64 and min(task.model.cfg.mel_std) > 0
    # a second task reuses the caches instead of recomputing
    assert (tmp_path / "run" / "cache" / "mels.pt").is_file()
    assert GeneratorTask(cfg).model.cfg.mel_mean == task.model.cfg.mel_mean


def test_text_condition_picks_phrasings_and_caches(tmp_path):
    items = [{"captions": ["a dog barks", "dog barking loudly"]}, {"captions": ["rain"]}]
    cond = TextCondition([c for it in items for c in it["captions"]], "minilm", tmp_path / "t.pt")
    tokens, mask = cond(items, None)
    assert tokens.shape == (2, 3, 384) and mask.tolist() == [[True, True, True], [True, False, False]]
    torch.testing.assert_close(tokens[:, :1], FakeTextEncoder().encode(["a dog barks", "rain"])[0][:, :1],
                               atol=1e-2, rtol=1e-2)  # cached as float16
    rng = np.random.default_rng(0)
    first_words = FakeTextEncoder().encode(["a", "dog"])[0][:, 0]
    picked = {int((cond(items, rng)[0][0, 0] - first_words).abs().sum(-1).argmin()) for _ in range(30)}
    assert picked == {0, 1}, "random phrasings: both captions of the first item are used"
    assert (tmp_path / "t.pt").is_file()


def test_training_lowers_validation_loss_and_exports(tmp_path):
    manifest = make_manifest(tmp_path / "data")
    out = tmp_path / "run"
    cfg = task_config(manifest, out, steps=40, eval_every=40, ckpt_every=40, warmup=5, lr=2e-3)
    task = GeneratorTask(cfg)
    task.model.eval()
    with torch.no_grad():
        before = task.evaluate(task.model)["val_loss"]
    cfg_path = tmp_path / "cfg.json"
    cfg.save(cfg_path)
    result = train_generator(cfg_path, out)
    assert result["step"] == 40
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    after = [r["eval"]["val_loss"] for r in log if "eval" in r][-1]
    assert after < 0.8 * before, (before, after)
    model = load_generator(out / "last")
    assert model.cfg.mel_mean == task.model.cfg.mel_mean  # the statistics ship with the weights
    cond, mask = task.condition(task.eval_items[:1], None)
    mel = model.sample(cond, mask, 63, steps=2, generator=torch.Generator().manual_seed(0))
    assert mel.shape == (1, 64, 63) and torch.isfinite(mel).all()
    assert (out / "task_config.json").is_file()


def test_init_from_continues_a_released_generator(tmp_path):
    manifest = make_manifest(tmp_path / "data")
    first = tmp_path / "first"
    cfg = task_config(manifest, first, steps=20, eval_every=20, ckpt_every=20, warmup=2, lr=2e-3)
    cfg.save(tmp_path / "first.json")
    train_generator(tmp_path / "first.json", first)
    released = load_generator(first / "last")

    cfg = task_config(manifest, tmp_path / "second", steps=1, eval_every=1, ckpt_every=1, lr=1e-12, warmup=0)
    cfg.model.dim = 64  # replaced by the released model's config
    cfg.init_from = str(first / "last")
    cfg.save(tmp_path / "second.json")
    train_generator(tmp_path / "second.json", tmp_path / "second")
    continued = load_generator(tmp_path / "second" / "last")
    assert continued.cfg.to_dict() == released.cfg.to_dict()
    for (name, a), b in zip(released.state_dict().items(), continued.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name  # one step at lr ~0 from the released weights

    # The objective may change on a continued run; the shape may not.
    cfg.init_overrides = {"t_logit_mean": 0.8, "cond_drop": 0.1}
    cfg.save(tmp_path / "shifted.json")
    train_generator(tmp_path / "shifted.json", tmp_path / "shifted")
    shifted = load_generator(tmp_path / "shifted" / "last").cfg
    assert (shifted.t_logit_mean, shifted.cond_drop) == (0.8, 0.1)
    assert {**shifted.to_dict(), "t_logit_mean": 0.0, "cond_drop": released.cfg.cond_drop} == released.cfg.to_dict()
    # A frame head may be added: it starts as the identity, so the loaded weights keep their meaning.
    cfg.init_overrides = {"frame_head": 3}
    cfg.save(tmp_path / "headed.json")
    train_generator(tmp_path / "headed.json", tmp_path / "headed")
    headed = load_generator(tmp_path / "headed" / "last")
    assert headed.cfg.frame_head == 3 and headed.backbone.frame_head is not None
    cfg.init_from = str(tmp_path / "headed" / "last")
    cfg.save(tmp_path / "twice.json")
    with pytest.raises(StarError, match="has frame_head=3"):
        train_generator(tmp_path / "twice.json", tmp_path / "twice")
    cfg.init_from = str(first / "last")
    cfg.init_overrides = {"dim": 32}
    cfg.save(tmp_path / "reshaped.json")
    with pytest.raises(StarError, match="cannot change dim"):
        train_generator(tmp_path / "reshaped.json", tmp_path / "reshaped")

    cfg.init_overrides = {}
    cfg.init_from = str(tmp_path / "nowhere")
    cfg.save(tmp_path / "bad.json")
    with pytest.raises(StarError, match="init_from"):
        train_generator(tmp_path / "bad.json", tmp_path / "third")


def test_ddp_two_processes(tmp_path):
    manifest = make_manifest(tmp_path / "data")
    cfg = task_config(manifest, tmp_path / "run", steps=6, eval_every=3, ckpt_every=3)
    cfg.save(tmp_path / "cfg.json")
    job = tmp_path / "job.py"
    job.write_text(textwrap.dedent(f"""
        import os, sys, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import star.encoders
        from test_generator_task import FakeTextEncoder
        star.encoders.build_text_encoder = lambda name="minilm": FakeTextEncoder()
        from star.train import Trainer
        from star.train.generator_task import GeneratorTask, GeneratorTaskConfig
        cfg = GeneratorTaskConfig.load({str(tmp_path / "cfg.json")!r})
        task = GeneratorTask(cfg)
        Trainer(task, cfg.train, cfg.out_dir).fit()
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
    assert (tmp_path / "run" / "last" / "generator.safetensors").is_file()


def test_length_grouped_batches_respect_the_frame_budget(tmp_path):
    manifest = make_manifest(tmp_path / "data")
    cfg = task_config(manifest, tmp_path / "run")
    cfg.max_seconds, cfg.batch_size, cfg.batch_frames = 10.0, 4, 2 * 313
    task = GeneratorTask(cfg)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(60):
        idx = task.sample_indices(rng)
        batch = task.make_batch([task.train_items[i] for i in idx], rng)
        assert batch["mel"].shape[0] * batch["mel"].shape[2] <= 2 * 313 or batch["mel"].shape[0] == 1
        seen.update(int(i) for i in idx)
    assert seen == set(range(len(task.train_items))), "every clip is still drawn"
