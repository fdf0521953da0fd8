"""Compositional scenes: 2-3 real clips mixed into one 5-10 s scene with exact event annotations.

Kinds: overlay ("a dog barks while rain falls": a sparse foreground inside a denser background),
sequence ("a rooster crows, then a dog barks": events one after another with silent gaps) and
repeat ("a dog barks twice": one clip placed 2-3 times). Each source is first trimmed to its audible
region (frame energy, `star.data.activity`), so an event's onset/offset is where the sound is heard,
then brought to a common loudness (RMS over its audible frames) before mixing; the mix is scaled down
if its peak would exceed `SceneConfig.peak`, so scenes never clip and the annotations stay valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from star.audio.io import SAMPLE_RATE
from star.config import JsonConfig
from star.data.activity import active_fraction, active_frames, active_region, frame_db

MIN_EVENT_SECONDS = 0.1


@dataclass
class SceneConfig(JsonConfig):
    min_seconds: float = 5.0
    max_seconds: float = 10.0
    target_rms_db: float = -20.0  # loudness of each source over its audible frames
    gain_jitter_db: float = 3.0
    background_db: float = -6.0  # overlay backgrounds sit this far below the foreground
    gap_seconds: list[float] = field(default_factory=lambda: [0.3, 1.0])  # silence between sequence events
    lead_seconds: list[float] = field(default_factory=lambda: [0.1, 0.6])  # silence before the first event
    tail_seconds: list[float] = field(default_factory=lambda: [0.2, 0.8])
    repeat_max_seconds: float = 2.5  # each repetition is cut to this so "twice" is heard as two events
    peak: float = 0.89  # -1 dBFS
    fade_seconds: float = 0.005
    kind_weights: dict[str, float] = field(
        default_factory=lambda: {"overlay": 0.35, "sequence": 0.4, "repeat": 0.25}
    )
    p_three: float = 0.3  # chance of 3 events (3 sources, or 3 repetitions)


@dataclass
class Event:
    category: str
    onset: float  # seconds
    offset: float

    def to_dict(self) -> dict:
        return {"category": self.category, "onset": round(self.onset, 3), "offset": round(self.offset, 3)}


@dataclass
class Source:
    id: str
    category: str
    wav: np.ndarray  # [samples] mono at SAMPLE_RATE


@dataclass
class SceneSpec:
    """What to mix: the scene kind, the clip ids (repeat: one id) and the repetition count."""

    kind: str
    clip_ids: list[str]
    times: int = 1


@dataclass
class Scene:
    kind: str
    wav: np.ndarray  # [samples] mono at SAMPLE_RATE
    events: list[Event]  # sorted by onset
    caption_categories: list[str]  # slot order for captions: overlay [fore, back...], sequence time order
    sources: list[str]
    times: int = 1
    stems: list[np.ndarray] = field(default_factory=list, repr=False)  # per-event placed audio, same length

    @property
    def seconds(self) -> float:
        return len(self.wav) / SAMPLE_RATE


def sample_spec(by_category: dict[str, list[str]], rng: np.random.Generator, cfg: SceneConfig) -> SceneSpec:
    """Draw a scene recipe from clip ids grouped by category (distinct categories for multi-source)."""
    cats = sorted(c for c, ids in by_category.items() if ids)
    if not cats:
        raise ValueError("no clips to build scenes from")
    kinds = [k for k in ("overlay", "sequence", "repeat") if cfg.kind_weights.get(k, 0) > 0]
    if len(cats) < 2:
        kinds = ["repeat"]
    weights = np.array([cfg.kind_weights.get(k, 0.0) for k in kinds], dtype=np.float64)
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    three = rng.random() < cfg.p_three
    if kind == "repeat":
        cat = cats[int(rng.integers(len(cats)))]
        ids = sorted(by_category[cat])
        return SceneSpec("repeat", [ids[int(rng.integers(len(ids)))]], times=3 if three else 2)
    n = 3 if three and len(cats) >= 3 else 2
    chosen = [cats[i] for i in rng.choice(len(cats), size=n, replace=False)]
    ids = []
    for c in chosen:
        pool = sorted(by_category[c])
        ids.append(pool[int(rng.integers(len(pool)))])
    return SceneSpec(kind, ids)


def compose(spec: SceneSpec, sources: dict[str, Source], rng: np.random.Generator, cfg: SceneConfig) -> Scene:
    """Mix the clips of `spec` into a Scene; raises ValueError if a source is silent."""
    srcs = [sources[i] for i in spec.clip_ids]
    if spec.kind == "overlay":
        return _overlay(srcs, rng, cfg)
    if spec.kind == "sequence":
        return _sequence(srcs, rng, cfg)
    if spec.kind == "repeat":
        return _repeat(srcs[0], spec.times, rng, cfg)
    raise ValueError(f"unknown scene kind {spec.kind!r}")


def trim_active(wav: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """The audible part of `wav` (first to last active frame); raises ValueError if silent."""
    region = active_region(wav, sr)
    if region is None:
        raise ValueError("source is silent")
    return wav[region[0] : region[1]]


def _segment(src: Source, max_seconds: float, level_db: float, cfg: SceneConfig) -> np.ndarray:
    """Trimmed, length-capped, loudness-normalised copy of a source, with short fades against clicks."""
    seg = trim_active(src.wav)
    cap = int(max_seconds * SAMPLE_RATE)
    if len(seg) > cap:
        # Cutting may end inside a silent stretch (between two barks): trim again so offset = last sound.
        seg = trim_active(seg[:cap])
    db = frame_db(seg)
    active = active_frames(seg)
    loud_db = 10 * np.log10(np.mean(10 ** (db[active] / 10.0)))  # power mean of the audible frames
    seg = seg * np.float32(10 ** ((level_db - loud_db) / 20))
    fade = min(int(cfg.fade_seconds * SAMPLE_RATE), len(seg) // 4)
    if fade > 0:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        seg = seg.copy()
        seg[:fade] *= ramp
        seg[-fade:] *= ramp[::-1]
    return seg.astype(np.float32)


def _level(cfg: SceneConfig, rng: np.random.Generator, offset_db: float = 0.0) -> float:
    return cfg.target_rms_db + offset_db + float(rng.uniform(-cfg.gain_jitter_db, cfg.gain_jitter_db))


def _u(rng: np.random.Generator, lo_hi: list[float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def _mix(placed: list[tuple[Source, np.ndarray, int]], end: int, cfg: SceneConfig, rng) -> tuple:
    """Sum placed segments into a scene of 5-10 s; returns (wav, stems, events) with the peak limited."""
    total = round(max(cfg.min_seconds * SAMPLE_RATE, end + _u(rng, cfg.tail_seconds) * SAMPLE_RATE))
    total = min(total, int(cfg.max_seconds * SAMPLE_RATE))
    stems, events = [], []
    for src, seg, start in placed:
        stem = np.zeros(total, dtype=np.float32)
        seg = seg[: max(0, total - start)]
        stem[start : start + len(seg)] = seg
        stems.append(stem)
        events.append(Event(src.category, start / SAMPLE_RATE, (start + len(seg)) / SAMPLE_RATE))
    wav = np.sum(stems, axis=0).astype(np.float32)
    peak = float(np.max(np.abs(wav)))
    if peak > cfg.peak:  # one gain for the whole scene: no clipping, and the events stay where they are
        gain = np.float32(cfg.peak / peak)
        wav = wav * gain
        stems = [s * gain for s in stems]
    order = np.argsort([e.onset for e in events], kind="stable")
    return wav, [stems[i] for i in order], [events[i] for i in order]


def _overlay(srcs: list[Source], rng: np.random.Generator, cfg: SceneConfig) -> Scene:
    # Audible seconds: a short or sparse sound (a bark) is the foreground, a sustained one (rain) the
    # background; backs[0], the most sustained, spans the scene and everything else sits inside it.
    sustained = [active_fraction(seg) * len(seg) for seg in (trim_active(s.wav) for s in srcs)]
    order = sorted(range(len(srcs)), key=lambda i: (sustained[i], i))
    fore, backs = srcs[order[0]], [srcs[i] for i in reversed(order[1:])]
    lead = int(_u(rng, cfg.lead_seconds) * SAMPLE_RATE)
    room = cfg.max_seconds - lead / SAMPLE_RATE - cfg.tail_seconds[0]
    placed = []
    back0 = _segment(backs[0], room, _level(cfg, rng, cfg.background_db), cfg)
    placed.append((backs[0], back0, lead))
    span = len(back0) / SAMPLE_RATE
    for extra in backs[1:]:
        seg = _segment(extra, span, _level(cfg, rng, cfg.background_db), cfg)
        placed.append((extra, seg, lead + int(rng.integers(0, len(back0) - len(seg) + 1))))
    seg = _segment(fore, max(span, MIN_EVENT_SECONDS), _level(cfg, rng), cfg)
    placed.append((fore, seg, lead + int(rng.integers(0, max(1, len(back0) - len(seg) + 1)))))
    end = max(start + len(s) for _, s, start in placed)
    wav, stems, events = _mix(placed, end, cfg, rng)
    return Scene("overlay", wav, events, [fore.category] + [b.category for b in backs],
                 [s.id for s in srcs], stems=stems)


def _sequence(srcs: list[Source], rng: np.random.Generator, cfg: SceneConfig) -> Scene:
    n = len(srcs)
    lead = int(_u(rng, cfg.lead_seconds) * SAMPLE_RATE)
    budget = cfg.max_seconds - lead / SAMPLE_RATE - cfg.tail_seconds[0] - (n - 1) * cfg.gap_seconds[1]
    placed, cursor = [], lead
    for k, src in enumerate(srcs):
        seg = _segment(src, budget / n, _level(cfg, rng), cfg)
        if k:
            cursor += int(_u(rng, cfg.gap_seconds) * SAMPLE_RATE)
        placed.append((src, seg, cursor))
        cursor += len(seg)
    wav, stems, events = _mix(placed, cursor, cfg, rng)
    return Scene("sequence", wav, events, [s.category for s in srcs], [s.id for s in srcs], stems=stems)


def _repeat(src: Source, times: int, rng: np.random.Generator, cfg: SceneConfig) -> Scene:
    lead = int(_u(rng, cfg.lead_seconds) * SAMPLE_RATE)
    budget = cfg.max_seconds - lead / SAMPLE_RATE - cfg.tail_seconds[0] - (times - 1) * cfg.gap_seconds[1]
    seg = _segment(src, min(cfg.repeat_max_seconds, budget / times), _level(cfg, rng), cfg)
    placed, cursor = [], lead
    for k in range(times):
        if k:
            cursor += int(_u(rng, cfg.gap_seconds) * SAMPLE_RATE)
        placed.append((src, seg, cursor))
        cursor += len(seg)
    wav, stems, events = _mix(placed, cursor, cfg, rng)
    return Scene("repeat", wav, events, [src.category], [src.id], times=times, stems=stems)
