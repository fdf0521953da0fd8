"""Stage 2 training task: the flow-matching generator on a `sounds.jsonl` manifest (text-to-audio now,
speech-conditioned later), plus the `train_generator(config)` entry point.

The manifest (written by `star.data.build`) has one clip per line: id, audio (relative to the
manifest's folder, or absolute), captions (phrasings), events, kind, split, seconds. Log-mels of all
clips and the condition tokens of all captions are computed once and cached in the run folder.

With `shards` set instead of `manifest`, clips stream from WebDataset-style tar shards
(`star.data.shards`, `star.train.shard_source.ShardSource`): log-mels are computed on the fly and nothing
is cached, for corpora larger than memory or one disk.

The condition source is pluggable: any callable `(items, rng) -> (tokens [b, n, c], mask [b, n])`.
`TextCondition` (MiniLM tokens of a random phrasing) is the stage-2a source; a speech source for
stage 2b (cached speech features through the stage-1 bridge) plugs in the same way.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from star.audio import load_audio
from star.audio.mel import MelSpec
from star.config import JsonConfig
from star.errors import StarError
from star.generator import FlowMatching, GeneratorConfig, build_generator, save_generator
from star.train.shard_source import CaptionTokens, ShardSource
from star.train.trainer import TrainConfig, Trainer
from star.weights import load_weights

# (tokens [b, n, c], mask [b, n]), optionally plus a dict of extra model inputs (`cond_inputs`) that a
# wrapped model turns into tokens itself (stage 2(b) with a trainable bridge projection).
Condition = Callable[[list[dict], "np.random.Generator | None"], tuple]


@dataclass
class GeneratorTaskConfig(JsonConfig):
    manifest: str = ""
    out_dir: str = "runs/generator"
    model: GeneratorConfig = field(default_factory=GeneratorConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    condition: str = "text"
    text_encoder: str = "minilm"
    batch_size: int = 16  # clips per batch (the most, when batch_frames is set)
    # Length-grouped batches: clips of similar length are batched together and a batch holds about
    # batch_frames frames, so 10 s scenes neither pad 5 s clips nor make steps twice as slow. 0 = off.
    batch_frames: int = 0
    max_seconds: float = 10.0  # longer clips are cropped, keeping all their events when they fit
    train_split: str = "train"
    eval_split: str = "validation"  # falls back to a fixed slice of the training clips when absent
    eval_clips: int = 64
    # Training-batch augmentation against memorising the few clips of a category (stage 2a has 720 clips):
    # a random gain in +-gain_db on every clip (digital silence stays silent), and for single-event clips
    # ("kind": "single") a random circular shift in time; scenes keep their order ("X, then Y").
    gain_db: float = 0.0
    roll_single: bool = False
    # Probability that a single-event clip is overlaid with another training clip of the same category
    # (mel magnitudes summed, the partner shifted in time and 0-6 dB quieter): new examples of a category, where the
    # caption stays true ("a dog barks" over two dogs), so the model cannot recognise a clip from its noisy
    # version alone and has to read the caption. Needs a manifest (not shards).
    mix_same: float = 0.0
    # Also caption every single-event training clip with its category's extra phrasings
    # (`captions_extra.json`, 40 synonyms and request shapes each, never a held-out word): the text
    # generator keys on the exact wordings it was trained on, and more of them teach it the sound, not the words.
    extra_captions: bool = False
    # A generator folder (generator.safetensors/json) to continue from instead of random weights; its
    # config (and data statistics) replaces `model`. A checkpoint in out_dir still takes precedence.
    init_from: str = ""
    # With init_from: objective and sampling fields of the model config to change on the loaded config,
    # e.g. {"t_logit_mean": 0.8}; fields that shape the weights or the data statistics cannot change.
    init_overrides: dict = field(default_factory=dict)
    eval_times: list[float] = field(default_factory=lambda: [0.1, 0.3, 0.5, 0.7, 0.9])
    bf16: bool = True  # autocast the backbone (about 2x on CPUs with AMX/AVX512-bf16)
    # Streaming instead of `manifest`: tar shards written by `star data shard`, as a folder, a brace
    # pattern (DIR/shard-{000000..000099}.tar), a glob, or several joined by "::".
    shards: str = ""
    eval_shards: str = ""  # held-out shards; default: eval_split clips among the first stats_clips
    stats_clips: int = 256  # clips read at start for mel statistics (when the model has none) and eval clips
    shuffle_buffer: int = 512  # streamed clips mixed in memory
    loader_workers: int = 0  # processes decoding clips and computing log-mels (0: in the training process)
    shard_errors: str = "raise"  # "warn": skip a damaged sample (or a truncated shard's rest), with a warning


# ---- data ------------------------------------------------------------------------------------
def read_manifest(path: str | Path) -> list[dict]:
    """sounds.jsonl -> items (paths resolved against the manifest's folder), each with a non-empty captions list."""
    from star.data.manifest import read_manifest as read_jsonl

    items = []
    for n, item in enumerate(read_jsonl(path), 1):
        for key in ("id", "audio", "captions"):
            if key not in item:
                raise StarError(f"{path}: item {n}: missing {key!r}")
        captions = [item["captions"]] if isinstance(item["captions"], str) else list(item["captions"])
        if not captions:
            raise StarError(f"{path}: item {n}: empty captions")
        items.append({**item, "captions": captions})
    if not items:
        raise StarError(f"manifest {path} has no clips")
    return items


def compute_mels(items: list[dict], cache: Path) -> list[torch.Tensor]:
    """Log-mel [f, t] (float16) of every item's audio, cached by absolute audio path."""
    stored: dict[str, torch.Tensor] = torch.load(cache, weights_only=True) if cache.is_file() else {}
    missing = [it["audio"] for it in items if it["audio"] not in stored]
    if missing:
        mel = MelSpec()
        for audio in tqdm(sorted(set(missing)), desc="log-mels", leave=False):
            stored[audio] = torch.from_numpy(mel.of_numpy(load_audio(audio, allow_silent=True))).half()
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        torch.save(stored, tmp)
        tmp.replace(cache)
    return [stored[it["audio"]] for it in items]


def mel_statistics(mels: list[torch.Tensor]) -> tuple[list[float], list[float], float]:
    """Per-bin mean and std over all frames, and the maximum value (for clamping samples)."""
    total = torch.zeros(mels[0].shape[0], dtype=torch.float64)
    sq = torch.zeros_like(total)
    count, peak = 0, -math.inf
    for m in mels:
        m64 = m.double()
        total += m64.sum(1)
        sq += (m64**2).sum(1)
        count += m.shape[1]
        peak = max(peak, float(m64.max()))
    mean = total / count
    std = (sq / count - mean**2).clamp(min=1e-6).sqrt()
    return mean.tolist(), std.tolist(), peak


def crop_start(frames: int, window: int, events: list[dict], fps: float, rng: np.random.Generator | None) -> int:
    """Start frame of a `window`-frame crop: keeps every annotated event when they fit, else at least one.

    rng None -> deterministic (the window centred on the events), for evaluation.
    """
    if frames <= window:
        return 0
    hi = frames - window
    spans = [(_event_time(e, "onset"), _event_time(e, "offset")) for e in events or []]
    spans = [(max(0, int(a * fps)), min(frames, math.ceil(b * fps))) for a, b in spans
             if a is not None and b is not None and a * fps < frames]
    if spans:
        first, last = min(a for a, _ in spans), max(b for _, b in spans)
        if last - first > window:  # the events do not fit together: keep one of them
            first, last = spans[0] if rng is None else spans[int(rng.integers(len(spans)))]
        # a span that fits lies inside the window; a longer one contains it
        lo_s, hi_s = (last - window, first) if last - first <= window else (first, last - window)
        lo_s, hi_s = max(0, lo_s), min(hi, hi_s)
        return (lo_s + hi_s) // 2 if rng is None else int(rng.integers(lo_s, hi_s + 1))
    return hi // 2 if rng is None else int(rng.integers(0, hi + 1))


def _event_time(event: dict, key: str) -> float | None:
    aliases = {"onset": ("onset", "start"), "offset": ("offset", "end")}[key]
    for k in aliases:
        if isinstance(event, dict) and event.get(k) is not None:
            return float(event[k])
    return None


def single_category(item: dict) -> str:
    """The category of a single-event clip ("kind": "single"), else ""."""
    events = item.get("events") or []
    if item.get("kind") != "single" or not events or not isinstance(events[0], dict):
        return ""
    return str(events[0].get("category", ""))


def add_extra_captions(items: list[dict]) -> None:
    """Append the extra phrasings of its category to each single-event item's captions (in place)."""
    from star.data.captions import default_captions

    captions = default_captions()
    for it in items:
        if category := single_category(it):
            it["captions"] = list(dict.fromkeys(it["captions"] + captions.extra(category)))


NATS_PER_DB = math.log(10) / 20  # a log-mel of magnitudes: +1 dB adds this to every value


def sounding(mel: torch.Tensor, floor: float) -> torch.Tensor:
    """True where a log-mel holds sound, False at digital silence (the log floor)."""
    return mel > floor + 1e-3


def mix_log_mels(a: torch.Tensor, b: torch.Tensor, floor: float) -> torch.Tensor:
    """log(exp(a) + exp(b)) of two log-mels [f, t]: their mel magnitudes summed, the log-mel of the two
    sounds played together in phase (uncorrelated sounds add in power, up to 3 dB less where both are loud).

    Digital silence (at `floor`) adds nothing, so where both are silent the result stays at `floor`.
    """
    power = sum(torch.where(sounding(m, floor), m.exp(), 0.0) for m in (a, b))
    return torch.log(power.clamp(min=math.exp(floor)))


# ---- conditions ------------------------------------------------------------------------------
class TextCondition:
    """Items -> MiniLM token embeddings of one of their captions (random phrasing, or the first if rng is None)."""

    def __init__(self, texts: list[str], encoder: str, cache: Path, chunk: int = 64):
        texts = sorted(set(texts))
        stored = torch.load(cache, weights_only=True) if cache.is_file() else None
        if stored is None or stored["texts"] != texts or stored["encoder"] != encoder:
            from star.encoders import build_text_encoder

            enc = build_text_encoder(encoder)
            rows = []
            for i in tqdm(range(0, len(texts), chunk), desc="caption tokens", leave=False):
                tok, mask = enc.encode(texts[i : i + chunk])
                rows.extend(t[m] for t, m in zip(tok, mask))  # drop padding: [n_i, c]
            width = max(r.shape[0] for r in rows)
            tokens = torch.zeros(len(rows), width, rows[0].shape[1], dtype=torch.float16)
            lengths = torch.tensor([r.shape[0] for r in rows])
            for i, r in enumerate(rows):
                tokens[i, : r.shape[0]] = r.half()
            stored = {"texts": texts, "encoder": encoder, "tokens": tokens, "lengths": lengths}
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".tmp{os.getpid()}")
            torch.save(stored, tmp)
            tmp.replace(cache)
        self.index = {t: i for i, t in enumerate(stored["texts"])}
        self.tokens, self.lengths = stored["tokens"], stored["lengths"]

    def __call__(self, items: list[dict], rng: np.random.Generator | None = None):
        rows = []
        for it in items:
            caps = it["captions"]
            rows.append(self.index[caps[0] if rng is None else caps[int(rng.integers(len(caps)))]])
        rows_t = torch.tensor(rows)
        n = int(self.lengths[rows_t].max())
        tokens = self.tokens[rows_t, :n].float()  # [b, n, c]
        mask = torch.arange(n)[None] < self.lengths[rows_t][:, None]  # [b, n]
        return tokens, mask


