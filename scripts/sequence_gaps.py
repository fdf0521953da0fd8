"""How far apart in time the two events of each generated "A, then B" clip are.

    python scripts/sequence_gaps.py --manifest runs/acceptance_v7/requests.jsonl \
        real=runs/acceptance_v7/real e2e=runs/acceptance_v7/e2e

For every sequence request whose two events are both present in a clip (the same test as the
both-present metric), the evaluation classifier's frame posteriors give each event a time (centroid,
as the ordering error uses); the gap is t(B) - t(A). Real sequences are far apart and in order; a
generator that makes a sequence as an overlay gives gaps near zero of either sign.

`--figure PNG --examples ID ...` also draws those clips' spectrograms, one row per folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def gaps(rows: list[dict], folder: Path, clf) -> np.ndarray:
    """t(second) - t(first) in seconds for each sequence clip in `folder` holding both events."""
    from star.audio import SAMPLE_RATE, load_audio
    from star.eval.metrics import event_time

    out = []
    for r in rows:
        path = folder / f"{r['id']}.wav"
        if r.get("kind") != "sequence" or not path.is_file():
            continue
        first, second = (clf.index(c) for c in dict.fromkeys(e["category"] for e in r["events"]))
        a = clf.analyse(load_audio(path, SAMPLE_RATE), SAMPLE_RATE)
        if set(np.argsort(-a.presence)[:2].tolist()) != {first, second}:
            continue
        t1, t2 = (event_time(a.frame_proba, a.frame_times, k) for k in (first, second))
        if t1 is not None and t2 is not None:
            out.append(t2 - t1)
    return np.array(out)


def main() -> None:
    from star.eval.classifier import EventClassifier

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, help="requests manifest (ids, kinds, events in time order)")
    p.add_argument("folders", nargs="+", help="NAME=FOLDER of <id>.wav clips")
    p.add_argument("--figure", type=Path, help="PNG of the --examples clips' spectrograms, a row per folder")
    p.add_argument("--examples", nargs="*", default=[], help="request ids to draw")
    a = p.parse_args()
    rows = [json.loads(line) for line in Path(a.manifest).read_text().splitlines() if line.strip()]
    clf = EventClassifier.load()
    print("| clips | sequences with both events | median gap (s) | mean abs. gap (s) | in order |")
    print("|---|---:|---:|---:|---:|")
    for spec in a.folders:
        name, folder = spec.split("=", 1)
        g = gaps(rows, Path(folder), clf)
        if len(g) == 0:
            print(f"| {name} | 0 | – | – | – |")
            continue
        print(f"| {name} | {len(g)} | {np.median(g):.2f} | {np.abs(g).mean():.2f} | {(g > 0).mean():.2f} |")
    if a.figure and a.examples:
        if unknown := [i for i in a.examples if i not in {r["id"] for r in rows}]:
            raise SystemExit(f"--examples: not in {a.manifest}: {', '.join(unknown)}")
        draw(a.figure, a.folders, a.examples, {r["id"]: r for r in rows})


def draw(path: Path, folders: list[str], ids: list[str], rows: dict[str, dict]) -> None:
    """One spectrogram figure per folder (its examples side by side), stacked into one PNG."""
    from PIL import Image

    from star.audio import SAMPLE_RATE, load_audio
    from star.eval.results import spectrogram_figure

    parts = []
    for spec in folders:
        name, folder = spec.split("=", 1)
        panels = [(f"{name}: {rows[i]['caption']}", load_audio(Path(folder) / f"{i}.wav", SAMPLE_RATE)) for i in ids]
        parts.append(Image.open(spectrogram_figure(panels, name, path.with_suffix(f".{name}.png"))))
    sheet = Image.new("RGB", (max(p.width for p in parts), sum(p.height for p in parts)), "white")
    for k, part in enumerate(parts):
        sheet.paste(part, (0, sum(p.height for p in parts[:k])))
        Path(part.filename).unlink()
    sheet.quantize(256).save(path, optimize=True)  # a colour map needs no more than a palette: ~3x smaller


if __name__ == "__main__":
    main()
