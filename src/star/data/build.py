"""`star data build`: corpus -> sounds (real clips + scenes) -> spoken prompts -> JSONL manifests.

Layout written into `out/`:

    sounds.jsonl    one line per real clip or scene: id, audio, captions, held_out_captions, events,
                    kind (single|overlay|sequence|repeat), split, seconds, sources
    prompts.jsonl   one line per spoken prompt: id, audio, caption, events, kind, split, speech, voice,
                    engine, params, augment, speech_seconds, sound_id
    vocab.json      event vocabulary (sorted categories)
    build.json      arguments, counts and timings of this build
    scenes/*.wav    scene audio; real clips are referenced by absolute path into the corpus
    speech/*.wav    spoken prompts (16 kHz mono, VAD-trimmed, augmented for training)
    cache/tts/      raw synthesis cache (reruns do not synthesise again)

Training prompts use training phrasings and espeak/flite voices, with augmentation. Validation
prompts use held-out phrasings, clean. Selecting festival voices builds the held-out *test* set instead:
validation sounds only, held-out phrasings, festival voices, split "test".
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections import Counter
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from star.audio.io import SAMPLE_RATE, load_audio, write_wav
from star.data.activity import active_region
from star.data.augment import AugmentConfig, augment
from star.data.captions import Captions, default_captions
from star.data.corpus import Clip, Corpus, CorpusConfig, load_corpus
from star.data.manifest import read_manifest, write_jsonl
from star.data.scenes import SceneConfig, Source, compose, sample_spec
from star.data.tts import (
    HELD_OUT_ENGINES,
    Rendition,
    check_engines,
    is_held_out,
    plan_renditions,
    resolve_voices,
    synthesize,
)
from star.errors import StarError

__all__ = ["build_dataset", "read_manifest"]

SPLIT_INDEX = {"train": 0, "validation": 1}
# Independent random streams, so e.g. changing the number of prompts does not change the scenes.
STREAM_SCENES, STREAM_PROMPTS, STREAM_AUGMENT, STREAM_LIMIT = 1, 2, 3, 4


@dataclass
class _PromptJob:
    id: str
    text: str
    rendition: Rendition
    speech: Path
    cache_dir: Path
    augment_seed: int | None  # None: clean (validation / test)
    augment_cfg: AugmentConfig


def build_dataset(
    corpus: str | Path,
    out: str | Path,
    *,
    limit: int | None = None,
    voices: list[str] | None = None,
    seed: int = 0,
    workers: int = 2,
    renditions: int = 12,
    scene_renditions: int = 4,
    eval_renditions: int = 3,
    scenes: int | None = None,
    corpus_config: CorpusConfig | None = None,
    scene_config: SceneConfig | None = None,
    augment_config: AugmentConfig | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Build manifests into `out` and return `out`.

    limit: at most this many real clips, balanced over categories (and splits).
    voices: engine names or engine:voice (default espeak + flite); festival alone = held-out test set.
    renditions / scene_renditions: spoken prompts per training clip / training scene.
    eval_renditions: spoken prompts per validation (or test) clip; validation scenes get one each.
    scenes: total scenes over all splits (default 2 x clips), shared out in proportion to clips per split.
    """
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    voice_list = resolve_voices(voices)
    corpus_obj = load_corpus(corpus, corpus_config)
    held_out = is_held_out(voice_list)
    if not held_out:
        assert not any(v.engine in HELD_OUT_ENGINES for v in voice_list), "festival voices are test-only"
    check_engines(voice_list)
    if limit is not None and limit < 1:
        raise StarError(f"--limit must be at least 1 (got {limit})")
    for name, value in (("renditions", renditions), ("scene_renditions", scene_renditions),
                        ("eval_renditions", eval_renditions)):
        if value < 0:
            raise StarError(f"{name} must be >= 0 (got {value})")
    scene_cfg = scene_config or SceneConfig()
    aug_cfg = augment_config or AugmentConfig()
    captions = default_captions()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else out / "cache" / "tts"

    clips = select_clips(corpus_obj, limit, seed)
    split_of = {c.id: corpus_obj.split_of(c) for c in clips}
    n_scenes_total = 2 * len(clips) if scenes is None else scenes
    splits = ["validation"] if held_out else ["train", "validation"]
    by_split = {s: [c for c in clips if split_of[c.id] == s] for s in splits}
    if not any(by_split.values()):
        raise StarError(f"{corpus_obj.root}: no clips in split(s) {', '.join(splits)} (check the fold settings)")

    # "spawn", not fork: a caller that already ran OpenMP code (torch, or the VAD's ggml) would leave the
    # forked workers waiting forever on libgomp's thread pool, which does not survive a fork.
    pool: Executor | None = None
    if workers > 1:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        t = time.perf_counter()
        used = [c for s in splits for c in by_split[s]]
        audio = dict(zip([c.id for c in used], _map(pool, _load_clip, [c.path for c in used], "clips", progress)))
        timings["load_clips"] = time.perf_counter() - t

        t = time.perf_counter()
        sounds = []
        for split in splits:
            sounds += _single_sounds(by_split[split], audio, split, captions)
            n_split = round(n_scenes_total * len(by_split[split]) / max(1, len(clips)))
            sounds += _scene_sounds(by_split[split], audio, split, n_split, seed, scene_cfg, captions, out,
                                    progress)
        timings["scenes"] = time.perf_counter() - t

        jobs, prompts = _plan_prompts(sounds, voice_list, held_out, seed, out, cache, aug_cfg,
                                      renditions, scene_renditions, eval_renditions)
        t = time.perf_counter()
        results = _map(pool, _run_prompt, jobs, "speech", progress)
        timings["speech"] = time.perf_counter() - t
    finally:
        if pool is not None:
            pool.shutdown()

    for row, (seconds, aug) in zip(prompts, results):
        row["speech_seconds"] = round(seconds, 3)
        row["augment"] = aug
    write_jsonl(out / "sounds.jsonl", sounds)
    write_jsonl(out / "prompts.jsonl", prompts)
    (out / "vocab.json").write_text(json.dumps(corpus_obj.vocab, indent=1) + "\n")
    timings["total"] = time.perf_counter() - t_start
    summary = {
        "corpus": str(corpus_obj.root),
        "args": {"limit": limit, "voices": voices, "seed": seed, "workers": workers, "renditions": renditions,
                 "scene_renditions": scene_renditions, "eval_renditions": eval_renditions, "scenes": scenes},
        "held_out_test_set": held_out,
        "sounds": dict(Counter(f"{s['split']}/{s['kind']}" for s in sounds)),
        "prompts": dict(Counter(f"{p['split']}/{p['engine']}" for p in prompts)),
        "sound_seconds": round(sum(s["seconds"] for s in sounds), 1),
        "speech_seconds": round(sum(p["speech_seconds"] for p in prompts), 1),
        "timings_seconds": {k: round(v, 1) for k, v in timings.items()},
        "scene_config": scene_cfg.to_dict(),
        "augment_config": aug_cfg.to_dict(),
    }
    (out / "build.json").write_text(json.dumps(summary, indent=2) + "\n")
    return out


