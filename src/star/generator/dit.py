"""The generator's backbone: a 1-D DiT over time patches of the (normalised) log-mel.

Each token is `patch` consecutive frames x `n_mels` bins flattened. Blocks: self-attention with rotary
positions (relative, so any length 1-10 s works) + AdaLN-zero modulation from the timestep and the
pooled condition; cross-attention to the condition tokens (bool mask, True = real token); an MLP.
Long skip connections join block i with block depth-1-i (U-skips, as in the STAR paper's DiT).
An optional per-frame head (`frame_head`) refines the patch output frame by frame with two convolutions.
With `time_slots` the condition's tokens are groups in time order, and each part of the clip attends to its
own group only ("A, then B": the first half of the clip hears the tokens that name A).

The backbone predicts a velocity; the objective and the sampler live in `star.generator.flow`.

Shape legend:
    b batch, f n_mels, t frames, l tokens (= ceil(t / patch)), d width, h heads, k head dim,
    n condition tokens, c condition dim (384 for MiniLM / the bridge)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from star.audio.mel import LOG_FLOOR, MelConfig
from star.config import JsonConfig
from star.errors import StarError


@dataclass
class GeneratorConfig(JsonConfig):
    # representation
    n_mels: int = 64
    frames_per_second: float = 62.5  # 16 kHz / hop 256
    # backbone
    patch: int = 4
    dim: int = 256
    depth: int = 8
    heads: int = 4
    mlp_ratio: float = 3.0
    cond_dim: int = 384
    # Odd kernel (frames) of a convolutional per-frame output head; 0 = none. The transformer predicts whole
    # 4-frame patches; this head refines every frame from the noisy input, the patch prediction and
    # per-frame features, across patch borders (steady textures need smooth frame-to-frame structure).
    frame_head: int = 0
    # Time slots: 0 = off. S > 0 reads each condition's real tokens, in order, as S equal groups, one per
    # S-th of the clip; each part of the clip cross-attends only to its group (a slots bridge names the
    # first event in its first half of tokens, the second in its second half). A text condition is
    # given in every slot (`repeat_for_slots`); a part whose group is empty (the null condition) sees all.
    time_slots: int = 0
    # objective
    cond_drop: float = 0.2  # probability of replacing the condition by the null token (for CFG)
    t_logit_mean: float = 0.0  # logit-normal training time distribution
    t_logit_std: float = 1.0
    # data statistics (per mel bin, computed on the training clips); empty = identity normalisation
    mel_mean: list[float] = field(default_factory=list)
    mel_std: list[float] = field(default_factory=list)
    mel_min: float = math.log(LOG_FLOOR)  # samples are clamped to [mel_min, mel_max] (guidance overshoots)
    mel_max: float = 5.0
    # sampling defaults
    steps: int = 8
    cfg: float = 3.0
    method: str = "euler"
    shift: float = 1.0  # sampling time shift (> 1: more steps near the noise end)

    def frames(self, seconds: float) -> int:
        """Mel frames for `seconds` of audio (the shared MelConfig: 5 s -> 313)."""
        return MelConfig().frames(seconds)

    def validate(self) -> None:
        if self.dim % self.heads or (self.dim // self.heads) % 2:
            raise StarError(f"generator dim {self.dim} must split into {self.heads} heads of even size")
        if self.depth < 2 or self.depth % 2:
            raise StarError("generator depth must be even (U-skips pair block i with block depth-1-i)")
        if self.time_slots < 0:
            raise StarError(f"generator time_slots must be >= 0, got {self.time_slots}")
        if self.frame_head < 0 or (self.frame_head and self.frame_head % 2 == 0):
            raise StarError(f"generator frame_head must be 0 or an odd kernel size, got {self.frame_head}")
        for name in ("mel_mean", "mel_std"):
            values = getattr(self, name)
            if values and len(values) != self.n_mels:
                raise StarError(f"generator {name} has {len(values)} values, expected {self.n_mels}")


def sinusoidal(x: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """x [...] -> [..., dim] sinusoidal features."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=x.device) / half)
    args = x.float()[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rotary(length: int, head_dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [l, k/2] for token positions 0..length-1."""
    inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
    ang = torch.arange(length, dtype=torch.float32, device=device)[:, None] * inv
    return ang.cos(), ang.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [b, h, l, k] rotated pairwise (half-split convention)."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Plain softmax attention, q [b, h, l, k], k/v [b, h, m, k], mask broadcastable to [b, h, l, m].

    Sequences here are short (<= ~160 tokens); on CPU this beats SDPA's flash kernel, whose bf16
    backward was 3.5x slower than this (measured, torch 2.13). Masked keys get exactly zero weight.
    """
    scores = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)  # [b, h, l, m]
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v


def slot_attention_mask(cond_mask: torch.Tensor, key_mask: torch.Tensor | None, length: int,
                        slots: int) -> torch.Tensor:
    """[b, l, n] cross-attention mask of a time-slot generator: patch i of a clip of L real patches is in part
    floor(i * S / L); the r-th of a condition's R real tokens in group floor(r * S / R). A part sees the real
    tokens of its own group, or all real tokens when its group is empty."""
    b = cond_mask.shape[0]
    real = cond_mask.sum(1, keepdim=True)  # [b, 1]
    group = ((cond_mask.cumsum(1) - 1).clamp(min=0) * slots) // real.clamp(min=1)  # [b, n]
    patches = torch.full((b, 1), length, device=cond_mask.device) if key_mask is None else key_mask.sum(1, keepdim=True)
    part = (torch.arange(length, device=cond_mask.device)[None] * slots) // patches.clamp(min=1)  # [b, l]
    allowed = cond_mask[:, None, :] & (part.clamp(max=slots - 1)[:, :, None] == group[:, None, :])  # [b, l, n]
    return torch.where(allowed.any(-1, keepdim=True), allowed, cond_mask[:, None, :])


def repeat_for_slots(tokens: torch.Tensor, mask: torch.Tensor, slots: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A condition that holds for the whole clip, for a time-slot generator: each row's real tokens
    [b, n, c] (mask [b, n]) repeated `slots` times in a row, so every group holds all of them."""
    rows = [tokens[i][mask[i]].repeat(slots, 1) for i in range(len(tokens))]
    n = max(len(r) for r in rows)
    out = tokens.new_zeros(len(rows), n, tokens.shape[-1])
    out_mask = torch.zeros(len(rows), n, dtype=torch.bool, device=mask.device)
    for i, r in enumerate(rows):
        out[i, : len(r)], out_mask[i, : len(r)] = r, True
    return out, out_mask


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], key_mask: torch.Tensor | None):
        b, length, d = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # [b, h, l, k]
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # [b, 1, 1, l]
        y = attention(q, k, v, mask)
        return self.out(y.transpose(1, 2).reshape(b, length, d))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, cross_mask: torch.Tensor) -> torch.Tensor:
        """cross_mask [b, 1 or l, n]: which condition tokens each patch may attend to."""
        b, length, d = x.shape
        n = cond.shape[1]
        q = self.q(x).view(b, length, self.heads, -1).transpose(1, 2)  # [b, h, l, k]
        k, v = self.kv(cond).view(b, n, 2, self.heads, -1).permute(2, 0, 3, 1, 4)  # [b, h, n, k]
        # Boolean mask: masked condition tokens get exactly zero weight, so padding cannot change the output.
        y = attention(q, k, v, cross_mask[:, None])
        return self.out(y.transpose(1, 2).reshape(b, length, d))


class DiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, skip: bool):
        super().__init__()
        # Second-half blocks fuse the matching first-half activation (U-skip) before anything else.
        self.skip = nn.Linear(2 * dim, dim) if skip else None
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.cross = CrossAttention(dim, heads)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.ada.weight)  # AdaLN-zero: every block starts as the identity
        nn.init.zeros_(self.ada.bias)

    def forward(self, x, c, cond, cross_mask, rope, key_mask, skip=None):
        if self.skip is not None:
            x = self.skip(torch.cat([x, skip], dim=-1))
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(F.silu(c)).chunk(6, dim=-1)  # each [b, d]
        x = x + g1[:, None] * self.attn(modulate(self.norm1(x), sh1, sc1), rope, key_mask)
        x = x + self.cross(self.norm2(x), cond, cross_mask)
        x = x + g2[:, None] * self.mlp(modulate(self.norm3(x), sh2, sc2))
        return x


class FrameHead(nn.Module):
    """A residual convolution over frames on the patch output; starts as the identity (zero last layer).

    Inputs are zeroed on padded frames, so padding cannot change the real frames' output.
    """

    def __init__(self, dim: int, patch: int, n_mels: int, kernel: int, channels: int = 32, hidden: int = 128):
        super().__init__()
        self.patch, self.channels = patch, channels
        self.features = nn.Linear(dim, patch * channels)  # per-frame features of each patch token
        self.conv_in = nn.Conv1d(2 * n_mels + channels, hidden, kernel, padding=kernel // 2)
        self.conv_out = nn.Conv1d(hidden, n_mels, kernel, padding=kernel // 2)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, h: torch.Tensor, x: torch.Tensor, coarse: torch.Tensor, mask: torch.Tensor | None):
        """h [b, l, d] last hidden state, x [b, f, t] noisy input, coarse [b, f, t] patch output, mask [b, t]."""
        b, length, _ = h.shape
        t = x.shape[-1]
        feats = self.features(h).view(b, length, self.patch, self.channels)
        feats = feats.permute(0, 3, 1, 2).reshape(b, self.channels, length * self.patch)[:, :, :t]  # [b, C, t]
        inputs = torch.cat([x.to(feats.dtype), coarse.to(feats.dtype), feats], dim=1)
        hidden = F.gelu(self.conv_in(self._masked(inputs, mask)), approximate="tanh")
        return coarse + self.conv_out(self._masked(hidden, mask))

    @staticmethod
    def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Padded frames as zeros, exactly what the convolution's own zero padding gives an unpadded clip."""
        return x if mask is None else torch.where(mask[:, None, :], x, torch.zeros((), dtype=x.dtype))


class DiT(nn.Module):
    """velocity = DiT(x [b, f, t], time [b], cond [b, n, c], cond_mask [b, n], x_mask [b, t] | None)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        d, p, f = cfg.dim, cfg.patch, cfg.n_mels
        self.patch_in = nn.Linear(p * f, d)
        self.time_mlp = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.cond_in = nn.Sequential(nn.LayerNorm(cfg.cond_dim), nn.Linear(cfg.cond_dim, d))
        self.pool_mlp = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        half = cfg.depth // 2
        self.blocks = nn.ModuleList(
            DiTBlock(d, cfg.heads, cfg.mlp_ratio, skip=i >= half) for i in range(cfg.depth)
        )
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Linear(d, 2 * d)
        self.patch_out = nn.Linear(d, p * f)
        for layer in (self.ada_out, self.patch_out):  # the untrained model predicts zero velocity
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.frame_head = FrameHead(d, p, f, cfg.frame_head) if cfg.frame_head else None

    def forward(
        self,
        x: torch.Tensor,
        time: torch.Tensor,
        cond: torch.Tensor,
        cond_mask: torch.Tensor,
        x_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        cfg = self.cfg
        b, f, t = x.shape
        p = cfg.patch
        length = -(-t // p)
        frames_in, frames_mask = x, x_mask
        x = F.pad(x, (0, length * p - t))  # [b, f, l*p]
        dtype = self.patch_in.weight.dtype  # float32, or bfloat16 for a bf16 inference copy
        x, cond = x.to(dtype), cond.to(dtype)
        tokens = x.view(b, f, length, p).permute(0, 2, 3, 1).reshape(b, length, p * f)  # [b, l, p*f]
        h = self.patch_in(tokens)  # [b, l, d]
        # Absolute time in seconds (besides the relative rotary positions) lets the model place events
        # "at the start" or "then" consistently across clip lengths.
        seconds = torch.arange(length, device=x.device) * (p / cfg.frames_per_second)
        h = h + sinusoidal(seconds * 100.0, cfg.dim).to(h.dtype)

        key_mask = None
        if x_mask is not None:
            x_mask = F.pad(x_mask, (0, length * p - t))
            key_mask = x_mask.view(b, length, p).any(-1)  # [b, l]

        cond = torch.where(cond_mask[..., None], cond, torch.zeros((), dtype=cond.dtype))  # padding may be junk
        ch = self.cond_in(cond)  # [b, n, d]
        m = cond_mask[..., None].to(ch.dtype)
        pooled = (ch * m).sum(1) / m.sum(1).clamp(min=1.0)  # [b, d]
        c = self.time_mlp(sinusoidal(time * 1000.0, 256).to(dtype)) + self.pool_mlp(pooled)  # [b, d]

        if cfg.time_slots:
            cross_mask = slot_attention_mask(cond_mask, key_mask, length, cfg.time_slots)  # [b, l, n]
        else:
            cross_mask = cond_mask[:, None, :]  # [b, 1, n]
        rope = rotary(length, cfg.dim // cfg.heads, x.device)
        skips = []
        half = cfg.depth // 2
        for i, block in enumerate(self.blocks):
            h = block(h, c, ch, cross_mask, rope, key_mask, skips.pop() if i >= half else None)
            if i < half:
                skips.append(h)

        shift, scale = self.ada_out(F.silu(c)).chunk(2, dim=-1)
        h = modulate(self.norm_out(h), shift, scale)
        out = self.patch_out(h)  # [b, l, p*f]
        out = out.view(b, length, p, f).permute(0, 3, 1, 2).reshape(b, f, length * p)[:, :, :t]
        if self.frame_head is not None:
            out = self.frame_head(h, frames_in, out, frames_mask)
        return out
