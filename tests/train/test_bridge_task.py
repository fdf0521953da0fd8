"""Stage-1 bridge task on real (espeak-ng -> whisper-tiny.en) features: loss falls, export, resume."""

import json
import random
import shutil
import subprocess

import numpy as np
import pytest
import torch

from star.bridge import BridgeConfig, StageOneConfig, load_stage_one
from star.bridge.model import slot_targets
from star.train import TrainConfig, Trainer
from star.train.bridge_task import (
    AugmentConfig,
    BridgeTask,
    BridgeTaskConfig,
    collate,
    mean_average_precision,
    order_accuracy,
    order_targets,
    top1_accuracy,
    train_bridge,
)

PHRASES = {
    "dog": ["a dog barks", "a dog is barking loudly", "I want to hear a dog bark"],
    "rain": ["rain is falling", "heavy rain pouring down", "I want to hear the rain"],
}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("bridge_task")
    rows = []
    for cat, phrases in PHRASES.items():
        for pi, text in enumerate(phrases):
            for voice in ("en-us+m1", "en-gb+f2"):
                name = f"speech/{cat}{pi}{voice[:5]}.wav"
                (root / "speech").mkdir(exist_ok=True)
                subprocess.run(["espeak-ng", "-v", voice, "-w", str(root / name), text], check=True)
                split = "val" if pi == 2 else "train"
                rows.append(
                    {
                        "id": name,
                        "caption": text,
                        "speech": name,
                        "split": split,
                        "events": [{"category": cat, "onset": 0.0, "offset": 5.0}],
                    }
                )
    (root / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "prompts.jsonl"


def _cfg(manifest, out, steps=30):
    bridge = BridgeConfig(width=32, queries=4, layers=1, heads=2, ffn_mult=2, dropout=0.0)
    return BridgeTaskConfig(
        manifest=str(manifest),
        out_dir=str(out),
        cache_dir=str(out.parent / "cache"),
        model=StageOneConfig(bridge=bridge),
        train=TrainConfig(
            steps=steps, lr=3e-3, warmup=5, log_every=5, eval_every=10, ckpt_every=10, monitor="val_map"
        ),
        batch_size=8,
        align_weight=0.5,
    )


def test_metrics_on_hand_computed_cases():
    targets = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.float32)
    perfect = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    assert mean_average_precision(perfect, targets) == pytest.approx(1.0)
    assert top1_accuracy(perfect, targets) == 1.0
    half = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.4, 0.6]])
    assert top1_accuracy(half, targets) == 0.75
    # class 0 ranking: 0.9(+), 0.8(-), 0.7(+), 0.4(-) -> AP = (1 + 2/3) / 2
    assert mean_average_precision(half[:, :1], targets[:, :1]) == pytest.approx((1 + 2 / 3) / 2)


def test_augment_keeps_shapes_and_real_frames():
    x = np.random.default_rng(0).standard_normal((60, 384)).astype(np.float32)
    aug = AugmentConfig(speed=0.2, crop=0.1, time_masks=3, time_mask_frac=0.2, channel_drop=0.2, noise=0.1)
    for seed in range(5):
        y, m = aug.apply(x, random.Random(seed))
        assert y.shape[1] == 384 and m.shape == (y.shape[0],) and m.any()
        assert 40 <= y.shape[0] <= 80


def test_training_lowers_loss_and_exports(manifest, tmp_path):
    result = train_bridge_cfg(_cfg(manifest, tmp_path / "run", steps=40))
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert losses[-1] < 0.6 * losses[0], losses
    assert result["step"] == 40
    evals = [r["eval"] for r in log if "eval" in r]
    assert evals[-1]["val_map"] > 0.5  # two classes, held-out phrasing in training voices
    model = load_stage_one(tmp_path / "run" / "best")
    assert model.cfg.vocab == ["dog", "rain"]
    assert model.cfg.captions and model.caption_emb.shape == (len(model.cfg.captions), 384)
    assert torch.allclose(model.caption_emb.norm(dim=-1), torch.ones(len(model.cfg.captions)), atol=1e-4)


