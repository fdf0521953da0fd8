"""Training prompts spoken again by more speakers: voice variety for the phonetic recogniser.

The CTC head of the phonetic route hears the held-out festival voices worst where they are diphone
voices (phoneme error ~0.15 for kal and ked against ~0.06 for slt, STUDY part 12), and among the training
voices only flite's kal and kal16 are diphone voices, each at one pitch. Flite can move a voice's mean
pitch, so this re-speaks a sample of the training prompts with flite's voices at pitches drawn from a
range: the same words, many more speakers. Rows keep their caption, kind and events (and a "bce" flag), so
the set is a valid training manifest for either stage-1 model; festival is never used.

    python -m star.bridge.respeak --manifest runs/data/esc10_train/prompts.jsonl \
        runs/bridge/phrasings/prompts.jsonl --out runs/bridge/respeak_0 --count 4000 --part 0/2
writes `out/prompts.jsonl` (train split). Part 12 drew 8,000 from all of `configs/phonetic.json`'s
manifests: kal's phoneme error fell a little (0.153 -> 0.145), ked's did not, and the route was not shipped.

With `--split validation` it speaks every validation prompt once, unaugmented (as a data build speaks its
validation prompts), instead: a validation set in a voice no model was trained on (STUDY part 13 uses
FreeTTS's kevin16, a diphone voice, at random speeds this way).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from star.config import check_part, parse_part
from star.data.manifest import read_manifest, write_jsonl
from star.errors import StarError

FLITE_PITCH_HZ = (70, 200)  # festival's test voices lie inside (kal, ked ~100 Hz, slt ~170 Hz), as do flite's own


def training_rows(manifests: list[str | Path]) -> list[dict]:
    """Train-split rows of every manifest (test prompts are never re-spoken)."""
    rows = [r for m in manifests for r in read_manifest(m) if r.get("split", "train") == "train"]
    if not rows:
        raise StarError("no training prompts in the given manifests")
    return rows


def validation_rows(manifests: list[str | Path]) -> list[dict]:
    """Validation-split rows of every manifest, in order."""
    from star.train.bridge_task import VAL_SPLITS

    rows = [r for m in manifests for r in read_manifest(m) if r.get("split") in VAL_SPLITS]
    if not rows:
        raise StarError("no validation prompts in the given manifests")
    return rows


def build_respeak(
    manifests: list[str | Path],
    out_dir: str | Path,
    *,
    count: int = 4000,
    seed: int = 0,
    pitch: tuple[int, int] = FLITE_PITCH_HZ,
    part: tuple[int, int] = (0, 1),
    voices: list[str] | None = None,
    split: str = "train",
) -> Path:
    """Re-speak `count` training prompts (drawn with `seed`, without repeats while there are enough) in
    `voices` (default flite's, at random pitches); `part` (k, n) speaks every n-th of them from the k-th.
    `split="validation"`: every validation prompt once, without waveform augmentation, `count` unused."""
    from star.bridge.expand import speak_rows
    from star.data.tts import is_held_out, resolve_voices
    from star.train.bridge_task import row_categories

    k, n_parts = part
    check_part(k, n_parts)
    if count < 1 or pitch[0] < 40 or pitch[1] < pitch[0]:
        raise StarError("respeak needs count >= 1 and a pitch range low <= high (Hz, low >= 40)")
    voices = voices or ["flite"]
    if is_held_out(resolve_voices(voices)):
        raise StarError("festival voices are held out for testing: respeak never speaks in them")
    if split not in ("train", "validation"):
        raise StarError(f"respeak speaks the train or the validation split, not {split!r}")
    if split == "validation":
        picked = validation_rows(manifests)
    else:
        rows = training_rows(manifests)
        rng = np.random.default_rng(seed)
        picked = [rows[int(i)] for i in rng.permutation(len(rows))[:count]]
        picked += [rows[int(i)] for i in rng.integers(len(rows), size=max(0, count - len(picked)))]
    picked = picked[k::n_parts]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(row_categories(r), r["caption"], r.get("kind", "single")) for r in picked]
    prefix = "r" + (str(k) if n_parts > 1 else "")
    lines = speak_rows(jobs, out, prefix, seed + k, "respeak", voices=voices, flite_pitch=pitch, split=split)
    for line, r in zip(lines, picked):
        line["events"] = r.get("events", line["events"])  # the original timing (scenes, sequences)
        if "bce" in r:
            line["bce"] = r["bce"]
        line["respoken"] = r.get("id", "")
    return write_jsonl(out / "prompts.jsonl", lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Re-speak training prompts in more voices (flite at many pitches by default), "
                                "or the validation prompts in a new voice")
    p.add_argument("--manifest", nargs="+", required=True, help="manifests to draw prompts from")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--count", type=int, default=4000, help="prompts to re-speak (over all parts)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pitch", type=int, nargs=2, default=list(FLITE_PITCH_HZ), metavar=("LOW", "HIGH"),
                   help="flite mean pitch range in Hz")
    p.add_argument("--part", default="0/1", help="K/N: speak only part K of N (run N processes, one --out each)")
    p.add_argument("--voices", nargs="+", default=["flite"],
                   help="training voices to speak in (star.data.tts selectors, e.g. flite, freetts); never festival")
    p.add_argument("--split", choices=["train", "validation"], default="train",
                   help="validation: every validation prompt once, unaugmented (a validation set in a new voice)")
    a = p.parse_args(argv)
    try:
        print(build_respeak(a.manifest, a.out, count=a.count, seed=a.seed, pitch=(a.pitch[0], a.pitch[1]),
                            part=parse_part(a.part), voices=a.voices, split=a.split))
    except StarError as exc:
        raise SystemExit(f"respeak: {exc}") from None


if __name__ == "__main__":
    main()
