"""MLP bridge (the ablation): masked mean+std pooling of the frames, then an MLP to a few tokens.

Shapes: b batch, t speech frames, d speech feature size (cfg.in_dim), w hidden width (cfg.width),
q output tokens (cfg.mlp_tokens), c condition size (cfg.out_dim, 384).
"""

from __future__ import annotations

import torch
from torch import nn

from star.bridge.base import Bridge, BridgeConfig, check_frames, masked_mean_std


class MLPBridge(Bridge):
    def __init__(self, cfg: BridgeConfig):
        super().__init__()
        self.cfg = cfg.validate()
        self.net = nn.Sequential(
            nn.LayerNorm(2 * cfg.in_dim),
            nn.Linear(2 * cfg.in_dim, cfg.width),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.width, cfg.width),
            nn.GELU(),
            nn.Linear(cfg.width, cfg.mlp_tokens * cfg.out_dim),
        )

    def hidden(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_frames(frames, mask, self.cfg.in_dim)
        return self.net[:-1](masked_mean_std(frames, mask))  # [b, width]

    def project(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.net[-1](hidden).view(hidden.shape[0], self.cfg.mlp_tokens, self.cfg.out_dim)  # [b, q, c]
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)

    def projection(self) -> nn.Module:
        return self.net[-1]
