"""`listen` on real synthesised speech: a tiny stage-1 model trained here names the spoken event, and
non-speech input (noise, tones, silence) is answered with "no spoken sound request heard"."""

import json

import numpy as np
import pytest

from star.audio import load_audio
from star.bridge import BridgeConfig, StageOneConfig
from star.bridge.calibrate import choose, synthetic_negatives
from star.bridge.listen import NO_REQUEST, Listener, speech_ratio
from star.train import TrainConfig
from star.train.bridge_task import BridgeTaskConfig, train_bridge


@pytest.fixture(scope="module")
def tiny_model_dir(prompts_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_bridge")
    bridge = BridgeConfig(width=48, queries=4, layers=1, heads=2, ffn_mult=2, dropout=0.0)
    cfg = BridgeTaskConfig(
        manifest=str(prompts_manifest),
        out_dir=str(out / "run"),
        cache_dir=str(out / "cache"),
        model=StageOneConfig(bridge=bridge),
        train=TrainConfig(
            steps=60, lr=3e-3, warmup=5, log_every=10, eval_every=30, ckpt_every=60, monitor=""
        ),
        batch_size=12,
        align_weight=0.5,
    )
    cfg.save(out / "cfg.json")
    train_bridge(out / "cfg.json")
    return out / "run" / "last"


def _rows(manifest):
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def test_listen_names_the_spoken_event(tiny_model_dir, prompts_manifest):
    listener = Listener.from_folder(tiny_model_dir)
    for row in [r for r in _rows(prompts_manifest) if r["split"] == "train"][::3]:
        result = listener.listen(load_audio(prompts_manifest.parent / row["speech"]))
        assert result.is_request, result.reason
        assert result.events[0][0] == row["events"][0]["category"], (row["caption"], result.events)
        assert result.caption in listener.cfg.captions
        d = result.to_dict()
        assert json.loads(json.dumps(d)) == d and d["events"][0]["category"] == result.events[0][0]


@pytest.mark.parametrize("name", ["white_noise", "tone_440", "silence", "chords", "melody"])
def test_non_speech_is_not_a_request(tiny_model_dir, name):
    wav = synthetic_negatives()[name]
    result = Listener.from_folder(tiny_model_dir).listen(wav)
    assert not result.is_request and result.events == [] and result.caption == ""
    assert result.reason.startswith(NO_REQUEST)
    assert result.to_dict()["is_request"] is False


def test_speech_ratio_separates_speech_from_noise(prompts_manifest):
    row = _rows(prompts_manifest)[0]
    speech = load_audio(prompts_manifest.parent / row["speech"])
    assert speech_ratio(speech) > 0.6
    # Silence around a prompt (a real recording) does not dilute the ratio.
    assert speech_ratio(np.pad(speech, (32000, 32000))) > 0.6
    assert speech_ratio(synthetic_negatives()["white_noise"]) < 0.1
    assert speech_ratio(np.zeros(100, dtype=np.float32)) == 0.0


def test_choose_thresholds_keeps_recall_and_rejects():
    pos = np.array([[0.9, 0.8, 0.7], [0.8, 0.9, 0.6], [0.7, 0.7, 0.8]])
    neg = np.array([[0.0, 0.9, 0.9], [0.9, 0.1, 0.2], [0.8, 0.4, 0.3]])
    th, rates = choose(pos, neg, min_recall=1.0)
    assert rates["prompt_recall"] == 1.0 and rates["negative_rejection"] == 1.0
    assert th.min_speech_ratio <= 0.7 and th.min_event_prob <= 0.7 and th.min_caption_sim <= 0.6


def test_request_head_fit_save_load_and_gate(tiny_model_dir, prompts_manifest, tmp_path):
    import shutil

    from star.bridge.request import RequestHead, fit_request_head

    rng = np.random.default_rng(0)
    pos = np.concatenate([rng.normal(1.0, 0.3, (60, 4)), rng.uniform(0.6, 1.0, (60, 1))], axis=1)
    neg = np.concatenate([rng.normal(-1.0, 0.3, (60, 4)), rng.uniform(0.0, 0.4, (60, 1))], axis=1)
    head, stats = fit_request_head(pos, neg, pos[:30], min_recall=0.9)
    assert stats["validation_recall"] >= 0.9 and stats["train_negative_rejection"] > 0.9
    assert head.prob(pos[:5, :4], pos[:5, 4:]).min() > head.prob(neg[:5, :4], neg[:5, 4:]).max()
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    assert RequestHead.load(folder) is None
    e = Listener.from_folder(folder).model.cfg.text_dim
    # A head that rejects everything: listen must answer "no request" even for a real prompt.
    RequestHead(np.zeros(e + 1), -10.0, 0.5).save(folder)
    listener = Listener.from_folder(folder)
    assert listener.request_head is not None
    row = next(r for r in _rows(prompts_manifest) if r["split"] == "train")
    result = listener.listen(load_audio(prompts_manifest.parent / row["speech"]))
    assert not result.is_request and "does not sound like a sound request" in result.reason
    assert 0.0 <= result.request_prob < 0.5


def test_choose_respects_the_gate():
    pos = np.array([[0.9, 0.9, 0.9]] * 10)
    neg = np.array([[0.9, 0.9, 0.9]] * 10)
    _, rates = choose(pos, neg, 0.9, np.ones(10, bool), np.zeros(10, bool))
    assert rates["negative_rejection"] == 1.0 and rates["prompt_recall"] == 1.0
