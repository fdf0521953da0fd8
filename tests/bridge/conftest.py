"""Small real data for bridge tests: prompts spoken by espeak-ng, written as a prompts manifest."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from star.audio import load_audio, write_wav
from star.bridge import BridgeConfig, StageOneConfig

PHRASES = {
    "dog": ["a dog barks", "a dog is barking loudly", "I want to hear a dog bark"],
    "rain": ["rain is falling", "heavy rain pouring down", "I want to hear the rain"],
    "rooster": ["a rooster crows", "a rooster crowing at dawn", "I want to hear a rooster"],
}
VOICES = ["en-us+m1", "en-gb+f2"]


def speak(text: str, voice: str, path: Path, speed: int = 165) -> np.ndarray:
    """espeak-ng -> 16 kHz mono wav at `path`; returns the waveform."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
    wav = load_audio(raw)
    raw.unlink()
    write_wav(path, wav, 16000)
    return wav


def debug_stage_one(kind: str = "qformer", vocab: list[str] | None = None) -> StageOneConfig:
    bridge = BridgeConfig(
        kind=kind, width=32, queries=4, layers=1, heads=2, ffn_mult=2, mlp_tokens=2, dropout=0.0
    )
    return StageOneConfig(bridge=bridge, vocab=vocab or ["dog", "rain", "rooster"], captions=["a", "b"])


@pytest.fixture(name="debug_stage_one")
def debug_stage_one_fixture():
    """The debug-config factory, as a fixture (test modules here are not an importable package)."""
    return debug_stage_one


@pytest.fixture(scope="session")
def prompts_manifest(tmp_path_factory) -> Path:
    """18 spoken prompts (3 events x 3 phrasings x 2 voices); the last phrasing of each event is 'val'."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    root = tmp_path_factory.mktemp("prompts")
    (root / "speech").mkdir()
    rows = []
    for cat, phrases in PHRASES.items():
        for pi, text in enumerate(phrases):
            for voice in VOICES:
                pid = f"{cat}-{pi}-{voice.replace('+', '_')}"
                speak(text, voice, root / "speech" / f"{pid}.wav")
                rows.append(
                    {
                        "id": pid,
                        "caption": text,
                        "kind": "single",
                        "voice": voice,
                        "events": [{"category": cat, "onset": 0.0, "offset": 5.0}],
                        "split": "validation" if pi == len(phrases) - 1 else "train",
                        "speech": f"speech/{pid}.wav",
                    }
                )
    (root / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "vocab.json").write_text(json.dumps(list(PHRASES)))
    return root / "prompts.jsonl"
