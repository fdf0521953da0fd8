"""The Bridge interface (speech frames -> semantic condition tokens), its config, and masked pooling.

Shapes: b batch, t speech frames, d speech feature size, q output tokens, c condition size (384).
A bool mask is True for real frames / tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from star.config import JsonConfig
from star.errors import StarError

BRIDGE_KINDS = ("qformer", "mlp")


@dataclass
class BridgeConfig(JsonConfig):
    kind: str = "qformer"  # "qformer" (default) or "mlp" (the ablation)
    in_dim: int = 384  # speech feature size (whisper-tiny.en: 384)
    out_dim: int = 384  # the generator's condition size
    width: int = 256  # Q-Former hidden size / MLP hidden size
    queries: int = 32  # Q-Former learnable queries; MLP output tokens use `mlp_tokens`
    layers: int = 2
    heads: int = 4
    ffn_mult: int = 2
    dropout: float = 0.1
    mlp_tokens: int = 4
    frame_stride: int = 2  # Q-Former: average frames in groups of this size first (50 -> 25 per s)

    def validate(self) -> BridgeConfig:
        if self.kind not in BRIDGE_KINDS:
            raise StarError(f"unknown bridge kind {self.kind!r}; valid: {', '.join(BRIDGE_KINDS)}")
        if self.width % self.heads:
            raise StarError(f"bridge width {self.width} must be divisible by heads {self.heads}")
        for name in (
            "in_dim",
            "out_dim",
            "width",
            "queries",
            "layers",
            "heads",
            "ffn_mult",
            "mlp_tokens",
            "frame_stride",
        ):
            if getattr(self, name) < 1:
                raise StarError(f"bridge {name} must be >= 1")
        return self


class Bridge(nn.Module):
    """Speech frames -> condition tokens. Subclasses implement `hidden` and `project`.

    The split lets stage 2(b) fine-tune only the output projection on cached hidden states.
    """

    cfg: BridgeConfig

    def hidden(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """frames [b, t, d], mask [b, t] -> the states the output projection reads ([b, ...])."""
        raise NotImplementedError

    def project(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`hidden` states -> (tokens [b, q, c], token_mask [b, q])."""
        raise NotImplementedError

    def projection(self) -> nn.Module:
        """The output projection (the part stage 2(b) may unfreeze)."""
        raise NotImplementedError

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames [b, t, d], mask [b, t] -> (tokens [b, q, c], token_mask [b, q])."""
        return self.project(self.hidden(frames, mask))

    @staticmethod
    def pooled(tokens: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens [b, q, c] -> their (masked) mean [b, c]: the stage-1 utterance summary."""
        if token_mask is None:
            return tokens.mean(1)
        return masked_mean(tokens, token_mask)


def check_frames(frames: torch.Tensor, mask: torch.Tensor, dim: int) -> None:
    """Boundary check: a bridge needs [b, t, dim] frames and a [b, t] mask with >= 1 real frame per item."""
    if frames.ndim != 3 or frames.shape[-1] != dim:
        raise StarError(f"bridge expects frames [b, t, {dim}], got {tuple(frames.shape)}")
    if mask.shape != frames.shape[:2] or mask.dtype != torch.bool:
        raise StarError(
            f"bridge expects a bool mask {tuple(frames.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}"
        )
    if not bool(mask.any(1).all()):
        raise StarError("bridge input has an item without any real frame")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x [b, t, d], mask [b, t] -> mean over real steps [b, d]."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_mean_std(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x [b, t, d], mask [b, t] -> concat(mean, std) over real steps [b, 2d]."""
    m = mask.unsqueeze(-1).to(x.dtype)
    n = m.sum(1).clamp(min=1.0)
    mean = (x * m).sum(1) / n
    var = (((x - mean.unsqueeze(1)) ** 2) * m).sum(1) / n
    return torch.cat([mean, (var + 1e-6).sqrt()], dim=-1)


def pool_frames(frames: torch.Tensor, mask: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked average of consecutive groups of `stride` frames: [b, t, d] -> [b, ceil(t/stride), d].

    Padding frames never enter a group's mean, so a padded item pools exactly like the item alone.
    """
    if stride == 1:
        return frames, mask
    b, t, d = frames.shape
    pad = (-t) % stride
    if pad:
        frames = torch.nn.functional.pad(frames, (0, 0, 0, pad))
        mask = torch.nn.functional.pad(mask, (0, pad), value=False)
    m = mask.view(b, -1, stride, 1).to(frames.dtype)
    summed = (frames.view(b, -1, stride, d) * m).sum(2)
    count = m.sum(2)
    return summed / count.clamp(min=1.0), count.squeeze(-1) > 0