def train_bridge_cfg(cfg):
    path = cfg.out_dir + ".json"
    cfg.save(path)
    return train_bridge(path)


def test_resume_with_bridge_task(manifest, tmp_path):
    cfg = _cfg(manifest, tmp_path / "run", steps=20)
    Trainer(BridgeTask(cfg), cfg.train, cfg.out_dir).fit()
    cfg.train.steps = 30
    resumed = Trainer(BridgeTask(cfg), cfg.train, cfg.out_dir)
    assert resumed.fit()["step"] == 30
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 30


def test_manifest_without_validation_is_an_error(manifest, tmp_path):
    from star.errors import StarError

    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    train_only = manifest.parent / "train_only.jsonl"
    train_only.write_text("".join(json.dumps({**r, "split": "train"}) + "\n" for r in rows))
    with pytest.raises(StarError, match="split"):
        BridgeTask(_cfg(train_only, tmp_path / "run"))


def test_warm_start_loads_an_exported_model(manifest, tmp_path):
    cfg = _cfg(manifest, tmp_path / "first", steps=10)
    Trainer(BridgeTask(cfg), cfg.train, cfg.out_dir).fit()
    warm = _cfg(manifest, tmp_path / "second", steps=10)
    warm.init_from = str(tmp_path / "first" / "best")
    task = BridgeTask(warm)
    ref = load_stage_one(tmp_path / "first" / "best").state_dict()
    for k, v in task.model.state_dict().items():
        assert torch.equal(v, ref[k]), k
    bad = _cfg(manifest, tmp_path / "third", steps=10)
    bad.init_from = str(tmp_path / "missing")
    from star.errors import StarError

    with pytest.raises(StarError, match="init_from"):
        BridgeTask(bad)


def test_rows_without_event_loss_get_zero_weight(manifest, tmp_path):
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    extra = manifest.parent / "extra_nobce.jsonl"
    extra.write_text(
        "".join(json.dumps({**r, "id": r["id"] + "x", "bce": False, "split": "train"}) + "\n" for r in rows[:2])
    )
    cfg = _cfg(manifest, tmp_path / "run", steps=10)
    cfg.extra_manifests = [str(extra)]
    task = BridgeTask(cfg)
    w = task.train_set.bce_weight
    assert w.shape == (len(task.train_set.rows),) and w[-2:].tolist() == [0.0, 0.0] and w[:-2].min() == 1.0
    batch = next(task.batches(0, 1))
    assert len(batch) == 7 and task.loss(task.model, batch)["loss"].isfinite()


def test_distractor_joins_a_no_sound_utterance_to_sound_requests_only(manifest, tmp_path):
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    extra = manifest.parent / "extra_no_sound.jsonl"  # two utterances asking for no known sound
    extra.write_text(
        "".join(json.dumps({**r, "id": r["id"] + "n", "events": [], "split": "train"}) + "\n" for r in rows[:2])
    )
    cfg = _cfg(manifest, tmp_path / "run", steps=10)
    cfg.extra_manifests = [str(extra)]
    cfg.augment = AugmentConfig(speed=0.0, crop=0.0, time_masks=0, channel_drop=0.0, distractor=1.0)
    task = BridgeTask(cfg)
    ts = task.train_set
    assert sorted(task.no_sound.tolist()) == [len(ts.rows) - 2, len(ts.rows) - 1]
    rng = random.Random(0)
    lengths = {len(ts.feats[j]) for j in task.no_sound}
    for i in range(len(ts.rows)):
        frames, mask = task._augmented(i, rng)
        own = len(ts.feats[i])
        if i in task.no_sound:  # a no-sound utterance is never joined to another
            assert len(frames) == own
        else:  # the request's own frames come first or last, untouched
            assert len(frames) - own in lengths and mask.all()
            assert np.array_equal(frames[:own], ts.feats[i]) or np.array_equal(frames[-own:], ts.feats[i])
    batch = next(task.batches(0, 1))
    assert task.loss(task.model, batch)["loss"].isfinite()


SEQUENCES = [("dog", "rain", "a dog barks, then rain falls"), ("rain", "dog", "rain falls, then a dog barks")]


