"""The neural vocoder: a Vocos-style ConvNeXt over log-mel frames that predicts an STFT, then iSTFT.

Predicting one complex STFT frame per mel frame (hop 256, n_fft 1024) keeps every layer at the frame
rate (62.5 frames/s), so 5 s of audio costs a 313-step 1-D convnet plus one inverse FFT: tens of
milliseconds on one CPU core, where sample-rate vocoders (HiFi-GAN) upsample 256x inside the network.

Shape legend:
    b  batch
    m  mel bins (64)
    t  mel / STFT frames (hop 256)
    d  backbone width
    f  STFT bins (n_fft // 2 + 1 = 513)
    s  samples
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from star.audio.mel import LOG_FLOOR, MelConfig
from star.config import JsonConfig
from star.vocoder.filterbank import MEL_MAX, MEL_MIN, MelInverse

# exp() of the predicted log-magnitude is capped: a full-scale sine reaches |X| ~ n_fft / 4 = 256 with a
# Hann window, so e^7 ~ 1100 never clips real audio but keeps a diverging head from producing inf.
MAX_LOG_MAGNITUDE = 7.0


@dataclass
class VocoderConfig(JsonConfig):
    n_mels: int = 64
    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 256
    dim: int = 256
    intermediate: int = 768  # ConvNeXt MLP width
    layers: int = 8
    kernel: int = 7
    # The head predicts a log-magnitude *correction* to the filterbank inverse (NNLS, this many updates):
    # training starts from the right spectral envelope and spends its few steps on phase and detail.
    prior_iters: int = 4

    def check(self, mel: MelConfig) -> None:
        """The vocoder only inverts the representation it was trained on."""
        ours = (self.n_mels, self.sample_rate, self.n_fft, self.hop)
        theirs = (mel.n_mels, mel.sample_rate, mel.n_fft, mel.hop)
        if ours != theirs:
            raise ValueError(f"vocoder expects (n_mels, rate, n_fft, hop) = {ours}, mel is {theirs}")


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (time mixing) -> LayerNorm -> pointwise MLP (channel mixing), scaled residual."""

    def __init__(self, dim: int, intermediate: int, kernel: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, intermediate)
        self.act = nn.GELU()
        self.pw2 = nn.Linear(intermediate, dim)
        # Small layer scale makes each block start near identity, which keeps deep stacks stable early on.
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [b, d, t]
        h = self.dwconv(x).transpose(1, 2)  # [b, t, d]
        h = self.pw2(self.act(self.pw1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class NeuralVocoder(nn.Module):
    """log-mel [b, m, t] -> waveform [b, s] in [-1, 1], s = t * hop unless `samples` is given."""

    def __init__(self, cfg: VocoderConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or VocoderConfig()
        self.embed = nn.Conv1d(cfg.n_mels, cfg.dim, cfg.kernel, padding=cfg.kernel // 2)
        self.norm_in = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.blocks = nn.ModuleList(
            ConvNeXtBlock(cfg.dim, cfg.intermediate, cfg.kernel, 1.0 / cfg.layers) for _ in range(cfg.layers)
        )
        self.norm_out = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.n_bins = cfg.n_fft // 2 + 1
        self.head = nn.Linear(cfg.dim, 2 * self.n_bins)  # log-magnitude correction and phase angle per bin
        with torch.no_grad():  # start exactly at the prior magnitude
            self.head.weight[: self.n_bins].zero_()
            self.head.bias[: self.n_bins].zero_()
        self.prior = MelInverse(
            MelConfig(sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop=cfg.hop, n_mels=cfg.n_mels),
            iters=cfg.prior_iters,
        )
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    def spectrum(self, mel: torch.Tensor) -> torch.Tensor:
        """log-mel [b, m, t] (already clamped to the valid range) -> complex STFT [b, f, t]."""
        with torch.autocast(mel.device.type, enabled=False):
            prior = torch.log(self.prior(mel).clamp(min=LOG_FLOOR))  # [b, f, t]
        x = self.embed(mel)  # [b, d, t]
        x = self.norm_in(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        # The head stays fp32 under bf16 autocast: bf16's 8-bit mantissa would quantise phase to ~0.03 rad.
        with torch.autocast(x.device.type, enabled=False):
            h = self.head(self.norm_out(x.transpose(1, 2).float()))  # [b, t, 2f]
        log_mag, phase = h.transpose(1, 2).chunk(2, dim=1)  # [b, f, t] each
        mag = torch.exp((prior + log_mag).clamp(max=MAX_LOG_MAGNITUDE))
        # cos/sin of a free angle: every real output is a valid phase, no wrap-around discontinuity.
        return torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))

    def forward(self, mel: torch.Tensor, samples: int | None = None, clamp: bool = True) -> torch.Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.cfg.n_mels:
            raise ValueError(f"expected log-mel [batch, {self.cfg.n_mels}, frames], got {tuple(mel.shape)}")
        frames = mel.shape[-1]
        spec = self.spectrum(mel.float().clamp(MEL_MIN, MEL_MAX))  # [b, f, t]
        length = frames * self.cfg.hop
        wav = torch.istft(
            spec, self.cfg.n_fft, self.cfg.hop, window=self.window, center=True, length=length
        )  # [b, s]
        if samples is not None:
            wav = wav[:, :samples]
        # Training passes clamp=False: a clamped sample has no gradient, so overshoot could never be unlearned.
        return wav.clamp(-1.0, 1.0) if clamp else wav
