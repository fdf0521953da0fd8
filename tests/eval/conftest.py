"""Real clips for the evaluation tests: the committed CC0 ESC-10 fixtures (tests/fixtures/esc10_mini)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from star.audio import SAMPLE_RATE, load_audio

MINI = Path(__file__).resolve().parents[1] / "fixtures" / "esc10_mini"


@pytest.fixture(scope="session")
def real_clips() -> list[dict]:
    """[{wav, category, fold}] at 16 kHz; folds 1-3 were seen by the shipped classifier, fold 4 was not."""
    if not (MINI / "meta.csv").is_file():
        pytest.skip("tests/fixtures/esc10_mini is missing")
    with (MINI / "meta.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        {"wav": load_audio(MINI / "audio" / r["filename"], SAMPLE_RATE), "category": r["category"],
         "fold": int(r["fold"])}
        for r in rows
    ]


@pytest.fixture(scope="session")
def classifier():
    from star.eval.classifier import EventClassifier

    return EventClassifier.load()


@pytest.fixture(scope="session")
def by_category(real_clips: list[dict]) -> dict[str, np.ndarray]:
    return {c["category"]: c["wav"] for c in real_clips}


@pytest.fixture
def spoken_prompts(tmp_path: Path) -> Path:
    """A prompts manifest of the first two committed spoken prompts (tests/fixtures/speech), one event each."""
    import json

    speech = MINI.parent / "speech"
    index = [json.loads(line) for line in (speech / "index.jsonl").read_text().splitlines() if line.strip()]
    rows = [
        {"id": r["id"], "speech": str(speech / r["speech"]), "caption": r["caption"],
         "events": [{"category": r["category"], "onset": 0.0, "offset": 5.0}], "voice": r["voice"]}
        for r in index[:2]
    ]
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