@pytest.fixture(scope="module")
def sequence_manifest(manifest):
    """The single-event prompts plus both orders of "dog, then rain", spoken in two voices."""
    root = manifest.parent
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for n, (first, second, text) in enumerate(SEQUENCES):
        for voice in ("en-us+m1", "en-gb+f2", "en-us+f3"):
            name = f"speech/seq{n}{voice[:5]}{voice[-2:]}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(root / name), text], check=True)
            events = [{"category": first, "onset": 0.0, "offset": 2.0}, {"category": second, "onset": 2.5, "offset": 5.0}]
            split = "val" if voice == "en-us+f3" else "train"
            rows.append({"id": name, "caption": text, "speech": name, "split": split, "kind": "sequence", "events": events})
    path = root / "sequences.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_order_targets_and_accuracy_on_hand_computed_cases():
    rows = [
        {"kind": "sequence", "events": [{"category": "rain"}, {"category": "dog"}]},
        {"kind": "overlay", "events": [{"category": "rain"}, {"category": "dog"}]},
        {"kind": "single", "events": [{"category": "dog"}]},
        {"kind": "sequence", "events": [{"category": "dog"}, {"category": "dog"}]},  # a repeat, no order
    ]
    y = order_targets(rows, ["dog", "rain"])
    assert y.tolist() == [[1, 0], [-1, -1], [-1, -1], [-1, -1]]
    right = np.log(np.array([[[0.2, 0.8], [0.7, 0.3]]]))  # first: rain, second: dog
    assert order_accuracy(right, y[:1]) == 1.0
    assert order_accuracy(right[:, ::-1], y[:1]) == 0.0  # the heads swapped: the reverse order wins
    assert np.isnan(order_accuracy(right, y[1:2]))


def test_slot_targets_name_each_half_of_the_clip():
    targets = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    order = torch.tensor([[1, 0], [-1, -1], [-1, -1], [-1, -1]])  # a sequence, an overlay, a single, no sound
    slots = slot_targets(targets, order)
    assert slots[0].tolist() == [[0, 1, 0], [1, 0, 0]]  # "B, then A": B first, A second
    for i in range(1, 4):
        assert slots[i].tolist() == [targets[i].tolist()] * 2
    assert torch.equal(slot_targets(targets, None), targets[:, None].repeat(1, 2, 1))


@pytest.mark.parametrize("slots", [False, True])
def test_order_loss_trains_the_order_head_from_a_bridge_without_one(sequence_manifest, tmp_path, slots):
    plain = _cfg(sequence_manifest, tmp_path / "plain", steps=10)
    Trainer(BridgeTask(plain), plain.train, plain.out_dir).fit()
    assert load_stage_one(tmp_path / "plain" / "best").order is None
    cfg = _cfg(sequence_manifest, tmp_path / "order", steps=60)
    cfg.order_weight, cfg.init_from, cfg.sequence_repeats = 1.0, str(tmp_path / "plain" / "best"), 2
    cfg.model.order_slots = slots
    cfg.slot_weight = 1.0 if slots else 0.0  # slots: each half also names the events of its half of the clip
    task = BridgeTask(cfg)
    assert (task.model.order is None) == slots  # slots reuse the event head: no weights of their own
    assert (task.train_set.order[:, 0] >= 0).sum() == 4 * 3
    Trainer(task, cfg.train, cfg.out_dir).fit()
    log = [json.loads(line) for line in (tmp_path / "order" / "log.jsonl").read_text().splitlines()]
    order = [r["order"] for r in log if "order" in r]
    assert np.mean(order[-3:]) < 0.5 * np.mean(order[:3]), order
    if slots:
        halves = [r["slots"] for r in log if "slots" in r]
        assert np.mean(halves[-3:]) < 0.7 * np.mean(halves[:3]), halves
    assert "val_order_acc" in [r["eval"] for r in log if "eval" in r][-1]
    model = load_stage_one(tmp_path / "order" / "last")
    frames, mask = collate([(f, np.ones(len(f), dtype=bool)) for f in task.val_set.feats])
    assert model.predict(frames, mask).order_logits.shape == (len(frames), 2, 2)
