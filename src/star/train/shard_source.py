"""Generator training data streamed from tar shards (`GeneratorTaskConfig.shards`), for corpora too large
to cache: the manifest path of `GeneratorTask` holds every log-mel in memory, this one holds a buffer.

Each clip is decoded and turned into a log-mel as it streams past, and caption tokens come from the text
encoder on demand (an LRU cache keeps the recent ones). At start, the first `stats_clips` samples of the
shards, read in the order given (the same on every rank), provide the mel normalisation statistics when
the model config has none, and the held-out clips that `evaluate()` scores.

    b batch, n caption tokens, c condition width, f mel bins, t frames
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

from star.audio.mel import MelSpec
from star.data.shards import ShardStream, expand_shards, iter_samples
from star.errors import StarError

if TYPE_CHECKING:
    from star.train.generator_task import GeneratorTaskConfig

Batch = dict[str, torch.Tensor]


class ClipItem:
    """Decoded shard sample -> training item (captions list, events, log-mel [f, t] float16, no audio).

    With `split`, samples of another split give None (a sample without one counts as that split, as in
    the manifest path).
    """

    def __init__(self, split: str | None = None):
        self.split = split
        self.mel = MelSpec()

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any] | None:
        if self.split is not None and sample.get("split", self.split) != self.split:
            return None
        where = f"shard {sample['shard']}, key {sample['key']!r}"
        captions = sample.get("captions")
        captions = [captions] if isinstance(captions, str) else list(captions or [])
        if not captions:
            raise StarError(f"{where}: no captions")
        item = {k: v for k, v in sample.items() if k != "audio"}
        item["captions"] = captions
        item["mel"] = torch.from_numpy(self.mel.of_numpy(sample["audio"])).half()
        return item


class CaptionTokens:
    """Items -> text-encoder tokens of one of their captions (random phrasing, or the first if rng is None).

    Captions are encoded when first seen, in one call per batch, and the `capacity` most recent are kept.
    """

    def __init__(self, encoder: str, capacity: int = 16384):
        self.encoder_name, self.capacity = encoder, capacity
        self.encoder = None
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()  # caption -> [n_i, c] float16

    def tokens_of(self, texts: list[str]) -> list[torch.Tensor]:
        missing = sorted({t for t in texts if t not in self.cache})
        if missing:
            if self.encoder is None:
                from star.encoders import build_text_encoder

                self.encoder = build_text_encoder(self.encoder_name)
            tok, mask = self.encoder.encode(missing)
            for text, t, m in zip(missing, tok, mask):
                self.cache[text] = t[m].half()  # drop padding
        rows = []
        for text in texts:
            self.cache.move_to_end(text)
            rows.append(self.cache[text])
        while len(self.cache) > self.capacity:
            self.cache.popitem(last=False)
        return rows

    def __call__(self, items: list[dict], rng: np.random.Generator | None = None):
        texts = [it["captions"][0] if rng is None else it["captions"][int(rng.integers(len(it["captions"])))]
                 for it in items]
        rows = self.tokens_of(texts)
        n = max(r.shape[0] for r in rows)
        tokens = torch.zeros(len(rows), n, rows[0].shape[1])  # [b, n, c]
        mask = torch.zeros(len(rows), n, dtype=torch.bool)  # [b, n]
        for i, r in enumerate(rows):
            tokens[i, : r.shape[0]], mask[i, : r.shape[0]] = r.float(), True
        return tokens, mask


class ShardSource:
    """Training items streamed from shards, in batches; held-out items and statistics from a first scan."""

    def __init__(self, cfg: GeneratorTaskConfig):
        self.cfg = cfg
        if cfg.shard_errors not in ("raise", "warn"):
            raise StarError(f"shard_errors must be 'raise' or 'warn', not {cfg.shard_errors!r}")
        self.shards = expand_shards(cfg.shards)

    def scan(self) -> tuple[list[dict[str, Any]], list[torch.Tensor]]:
        """(held-out items for evaluation, log-mels [f, t] of the first training clips for the statistics)."""
        cfg = self.cfg
        train, held_out = [], []
        to_item = ClipItem()
        for sample in islice(iter_samples(self.shards, cfg.shard_errors), cfg.stats_clips):
            item = to_item(sample)
            (train if item.get("split", cfg.train_split) == cfg.train_split else held_out).append(item)
        if not train:
            raise StarError(f"the first {cfg.stats_clips} clips of shards {cfg.shards!r} hold none of split "
                            f"{cfg.train_split!r}")
        if cfg.eval_shards:
            samples = islice(iter_samples(expand_shards(cfg.eval_shards), cfg.shard_errors), cfg.eval_clips)
            eval_items = [to_item(s) for s in samples]
        else:
            # As in the manifest path: the eval split, else a fixed slice of the training clips.
            pool = [it for it in held_out if it.get("split") == cfg.eval_split] or train
            eval_items = pool[:: max(1, len(pool) // cfg.eval_clips)][: cfg.eval_clips]
        return eval_items, [it["mel"] for it in train]

    def items(self, rank: int, world: int, seed: int) -> Iterator[dict[str, Any]]:
        """Endless training items for one rank (decoded in `loader_workers` processes when > 0)."""
        stream = ShardStream(self.shards, rank=rank, world=world, seed=seed,
                             shuffle_buffer=self.cfg.shuffle_buffer, transform=ClipItem(self.cfg.train_split),
                             on_error=self.cfg.shard_errors)
        if self.cfg.loader_workers <= 0:
            return iter(stream)
        # spawn, not fork: a forked child of a process that already ran OpenMP code can hang in libgomp
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=self.cfg.loader_workers,
                                             persistent_workers=True, multiprocessing_context="spawn")
        return iter(loader)

    def batches(self, rank: int, world: int, seed: int,
                make_batch: Callable[[list[dict], np.random.Generator], Batch]) -> Iterator[Batch]:
        """Endless batches. `seed` (per rank) draws crops and captions; the shard order uses rank 0's seed."""
        rng = np.random.default_rng([seed, rank])
        if world > 1 and dist.is_initialized():
            agreed = torch.tensor([seed])
            dist.broadcast(agreed, 0)  # every rank must permute the shards alike for the split to partition
            seed = int(agreed)
        items = self.items(rank, world, seed)
        bs = self.cfg.batch_size
        pool: list[dict[str, Any]] = []
        while True:
            pool.extend(islice(items, (4 * bs if self.cfg.batch_frames else bs) - len(pool)))
            picks = self.pick(pool, rng)
            yield make_batch([pool[i] for i in picks], rng)
            for i in sorted(picks, reverse=True):
                pool.pop(i)

    def pick(self, pool: list[dict[str, Any]], rng: np.random.Generator) -> list[int]:
        """Pool positions of one batch: the first batch_size, or (batch_frames) a random anchor plus the
        clips nearest to it in length while the padded batch stays within batch_frames frames."""
        bs, budget = self.cfg.batch_size, self.cfg.batch_frames
        if not budget:
            return list(range(min(bs, len(pool))))
        max_frames = self.cfg.model.frames(self.cfg.max_seconds)
        lengths = np.array([min(it["mel"].shape[1], max_frames) for it in pool])
        anchor = int(rng.integers(len(pool)))
        picks, longest = [], 0
        for i in np.argsort(np.abs(lengths - lengths[anchor]), kind="stable"):
            longest_with = max(longest, int(lengths[i]))
            if picks and (len(picks) >= bs or (len(picks) + 1) * longest_with > budget):
                break
            picks.append(int(i))
            longest = longest_with
        return picks
