"""Re-spoken training prompts: flite voices at many pitches, labels kept, only training rows."""

import json
import shutil

import pytest

from star.audio.io import load_audio
from star.bridge.respeak import build_respeak, training_rows
from star.errors import StarError


def write_manifest(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ROWS = [
    {"id": "a", "caption": "a dog is barking", "kind": "single", "split": "train", "speech": "x.wav",
     "events": [{"category": "dog", "onset": 0.5, "offset": 1.0}]},
    {"id": "b", "caption": "rain falls, then a rooster crows", "kind": "sequence", "split": "train", "speech": "y.wav",
     "events": [{"category": "rain", "onset": 0.0, "offset": 2.5}, {"category": "rooster", "onset": 2.5, "offset": 5.0}]},
    {"id": "c", "caption": "the sound of tables", "kind": "general", "split": "train", "speech": "z.wav",
     "events": [], "bce": False},
    {"id": "v", "caption": "a held-out phrasing", "kind": "single", "split": "val", "speech": "v.wav",
     "events": [{"category": "dog", "onset": 0.0, "offset": 5.0}]},
]


def test_training_rows_skip_validation_and_empty_sets(tmp_path):
    m = write_manifest(tmp_path / "m.jsonl", ROWS)
    assert [r["id"] for r in training_rows([m])] == ["a", "b", "c"]
    with pytest.raises(StarError, match="no training prompts"):
        training_rows([write_manifest(tmp_path / "v.jsonl", ROWS[3:])])


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed")
def test_respeak_keeps_labels_and_uses_pitched_flite_voices(tmp_path):
    m = write_manifest(tmp_path / "m.jsonl", ROWS)
    out = build_respeak([m], tmp_path / "out", count=4, seed=1, pitch=(90, 160))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4  # three training rows, one drawn twice
    by_source = {r["respoken"]: r for r in rows}
    assert set(by_source) == {"a", "b", "c"}
    for r in rows:
        src = next(x for x in ROWS if x["id"] == r["respoken"])
        assert r["caption"] == src["caption"] and r["kind"] == src["kind"] and r["events"] == src["events"]
        assert r["voice"].startswith("flite:") and 90 <= r["params"]["pitch"] <= 160 and r["split"] == "train"
        assert load_audio(tmp_path / "out" / r["speech"]).shape[-1] > 8000
    assert by_source["c"]["bce"] is False
    with pytest.raises(StarError, match="pitch range"):
        build_respeak([m], tmp_path / "bad", count=2, pitch=(200, 100))


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed")
def test_respeak_validation_speaks_each_validation_prompt_once_unaugmented(tmp_path):
    m = write_manifest(tmp_path / "m.jsonl", ROWS + [{**ROWS[3], "id": "w", "caption": "another held-out phrasing"}])
    out = build_respeak([m], tmp_path / "out", voices=["flite:slt"], split="validation")
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["respoken"] for r in rows] == ["v", "w"] and {r["split"] for r in rows} == {"validation"}
    assert all(r["augment"] == {} and r["voice"] == "flite:slt" and "stretch" in r["params"] for r in rows)
    assert rows[0]["caption"] == "a held-out phrasing" and rows[0]["events"] == ROWS[3]["events"]


def test_respeak_refuses_festival_and_unknown_splits(tmp_path):
    m = write_manifest(tmp_path / "m.jsonl", ROWS)
    with pytest.raises(StarError, match="held out"):
        build_respeak([m], tmp_path / "f", voices=["festival:kal"])
    with pytest.raises(StarError, match="train or the validation"):
        build_respeak([m], tmp_path / "t", split="test")
