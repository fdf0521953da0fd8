"""The zero-training vocoder: invert the mel filterbank, then Griffin-Lim phase reconstruction.

Slower and noisier than the neural vocoder (the phase is estimated, not learned), but it needs no
weights, so it is the fallback when none are available and the reference every neural vocoder must beat.

Shape legend: b batch, m mel bins, f STFT bins, t frames, s samples.
"""

from __future__ import annotations

import torch
from torch import nn

from star.audio.mel import MelConfig
from star.vocoder.filterbank import MelInverse


class GriffinLimVocoder(nn.Module):
    """log-mel [b, m, t] -> waveform [b, s] in [-1, 1] (s = t * hop unless `samples` is given)."""

    def __init__(self, mel: MelConfig | None = None, n_iter: int = 32, momentum: float = 0.99,
                 nnls_iter: int = 20, seed: int = 0):
        super().__init__()
        self.cfg = mel or MelConfig()
        self.n_iter, self.momentum, self.nnls_iter, self.seed = n_iter, momentum, nnls_iter, seed
        self.inverse = MelInverse(self.cfg, nnls_iter)
        self.register_buffer("window", torch.hann_window(self.cfg.n_fft), persistent=False)

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    def magnitude(self, mel: torch.Tensor) -> torch.Tensor:
        """log-mel [b, m, t] -> non-negative linear magnitude [b, f, t] whose mel projection fits exp(mel)."""
        return self.inverse(mel)

    @torch.no_grad()
    def forward(self, mel: torch.Tensor, samples: int | None = None) -> torch.Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.cfg.n_mels:
            raise ValueError(f"expected log-mel [batch, {self.cfg.n_mels}, frames], got {tuple(mel.shape)}")
        mag = self.magnitude(mel)  # [b, f, t]
        n_fft, hop = self.cfg.n_fft, self.cfg.hop
        length = mel.shape[-1] * hop

        def istft(spec: torch.Tensor) -> torch.Tensor:
            return torch.istft(spec, n_fft, hop, window=self.window, center=True, length=length)

        def stft(wav: torch.Tensor) -> torch.Tensor:
            # Zero padding: reflect padding fails on clips shorter than n_fft / 2 (a frame or two).
            spec = torch.stft(wav, n_fft, hop, window=self.window, center=True, pad_mode="constant",
                              return_complex=True)
            return spec[..., : mag.shape[-1]]

        # Fast Griffin-Lim (Perraudin et al. 2013): the momentum term extrapolates the phase update,
        # reaching in ~32 iterations what plain Griffin-Lim needs hundreds for.
        g = torch.Generator().manual_seed(self.seed)
        phase = torch.rand(mag.shape, generator=g) * 2 * torch.pi
        angles = torch.polar(torch.ones_like(mag), phase)
        previous = torch.zeros_like(angles)
        for _ in range(self.n_iter):
            rebuilt = stft(istft(mag * angles))
            angles = rebuilt - previous * (self.momentum / (1 + self.momentum))
            angles = angles / (angles.abs() + 1e-16)
            previous = rebuilt
        wav = istft(mag * angles)
        if samples is not None:
            wav = wav[:, :samples]
        return wav.clamp(-1.0, 1.0)
