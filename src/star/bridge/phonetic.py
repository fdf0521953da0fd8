"""The phonetic route: speech frames -> phoneme posteriors -> a bag of phoneme n-grams -> a vector in the
text encoder's sentence space, compared with each category's caption centroid.

Why: the Q-Former only knows words it heard in training sentences (STUDY parts 1-9); "drizzle" or
"hearth" in a held-out voice land nowhere. Phonemes are shared by all words, so a CTC head trained on the
training speech spells unheard words too, and the n-gram bag learns what ~35k words mean from text alone
(their MiniLM embeddings), no speech needed. Nothing is decoded into words: the bag reads the greedy
phoneme string of the CTC head, which is all there is between the frames and the meaning.

Release files: `phonetic.safetensors` + `phonetic.json` (PhoneticConfig: sizes, phoneme inventory, event
vocabulary, fusion weight). The category centroids are a buffer, so scoring needs no text encoder.

Shapes: b batch, t speech frames (50/s), d speech feature size, p phonemes (+1 blank), e text embedding
size, k event classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from star.bridge.base import masked_mean
from star.config import JsonConfig
from star.data.phonemes import PHONEMES, inventory
from star.errors import StarError
from star.weights import load_config, load_weights, save_weights

WEIGHTS_NAME = "phonetic"
BLANK = 0  # CTC blank; phoneme i of the config's `phonemes` is output i + 1
POOLINGS = ("mean", "gated", "context")


@dataclass
class PhoneticConfig(JsonConfig):
    in_dim: int = 384  # speech frame size (whisper-tiny.en)
    ctc_width: int = 256
    ctc_layers: int = 2  # residual conv layers (kernel 5) over the frames
    # The head reads each prompt's frames minus their mean over the prompt (per channel), as cepstral mean
    # normalisation removes what is constant over an utterance: the voice's timbre, the channel.
    ctc_centre: bool = False
    buckets: int = 1 << 17  # hashed phoneme n-gram table rows
    bag_dim: int = 128
    ngram_sizes: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    pooling: str = "mean"  # of the n-gram vectors: "mean", "gated" (a learned weight per n-gram) or "context"
    out_dim: int = 384  # the text encoder's sentence embedding size
    dropout: float = 0.1
    speech_encoder: str = "whisper-tiny.en"
    word_boundaries: bool = False  # the CTC head also emits, and the n-grams span, a symbol between words
    phonemes: list[str] = field(default_factory=lambda: list(PHONEMES))  # `inventory(word_boundaries)`
    vocab: list[str] = field(default_factory=list)  # event categories, in the order of `prototypes`
    fusion_weight: float = 8.0  # x each category's centred cosine, added to the bridge's logit (`fuse`)
    # `listen` also reads the prompt played at these speeds (tempo, pitch and formants together) and
    # averages the fused event logits of all readings (`fuse_readings`; STUDY part 20)
    reading_speeds: list[float] = field(default_factory=lambda: [1.0])

    def __post_init__(self) -> None:
        if self.word_boundaries and list(self.phonemes) == list(PHONEMES):  # a config that only sets the flag
            self.phonemes = list(inventory(True))

    def validate(self) -> PhoneticConfig:
        if list(self.phonemes) != list(inventory(self.word_boundaries)):
            raise StarError("phonetic model was trained on another phoneme inventory")
        if self.buckets < 1 or not self.ngram_sizes or min(self.ngram_sizes) < 1:
            raise StarError("phonetic config needs buckets >= 1 and n-gram sizes >= 1")
        if not self.reading_speeds or min(self.reading_speeds) <= 0 or 1.0 not in self.reading_speeds:
            raise StarError("phonetic reading_speeds must be positive and include 1.0 (the prompt as spoken)")
        if self.pooling not in POOLINGS:
            raise StarError(f"phonetic pooling must be one of {', '.join(POOLINGS)}, not {self.pooling!r}")
        return self


class PhonemeCTC(nn.Module):
    """Frames [b, t, d] -> phoneme log-probabilities [b, t, p+1]. Whisper's encoder already sees the whole
    prompt, so a few local layers suffice."""

    def __init__(self, cfg: PhoneticConfig):
        super().__init__()
        w = cfg.ctc_width
        self.centre = cfg.ctc_centre
        self.inp = nn.Sequential(nn.LayerNorm(cfg.in_dim), nn.Linear(cfg.in_dim, w), nn.GELU())
        self.convs = nn.ModuleList([nn.Conv1d(w, w, 5, padding=2) for _ in range(cfg.ctc_layers)])
        self.norms = nn.ModuleList([nn.LayerNorm(w) for _ in range(cfg.ctc_layers)])
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(w, len(cfg.phonemes) + 1)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.unsqueeze(-1).float()  # [b, t, 1]; padding must not leak into real frames via the convs
        if self.centre:
            frames = frames - masked_mean(frames, mask).unsqueeze(1)
        h = self.inp(frames) * keep  # [b, t, w]
        for conv, norm in zip(self.convs, self.norms):
            h = (h + self.drop(F.gelu(conv(norm(h).transpose(1, 2)).transpose(1, 2)))) * keep
        return self.out(h).log_softmax(-1)  # [b, t, p+1]


def greedy_phonemes(log_probs: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
    """CTC best path [b, t, p+1] -> phoneme indices (into the config's `phonemes`) per item, repeats and
    blanks removed."""
    best = log_probs.argmax(-1).tolist()
    lengths = mask.sum(1).tolist()
    out = []
    for path, n in zip(best, lengths):
        path = path[:n]
        out.append([b - 1 for j, b in enumerate(path) if b != BLANK and (j == 0 or b != path[j - 1])])
    return out


def ngram_buckets(ids: Sequence[int], sizes: Sequence[int], buckets: int, edge: int) -> list[int]:
    """Hashed bucket of every phoneme n-gram of `ids` (with `edge` marking both ends). A fixed hash, not
    Python's, so a saved table stays valid in another process."""
    seq = [edge, *ids, edge]
    return [_gram_hash(seq, i, n) % buckets for n in sizes for i in range(len(seq) - n + 1)]


def position_buckets(ids: Sequence[int], sizes: Sequence[int], buckets: int, edge: int) -> list[list[int]]:
    """The n-grams of `ngram_buckets`, grouped by the position (in `ids` with its edges) they start at."""
    seq = [edge, *ids, edge]
    return [[_gram_hash(seq, i, n) % buckets for n in sizes if i + n <= len(seq)] for i in range(len(seq))]


def _gram_hash(seq: Sequence[int], start: int, n: int) -> int:
    h = n
    for x in seq[start : start + n]:
        h = (h * 1000003 + x + 1) & 0x7FFFFFFF
    return h


def bag_offsets(sizes: torch.Tensor) -> torch.Tensor:
    """Where each bag starts in the flat index list `nn.EmbeddingBag` reads, from the bags' sizes."""
    return torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)[:-1]])