def select_clips(corpus: Corpus, limit: int | None, seed: int) -> list[Clip]:
    """All clips, or `limit` of them taken round-robin over categories; within a category, clips of
    each split are interleaved in proportion, so a small limit still has validation clips."""
    clips = sorted(corpus.clips, key=lambda c: c.id)
    if limit is None or limit >= len(clips):
        return clips
    rng = np.random.default_rng([seed, STREAM_LIMIT])
    queues = []
    for cat in corpus.vocab:
        members = [c for c in clips if c.category == cat]
        keyed = []
        for split in sorted({str(corpus.split_of(c)) for c in members}):
            group = [c for c in members if str(corpus.split_of(c)) == split]
            group = [group[i] for i in rng.permutation(len(group))]
            keyed += [((i + 0.5) / len(group), split, c) for i, c in enumerate(group)]
        queues.append([c for _, _, c in sorted(keyed, key=lambda k: (k[0], k[1]))])
    chosen: list[Clip] = []
    depth = 0
    while len(chosen) < limit:
        for q in queues:
            if depth < len(q) and len(chosen) < limit:
                chosen.append(q[depth])
        depth += 1
    return sorted(chosen, key=lambda c: c.id)


def _map(pool: Executor | None, fn, items: list, desc: str, progress: bool) -> list:
    it = pool.map(fn, items, chunksize=max(1, min(16, len(items) // 64 or 1))) if pool else map(fn, items)
    return list(tqdm(it, total=len(items), desc=desc, disable=not progress, unit="it", dynamic_ncols=True))


def _load_clip(path: Path) -> np.ndarray:
    return load_audio(path, SAMPLE_RATE, allow_silent=True)


def _single_sounds(clips: list[Clip], audio: dict, split: str, captions: Captions) -> list[dict]:
    rows = []
    for c in clips:
        wav = audio[c.id]
        region = active_region(wav)
        if region is None:  # a silent clip carries no event to learn or to ask for
            continue
        rows.append({
            "id": c.id,
            "audio": str(c.path),
            "captions": captions.train(c.category),
            "held_out_captions": captions.held_out(c.category),
            "events": [{"category": c.category, "onset": round(region[0] / SAMPLE_RATE, 3),
                        "offset": round(region[1] / SAMPLE_RATE, 3)}],
            "kind": "single",
            "split": split,
            "seconds": round(len(wav) / SAMPLE_RATE, 3),
            "sources": [c.id],
            "license": c.license,
            "author": c.author,
        })
    return rows


def _scene_sounds(clips, audio, split, n, seed, cfg, captions, out, progress) -> list[dict]:
    by_cat: dict[str, list[str]] = {}
    sources = {}
    for c in clips:
        if active_region(audio[c.id]) is not None:
            by_cat.setdefault(c.category, []).append(c.id)
            sources[c.id] = Source(c.id, c.category, audio[c.id])
    if not by_cat:
        return []
    rows = []
    for i in tqdm(range(n), desc=f"scenes ({split})", disable=not progress or n == 0, dynamic_ncols=True):
        rng = np.random.default_rng([seed, STREAM_SCENES, SPLIT_INDEX[split], i])
        scene = compose(sample_spec(by_cat, rng, cfg), sources, rng, cfg)
        sid = f"scene_{split}_{i:05d}"
        rel = f"scenes/{sid}.wav"
        write_wav(out / rel, scene.wav)
        cats = scene.caption_categories
        rows.append({
            "id": sid,
            "audio": rel,
            "captions": captions.scene_captions(scene.kind, cats, times=scene.times),
            "held_out_captions": captions.scene_captions(scene.kind, cats, held_out=True, times=scene.times),
            "events": [e.to_dict() for e in scene.events],
            "kind": scene.kind,
            "split": split,
            "seconds": round(scene.seconds, 3),
            "sources": scene.sources,
        })
    return rows


def _plan_prompts(sounds, voices, held_out, seed, out, cache, aug_cfg, renditions, scene_renditions,
                  eval_renditions) -> tuple[list[_PromptJob], list[dict]]:
    jobs, rows = [], []
    for split in ("train", "validation"):
        rng = np.random.default_rng([seed, STREAM_PROMPTS, SPLIT_INDEX[split], int(held_out)])
        for s in (s for s in sounds if s["split"] == split):
            single = s["kind"] == "single"
            if split == "train":
                n, texts = (renditions if single else scene_renditions), s["captions"]
            else:
                n, texts = (eval_renditions if single else 1), s["held_out_captions"]
            order = rng.permutation(len(texts))
            for k, r in enumerate(plan_renditions(voices, n, rng)):
                text = texts[int(order[k % len(texts)])]
                pid = f"{s['id']}.p{k:02d}"
                speech = Path("speech") / f"{pid}.wav"
                train = split == "train"
                jobs.append(_PromptJob(pid, text, r, out / speech, cache,
                                       int(rng.integers(2**31)) if train else None, aug_cfg))
                rows.append({
                    "id": pid,
                    "audio": s["audio"],
                    "caption": text,
                    "events": s["events"],
                    "kind": s["kind"],
                    "split": "test" if held_out else split,
                    "speech": speech.as_posix(),
                    "voice": r.voice.key,
                    "engine": r.voice.engine,
                    "params": dict(r.params),
                    "sound_id": s["id"],
                })
    return jobs, rows


def _run_prompt(job: _PromptJob) -> tuple[float, dict]:
    wav = synthesize(job.text, job.rendition, job.cache_dir)
    params: dict = {}
    if job.augment_seed is not None:
        wav, params = augment(wav, np.random.default_rng(job.augment_seed), job.augment_cfg)
    write_wav(job.speech, wav)
    return len(wav) / SAMPLE_RATE, params
