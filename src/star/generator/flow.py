"""The generator's objective and sampler: rectified flow on normalised log-mels, kept apart from the backbone.

    x_t = (1 - t) x0 + t noise        t = 0 data, t = 1 noise
    v   = noise - x0                  the velocity the backbone predicts (MSE, logit-normal t)

Condition dropout replaces the condition by a learned null token so one network gives both the
conditional and the unconditional velocity; sampling mixes them (classifier-free guidance), batching
the two in one forward pass. `forward()` returns the loss, because DDP only synchronises gradients
through forward.

Shape legend: b batch, f n_mels, t frames, n condition tokens, c condition dim.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import torch
from torch import nn

from star.errors import StarError
from star.generator.dit import DiT, GeneratorConfig
from star.weights import load_config, load_weights, save_weights

METHODS = ("euler", "heun")


class FlowMatching(nn.Module):
    def __init__(self, cfg: GeneratorConfig, backbone: nn.Module | None = None):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.backbone = backbone if backbone is not None else DiT(cfg)
        self.null_token = nn.Parameter(torch.randn(cfg.cond_dim) * 0.02)
        # Data statistics come from the config (the source of truth that ships with the weights).
        mean = torch.tensor(cfg.mel_mean or [0.0] * cfg.n_mels, dtype=torch.float32)
        std = torch.tensor(cfg.mel_std or [1.0] * cfg.n_mels, dtype=torch.float32)
        self.register_buffer("mel_mean", mean[:, None], persistent=False)  # [f, 1]
        self.register_buffer("mel_std", std[:, None].clamp(min=1e-3), persistent=False)

    # ---- representation ----------------------------------------------------------------------
    def normalize(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - self.mel_mean) / self.mel_std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mel_std + self.mel_mean

    def null_condition(self, batch: int, n: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """The unconditional condition: the null token at position 0, padding after it. ([b, n, c], [b, n])."""
        cond = torch.zeros(batch, n, self.cfg.cond_dim, dtype=self.null_token.dtype, device=self.null_token.device)
        cond[:, 0] = self.null_token
        mask = torch.zeros(batch, n, dtype=torch.bool, device=cond.device)
        mask[:, 0] = True
        return cond, mask

    def _check_cond(self, cond: torch.Tensor, cond_mask: torch.Tensor) -> None:
        if cond.dim() != 3 or cond.shape[-1] != self.cfg.cond_dim:
            raise StarError(f"condition must be [b, n, {self.cfg.cond_dim}], got {tuple(cond.shape)}")
        if cond_mask.shape != cond.shape[:2] or cond_mask.dtype != torch.bool:
            raise StarError(f"condition mask must be bool {tuple(cond.shape[:2])}, got {cond_mask.dtype} "
                            f"{tuple(cond_mask.shape)}")
        if not bool(cond_mask.any(dim=1).all()):
            raise StarError("every condition needs at least one real token (mask all False)")

    # ---- training ----------------------------------------------------------------------------
    def forward(
        self,
        mel: torch.Tensor,
        cond: torch.Tensor,
        cond_mask: torch.Tensor,
        mel_mask: torch.Tensor | None = None,
        t: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        drop: bool = True,
    ) -> torch.Tensor:
        """Flow-matching loss (scalar). mel [b, f, t] log-mel; mel_mask [b, t] True = real frame.

        `t` [b] and `noise` [b, f, t] may be given for deterministic evaluation; `drop=False` turns off
        condition dropout.
        """
        self._check_cond(cond, cond_mask)
        b = mel.shape[0]
        x0 = self.normalize(mel)  # [b, f, t]
        if noise is None:
            noise = torch.randn_like(x0)
        if t is None:
            t = torch.sigmoid(self.cfg.t_logit_mean + self.cfg.t_logit_std * torch.randn(b, device=mel.device))
        if drop and self.training:  # always through torch.where: DDP needs null_token in every graph
            dropped = torch.rand(b, device=mel.device) < self.cfg.cond_drop  # [b]
            null, null_mask = self.null_condition(b, cond.shape[1])
            cond = torch.where(dropped[:, None, None], null, cond)
            cond_mask = torch.where(dropped[:, None], null_mask, cond_mask)
        tt = t[:, None, None]
        xt = (1 - tt) * x0 + tt * noise
        pred = self.backbone(xt, t, cond, cond_mask, mel_mask)  # [b, f, t]
        err = (pred.float() - (noise - x0)) ** 2
        if mel_mask is None:
            return err.mean()
        m = mel_mask[:, None, :].to(err.dtype)
        return (err * m).sum() / (m.sum() * err.shape[1]).clamp(min=1.0)

    # ---- sampling ----------------------------------------------------------------------------
    def velocity(
        self, x: torch.Tensor, t: float, cond: torch.Tensor, cond_mask: torch.Tensor, guidance: float
    ) -> torch.Tensor:
        """Guided velocity at time t for x [b, f, t]; cond/mask already hold [cond; null] when guided."""
        b = x.shape[0]
        if guidance == 1.0:
            return self.backbone(x, torch.full((b,), t, device=x.device), cond, cond_mask).float()
        v = self.backbone(torch.cat([x, x]), torch.full((2 * b,), t, device=x.device), cond, cond_mask).float()
        v_cond, v_null = v[:b], v[b:]
        return v_null + guidance * (v_cond - v_null)

    @torch.no_grad()
    def sample(
        self,
        cond: torch.Tensor,
        cond_mask: torch.Tensor,
        frames: int,
        steps: int | None = None,
        cfg: float | None = None,
        method: str | None = None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
        bf16: bool = False,
        clamp: bool = True,
        shift: float | None = None,
        eta: float = 0.0,
    ) -> torch.Tensor:
        """Integrate noise (t=1) -> data (t=0); returns de-normalised log-mel [b, f, frames].

        cond [b, n, c], cond_mask [b, n]; steps/cfg/method/shift default to the config (8, 3.0, euler, 1).
        `shift` > 1 spends more of the steps near t=1, where the layout of events is decided.
        `eta` in [0, 1] (Euler only) makes each step stochastic: the noise part of the next point is
        sqrt(1 - eta^2) of the predicted noise plus eta of fresh noise drawn from `generator`; 0 is the
        deterministic Euler step.
        The result is clamped to the training range [mel_min, mel_max] because guidance overshoots.
        """
        steps = self.cfg.steps if steps is None else int(steps)
        guidance = self.cfg.cfg if cfg is None else float(cfg)
        method = self.cfg.method if method is None else method
        self._check_cond(cond, cond_mask)
        if method not in METHODS:
            raise StarError(f"unknown sampler {method!r}; valid: {', '.join(METHODS)}")
        if steps < 1:
            raise StarError(f"steps must be >= 1, got {steps}")
        if not 0.0 <= eta <= 1.0 or (eta and method != "euler"):
            raise StarError(f"eta must be in [0, 1] and needs the euler sampler, got {eta} with {method}")
        if frames < 1:
            raise StarError(f"frames must be >= 1, got {frames}")
        b = cond.shape[0]
        device = self.null_token.device
        cond, cond_mask = cond.to(device=device, dtype=torch.float32), cond_mask.to(device)
        if guidance != 1.0:
            null, null_mask = self.null_condition(b, cond.shape[1])
            cond, cond_mask = torch.cat([cond, null]), torch.cat([cond_mask, null_mask])
        if noise is None:
            noise = torch.randn(b, self.cfg.n_mels, frames, generator=generator, device=device)
        elif noise.shape != (b, self.cfg.n_mels, frames):
            raise StarError(f"noise must be {(b, self.cfg.n_mels, frames)}, got {tuple(noise.shape)}")

        shift = self.cfg.shift if shift is None else float(shift)
        if not shift > 0:
            raise StarError(f"time shift must be > 0, got {shift}")
        times = torch.linspace(1.0, 0.0, steps + 1)
        times = (shift * times / (1 + (shift - 1) * times)).tolist()  # SD3's time shift; 1 = uniform
        x = noise.float()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            for t0, t1 in itertools.pairwise(times):
                v0 = self.velocity(x, t0, cond, cond_mask, guidance)
                if method == "heun" and t1 > 0:
                    x1 = x + (t1 - t0) * v0
                    v1 = self.velocity(x1, t1, cond, cond_mask, guidance)
                    x = x + (t1 - t0) * 0.5 * (v0 + v1)
                elif eta and t1 > 0:
                    # x_t = (1 - t) x_0 + t e: split the prediction into data and noise estimates and
                    # renew part of the noise (eta = 0 gives exactly the Euler step below).
                    x0, e = x - t0 * v0, x + (1 - t0) * v0
                    fresh = torch.randn(x.shape, generator=generator, device=device)
                    x = (1 - t1) * x0 + t1 * (math.sqrt(1 - eta**2) * e + eta * fresh)
                else:
                    x = x + (t1 - t0) * v0
        mel = self.denormalize(x)
        return mel.clamp(self.cfg.mel_min, self.cfg.mel_max) if clamp else mel


def build_generator(cfg: GeneratorConfig) -> FlowMatching:
    """Config -> FlowMatching with its DiT backbone (randomly initialised)."""
    return FlowMatching(cfg)


WEIGHTS_NAME = "generator"


def save_generator(model: FlowMatching, folder: str | Path) -> Path:
    """Release weights: `folder/generator.safetensors` + `folder/generator.json`."""
    return save_weights(model, model.cfg, folder, WEIGHTS_NAME)


def load_generator(folder: str | Path) -> FlowMatching:
    """Build from `folder/generator.json` and load `folder/generator.safetensors` (shape-checked), eval mode."""
    cfg = load_config(GeneratorConfig, folder, WEIGHTS_NAME)
    return load_weights(build_generator(cfg), folder, WEIGHTS_NAME).eval()
