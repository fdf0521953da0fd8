"""What Whisper tiny.en itself (encoder, decoder and its language model) writes for the prompts of some
wordings (STUDY part 26): when `listen` mishears a wording in a voice, is the word already lost in Whisper's
hearing, or only in the phonetic route's recogniser that reads Whisper's frames?

    python scripts/transcribe_wordings.py --manifest runs/data/esc10_festival/prompts.jsonl \
        --wordings "a puppy is yapping" "a stormy sea" "a toddler sobbing"

Prints one line per single-event prompt of those wordings: voice, wording, transcript (sorted).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from star.audio import load_audio
from star.data.manifest import read_manifest
from star.encoders.asr import WhisperASR
from star.errors import StarError


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--wordings", nargs="+", required=True)
    a = p.parse_args()
    try:
        rows = [r for r in read_manifest(a.manifest) if r["caption"] in a.wordings and r["kind"] == "single"]
    except StarError as exc:  # a missing or unreadable manifest: said plainly
        raise SystemExit(f"error: {exc}") from None
    if not rows:
        raise SystemExit(f"error: no single-event prompt of those wordings in {a.manifest}")
    asr = WhisperASR()
    folder = Path(a.manifest).parent
    lines = [f"{r['voice']} | {r['caption']} | {asr.transcribe(load_audio(folder / r['speech']))}"
             for r in tqdm(rows, desc="transcribing", unit="prompt")]
    print("\n".join(sorted(lines)))


if __name__ == "__main__":
    main()
