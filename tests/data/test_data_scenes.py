"""Scenes: annotations inside bounds and on the audible sound, no clipping, captions in event order."""

import numpy as np
import pytest
from data_helpers import SAMPLE_RATE, first_loud_time, onset_contrast_db

from star.data.activity import frame_db
from star.data.captions import default_captions
from star.data.scenes import SceneConfig, SceneSpec, Source, compose, sample_spec

CFG = SceneConfig()
SEEDS = range(40)


def _by_category(sources):
    out = {}
    for s in sources.values():
        out.setdefault(s.category, []).append(s.id)
    return out


def _scene(sources, seed, kind=None):
    rng = np.random.default_rng(seed)
    spec = sample_spec(_by_category(sources), rng, CFG)
    if kind is not None:
        while spec.kind != kind:
            spec = sample_spec(_by_category(sources), rng, CFG)
    return compose(spec, sources, rng, CFG)


def _tone_source(name, before, tone, after, db=-20.0, freq=440.0):
    t = np.arange(int(tone * SAMPLE_RATE)) / SAMPLE_RATE
    burst = (10 ** (db / 20) * np.sqrt(2) * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    wav = np.concatenate([np.zeros(int(before * SAMPLE_RATE), np.float32), burst,
                          np.zeros(int(after * SAMPLE_RATE), np.float32)])
    return Source(name, name, wav)


@pytest.mark.parametrize("seed", SEEDS)
def test_scene_bounds_levels_and_stems(mini_sources, seed):
    scene = _scene(mini_sources, seed)
    assert CFG.min_seconds - 1e-3 <= scene.seconds <= CFG.max_seconds + 1e-3
    assert np.all(np.isfinite(scene.wav))
    assert float(np.max(np.abs(scene.wav))) <= CFG.peak + 1e-6 < 1.0  # no clipping
    assert np.allclose(np.sum(scene.stems, axis=0), scene.wav, atol=1e-5)
    assert [e.onset for e in scene.events] == sorted(e.onset for e in scene.events)
    for stem, ev in zip(scene.stems, scene.events):
        assert 0.0 <= ev.onset < ev.offset <= scene.seconds + 1e-6
        i, j = round(ev.onset * SAMPLE_RATE), round(ev.offset * SAMPLE_RATE)
        assert not np.any(stem[:i]) and not np.any(stem[j:]), "sound outside its annotation"
        # The annotation starts and ends on audible sound (sources were trimmed before placing).
        db = frame_db(stem[i:j])
        assert db[:3].max() > db.max() - 35 and db[-3:].max() > db.max() - 35


@pytest.mark.parametrize("seed", SEEDS)
def test_every_audible_frame_is_annotated(mini_sources, seed):
    scene = _scene(mini_sources, seed)
    db = frame_db(scene.wav)
    loud = np.flatnonzero(db > db.max() - 40)
    covered = np.zeros(len(db), bool)
    for e in scene.events:
        covered[max(0, int(e.onset * 100) - 2) : int(e.offset * 100) + 1] = True
    assert covered[loud].all(), f"audible frames outside every event in a {scene.kind} scene"
    assert abs(first_loud_time(scene.wav) - scene.events[0].onset) <= 0.03


@pytest.mark.parametrize("kind", ["sequence", "repeat"])
@pytest.mark.parametrize("seed", range(12))
def test_onsets_match_where_the_audio_gets_loud(mini_sources, kind, seed):
    scene = _scene(mini_sources, seed, kind)
    for ev in scene.events:
        # Silence (the gap) before each onset, sound right after it.
        assert onset_contrast_db(scene.wav, ev.onset) > 20.0, (scene.kind, ev)
    for a, b in zip(scene.events, scene.events[1:]):
        gap = b.onset - a.offset
        assert CFG.gap_seconds[0] - 0.01 <= gap <= CFG.gap_seconds[1] + 0.01


@pytest.mark.parametrize("seed", range(12))
def test_sequence_caption_order_matches_events(mini_sources, seed):
    scene = _scene(mini_sources, seed, "sequence")
    assert scene.caption_categories == [e.category for e in scene.events]
    cap = default_captions()
    for caption in cap.scene_captions("sequence", scene.caption_categories):
        pos = [min(caption.find(p) for p in (cap.phrase(e.category).noun, cap.phrase(e.category).clause)
                   if p in caption) for e in scene.events]
        assert pos == sorted(pos), caption


@pytest.mark.parametrize("seed", range(12))
def test_overlay_foreground_sits_inside_background(mini_sources, seed):
    scene = _scene(mini_sources, seed, "overlay")
    fore = scene.caption_categories[0]
    fore_ev = next(e for e in scene.events if e.category == fore)
    back_ev = max((e for e in scene.events if e.category != fore), key=lambda e: e.offset - e.onset)
    assert back_ev.onset - 1e-6 <= fore_ev.onset and fore_ev.offset <= back_ev.offset + 1e-6


def test_hand_computable_repeat():
    src = _tone_source("beep", before=1.0, tone=0.5, after=1.0)
    scene = compose(SceneSpec("repeat", ["beep"], times=3), {"beep": src}, np.random.default_rng(0), CFG)
    assert [e.category for e in scene.events] == ["beep"] * 3
    for e in scene.events:
        assert abs((e.offset - e.onset) - 0.5) <= 0.02  # silence around the tone was trimmed away
    assert CFG.lead_seconds[0] <= scene.events[0].onset <= CFG.lead_seconds[1]


def test_sources_are_loudness_normalised():
    quiet = _tone_source("quiet", 0.2, 1.0, 0.2, db=-45.0)
    loud = _tone_source("loud", 0.2, 1.0, 0.2, db=-3.0, freq=880.0)
    cfg = SceneConfig(gain_jitter_db=0.0)
    scene = compose(SceneSpec("sequence", ["quiet", "loud"]), {"quiet": quiet, "loud": loud},
                    np.random.default_rng(0), cfg)
    levels = [frame_db(s[int(e.onset * SAMPLE_RATE): int(e.offset * SAMPLE_RATE)]).mean()
              for s, e in zip(scene.stems, scene.events)]
    assert abs(levels[0] - levels[1]) < 1.0
    assert abs(levels[0] - cfg.target_rms_db) < 1.5


def test_deterministic_given_seed(mini_sources):
    a, b, c = _scene(mini_sources, 7), _scene(mini_sources, 7), _scene(mini_sources, 8)
    assert np.array_equal(a.wav, b.wav) and a.events == b.events
    assert not (len(a.wav) == len(c.wav) and np.array_equal(a.wav, c.wav))


def test_silent_source_is_rejected():
    silent = Source("s", "s", np.zeros(SAMPLE_RATE, np.float32))
    with pytest.raises(ValueError, match="silent"):
        compose(SceneSpec("repeat", ["s"], 2), {"s": silent}, np.random.default_rng(0), CFG)