class PhonemeBag(nn.Module):
    """Phoneme strings -> L2-normalised vectors [b, e] in the text encoder's space (fastText-like: a pooled
    set of hashed n-gram embeddings, then an MLP). A table is cheap to train on a CPU and holds a large
    lexicon; n-grams make it tolerant of the CTC head's slips (one wrong phoneme spoils n of them).

    "gated" pooling weighs each n-gram by a learned scalar (a softmax over the prompt's n-grams), so the
    n-grams of carrier words ("I want to hear") can step aside for the one word that names the sound; a
    plain mean lets a long carrier phrase drown it. "context" reads the n-grams in order (`NgramContext`)."""

    def __init__(self, cfg: PhoneticConfig):
        super().__init__()
        self.cfg = cfg
        self.table = nn.EmbeddingBag(cfg.buckets, cfg.bag_dim, mode="sum")
        nn.init.normal_(self.table.weight, std=0.02)
        if cfg.pooling == "gated":
            self.gate = nn.Embedding(cfg.buckets, 1)
            nn.init.zeros_(self.gate.weight)  # starts as the plain mean
        if cfg.pooling == "context":
            self.context = NgramContext(cfg)
        self.mlp = nn.Sequential(
            nn.LayerNorm(cfg.bag_dim), nn.Linear(cfg.bag_dim, 2 * cfg.out_dim), nn.GELU(), nn.Linear(2 * cfg.out_dim, cfg.out_dim)
        )

    def forward(self, phonemes: Sequence[Sequence[int]]) -> torch.Tensor:
        if self.cfg.pooling == "context":
            return F.normalize(self.mlp(self._read_in_order(phonemes)), dim=-1)  # [b, e]
        grams = [ngram_buckets(p, self.cfg.ngram_sizes, self.cfg.buckets, len(self.cfg.phonemes)) for p in phonemes]
        flat = torch.tensor([g for gs in grams for g in gs], dtype=torch.long)  # [N] every n-gram of the batch
        counts = torch.tensor([len(g) for g in grams])
        offsets = bag_offsets(counts)
        item = torch.repeat_interleave(torch.arange(len(grams)), counts)  # [N] which prompt each n-gram is of
        if self.cfg.pooling == "gated":
            logit = self.gate(flat).squeeze(-1)  # [N]
            top = torch.full((len(grams),), -1e9).scatter_reduce(0, item, logit, "amax")
            w = (logit - top[item]).exp()
            weights = w / torch.zeros(len(grams)).index_add(0, item, w)[item]  # softmax within each prompt
        else:
            weights = 1.0 / counts[item].float()
        return F.normalize(self.mlp(self.table(flat, offsets, per_sample_weights=weights)), dim=-1)  # [b, e]

    def _read_in_order(self, phonemes: Sequence[Sequence[int]]) -> torch.Tensor:
        """Phoneme strings -> [b, bag_dim]: the summed n-grams starting at each position, then `context`."""
        cfg = self.cfg
        per_item = [position_buckets(p, cfg.ngram_sizes, cfg.buckets, len(cfg.phonemes)) for p in phonemes]
        positions = [g for item in per_item for g in item]
        flat = torch.tensor([b for g in positions for b in g], dtype=torch.long)
        vectors = self.table(flat, bag_offsets(torch.tensor([len(g) for g in positions])))  # [positions of the batch, bag_dim]
        lengths = torch.tensor([len(item) for item in per_item])
        mask = torch.arange(int(lengths.max())) < lengths.unsqueeze(1)  # [b, l]
        # One scatter into the padded batch: splitting per prompt makes the backward pass copy a full-size
        # gradient per prompt (1.5x slower steps).
        x = vectors.new_zeros(mask.numel(), vectors.shape[1]).index_copy(0, mask.flatten().nonzero().squeeze(1), vectors)
        return self.context(x.view(*mask.shape, -1), mask)  # x: [b, l, bag_dim]


