"""Inverting the mel filterbank: log-mel [b, m, t] -> non-negative linear STFT magnitude [b, f, t].

Griffin-Lim needs it as its magnitude; the neural vocoder uses it as a prior that its network only
corrects, so training starts from a spectrally right output and spends its steps on phase and detail.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from star.audio.mel import LOG_FLOOR, MelConfig, mel_filterbank

# A generator can overshoot the log-mel range (strong guidance); real audio stays inside these bounds.
MEL_MIN, MEL_MAX = math.log(LOG_FLOOR), 10.0


class MelInverse(nn.Module):
    """exp(log-mel) -> magnitude by the clamped pseudo-inverse, refined by multiplicative NNLS updates
    (Lee & Seung), which keep every bin non-negative and fill the gaps between filter peaks."""

    def __init__(self, cfg: MelConfig | None = None, iters: int = 20):
        super().__init__()
        self.iters = iters
        fb = torch.from_numpy(mel_filterbank(cfg or MelConfig()))  # [m, f]
        self.register_buffer("fb", fb, persistent=False)
        self.register_buffer("fb_t", fb.T.contiguous(), persistent=False)  # [f, m]
        self.register_buffer("fb_pinv", torch.linalg.pinv(fb), persistent=False)  # [f, m]

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        target = torch.exp(mel.float().clamp(MEL_MIN, MEL_MAX))  # [b, m, t]
        mag = (self.fb_pinv @ target).clamp(min=LOG_FLOOR)  # [b, f, t]
        numer = self.fb_t @ target
        for _ in range(self.iters):
            # fb^T (fb mag) through the 64-bin mel space: 8x cheaper than the [f, f] Gram matrix.
            mag = mag * numer / (self.fb_t @ (self.fb @ mag) + 1e-10)
            # Bins driven towards zero would turn denormal, and denormal arithmetic is ~100x slower on x86.
            mag = mag.clamp(min=1e-10)
        return mag
