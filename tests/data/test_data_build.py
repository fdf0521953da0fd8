"""build_dataset on the committed mini corpus: manifest schema, speech files, scene annotations,
held-out wording for validation, festival only for the test set, determinism and the TTS cache."""

import json
from pathlib import Path

import numpy as np
import pytest
from data_helpers import onset_contrast_db

from star.audio.io import SAMPLE_RATE, load_audio
from star.data import tts
from star.data.build import build_dataset, read_manifest, select_clips
from star.data.corpus import Clip, Corpus, CorpusConfig, load_corpus
from star.errors import StarError

# workers=1 runs in-process; spawning worker processes costs seconds (each imports torch), so only the
# slow determinism test uses the pool, and checks it gives the same bytes as the in-process build.
SMALL = {"renditions": 2, "scene_renditions": 1, "eval_renditions": 1, "scenes": 6, "workers": 1, "progress": False}
SOUND_KEYS = {"id", "audio", "captions", "held_out_captions", "events", "kind", "split", "seconds", "sources"}
PROMPT_KEYS = {"id", "audio", "caption", "events", "kind", "split", "speech", "voice", "engine", "params",
               "augment", "speech_seconds", "sound_id"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from data_helpers import MINI

    out = tmp_path_factory.mktemp("build") / "out"
    assert build_dataset(MINI, out, seed=0, **SMALL) == out
    return out


def test_layout_and_schema(built):
    for name in ("sounds.jsonl", "prompts.jsonl", "vocab.json", "build.json"):
        assert (built / name).is_file()
    sounds, prompts = read_manifest(built / "sounds.jsonl"), read_manifest(built / "prompts.jsonl")
    assert json.loads((built / "vocab.json").read_text()) == load_corpus(
        Path(__file__).parents[1] / "fixtures" / "esc10_mini").vocab
    assert {s["kind"] for s in sounds} >= {"single"} and len([s for s in sounds if s["kind"] != "single"]) == 6
    assert {s["split"] for s in sounds} == {"train", "validation"}
    for s in sounds:
        assert SOUND_KEYS <= set(s), s["id"]
        assert Path(s["audio"]).is_file()
        assert s["kind"] in {"single", "overlay", "sequence", "repeat"}
        assert s["captions"] and s["held_out_captions"] and not set(s["captions"]) & set(s["held_out_captions"])
        for e in s["events"]:
            assert set(e) == {"category", "onset", "offset"}
            assert 0 <= e["onset"] < e["offset"] <= s["seconds"] + 1e-3
    raw = [json.loads(line) for line in (built / "prompts.jsonl").read_text().splitlines()]
    assert all(not Path(r["speech"]).is_absolute() and r["speech"].startswith("speech/") for r in raw)
    by_id = {s["id"]: s for s in sounds}
    for p in prompts:
        assert PROMPT_KEYS <= set(p), p["id"]
        sound = by_id[p["sound_id"]]
        assert p["audio"] == sound["audio"] and p["events"] == sound["events"] and p["kind"] == sound["kind"]
        assert p["split"] == sound["split"]
        if p["split"] == "train":
            assert p["caption"] in sound["captions"]
        else:
            assert p["caption"] in sound["held_out_captions"] and p["augment"] == {}
        assert p["voice"].startswith(p["engine"] + ":") and p["engine"] in ("espeak", "flite")


def test_speech_files_decode_are_not_silent_and_come_from_two_engines(built):
    prompts = read_manifest(built / "prompts.jsonl")
    assert len({p["engine"] for p in prompts}) >= 2
    for p in prompts:
        wav = load_audio(p["speech"])  # raises on silence or a broken file
        assert abs(len(wav) / SAMPLE_RATE - p["speech_seconds"]) < 0.01
        assert 0.3 < p["speech_seconds"] < 6.0


def test_scene_files_have_annotations_on_the_audio(built):
    scenes = [s for s in read_manifest(built / "sounds.jsonl") if s["kind"] != "single"]
    for s in scenes:
        wav = load_audio(s["audio"])
        assert abs(len(wav) / SAMPLE_RATE - s["seconds"]) < 0.01 and np.max(np.abs(wav)) < 0.9
        if s["kind"] in ("sequence", "repeat"):
            for e in s["events"]:
                assert onset_contrast_db(wav, e["onset"]) > 15.0, (s["id"], e)


@pytest.mark.slow
def test_deterministic_given_seed_and_independent_of_workers(built, tmp_path):
    from data_helpers import MINI

    again = build_dataset(MINI, tmp_path / "again", seed=0, **{**SMALL, "workers": 2})
    for name in ("sounds.jsonl", "prompts.jsonl"):
        assert (again / name).read_text() == (built / name).read_text()
    for rel in [p["speech"] for p in read_manifest(again / "prompts.jsonl", resolve=False)][:5]:
        assert (again / rel).read_bytes() == (built / rel).read_bytes()
    scene = next(s for s in read_manifest(again / "sounds.jsonl", resolve=False) if s["kind"] != "single")
    assert (again / scene["audio"]).read_bytes() == (built / scene["audio"]).read_bytes()
    other = build_dataset(MINI, tmp_path / "other", seed=1, **SMALL)
    assert (other / "prompts.jsonl").read_text() != (built / "prompts.jsonl").read_text()


def test_rerun_reuses_the_tts_cache(mini_corpus_copy, tmp_path, monkeypatch):
    opts = {**SMALL, "scenes": 2, "renditions": 1}
    build_dataset(mini_corpus_copy, tmp_path / "o", **opts)

    def boom(*_a, **_k):
        raise AssertionError("re-synthesised")

    monkeypatch.setattr(tts, "synthesize_raw", boom)
    build_dataset(mini_corpus_copy, tmp_path / "o", **opts)


@pytest.mark.skipif(tts.shutil.which("text2wave") is None, reason="festival not installed")
def test_festival_builds_only_the_held_out_test_set(tmp_path):
    from data_helpers import MINI

    out = build_dataset(MINI, tmp_path / "fest", voices=["festival"], **{**SMALL, "scenes": 3})
    sounds, prompts = read_manifest(out / "sounds.jsonl"), read_manifest(out / "prompts.jsonl")
    assert {s["split"] for s in sounds} == {"validation"}
    assert prompts and {p["engine"] for p in prompts} == {"festival"} and {p["split"] for p in prompts} == {"test"}
    by_id = {s["id"]: s for s in sounds}
    assert all(p["caption"] in by_id[p["sound_id"]]["held_out_captions"] for p in prompts)
    assert all(p["augment"] == {} for p in prompts)


def test_training_build_never_uses_festival(built):
    assert not any(p["engine"] == "festival" for p in read_manifest(built / "prompts.jsonl"))
    with pytest.raises(StarError, match="held out"):
        build_dataset(Path("/nonexistent"), Path("/tmp/x"), voices=["espeak", "festival"])


def test_bad_corpus_is_a_star_error(tmp_path):
    with pytest.raises(StarError, match="not found"):
        build_dataset(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "meta.csv").write_text("filename,fold,category\n")
    with pytest.raises(StarError, match="no clips"):
        build_dataset(tmp_path / "c", tmp_path / "out")


def test_limit_is_balanced_over_categories_and_keeps_validation():
    cats = [f"c{i}" for i in range(10)]
    clips = [Clip(f"{f}-{c}-{k}", Path(f"/x/{f}-{c}-{k}.ogg"), c, str(f)) for c in cats for f in (1, 2, 3, 4)
             for k in range(8)]
    corpus = Corpus(Path("/x"), clips, CorpusConfig())
    chosen = select_clips(corpus, 40, seed=0)
    assert len(chosen) == 40
    for c in cats:
        mine = [x for x in chosen if x.category == c]
        assert len(mine) == 4 and sum(corpus.split_of(x) == "validation" for x in mine) == 1
    assert select_clips(corpus, 40, seed=0) == chosen and select_clips(corpus, 40, seed=1) != chosen
    assert len(select_clips(corpus, 7, seed=0)) == 7 and len({x.category for x in select_clips(corpus, 7, 0)}) == 7


def test_short_scenes_remix_every_scene_within_the_cap_and_keep_its_prompts(built, tmp_path):
    from data_helpers import MINI

    from star.data.short_scenes import build as short_scenes

    out = short_scenes(built, MINI, tmp_path / "short", max_seconds=3.0, mixes=2)
    old_sounds, new_sounds = read_manifest(built / "sounds.jsonl"), read_manifest(out / "sounds.jsonl")
    scenes = {s["id"]: s for s in old_sounds if s["kind"] != "single"}
    remixed = {s["id"]: s for s in new_sounds if "-short" in s["id"]}
    assert len(new_sounds) == len(old_sounds) + 2 * len(scenes) and len(remixed) == 2 * len(scenes)
    for sid, old in scenes.items():
        first, second = remixed[f"{sid}-short0"], remixed[f"{sid}-short1"]
        assert load_audio(first["audio"]).shape != load_audio(second["audio"]).shape or first["events"] != second["events"]
        new = second
        wav = load_audio(new["audio"], SAMPLE_RATE)
        assert len(wav) <= 3 * SAMPLE_RATE and np.abs(wav).max() > 0.01
        assert new["captions"] == old["captions"] and new["sources"] == old["sources"]
        assert max(e["offset"] for e in new["events"]) <= 3.0
        if old["kind"] != "overlay":  # the order the captions speak is kept
            assert [e["category"] for e in new["events"]] == [e["category"] for e in old["events"]]
    old_prompts, new_prompts = read_manifest(built / "prompts.jsonl"), read_manifest(out / "prompts.jsonl")
    added = [p for p in new_prompts if "-short" in p["id"]]
    assert len(added) == 2 * sum(p["sound_id"] in scenes for p in old_prompts)
    for p in added:
        assert Path(p["speech"]).is_file() and p["audio"] == remixed[p["sound_id"]]["audio"]
    with pytest.raises(StarError, match="within 1-10"):
        short_scenes(built, MINI, tmp_path / "bad", max_seconds=0.5)
    with pytest.raises(StarError, match="at least 1"):
        short_scenes(built, MINI, tmp_path / "bad", mixes=0)
    doubled = read_manifest(short_scenes(built, MINI, tmp_path / "doubled", max_seconds=3.0, singles=2) / "sounds.jsonl")
    train_singles = [s for s in old_sounds if s["kind"] == "single" and s["split"] == "train"]
    assert len(doubled) == len(old_sounds) + len(scenes) + len(train_singles) > len(old_sounds) + len(scenes)
    with pytest.raises(StarError, match="not a built dataset"):
        short_scenes(tmp_path, MINI, tmp_path / "bad")
