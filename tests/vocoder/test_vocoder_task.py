"""Vocoder training on real audio: a short run lowers the validation distance and exports loadable weights."""

import json
from pathlib import Path

import torch

from star.train.trainer import Trainer
from star.train.vocoder_task import VocoderRunConfig, VocoderTask, read_split
from star.vocoder import NeuralVocoder, build_vocoder

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_configs_parse():
    for path in CONFIGS.glob("vocoder_*.json"):
        cfg = VocoderRunConfig.load(path)
        assert cfg.model.hop == 256 and cfg.model.n_mels == 64, path


def test_short_training_run_lowers_validation_distance(mini_corpus, tmp_path):
    cfg = VocoderRunConfig.load(CONFIGS / "vocoder_debug.json")
    cfg.data.data_dir = str(mini_corpus)
    torch.manual_seed(0)
    task = VocoderTask(cfg, read_split(mini_corpus, "train"), read_split(mini_corpus, "validation"))
    batch = next(iter(task.batches(0, 1)))
    assert batch.shape == (cfg.data.batch_size, cfg.data.segment_frames * 256)
    assert batch.abs().max() <= 0.99 + 1e-6
    with torch.no_grad():
        before = task.evaluate(task.model)
    result = Trainer(task, cfg.train, tmp_path).fit()
    assert result["step"] == cfg.train.steps
    with torch.no_grad():
        after = task.evaluate(task.model)
    assert after["val_stft"] < before["val_stft"] - 0.05, (before, after)
    losses = [r["loss"] for r in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines()) if "loss" in r]
    assert min(losses[-3:]) < max(losses[:3])
    vocoder = build_vocoder(tmp_path / "last")
    assert isinstance(vocoder, NeuralVocoder) and vocoder.cfg == cfg.model
