"""Assemble a STAR model folder from trained stage outputs (what `src/star/assets/default/` was made with).

    python scripts/assemble_default.py --bridge runs/bridge/best --generator runs/generator_speech/best \
        --text-generator runs/generator_text/best --vocoder runs/vocoder/best --phonetic runs/phonetic/release \
        --out src/star/assets/default

Large weight matrices are stored compactly and load back into float32 modules: the generators' and the
phonetic reader's as int8 rows with a float16 scale each (a quarter of float32; sampling changes by well
under 1 %, see tests/test_weights.py), the other parts' as float16. Small tensors (norm statistics,
biases) stay float32.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from star.builders import TEXT_GENERATOR_DIR
from star.pipeline import PipelineConfig
from star.weights import compact_state


def unlinked(path: Path) -> Path:
    """`path`, with a symbolic link there removed first: writing must never go through a link into its target."""
    if path.is_symlink():
        path.unlink()
    return path


def copy_weights(src: Path, dst: Path, name: str, storage: str = "float16") -> int:
    """Copy `name.safetensors` (big float tensors stored compactly) and `name.json`; returns bytes written."""
    if dst.resolve() == src.resolve():  # e.g. --out is, or links to, an input folder
        raise SystemExit(f"{dst} is the input folder {src}: assemble into a new folder")
    state = compact_state(load_file(str(src / f"{name}.safetensors")), storage)
    dst.mkdir(parents=True, exist_ok=True)
    save_file(state, str(unlinked(dst / f"{name}.safetensors")))
    shutil.copy(src / f"{name}.json", unlinked(dst / f"{name}.json"))
    return (dst / f"{name}.safetensors").stat().st_size


def write_attribution(corpus: Path, out: Path) -> None:
    """Per-clip attribution of the training sounds (CC BY 3.0 requires it to travel with the model)."""
    rows = list(csv.DictReader((corpus / "meta.csv").open()))
    lines = [
        "# Training sounds: attribution",
        "",
        "The default model was trained on ESC-10 (K. J. Piczak, \"ESC: Dataset for Environmental Sound",
        "Classification\", ACM Multimedia 2015), licensed CC BY 3.0; each clip derives from a Freesound.org",
        "recording under the licence listed below.",
        "",
        "| clip | category | author | freesound id | licence |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['filename']} | {r['category']} | {r['author']} | {r['freesound_id']} | {r['license']} |"
              for r in rows]
    unlinked(out / "ATTRIBUTION.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bridge", type=Path, required=True)
    ap.add_argument("--generator", type=Path, required=True, help="speech-conditioned generator (stage 2b)")
    ap.add_argument("--text-generator", type=Path, required=True, help="text-conditioned generator (stage 2a)")
    ap.add_argument("--vocoder", type=Path, default=None, help="neural vocoder folder (default: griffin-lim)")
    ap.add_argument("--phonetic", type=Path, default=None, help="phonetic reader release folder (star train phonetic)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--corpus", type=Path, default=None, help="training corpus (for ATTRIBUTION.md)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--shift", type=float, default=1.0, help="sampling time shift (> 1: more steps near noise)")
    ap.add_argument("--text-cfg", type=float, default=None, help="the text generator's guidance, if different")
    ap.add_argument("--text-shift", type=float, default=None, help="the text generator's time shift, if different")
    args = ap.parse_args()

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    sizes = {
        "bridge": copy_weights(args.bridge, args.out, "bridge"),
        "generator": copy_weights(args.generator, args.out, "generator", "int8"),
        "generator_text": copy_weights(args.text_generator, args.out / TEXT_GENERATOR_DIR, "generator", "int8"),
    }
    if args.phonetic is not None:  # its n-gram table is most of its size: int8 rows
        sizes["phonetic"] = copy_weights(args.phonetic, args.out, "phonetic", "int8")
    extra = {}
    if args.vocoder is not None:
        sizes["vocoder"] = copy_weights(args.vocoder, args.out, "vocoder")
    else:
        extra["vocoder"] = "griffin-lim"
    if args.corpus is not None:
        write_attribution(args.corpus, args.out)
    text = {k: v for k, v in {"cfg": args.text_cfg, "shift": args.text_shift}.items() if v is not None}
    PipelineConfig(steps=args.steps, cfg=args.cfg, shift=args.shift, text_sampling=text, extra=extra).save(
        unlinked(args.out / "pipeline.json")
    )
    print(json.dumps({k: f"{v / 1e6:.1f} MB" for k, v in sizes.items()}))


if __name__ == "__main__":
    main()
