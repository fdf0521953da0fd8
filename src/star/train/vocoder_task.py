"""Training task for the neural vocoder: random 1 s segments of real clips -> log-mel -> vocoder ->
multi-resolution STFT + log-mel loss, run by the shared `Trainer`.

The corpus is a `star.data.corpus` folder (meta.csv + audio/); every clip of its train split is decoded
once into memory (ESC-10: 320 clips x 5 s x 16 kHz x 4 bytes ~ 100 MB).

    python -m star.train.vocoder_task configs/vocoder_default.json [--out DIR] [--data DIR]
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from star.audio import load_audio
from star.audio.mel import MelConfig
from star.config import JsonConfig
from star.data.corpus import load_corpus
from star.errors import StarError
from star.train.trainer import TrainConfig, Trainer
from star.vocoder.builders import save_vocoder
from star.vocoder.loss import VocoderLoss, spectral_distances
from star.vocoder.neural import NeuralVocoder, VocoderConfig

SILENT_RMS = 10 ** (-50 / 20)  # segments quieter than -50 dBFS RMS count as silence


@dataclass
class VocoderDataConfig(JsonConfig):
    # A corpus folder (star.data.corpus: meta.csv + audio/, its own train/validation split; ESC-10
    # trains on folds 1-3 and validates on fold 4). Relative paths resolve against the working directory.
    data_dir: str = "../shared/data/esc10"
    max_clips: int = 0  # 0 = all; debug runs use a few
    segment_frames: int = 64  # 64 hops = 16384 samples ~ 1 s
    batch_size: int = 16
    gain_db: list[float] = field(default_factory=lambda: [-12.0, 6.0])
    active_fraction: float = 0.8  # share of segments drawn from non-silent parts of a clip
    val_clips: int = 24
    val_seconds: float = 2.0


@dataclass
class VocoderRunConfig(JsonConfig):
    model: VocoderConfig = field(default_factory=VocoderConfig)
    data: VocoderDataConfig = field(default_factory=VocoderDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    mel_weight: float = 1.0
    # bf16 autocast for the backbone while training (fp32 at inference); a large win on CPUs with AMX.
    autocast_bf16: bool = False
    out_dir: str = "runs/vocoder"


def read_split(data_dir: str | Path, split: str, max_clips: int = 0) -> list[np.ndarray]:
    """Decode one split ("train" / "validation") of a corpus folder (16 kHz mono float32)."""
    clips = load_corpus(data_dir).split(split)
    if max_clips:
        clips = clips[:max_clips]
    if not clips:
        raise StarError(f"vocoder data: the corpus {data_dir} has no {split} clips")
    return [load_audio(c.path, allow_silent=True) for c in tqdm(clips, desc=f"decode {split}")]


class VocoderTrainModule(nn.Module):
    """Wraps the vocoder with its loss so forward() returns the loss dict (DDP syncs through forward)."""

    def __init__(self, cfg: VocoderConfig, mel_weight: float = 1.0, autocast_bf16: bool = False):
        super().__init__()
        self.autocast_bf16 = autocast_bf16
        self.vocoder = NeuralVocoder(cfg)
        self.criterion = VocoderLoss(MelConfig(), mel_weight=mel_weight)

    def forward(self, wav: torch.Tensor) -> dict[str, torch.Tensor]:  # wav: [b, s]
        with torch.no_grad():
            mel = self.criterion.mel(wav)  # [b, m, t]
        with torch.autocast(wav.device.type, dtype=torch.bfloat16, enabled=self.autocast_bf16):
            out = self.vocoder(mel, samples=wav.shape[-1], clamp=False)  # [b, s]
        return self.criterion(out, wav, ref_mel=mel)


class VocoderTask:
    def __init__(self, cfg: VocoderRunConfig, train_clips: list[np.ndarray], val_clips: list[np.ndarray]):
        self.cfg = cfg
        cfg.model.check(MelConfig())
        self.model = VocoderTrainModule(cfg.model, cfg.mel_weight, cfg.autocast_bf16)
        self.train_clips = [c for c in train_clips if c.size > 0]
        self.segment = cfg.data.segment_frames * cfg.model.hop
        self.val = self._fixed_segments(val_clips)  # [n, s]
        self.metric = VocoderLoss(MelConfig())

    @classmethod
    def from_config(cls, cfg: VocoderRunConfig) -> VocoderTask:
        d = cfg.data
        return cls(cfg, read_split(d.data_dir, "train", d.max_clips),
                   read_split(d.data_dir, "validation", d.max_clips))

    def _fixed_segments(self, clips: list[np.ndarray]) -> torch.Tensor:
        """The loudest `val_seconds` window of each of the first `val_clips` clips: fixed, and not silence."""
        n = int(self.cfg.data.val_seconds * self.cfg.model.sample_rate)
        out = []
        for clip in clips[: self.cfg.data.val_clips]:
            clip = np.pad(clip, (0, max(0, n - clip.size)))
            energy = np.convolve(clip**2, np.ones(self.cfg.model.hop), mode="valid")[:: self.cfg.model.hop]
            starts = np.arange(0, clip.size - n + 1, self.cfg.model.hop)
            window = max(1, n // self.cfg.model.hop)
            best = max(range(len(starts)), key=lambda i: energy[i : i + window].sum())
            out.append(clip[starts[best] : starts[best] + n])
        return torch.from_numpy(np.stack(out).astype(np.float32))

    def _segment(self, rng: random.Random) -> np.ndarray:
        clip = self.train_clips[rng.randrange(len(self.train_clips))]
        if clip.size <= self.segment:
            return np.pad(clip, (0, self.segment - clip.size))
        want_active = rng.random() < self.cfg.data.active_fraction
        for _ in range(8):
            start = rng.randrange(clip.size - self.segment + 1)
            seg = clip[start : start + self.segment]
            if not want_active or np.sqrt(np.mean(seg**2)) > SILENT_RMS:
                break
        return seg

    def batches(self, rank: int, world: int) -> Iterator[torch.Tensor]:
        rng = random.Random(self.cfg.train.seed * 1000 + rank)
        lo, hi = self.cfg.data.gain_db
        while True:
            segs = []
            for _ in range(self.cfg.data.batch_size):
                seg = self._segment(rng) * 10 ** (rng.uniform(lo, hi) / 20)
                peak = float(np.max(np.abs(seg)))
                if peak > 0.99:  # gain must not clip: the vocoder would learn clipped spectra
                    seg = seg * (0.99 / peak)
                segs.append(seg)
            yield torch.from_numpy(np.stack(segs).astype(np.float32))  # [b, s]

    def loss(self, model: nn.Module, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return model(batch)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        vocoder = model.vocoder
        mel = self.metric.mel(self.val)
        wav = vocoder(mel, samples=self.val.shape[-1])
        d = spectral_distances(wav, self.val, self.metric)
        return {"val_mel_l1": d["mel_l1"], "val_stft": d["stft"]}

    def export(self, model: nn.Module, folder: str | Path) -> None:
        save_vocoder(model.vocoder, folder)


def train_vocoder(config_path: str | Path, out_dir: str | Path | None = None,
                  data_dir: str | Path | None = None) -> dict:
    """Train from a `VocoderRunConfig` JSON; release weights land in OUT/best and OUT/last."""
    cfg = VocoderRunConfig.load(config_path)
    if data_dir is not None:
        cfg.data.data_dir = str(data_dir)
    out = Path(out_dir or cfg.out_dir)
    torch.set_num_threads(cfg.train.threads)
    task = VocoderTask.from_config(cfg)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "vocoder_run.json")
    return Trainer(task, cfg.train, out).fit()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the neural vocoder.")
    parser.add_argument("config")
    parser.add_argument("--out", default=None, help="output folder (default: the config's out_dir)")
    parser.add_argument("--data", default=None, help="corpus folder with meta.csv and audio/")
    args = parser.parse_args(argv)
    print(train_vocoder(args.config, args.out, args.data))


if __name__ == "__main__":
    main()
