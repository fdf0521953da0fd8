"""Stage 1: the bridge plus what pre-trains it — an event head (multi-label BCE) and an alignment
projection into the text encoder's sentence-embedding space (InfoNCE against the caption embedding).

Release files: `bridge.safetensors` (this whole model: bridge + head + projection) and `bridge.json`
(StageOneConfig: bridge shape, event vocabulary, encoder names, caption phrasings, listen thresholds).
The caption phrasings' text embeddings are a buffer of the model, so listening needs no text encoder.

Shapes: b batch, t speech frames, d speech feature size, q bridge tokens, c condition size (384),
k event classes, e text embedding size (384).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from star.bridge.base import Bridge, BridgeConfig
from star.bridge.builders import build_bridge
from star.config import JsonConfig
from star.errors import StarError
from star.weights import load_config, load_weights, save_weights

WEIGHTS_NAME = "bridge"


@dataclass
class ListenThresholds(JsonConfig):
    """When `listen` reports a spoken sound request (calibrated on speech vs non-speech clips)."""

    min_speech_ratio: float = 0.2  # share of 32 ms VAD windows with speech probability >= 0.5
    min_event_prob: float = 0.3  # highest event probability
    min_caption_sim: float = 0.3  # cosine to the closest known caption phrasing


@dataclass
class StageOneConfig(JsonConfig):
    bridge: BridgeConfig = field(default_factory=BridgeConfig)
    vocab: list[str] = field(default_factory=list)  # event categories, in head order
    speech_encoder: str = "whisper-tiny.en"
    text_encoder: str = "minilm"
    text_dim: int = 384
    temperature: float = 0.07  # InfoNCE temperature
    captions: list[str] = field(default_factory=list)  # phrasings `listen` reports as the closest caption
    order_head: bool = False  # a head naming the first and the second event of "A, then B" (order loss)
    order_slots: bool = False  # the order head is the event head on each half of the tokens (first, second)
    listen: ListenThresholds = field(default_factory=ListenThresholds)

    def validate(self) -> StageOneConfig:
        self.bridge.validate()
        if not self.vocab:
            raise StarError("stage-1 config needs a non-empty event vocabulary")
        if len(set(self.vocab)) != len(self.vocab):
            raise StarError("stage-1 vocabulary has duplicate categories")
        return self


@dataclass
class StageOneOutput:
    logits: torch.Tensor  # [b, k] event logits
    embedding: torch.Tensor  # [b, e] L2-normalised, in the text encoder's sentence space
    tokens: torch.Tensor  # [b, q, c] condition tokens for the generator
    token_mask: torch.Tensor  # [b, q]
    order_logits: torch.Tensor | None = None  # [b, 2, k] first and second event of a sequence (order head)


class StageOneModel(nn.Module):
    def __init__(self, cfg: StageOneConfig):
        super().__init__()
        self.cfg = cfg.validate()
        self.bridge: Bridge = build_bridge(cfg.bridge)
        c = cfg.bridge.out_dim
        self.head = nn.Linear(c, len(cfg.vocab))
        self.align = nn.Sequential(nn.LayerNorm(c), nn.Linear(c, cfg.text_dim))
        # Event head and alignment are blind to word order; the order head makes the tokens say which event
        # comes first (pooled: its own layer on the pooled tokens; slots: the event head on each half).
        self.order = nn.Linear(c, 2 * len(cfg.vocab)) if cfg.order_head and not cfg.order_slots else None
        # Sentence embeddings of cfg.captions, stored with the weights so `listen` needs no text encoder.
        self.register_buffer("caption_emb", torch.zeros(len(cfg.captions), cfg.text_dim))  # [n, e]

    def predict(self, frames: torch.Tensor, mask: torch.Tensor) -> StageOneOutput:
        tokens, token_mask = self.bridge(frames, mask)  # [b, q, c]
        pooled = self.bridge.pooled(tokens, token_mask)  # [b, c]
        embedding = F.normalize(self.align(pooled), dim=-1)  # [b, e]
        order = None
        if self.order is not None:
            order = self.order(pooled).view(len(pooled), 2, -1)
        elif self.cfg.order_head and self.cfg.order_slots:
            half = tokens.shape[1] // 2
            halves = [(tokens[:, :half], token_mask[:, :half]), (tokens[:, half:], token_mask[:, half:])]
            order = torch.stack([self.head(self.bridge.pooled(t, m)) for t, m in halves], 1)
        return StageOneOutput(self.head(pooled), embedding, tokens, token_mask, order)

    def forward(
        self,
        frames: torch.Tensor,
        mask: torch.Tensor,
        targets: torch.Tensor,
        text_emb: torch.Tensor,
        caption_ids: torch.Tensor,
        align_weight: float = 0.0,
        bce_weight: torch.Tensor | None = None,
        order_targets: torch.Tensor | None = None,
        order_weight: float = 0.0,
        slot_weight: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        """Training losses. targets [b, k] multi-hot, text_emb [b, e] normalised caption embeddings, caption_ids [b]
        (equal ids = same caption text, so repeated captions in a batch are not treated as negatives),
        bce_weight [b] (0 = no event loss for that item: distillation sentences without a label),
        order_targets [b, 2] class of the first and the second event of a sequence prompt, -1 for others;
        slot_weight: the halves' BCE against the events of each half of the clip (slots bridges)."""
        out = self.predict(frames, mask)
        if bce_weight is None:
            bce = F.binary_cross_entropy_with_logits(out.logits, targets)
        else:
            per_item = F.binary_cross_entropy_with_logits(out.logits, targets, reduction="none").mean(1)  # [b]
            bce = (per_item * bce_weight).sum() / bce_weight.sum().clamp(min=1.0)
        align = info_nce(out.embedding, text_emb, caption_ids, self.cfg.temperature)
        # The alignment and order terms are always computed (weight 0 and batches without a sequence
        # included) so every parameter gets a gradient and DDP needs no unused-parameter search.
        losses = {"bce": bce.detach(), "align": align.detach()}
        loss = bce + align_weight * align
        if out.order_logits is not None:
            order = order_loss(out.order_logits, order_targets)
            loss = loss + order_weight * order
            losses["order"] = order.detach()
            if self.cfg.order_slots:
                slots = slot_loss(out.order_logits, targets, order_targets, bce_weight)
                loss = loss + slot_weight * slots
                losses["slots"] = slots.detach()
        return {"loss": loss, **losses}


