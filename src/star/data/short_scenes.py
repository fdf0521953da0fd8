"""Re-mix a built dataset's scenes to fit a shorter clip, keeping their spoken prompts.

    python -m star.data.short_scenes --data runs/data/esc10_train --corpus ../shared/data/esc10 \
        --max-seconds 5 --out runs/data/esc10_short5

The data builder mixes scenes of 5-10 s, and a sequence of two sustained sounds fills them: the second
event mostly starts after 5 s, so a generator trained on them and asked for the default 5 s clip has
little room for it. This re-mixes every scene from the same source clips, kind and repetition count
with `--max-seconds` as the scene length cap (events cut shorter to fit), `--mixes` times, and writes OUT/sounds.jsonl and
OUT/prompts.jsonl holding the original rows (paths made absolute) plus the re-mixed scenes. Each
re-mixed scene reuses the original scene's captions and spoken prompts, which describe the same events
in the same order, so no speech is synthesised.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from star.errors import StarError

SUFFIX = "short"


def remix_scenes(
    sounds: list[dict[str, Any]], corpus: str | Path, out: Path, max_seconds: float, mixes: int = 1, seed: int = 0
) -> dict[str, list[dict[str, Any]]]:
    """{original scene id: its `mixes` re-mixed sound rows} for every scene row of `sounds`; each re-mix
    draws its own gaps, levels and placements."""
    from star.audio import SAMPLE_RATE, load_audio
    from star.audio.io import write_wav
    from star.data.corpus import load_corpus
    from star.data.scenes import SceneConfig, SceneSpec, Source, compose

    cfg = SceneConfig(min_seconds=min(SceneConfig.min_seconds, max_seconds), max_seconds=max_seconds)
    clips = {c.id: c for c in load_corpus(corpus).clips}
    loaded: dict[str, Source] = {}
    remixed = {}
    scenes = [r for r in sounds if r.get("kind", "single") != "single"]
    for n, row in enumerate(tqdm(scenes, desc=f"re-mixing scenes to {max_seconds:g} s")):
        missing = [s for s in row["sources"] if s not in clips]
        if missing:
            raise StarError(f"scene {row['id']}: source clip(s) {', '.join(missing)} not in {corpus}")
        for s in row["sources"]:
            if s not in loaded:
                loaded[s] = Source(s, clips[s].category, load_audio(clips[s].path, SAMPLE_RATE, allow_silent=True))
        times = len(row["events"]) if row["kind"] == "repeat" else 1
        remixed[row["id"]] = []
        for k in range(mixes):
            # compose orders an overlay's sources itself and a sequence's by the given order: the row's
            # sources are already in the caption's order, so the re-mix keeps what the prompts say. The
            # first re-mix keeps the seed a single-mix build used, so `--mixes 1` data stays reproducible.
            scene = compose(SceneSpec(row["kind"], list(row["sources"]), times), loaded,
                            np.random.default_rng([seed, n] if k == 0 else [seed, n, k]), cfg)
            if row["kind"] != "overlay" and [e.category for e in scene.events] != [e["category"] for e in row["events"]]:
                raise StarError(f"scene {row['id']}: the re-mix changed the order of its events")
            sid = f"{row['id']}-{SUFFIX}{k}"
            remixed[row["id"]].append({
                **row,
                "id": sid,
                "audio": str(write_wav(out / "scenes" / f"{sid}.wav", scene.wav).resolve()),
                "events": [e.to_dict() for e in scene.events],
                "seconds": round(scene.seconds, 3),
            })
    return remixed


def build(
    data: str | Path,
    corpus: str | Path,
    out: str | Path,
    max_seconds: float = 5.0,
    mixes: int = 1,
    seed: int = 0,
    singles: int = 1,
) -> Path:
    """Write OUT/sounds.jsonl and OUT/prompts.jsonl; `singles` > 1 lists each training single-event clip that
    many times in the sounds, so the re-mixes do not crowd single sounds out of the training batches."""
    from star.data.manifest import read_manifest, write_jsonl

    data, out = Path(data), Path(out)
    if not (data / "sounds.jsonl").is_file() or not (data / "prompts.jsonl").is_file():
        raise StarError(f"{data}: not a built dataset (needs sounds.jsonl and prompts.jsonl)")
    if not 1.0 <= max_seconds <= 10.0:
        raise StarError(f"--max-seconds must be within 1-10, got {max_seconds}")
    if mixes < 1 or singles < 1:
        raise StarError(f"--mixes and --singles must be at least 1, got {mixes} and {singles}")
    sounds, prompts = read_manifest(data / "sounds.jsonl"), read_manifest(data / "prompts.jsonl")  # absolute paths
    remixed = remix_scenes(sounds, corpus, out, max_seconds, mixes, seed)
    new_prompts = [
        {**p, "id": f"{p['id']}-{SUFFIX}{k}", "sound_id": mix["id"], "audio": mix["audio"], "events": mix["events"]}
        for p in prompts
        if p.get("sound_id") in remixed
        for k, mix in enumerate(remixed[p["sound_id"]])
    ]
    repeated = [r for r in sounds if r.get("kind", "single") == "single" and r.get("split") == "train"] * (singles - 1)
    write_jsonl(out / "sounds.jsonl", sounds + [mix for mixes_ in remixed.values() for mix in mixes_] + repeated)
    write_jsonl(out / "prompts.jsonl", prompts + new_prompts)
    print(f"{len(remixed)} scenes re-mixed {mixes} times, {len(new_prompts)} prompts added -> {out}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a folder built by `star data build`")
    p.add_argument("--corpus", required=True, help="the corpus it was built from (the scenes' source clips)")
    p.add_argument("--out", required=True)
    p.add_argument("--max-seconds", type=float, default=5.0)
    p.add_argument("--mixes", type=int, default=1, help="re-mixes of each scene (own gaps, levels, placements)")
    p.add_argument("--singles", type=int, default=1,
                   help="times each training single-event clip is listed (2 keeps their share with one re-mix)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        build(a.data, a.corpus, a.out, a.max_seconds, a.mixes, a.seed, a.singles)
    except StarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
