"""The evaluator: manifest parsing, deterministic noisy prompts, and whole runs through `run_eval`."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import star
from star.audio import SAMPLE_RATE, load_audio, write_wav
from star.errors import StarError
from star.eval.evaluator import add_noise, prompt_seed, read_prompts, run_eval, voice_group
from star.eval.scoring import requested_events


def _write_manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _row(i: int, **kw) -> dict:
    row = {
        "id": f"p{i}",
        "speech": f"speech/p{i}.wav",
        "caption": "a dog barks",
        "events": [{"category": "dog", "onset": 0.5, "offset": 1.0}],
        "voice": "festival:ked_diphone",
    }
    row.update(kw)
    return row


# ---------------------------------------------------------------- manifest


def test_read_prompts_resolves_paths_and_is_a_scoring_request(tmp_path):
    events = [
        {"category": "dog", "onset": 2.0, "offset": 3.0},
        {"category": "rooster", "onset": 0.2, "offset": 1.5},
    ]
    m = _write_manifest(tmp_path / "m.jsonl", [_row(0, events=events, kind="sequence", audio="real/p0.wav")])
    (p,) = read_prompts(m)
    assert p.speech == tmp_path / "speech" / "p0.wav"
    assert p.audio == tmp_path / "real" / "p0.wav"
    assert requested_events(p) == ("sequence", ["rooster", "dog"])  # scoring reads it in time order


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "a", "speech": "a.wav", "caption": "x"}, "missing events"),
        (_row(0, id="../evil"), "not a unique safe file name"),
        (_row(0, events=[]), "non-empty list"),
        (_row(0, events=[{"onset": 1}]), "non-empty list"),
    ],
)
def test_read_prompts_rejects_bad_lines_with_line_number(tmp_path, row, message):
    m = _write_manifest(tmp_path / "m.jsonl", [_row(9), row])
    with pytest.raises(StarError, match=rf"m\.jsonl: entry 2: .*{message}"):
        read_prompts(m)


def test_read_prompts_rejects_duplicates_and_garbage(tmp_path):
    with pytest.raises(StarError, match="m.jsonl: entry 2"):
        read_prompts(_write_manifest(tmp_path / "m.jsonl", [_row(1), _row(1)]))
    (tmp_path / "g.jsonl").write_text('{"id": 1\n')
    with pytest.raises(StarError, match="g.jsonl:1: not valid JSON"):
        read_prompts(tmp_path / "g.jsonl")
    with pytest.raises(StarError, match="manifest not found"):
        read_prompts(tmp_path / "absent.jsonl")


def test_limit_spreads_over_the_manifest_and_its_scene_kinds(tmp_path):
    m = _write_manifest(tmp_path / "m.jsonl", [_row(i) for i in range(10)])
    assert [p.id for p in read_prompts(m, limit=3)] == ["p0", "p4", "p9"]
    assert len(read_prompts(m, limit=50)) == 10
    seq = [{"category": "dog", "onset": 0.5, "offset": 1.0}, {"category": "rain", "onset": 2, "offset": 3}]
    rows = [_row(i) for i in range(20)] + [_row(20 + i, events=seq, kind="sequence") for i in range(3)]
    kept = read_prompts(_write_manifest(tmp_path / "s.jsonl", rows), limit=4)
    assert [p.id for p in kept] == ["p0", "p19", "p20", "p22"]  # 2 singles, 2 of the 3 sequences


def test_voice_groups_keep_the_unseen_speaker_apart():
    assert voice_group("festival:ked_diphone") == "ked"
    assert voice_group("festival:kal_diphone") == "kal/slt"
    assert voice_group("festival:cmu_us_slt_arctic_hts") == "kal/slt"
    assert voice_group("espeak:en-us+m1") == "espeak"


# ---------------------------------------------------------------- noisy prompts


def test_add_noise_hits_the_snr_and_is_deterministic():
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    speech = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    noisy = add_noise(speech, 10.0, prompt_seed(0, "p1"))
    snr = 10 * np.log10(
        np.mean(speech.astype(np.float64) ** 2) / np.mean((noisy - speech).astype(np.float64) ** 2)
    )
    assert snr == pytest.approx(10.0, abs=0.1)
    assert np.array_equal(noisy, add_noise(speech, 10.0, prompt_seed(0, "p1")))
    assert not np.array_equal(noisy, add_noise(speech, 10.0, prompt_seed(0, "p2")))
    with pytest.raises(StarError):
        add_noise(np.zeros(100, np.float32), 10.0, 0)


def test_prompt_seed_is_stable_across_processes():
    assert prompt_seed(0, "p1") == 1060662067  # crc32(b"p1"), not the salted str hash


# ---------------------------------------------------------------- whole runs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ESC10_MINI = FIXTURES / "esc10_mini"
SPEECH = FIXTURES / "speech"
CLASSIFIER_DIR = Path(star.__file__).parent / "assets" / "eval_classifier"
DEFAULT_MODEL = Path(star.__file__).parent / "assets" / "default"  # = star.pipeline.DEFAULT_MODEL

NEEDS_CLASSIFIER = pytest.mark.skipif(
    not (CLASSIFIER_DIR / "eval_classifier.json").is_file() or not ESC10_MINI.is_dir(),
    reason=f"needs the shipped eval classifier ({CLASSIFIER_DIR}) and tests/fixtures/esc10_mini",
)
NEEDS_MODEL = pytest.mark.skipif(
    not (DEFAULT_MODEL / "pipeline.json").is_file(),
    reason=f"the default model is not built yet ({DEFAULT_MODEL}/pipeline.json missing)",
)


class ScriptedPipeline:
    """Stands in for the generator so the evaluator's own path (files, pairing, groups, WER, tables) is
    checked on clips whose right answers are known: it returns the given clips in call order per mode."""

    def __init__(self, outputs: dict[str, list], transcripts: list[str | None]):
        self.cfg = SimpleNamespace(seconds=5.0, steps=2, cfg=1.0)
        self.folder = None
        self.outputs = {m: list(v) for m, v in outputs.items()}
        self.transcripts = list(transcripts)
        self.last_timings: dict = {}
        self.last_transcript: str | None = None
        self.calls: list[dict] = []

    def generate(self, speech=None, text=None, *, seconds, steps, cfg, seed, mode="e2e"):
        mode = "caption" if text is not None else mode  # a text prompt takes the text generator
        self.calls.append({"mode": mode, "seed": seed, "steps": steps, "cfg": cfg, "speech": speech, "text": text})
        wav = self.outputs[mode].pop(0)
        self.last_timings = {"condition_s": 0.01, "generator_s": 0.01, "vocoder_s": 0.01, "total_s": 0.03}
        self.last_transcript = None
        if mode == "cascade":
            self.last_transcript = self.transcripts.pop(0)
            if self.last_transcript is None:
                raise StarError("the speech recogniser heard no words in the prompt")
        return wav[: round(seconds * SAMPLE_RATE)], SAMPLE_RATE


def _fixture_clip(category: str) -> tuple[str, np.ndarray]:
    import csv

    with (ESC10_MINI / "meta.csv").open() as f:
        row = next(r for r in csv.DictReader(f) if r["category"] == category)
    return row["filename"], load_audio(ESC10_MINI / "audio" / row["filename"])


def _sequence_scene(first: str, second: str):
    from star.data.scenes import SceneConfig, SceneSpec, Source, compose

    sources = {}
    for cat in (first, second):
        name, wav = _fixture_clip(cat)
        sources[name] = Source(name, cat, wav)
    cfg = SceneConfig(max_seconds=5.0)
    return compose(SceneSpec("sequence", list(sources)), sources, np.random.default_rng(0), cfg)


@NEEDS_CLASSIFIER
def test_run_eval_scores_a_constructed_sequence_and_its_reversal(tmp_path):
    scene = _sequence_scene("dog", "rooster")  # real dog, then real rooster, annotated
    _, dog = _fixture_clip("dog")
    # The "generated" clips are the reference files as read back, so each clip is embedded once.
    scene_wav = load_audio(write_wav(tmp_path / "scene.wav", scene.wav, SAMPLE_RATE))
    dog = load_audio(write_wav(tmp_path / "dog.wav", dog, SAMPLE_RATE))
    events = [e.to_dict() for e in scene.events]
    reversed_events = [{**events[0], "category": "rooster"}, {**events[1], "category": "dog"}]
    rows = [
        _row(
            0,
            speech=str(SPEECH / "dog_espeak.wav"),
            caption="a dog barks, then a rooster crows",
            events=events,
            kind="sequence",
            audio="scene.wav",
            voice="festival:ked_diphone",
        ),
        _row(
            1,
            speech=str(SPEECH / "rooster_flite.wav"),
            caption="a rooster crows, then a dog barks",
            events=reversed_events,
            kind="sequence",
            audio="scene.wav",
            voice="festival:kal_diphone",
        ),
        _row(
            2,
            speech=str(SPEECH / "dog_espeak.wav"),
            caption="a dog is barking",
            audio="dog.wav",
            voice="festival:kal_diphone",
        ),
    ]
    manifest = _write_manifest(tmp_path / "m.jsonl", rows)
    silence = np.zeros(5 * SAMPLE_RATE, np.float32)
    pipe = ScriptedPipeline(
        {"e2e": [scene_wav, scene_wav, dog], "cascade": [silence, silence, silence]},
        transcripts=["A dog barks, then a rooster crows.", "a rooster crows then a cat", None],
    )
    out = tmp_path / "out"
    scores = run_eval(manifest, out, mode="both", pipe=pipe, steps=2, seed=3)

    assert (out / "scores.json").is_file() and (out / "table.md").is_file()
    for mode in ("e2e", "cascade"):
        assert sorted(p.name for p in (out / mode).glob("*.wav")) == ["p0.wav", "p1.wav", "p2.wav"]
    # Same seed and sampler settings for a prompt in both modes.
    by_mode = {m: [c for c in pipe.calls if c["mode"] == m] for m in ("e2e", "cascade")}
    assert [c["seed"] for c in by_mode["e2e"]] == [c["seed"] for c in by_mode["cascade"]]
    assert {c["steps"] for c in pipe.calls} == {2}

    rows = {(r["system"], r["group"]): r for r in scores["rows"]}
    assert set(rows) == {
        ("e2e", "all"),
        ("e2e", "ked"),
        ("e2e", "kal/slt"),
        ("cascade", "all"),
        ("cascade", "ked"),
        ("cascade", "kal/slt"),
        ("real clips", "all"),
        ("white noise", "all"),
    }
    e2e = rows[("e2e", "all")]
    # The clip is "dog then rooster": right for p0, reversed for p1.
    assert e2e["ordering_error_n"] == 2 and e2e["ordering_error"] == pytest.approx(0.5)
    assert rows[("e2e", "ked")]["ordering_error"] == 0.0
    assert rows[("e2e", "kal/slt")]["ordering_error"] == 1.0
    assert e2e["event_accuracy"] == 1.0 and e2e["event_accuracy_n"] == 1
    assert e2e["kl"] == pytest.approx(0.0, abs=1e-6)  # each generated clip is its own reference here
    assert e2e["silence_rate"] == 0.0 and e2e["wer"] is None
    cascade = rows[("cascade", "all")]
    assert cascade["silence_rate"] == 1.0 and cascade["refused"] == 1
    # 0 edits; "cat" for "dog" and "barks" missing: 2; refused: 4 deletions; over 7 + 7 + 4 words.
    assert cascade["wer"] == pytest.approx(6 / 18)
    assert rows[("real clips", "all")]["ordering_error"] == pytest.approx(0.5)
    assert rows[("white noise", "all")]["n"] == 3
    saved = json.loads((out / "scores.json").read_text())
    assert [c["id"] for c in saved["clips"]["cascade"]] == ["p0", "p1", "p2"]
    assert saved["clips"]["cascade"][2]["error"]
    # The one single-event prompt (dog): right in E2E, silence in the cascade.
    assert scores["categories"] == {"dog": {"e2e": [1, 1], "cascade": [0, 1]}}
    table = (out / "table.md").read_text()
    main_table, category_table = table.split("per requested category")
    assert sum(line.startswith("| ") for line in main_table.splitlines()) == len(scores["rows"]) + 1
    assert "order err." in main_table
    assert "| dog | 1.00 (1) | 0.00 (1) |" in category_table


@NEEDS_CLASSIFIER
def test_caption_mode_sends_the_spoken_words_to_the_text_generator(tmp_path):
    _, dog = _fixture_clip("dog")
    dog = load_audio(write_wav(tmp_path / "dog.wav", dog, SAMPLE_RATE))
    rows = [
        _row(0, speech=str(SPEECH / "dog_espeak.wav"), caption="a dog is barking", audio="dog.wav"),
        _row(1, speech=str(SPEECH / "rooster_flite.wav"), caption="a dog barks twice", audio="dog.wav"),
    ]
    pipe = ScriptedPipeline({"caption": [dog, np.zeros(5 * SAMPLE_RATE, np.float32)]}, transcripts=[])
    scores = run_eval(_write_manifest(tmp_path / "m.jsonl", rows), tmp_path / "out", mode="caption", pipe=pipe)

    assert [(c["text"], c["speech"]) for c in pipe.calls] == [("a dog is barking", None), ("a dog barks twice", None)]
    caption = next(r for r in scores["rows"] if r["system"] == "caption" and r["group"] == "all")
    assert caption["event_accuracy"] == pytest.approx(0.5) and caption["wer"] is None
    assert "caption (true words -> text)" in (tmp_path / "out" / "table.md").read_text()


@NEEDS_MODEL
@NEEDS_CLASSIFIER
def test_run_eval_on_the_default_model_tiny(tmp_path, spoken_prompts):
    scores = run_eval(spoken_prompts, tmp_path / "out", mode="both", steps=2, noise_snr=10.0)
    systems = [(r["system"], r["group"]) for r in scores["rows"]]
    assert ("e2e", "all") in systems and ("cascade", "all") in systems and ("white noise", "all") in systems
    for r in scores["rows"][:2]:
        for key in (
            "n",
            "event_accuracy",
            "inception_score",
            "silence_rate",
            "clipping_rate",
            "refused",
            "generate_median_s",
        ):
            assert key in r
    assert scores["settings"]["steps"] == 2 and scores["settings"]["noise_snr"] == 10.0
    assert len(list((tmp_path / "out" / "e2e").glob("*.wav"))) == 2
