"""BLIP-2-style Q-Former bridge: learnable queries read the speech frames through cross-attention.

Shapes: b batch, t speech frames, d speech feature size (cfg.in_dim), q queries (cfg.queries),
w hidden width (cfg.width), c condition size (cfg.out_dim, 384).

Each layer (pre-norm): self-attention over the queries, cross-attention from queries to the frames
(padding frames are excluded by key padding, so a padded batch gives the same tokens as single items),
then a feed-forward block. The outputs are projected to the generator's condition size. Frames are first averaged in groups of
cfg.frame_stride (masked), which halves the cost at the default stride 2.
"""

from __future__ import annotations

import torch
from torch import nn

from star.bridge.base import Bridge, BridgeConfig, check_frames, pool_frames


class QFormerLayer(nn.Module):
    def __init__(self, width: int, heads: int, ffn_mult: int, dropout: float):
        super().__init__()
        self.norm_self = nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm_cross = nn.LayerNorm(width)
        self.cross_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm_ffn = nn.LayerNorm(width)
        self.ffn = nn.Sequential(
            nn.Linear(width, ffn_mult * width),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(ffn_mult * width, width),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, mem: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """q [b, q, w], mem [b, t, w], pad [b, t] (True = padding) -> q [b, q, w]."""
        h = self.norm_self(q)
        q = q + self.drop(self.self_attn(h, h, h, need_weights=False)[0])
        h = self.norm_cross(q)
        q = q + self.drop(self.cross_attn(h, mem, mem, key_padding_mask=pad, need_weights=False)[0])
        return q + self.drop(self.ffn(self.norm_ffn(q)))


class QFormerBridge(Bridge):
    def __init__(self, cfg: BridgeConfig):
        super().__init__()
        self.cfg = cfg.validate()
        w = cfg.width
        self.queries = nn.Parameter(torch.randn(cfg.queries, w) * 0.02)  # [q, w]
        self.in_norm = nn.LayerNorm(cfg.in_dim)
        self.in_proj = nn.Linear(cfg.in_dim, w)
        self.layers = nn.ModuleList(
            QFormerLayer(w, cfg.heads, cfg.ffn_mult, cfg.dropout) for _ in range(cfg.layers)
        )
        self.out_norm = nn.LayerNorm(w)
        self.out_proj = nn.Linear(w, cfg.out_dim)

    def hidden(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_frames(frames, mask, self.cfg.in_dim)
        # Speech at 25 frames/s still resolves every word; halving t halves the dominant cost.
        frames, mask = pool_frames(frames, mask, self.cfg.frame_stride)  # [b, t', d]
        mem = self.in_proj(self.in_norm(frames))  # [b, t, w]
        # Zero padding frames too, so nothing about them can reach the output even through numerics.
        mem = mem * mask.unsqueeze(-1).to(mem.dtype)
        q = self.queries.unsqueeze(0).expand(frames.shape[0], -1, -1)  # [b, q, w]
        for layer in self.layers:
            q = layer(q, mem, ~mask)
        return self.out_norm(q)  # [b, q, w]

    def project(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.out_proj(hidden)  # [b, q, c]
        return tokens, torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)

    def projection(self) -> nn.Module:
        return self.out_proj
