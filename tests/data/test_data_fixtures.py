"""The committed fixtures other tests and the demo rely on: small, decodable, attributed, from >= 2 engines."""

import csv
import json
from pathlib import Path

import numpy as np

from star.audio.io import SAMPLE_RATE, load_audio
from star.data.corpus import load_corpus

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
EXAMPLES = ROOT / "examples"


def _index(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "index.jsonl").read_text().splitlines()]


def test_fixtures_stay_small():
    files = [p for p in list(FIXTURES.rglob("*")) + list(EXAMPLES.glob("*.wav")) if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 1.5e6


def test_mini_corpus_is_cc0_and_attributed():
    corpus = load_corpus(FIXTURES / "esc10_mini")
    attribution = (FIXTURES / "ATTRIBUTION.md").read_text()
    with (FIXTURES / "esc10_mini" / "meta.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(corpus.clips) >= 4 and len(corpus.vocab) == len(rows)
    for r in rows:
        assert r["license"] == "CC0-1.0"
        assert r["filename"] in attribution and r["author"] in attribution and r["freesound_id"] in attribution
    assert corpus.split("train") and corpus.split("validation")


def test_speech_fixtures_decode_and_come_from_two_training_engines():
    index = _index(FIXTURES / "speech")
    assert len(index) >= 6 and {r["engine"] for r in index} == {"espeak", "flite"}
    for r in index:
        wav = load_audio(FIXTURES / "speech" / r["speech"])
        assert 0.5 < len(wav) / SAMPLE_RATE < 4.0 and np.max(np.abs(wav)) > 0.05
        assert r["speech"] in (FIXTURES / "ATTRIBUTION.md").read_text()


def test_examples_are_festival_prompts_at_16k():
    import soundfile as sf

    index = _index(EXAMPLES)
    assert any(r["speech"] == "dog_barking_ked.wav" and r["caption"] == "a dog is barking" for r in index)
    assert len(index) >= 3 and {r["engine"] for r in index} == {"festival"}
    for r in index:
        info = sf.info(EXAMPLES / r["speech"])
        assert info.samplerate == SAMPLE_RATE and info.channels == 1
        assert np.max(np.abs(load_audio(EXAMPLES / r["speech"]))) > 0.05