# ---- the task --------------------------------------------------------------------------------
class GeneratorTask:
    """Trainer task: random clips, one random phrasing each, crop to max_seconds, pad to the batch's longest."""

    def __init__(self, cfg: GeneratorTaskConfig, condition: Condition | None = None, out_dir: str | Path | None = None):
        self.cfg = cfg
        out = Path(out_dir or cfg.out_dir)
        self.stream: ShardSource | None = None
        if cfg.shards:
            if cfg.manifest:
                raise StarError("set either manifest or shards in the generator config, not both")
            if cfg.mix_same:
                raise StarError("mix_same needs a manifest: streamed shards hold no same-category partners")
            if cfg.extra_captions:
                raise StarError("extra_captions needs a manifest: streamed shards carry their own captions")
            self.stream = ShardSource(cfg)
            self.train_items: list[dict] = []  # streamed, never held
            self.eval_items, stat_mels = self.stream.scan()
        else:
            items = read_manifest(cfg.manifest)
            if cfg.extra_captions:
                add_extra_captions([it for it in items if it.get("split", cfg.train_split) == cfg.train_split])
            cache = out / "cache"
            mels = compute_mels(items, cache / "mels.pt")
            for it, m in zip(items, mels):
                it["mel"] = m
            self.train_items = [it for it in items if it.get("split", cfg.train_split) == cfg.train_split]
            if not self.train_items:
                raise StarError(f"manifest {cfg.manifest} has no clips in split {cfg.train_split!r}")
            held_out = [it for it in items if it.get("split") == cfg.eval_split]
            # No held-out split: a fixed slice of training clips still tracks the fit. Every k-th item spreads
            # the evaluation over all kinds of sound (manifests list singles before scenes).
            pool = held_out or self.train_items
            self.eval_items = pool[:: max(1, len(pool) // cfg.eval_clips)][: cfg.eval_clips]
            stat_mels = [it["mel"] for it in self.train_items]
        self.same_category: dict[str, list[dict]] = {}
        for it in self.train_items:
            if category := single_category(it):
                self.same_category.setdefault(category, []).append(it)

        mcfg = cfg.model
        if not mcfg.mel_mean:
            mcfg.mel_mean, mcfg.mel_std, peak = mel_statistics(stat_mels)
            mcfg.mel_max = float(math.ceil(peak * 10) / 10)
        if condition is None:
            if cfg.condition != "text":
                raise StarError(f"unknown condition {cfg.condition!r}; pass a condition callable")
            if self.stream is not None:
                condition = CaptionTokens(cfg.text_encoder)
            else:
                texts = [c for it in items for c in it["captions"]]
                condition = TextCondition(texts, cfg.text_encoder, cache / f"text-{cfg.text_encoder}.pt")
        self.condition = condition
        self.max_frames = mcfg.frames(cfg.max_seconds)
        self.model: FlowMatching = build_generator(mcfg)
        self._eval_batches: list[dict] | None = None

    def make_batch(self, items: list[dict], rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
        fps = self.cfg.model.frames_per_second
        crops = []
        for it in items:
            mel = it["mel"]
            window = min(mel.shape[1], self.max_frames)
            start = crop_start(mel.shape[1], window, it.get("events", []), fps, rng)
            crop = mel[:, start : start + window].float()
            crops.append(crop if rng is None else self.augment(crop, it, rng))
        t = max(c.shape[1] for c in crops)
        mel = torch.full((len(items), crops[0].shape[0], t), self.cfg.model.mel_min)  # [b, f, t]
        mask = torch.zeros(len(items), t, dtype=torch.bool)  # [b, t]
        for i, c in enumerate(crops):
            mel[i, :, : c.shape[1]] = c
            mask[i, : c.shape[1]] = True
        cond, cond_mask, *inputs = self.condition(items, rng)
        batch = {"mel": mel, "mel_mask": mask, "cond": cond, "cond_mask": cond_mask}
        if inputs:
            batch["cond_inputs"] = inputs[0]
        return batch

    def augment(self, mel: torch.Tensor, item: dict, rng: np.random.Generator) -> torch.Tensor:
        """A training crop [f, t] with the configured random gain and, for single events, time shift and mix."""
        lo, hi = self.cfg.model.mel_min, self.cfg.model.mel_max
        if self.cfg.roll_single and item.get("kind") == "single":
            mel = torch.roll(mel, int(rng.integers(mel.shape[1])), dims=1)
        partners = self.same_category.get(single_category(item), []) if self.cfg.mix_same else []
        if len(partners) > 1 and rng.random() < self.cfg.mix_same:
            partner = partners[int(rng.integers(len(partners)))]["mel"].float()
            partner = torch.roll(partner, int(rng.integers(partner.shape[1])), dims=1)
            partner = partner.repeat(1, -(-mel.shape[1] // partner.shape[1]))[:, : mel.shape[1]]
            nats = float(rng.uniform(-6.0, 0.0)) * NATS_PER_DB  # the partner 0-6 dB quieter
            mel = mix_log_mels(mel, partner + nats, lo).clamp(lo, hi)
        if self.cfg.gain_db:
            nats = float(rng.uniform(-self.cfg.gain_db, self.cfg.gain_db)) * NATS_PER_DB
            mel = torch.where(sounding(mel, lo), (mel + nats).clamp(lo, hi), mel)
        return mel

    def batches(self, rank: int, world: int) -> Iterator[dict[str, torch.Tensor]]:
        # Seeded from torch's RNG, which the trainer restores on resume: a resumed run draws new batches.
        seed = int(torch.randint(0, 2**31 - 1, (1,)))
        if self.stream is not None:
            yield from self.stream.batches(rank, world, seed, self.make_batch)
            return
        rng = np.random.default_rng([seed, rank])
        while True:
            yield self.make_batch([self.train_items[i] for i in self.sample_indices(rng)], rng)

    def sample_indices(self, rng: np.random.Generator) -> np.ndarray:
        """Indices of one batch: uniform clips, or (batch_frames) an anchor clip plus neighbours in length."""
        n, bs = len(self.train_items), self.cfg.batch_size
        if not self.cfg.batch_frames:
            return rng.choice(n, size=bs, replace=n < bs)
        if not hasattr(self, "_by_length"):
            lengths = [min(it["mel"].shape[1], self.max_frames) for it in self.train_items]
            self._by_length = np.argsort(lengths, kind="stable")
            self._sorted_lengths = np.asarray(lengths)[self._by_length]
        pos = int(rng.integers(n))
        lo, hi = max(0, pos - 2 * bs), min(n, pos + 2 * bs)  # a window of similar lengths around the anchor
        size = max(1, min(bs, self.cfg.batch_frames // int(self._sorted_lengths[hi - 1])))
        picks = rng.choice(np.arange(lo, hi), size=size, replace=hi - lo < size)
        return self._by_length[picks]

    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cfg.bf16)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with self._autocast():
            loss = model(batch["mel"], batch["cond"], batch["cond_mask"], batch["mel_mask"],
                         **batch.get("cond_inputs", {}))
        return {"loss": loss}

    def eval_batches(self) -> list[dict[str, torch.Tensor]]:
        """The validation batches, with fixed crops, conditions and noise (built once)."""
        if self._eval_batches is None:
            g = torch.Generator().manual_seed(1234)
            self._eval_batches = []
            bs = self.cfg.batch_size
            for i in range(0, len(self.eval_items), bs):
                batch = self.make_batch(self.eval_items[i : i + bs], None)
                batch["noise"] = torch.randn(batch["mel"].shape, generator=g)
                self._eval_batches.append(batch)
        return self._eval_batches

    def evaluate(self, model: FlowMatching) -> dict[str, float]:
        """Validation flow loss at fixed t with fixed noise and crops: comparable across evaluations."""
        return fixed_time_losses(model, self.eval_batches(), self.cfg.eval_times, self.cfg.bf16)

    def export(self, model: FlowMatching, folder: str | Path) -> None:
        save_generator(model, folder)


def fixed_time_losses(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], times: list[float],
                      bf16: bool) -> dict[str, float]:
    """Flow loss at each fixed t ("val_loss_t0.5", ...; weighted by batch size) and their mean ("val_loss").

    Each batch holds mel, cond, cond_mask and its own noise; mel_mask and cond_inputs are optional."""
    out = {}
    for t in times:
        total, weight = 0.0, 0
        for batch in batches:
            b = batch["mel"].shape[0]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(batch["mel"], batch["cond"], batch["cond_mask"], batch.get("mel_mask"),
                             t=torch.full((b,), t), noise=batch["noise"], drop=False,
                             **batch.get("cond_inputs", {}))
            total, weight = total + float(loss) * b, weight + b
        out[f"val_loss_t{t:g}"] = total / weight
    out["val_loss"] = sum(out.values()) / len(out)
    return out


# ---- entry point -----------------------------------------------------------------------------
def init_config(folder: str | Path) -> GeneratorConfig:
    """The config of a generator folder to start from (same shape and data statistics)."""
    path = Path(folder) / "generator.json"
    if not path.is_file():
        raise StarError(f"init_from {folder} holds no generator.json")
    return GeneratorConfig.load(path)


# The GeneratorConfig fields a continued run may change: they steer training or sampling, not weight shapes...
OVERRIDABLE = ("cond_drop", "t_logit_mean", "t_logit_std", "steps", "cfg", "method", "shift", "time_slots")
# ...or add a layer that starts as the identity (the loaded weights keep their meaning), by its weights' prefix.
ADDABLE = {"frame_head": "backbone.frame_head."}


def apply_overrides(model: GeneratorConfig, overrides: dict) -> GeneratorConfig:
    """`model` with `overrides` applied; StarError names any field outside OVERRIDABLE."""
    allowed = (*OVERRIDABLE, *ADDABLE)
    bad = sorted(set(overrides) - set(allowed))
    if bad:
        raise StarError(f"init_overrides cannot change {', '.join(bad)}; allowed: {', '.join(allowed)}")
    for name in set(overrides) & set(ADDABLE):
        if getattr(model, name):
            raise StarError(f"init_overrides can add {name} to a generator without one; this one has {name}="
                            f"{getattr(model, name)}")
    return GeneratorConfig.from_dict({**model.to_dict(), **overrides})


def build_task(cfg: GeneratorTaskConfig, out_dir: str | Path, task_class: type[GeneratorTask] = GeneratorTask
               ) -> GeneratorTask:
    """The task for `cfg`, its model starting from `cfg.init_from` (config and weights) when set."""
    if cfg.init_overrides and not cfg.init_from:
        raise StarError("init_overrides needs init_from (without it, set the fields in model)")
    if cfg.init_from:
        cfg.model = apply_overrides(init_config(cfg.init_from), cfg.init_overrides)
    task = task_class(cfg, out_dir=out_dir)
    if cfg.init_from:
        added = tuple(prefix for name, prefix in ADDABLE.items() if name in cfg.init_overrides)
        load_weights(task.model, cfg.init_from, "generator", new=added)
    return task


def train_generator(
    config_path: str | Path, out_dir: str | Path | None = None, manifest: str | None = None,
    shards: str | None = None,
) -> dict[str, Any]:
    """Train (or resume) the generator described by a GeneratorTaskConfig JSON file.

    `manifest` or `shards` replaces the config's data source (the other one is cleared).
    """
    cfg = GeneratorTaskConfig.load(config_path)
    if manifest and shards:
        raise StarError("pass either a manifest or shards, not both")
    if manifest:
        cfg.manifest, cfg.shards = manifest, ""
    if shards:
        cfg.manifest, cfg.shards = "", shards
    out = Path(out_dir or cfg.out_dir)
    torch.set_num_threads(cfg.train.threads)
    task = build_task(cfg, out)
    if int(os.environ.get("RANK", "0")) == 0:
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / "task_config.json")  # with the data statistics filled in
    return Trainer(task, cfg.train, out).fit()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the STAR flow-matching generator.")
    parser.add_argument("config", help="GeneratorTaskConfig JSON (e.g. configs/generator_text.json)")
    parser.add_argument("--out", help="run folder (default: the config's out_dir)")
    parser.add_argument("--manifest", help="sounds.jsonl (default: the config's manifest)")
    parser.add_argument("--shards", help="tar shards: folder, DIR/shard-{000000..000009}.tar or glob")
    args = parser.parse_args(argv)
    print(json.dumps(train_generator(args.config, args.out, args.manifest, args.shards)))


if __name__ == "__main__":
    main()
