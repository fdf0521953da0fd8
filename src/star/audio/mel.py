"""The log-mel representation every model shares.

16 kHz, n_fft 1024, hop 256 (16 ms, 62.5 frames/s), 64 mel bins over 0-8 kHz, natural log of
magnitude-mel clamped at 1e-5. 64 bins x 62.5 fps keeps 5 s at 64 x 313 values: small enough for a
CPU DiT, fine enough for a vocoder to recover event onsets (the probe used the same settings).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from star.audio.io import SAMPLE_RATE
from star.config import JsonConfig

LOG_FLOOR = 1e-5


@dataclass
class MelConfig(JsonConfig):
    sample_rate: int = SAMPLE_RATE
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float = 8000.0

    def frames(self, seconds: float) -> int:
        """Number of mel frames for `seconds` of audio (centred STFT: 1 + samples // hop)."""
        return 1 + round(seconds * self.sample_rate) // self.hop


def mel_filterbank(cfg: MelConfig) -> np.ndarray:
    """Slaney-style triangular filters on the HTK mel scale, [n_mels, n_fft // 2 + 1], area-normalised."""

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)

    n_freqs = cfg.n_fft // 2 + 1
    fft_freqs = np.linspace(0, cfg.sample_rate / 2, n_freqs)
    mel_pts = np.linspace(hz_to_mel(cfg.f_min), hz_to_mel(cfg.f_max), cfg.n_mels + 2)
    hz_pts = mel_to_hz(mel_pts)
    fb = np.zeros((cfg.n_mels, n_freqs), dtype=np.float64)
    for i in range(cfg.n_mels):
        lo, mid, hi = hz_pts[i], hz_pts[i + 1], hz_pts[i + 2]
        up = (fft_freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - fft_freqs) / max(hi - mid, 1e-9)
        fb[i] = np.maximum(0.0, np.minimum(up, down)) * (2.0 / (hi - lo))
    return fb.astype(np.float32)


class MelSpec(torch.nn.Module):
    """waveform [b, samples] (or [samples]) -> log-mel [b, n_mels, frames]."""

    def __init__(self, cfg: MelConfig | None = None):
        super().__init__()
        self.cfg = cfg or MelConfig()
        self.register_buffer("fb", torch.from_numpy(mel_filterbank(self.cfg)), persistent=False)
        self.register_buffer("window", torch.hann_window(self.cfg.n_fft), persistent=False)

    def magnitude(self, wav: torch.Tensor) -> torch.Tensor:
        """Linear STFT magnitude [b, n_fft // 2 + 1, frames]."""
        spec = torch.stft(
            wav, self.cfg.n_fft, self.cfg.hop, window=self.window, center=True, return_complex=True
        )
        return spec.abs()

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        squeeze = wav.dim() == 1
        if squeeze:
            wav = wav[None]
        mel = torch.einsum("mf,bft->bmt", self.fb, self.magnitude(wav.float()))
        out = torch.log(torch.clamp(mel, min=LOG_FLOOR))
        return out[0] if squeeze else out

    @torch.no_grad()
    def of_numpy(self, wav: np.ndarray) -> np.ndarray:
        """Convenience for data prep: [samples] float32 -> [n_mels, frames] float32."""
        return self(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))).numpy()