def order_loss(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy of the first and the second event, logits [b, 2, k], over the rows whose targets
    [b, 2] are not -1; zero (with a graph) when there are none."""
    keep = None if targets is None else targets[:, 0] >= 0
    if keep is None or not keep.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep].flatten(0, 1), targets[keep].flatten())


def slot_targets(targets: torch.Tensor, order_targets: torch.Tensor | None) -> torch.Tensor:
    """The events of each half of the clip, [b, 2, k]: a sequence's first and second event (order_targets
    [b, 2], -1 for non-sequences), every other prompt's events (targets [b, k]) in both halves."""
    slots = targets[:, None].repeat(1, 2, 1)
    if order_targets is not None:
        seq = order_targets[:, 0] >= 0
        slots[seq] = F.one_hot(order_targets[seq], targets.shape[1]).to(targets.dtype)
    return slots


def slot_loss(logits: torch.Tensor, targets: torch.Tensor, order_targets: torch.Tensor | None,
              bce_weight: torch.Tensor | None) -> torch.Tensor:
    """BCE of the halves' event logits [b, 2, k] against slot_targets, over the rows with an event loss."""
    per_item = F.binary_cross_entropy_with_logits(
        logits, slot_targets(targets, order_targets), reduction="none").mean((1, 2))  # [b]
    weight = torch.ones_like(per_item) if bce_weight is None else bce_weight
    return (per_item * weight).sum() / weight.sum().clamp(min=1.0)


def info_nce(speech: torch.Tensor, text: torch.Tensor, ids: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric contrastive loss between speech [b, e] and text [b, e] embeddings (both normalised).

    Items sharing a caption id are all positives of each other (soft targets), as a batch often holds
    the same caption in several voices.
    """
    logits = speech @ text.t() / temperature  # [b, b]
    same = (ids.unsqueeze(0) == ids.unsqueeze(1)).to(logits.dtype)  # [b, b]
    target = same / same.sum(1, keepdim=True)
    s2t = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
    t2s = -(target * F.log_softmax(logits.t(), dim=1)).sum(1).mean()
    return 0.5 * (s2t + t2s)


def save_stage_one(model: StageOneModel, folder: str | Path) -> Path:
    """Write `folder/bridge.safetensors` + `folder/bridge.json`."""
    return save_weights(model, model.cfg, folder, WEIGHTS_NAME)


def load_stage_one(folder: str | Path) -> StageOneModel:
    """Load a stage-1 model (bridge + head + projection) from a model folder, in eval mode."""
    cfg = load_config(StageOneConfig, folder, WEIGHTS_NAME)
    model = StageOneModel(cfg)  # type: ignore[arg-type]
    return load_weights(model, folder, WEIGHTS_NAME).eval()


def load_bridge(folder: str | Path) -> Bridge:
    """Just the bridge of a stage-1 folder (what stage 2 conditions the generator on)."""
    return load_stage_one(folder).bridge