class NgramContext(nn.Module):
    """Per-position n-gram vectors [b, l, c] -> one vector per prompt [b, c]. A mean of n-grams cannot tell
    which word a sound belongs to (/siː/ of "sea" or of "see", "stormy" outweighing "sea"); here one
    self-attention layer lets each position (which already holds the n-grams starting there) see the whole
    prompt, and a learned softmax over positions chooses what to keep (it starts as a plain mean over them).
    No dropout: it cost ~10 % of a training step, and the corrupted phonemes already regularise (STUDY part 15)."""

    def __init__(self, cfg: PhoneticConfig):
        super().__init__()
        c = cfg.bag_dim
        self.attend = nn.TransformerEncoderLayer(c, nhead=4, dim_feedforward=2 * c, dropout=0.0,
                                                 activation="gelu", batch_first=True, norm_first=True)
        self.score = nn.Linear(c, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.attend(x, src_key_padding_mask=~mask)  # [b, l, c]; padded positions are never attended to
        weights = self.score(h).squeeze(-1).masked_fill(~mask, float("-inf")).softmax(-1)  # [b, l]
        return (weights.unsqueeze(-1) * h).sum(1)  # [b, c]; padded positions have weight 0


class PhoneticReader(nn.Module):
    """The whole route, plus each category's caption centroid for scoring."""

    def __init__(self, cfg: PhoneticConfig):
        super().__init__()
        self.cfg = cfg.validate()
        self.ctc = PhonemeCTC(cfg)
        self.bag = PhonemeBag(cfg)
        self.register_buffer("prototypes", torch.zeros(len(cfg.vocab), cfg.out_dim))  # [k, e]

    def require_vocab(self, vocab: Sequence[str], where: str = "") -> PhoneticReader:
        """This reader, if its categories are the bridge's `vocab` in the same order (fusion is by index)."""
        if list(self.cfg.vocab) != list(vocab):
            raise StarError(f"{where}the phonetic reader and the bridge have different event vocabularies")
        return self

    @torch.no_grad()
    def embed(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Frames [b, t, d] + mask [b, t] -> [b, e]."""
        return self.bag(greedy_phonemes(self.ctc(frames, mask), mask))

    @torch.no_grad()
    def similarities(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cosine of each prompt to each category's caption centroid [b, k]."""
        return self.embed(frames, mask) @ self.prototypes.T


def fuse(bridge_probs: np.ndarray, similarities: np.ndarray, weight: float) -> np.ndarray:
    """Event logits of both routes [n, k]: the bridge's logits plus `weight` x each category's cosine above
    the prompt's mean cosine. Centring per prompt keeps the bridge's probabilities where the route sees no
    category stand out (off-topic speech, music), so `sigmoid` of the result is still a probability for
    the "is this a request" thresholds; the centring does not change the ranking."""
    p = np.clip(bridge_probs, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p)) + weight * (similarities - similarities.mean(-1, keepdims=True))


def fuse_readings(readings: Sequence[tuple[np.ndarray, np.ndarray]], weight: float) -> np.ndarray:
    """Fused event logits [n, k] of several readings of the same prompts, averaged: each reading is
    (bridge probabilities [n, k], route similarities [n, k]) of the prompts played at one speed."""
    return np.mean([fuse(probs, sims, weight) for probs, sims in readings], axis=0)


def save_phonetic(model: PhoneticReader, folder: str | Path) -> Path:
    return save_weights(model, model.cfg, folder, WEIGHTS_NAME)


def load_phonetic(folder: str | Path) -> PhoneticReader:
    cfg = load_config(PhoneticConfig, folder, WEIGHTS_NAME)
    return load_weights(PhoneticReader(cfg), folder, WEIGHTS_NAME).eval()  # type: ignore[arg-type]
