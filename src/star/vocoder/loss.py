"""Spectral losses and distances for vocoders: multi-resolution STFT (spectral convergence + log
magnitude) and log-mel L1. Training minimises them; evaluation and `scripts/compare_vocoders.py`
report the same quantities so the numbers are comparable.

Shape legend: b batch, s samples, f STFT bins, t frames, m mel bins.
"""

from __future__ import annotations

import torch
from torch import nn

from star.audio.mel import LOG_FLOOR, MelConfig, MelSpec

# (n_fft, hop): short windows see onsets (pre-echo, smeared transients), long ones see pitch and hum.
DEFAULT_RESOLUTIONS: tuple[tuple[int, int], ...] = ((256, 64), (1024, 256), (2048, 512))


class MultiResolutionSTFTLoss(nn.Module):
    """Mean over resolutions of spectral convergence + L1 of log magnitude (Parallel WaveGAN, eq. 4-6)."""

    def __init__(self, resolutions: tuple[tuple[int, int], ...] = DEFAULT_RESOLUTIONS):
        super().__init__()
        self.resolutions = [tuple(r) for r in resolutions]
        for n_fft, _ in self.resolutions:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def _magnitude(self, wav: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
        window = getattr(self, f"window_{n_fft}")
        spec = torch.stft(wav, n_fft, hop, window=window, center=True, return_complex=True)
        # sqrt(re^2 + im^2 + eps) rather than abs(): abs() has an infinite gradient at exact zeros.
        return torch.sqrt(spec.real.square() + spec.imag.square() + 1e-9)  # [b, f, t]

    def forward(self, wav: torch.Tensor, ref: torch.Tensor) -> dict[str, torch.Tensor]:
        """wav, ref: [b, s] -> {"sc", "log_mag"} each a scalar (mean over resolutions and batch)."""
        sc, log_mag = wav.new_zeros(()), wav.new_zeros(())
        for n_fft, hop in self.resolutions:
            x, y = self._magnitude(wav, n_fft, hop), self._magnitude(ref, n_fft, hop)
            # Batch-level norms: a per-example ratio explodes on the silent segments a batch can hold.
            sc = sc + torch.linalg.vector_norm(y - x) / torch.linalg.vector_norm(y).clamp(min=1e-4)
            log_mag = log_mag + (torch.log(x.clamp(min=LOG_FLOOR)) - torch.log(y.clamp(min=LOG_FLOOR))).abs().mean()
        n = len(self.resolutions)
        return {"sc": sc / n, "log_mag": log_mag / n}


class VocoderLoss(nn.Module):
    """mel_weight * log-mel L1 + (spectral convergence + log magnitude) over several resolutions."""

    def __init__(
        self,
        mel: MelConfig | None = None,
        resolutions: tuple[tuple[int, int], ...] = DEFAULT_RESOLUTIONS,
        mel_weight: float = 1.0,
    ):
        super().__init__()
        self.mel = MelSpec(mel)
        self.stft = MultiResolutionSTFTLoss(resolutions)
        self.mel_weight = mel_weight

    def forward(self, wav: torch.Tensor, ref: torch.Tensor, ref_mel: torch.Tensor | None = None) -> dict:
        """wav, ref: [b, s]; ref_mel: the target's log-mel [b, m, t] if already computed."""
        if ref_mel is None:
            ref_mel = self.mel(ref)
        mel_l1 = (self.mel(wav) - ref_mel).abs().mean()
        stft = self.stft(wav, ref)
        loss = self.mel_weight * mel_l1 + stft["sc"] + stft["log_mag"]
        return {"loss": loss, "mel_l1": mel_l1, **stft}


@torch.no_grad()
def spectral_distances(wav: torch.Tensor, ref: torch.Tensor, loss: VocoderLoss | None = None) -> dict[str, float]:
    """Evaluation distances between a resynthesis and its reference, both [b, s] (or [s]).

    Returns mel_l1 (mean |log-mel difference|) and stft (spectral convergence + log magnitude,
    averaged over resolutions), each averaged over the batch.
    """
    loss = loss or VocoderLoss()
    if wav.dim() == 1:
        wav, ref = wav[None], ref[None]
    n = min(wav.shape[-1], ref.shape[-1])
    out = loss(wav[:, :n].float(), ref[:, :n].float())
    return {"mel_l1": float(out["mel_l1"]), "stft": float(out["sc"] + out["log_mag"])}
