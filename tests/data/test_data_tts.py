"""TTS: voice selection (festival held out), synthesis per engine, VAD trimming, cache."""

import numpy as np
import pytest

from star.audio.io import SAMPLE_RATE
from star.data import tts
from star.data.tts import Rendition, Voice
from star.errors import StarError

needs = {e: pytest.mark.skipif(not tts.engine_installed(e), reason=f"{e} not installed") for e in tts.ENGINES}


def test_default_voices_never_include_festival_or_optional_engines():
    voices = tts.default_voices()
    assert {v.engine for v in voices} == {"espeak", "flite"}
    assert tts.resolve_voices(["freetts"]) == [Voice("freetts", "kevin16")]
    assert tts.resolve_voices(["pico"]) == [Voice("pico", "en-US"), Voice("pico", "en-GB")]
    assert not tts.is_held_out(tts.resolve_voices(["freetts", "flite"]))
    assert tts.resolve_voices(None) == voices and tts.resolve_voices([]) == voices
    assert not tts.is_held_out(voices)
    assert len([v for v in voices if v.engine == "espeak"]) == len(tts.ESPEAK_ACCENTS) * len(tts.ESPEAK_VARIANTS)


def test_festival_selects_only_festival_and_cannot_be_mixed():
    fest = tts.resolve_voices(["festival"])
    assert {v.engine for v in fest} == {"festival"} and len(fest) == 3 and tts.is_held_out(fest)
    assert tts.resolve_voices(["festival:ked"]) == [Voice("festival", "ked_diphone")]
    with pytest.raises(StarError, match="held out"):
        tts.resolve_voices(["espeak", "festival"])
    with pytest.raises(StarError, match="held out"):
        tts.resolve_voices(["flite:slt", "festival:ked"])


def test_voice_selectors():
    assert tts.resolve_voices(["flite:slt"]) == [Voice("flite", "slt")]
    gb = tts.resolve_voices(["espeak:en-gb"])
    assert len(gb) == len(tts.ESPEAK_VARIANTS) and all(v.name.startswith("en-gb+") for v in gb)
    assert tts.resolve_voices(["espeak:en-gb+m3"]) == [Voice("espeak", "en-gb+m3")]
    for bad in (["mbrola"], ["flite:nobody"], ["espeak:fr"]):
        with pytest.raises(StarError, match="unknown"):
            tts.resolve_voices(bad)


def test_plan_renditions_alternates_engines_and_varies_voices():
    rng = np.random.default_rng(0)
    plan = tts.plan_renditions(tts.default_voices(), 10, rng)
    engines = [r.voice.engine for r in plan]
    assert engines.count("espeak") == engines.count("flite") == 5
    flite = [r.voice for r in plan if r.voice.engine == "flite"]
    assert len(set(flite)) == 5  # all five flite voices before any repeats
    fest = tts.plan_renditions(tts.resolve_voices(["festival"]), 3, np.random.default_rng(1))
    assert len({r.voice for r in fest}) == 3 and all(r.params == () for r in fest)
    again = tts.plan_renditions(tts.default_voices(), 10, np.random.default_rng(0))
    assert again == plan


def test_flite_pitch_is_drawn_only_when_asked():
    plain = tts.plan_renditions(tts.default_voices(), 10, np.random.default_rng(0))
    assert all("pitch" not in dict(r.params) for r in plain if r.voice.engine == "flite")
    pitched = tts.plan_renditions(tts.resolve_voices(["flite"]), 40, np.random.default_rng(0), flite_pitch=(80, 90))
    assert all(80 <= dict(r.params)["pitch"] <= 90 for r in pitched)


def median_f0(wav: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Median autocorrelation pitch (50-400 Hz) of the loud 40 ms frames."""
    n, out = int(0.04 * sr), []
    for s in range(0, len(wav) - n, n // 2):
        x = wav[s : s + n] - wav[s : s + n].mean()
        if np.sqrt(np.mean(x**2)) < 0.05 * np.max(np.abs(wav)):
            continue
        ac = np.correlate(x, x, "full")[n - 1 :]
        lo, hi = sr // 400, sr // 50
        out.append(sr / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(out))


@needs["flite"]
def test_flite_pitch_moves_the_voice():
    low = tts.synthesize("a dog is barking loudly", Rendition(Voice("flite", "kal16"), (("pitch", 80),)))
    high = tts.synthesize("a dog is barking loudly", Rendition(Voice("flite", "kal16"), (("pitch", 170),)))
    assert 65 < median_f0(low) < 100 and 140 < median_f0(high) < 200


@pytest.mark.parametrize("engine, voice, params", [
    pytest.param("espeak", "en-gb-scotland+f2", (("pitch", 60), ("speed", 150)), marks=needs["espeak"]),
    pytest.param("flite", "slt", (("stretch", 1.1),), marks=needs["flite"]),
    pytest.param("festival", "ked_diphone", (), marks=needs["festival"]),
    pytest.param("freetts", "kevin16", (("speed", 1.1),), marks=needs["freetts"]),
    pytest.param("pico", "en-GB", (("pitch", 80), ("rate", 110)), marks=needs["pico"]),
])
def test_synthesis_is_16k_trimmed_and_not_silent(tmp_path, engine, voice, params):
    r = Rendition(Voice(engine, voice), params)
    raw, sr = tts.synthesize_raw("a dog is barking", r)
    wav = tts.synthesize("a dog is barking", r, cache_dir=tmp_path)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert 0.5 < len(wav) / SAMPLE_RATE < 3.0
    assert len(wav) / SAMPLE_RATE <= len(raw) / sr + 1e-3
    assert float(np.max(np.abs(wav))) > 0.05
    assert len(list(tmp_path.rglob("*.wav"))) == 1


@needs["espeak"]
def test_cache_hit_does_not_synthesise_again(tmp_path, monkeypatch):
    r = Rendition(Voice("espeak", "en-us+m3"), (("pitch", 50), ("speed", 160)))
    first = tts.synthesize("a clock is ticking", r, cache_dir=tmp_path)

    def boom(*_a, **_k):
        raise AssertionError("synthesised again despite the cache")

    monkeypatch.setattr(tts, "synthesize_raw", boom)
    assert np.array_equal(tts.synthesize("a clock is ticking", r, cache_dir=tmp_path), first)
    other = Rendition(Voice("espeak", "en-us+m3"), (("pitch", 51), ("speed", 160)))
    assert tts.cache_key("a clock is ticking", other) != tts.cache_key("a clock is ticking", r)


@needs["espeak"]
def test_vad_trims_padding_to_a_small_margin():
    speech, sr = tts.synthesize_raw("a rooster is crowing", Rendition(Voice("espeak", "en-us+m1")))
    speech = tts.prepare_waveform(speech, sr)
    pad = np.zeros(SAMPLE_RATE, np.float32)
    noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32) * 1e-4
    padded = np.concatenate([pad + noise, speech, pad + noise])
    trimmed, how = tts.vad_trim(padded, margin=0.1)
    assert how == "vad"
    assert len(speech) - 0.3 * SAMPLE_RATE < len(trimmed) < len(speech) + 0.3 * SAMPLE_RATE


def test_vad_falls_back_to_energy_when_it_hears_no_speech():
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    tone = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    wav = np.concatenate([np.zeros(SAMPLE_RATE, np.float32), tone, np.zeros(SAMPLE_RATE, np.float32)])
    trimmed, how = tts.vad_trim(wav, margin=0.05)
    assert how == "energy"
    assert abs(len(trimmed) - (len(tone) + 0.1 * SAMPLE_RATE)) < 0.03 * SAMPLE_RATE
    assert tts.vad_trim(np.zeros(SAMPLE_RATE, np.float32))[1] == "none"


@needs["freetts"]
def test_freetts_speed_and_batched_cache(tmp_path, monkeypatch):
    texts = ["a dog is barking", "the rain is falling on the roof", "a clock ticks"]
    slow, fast = (Rendition(Voice("freetts", "kevin16"), (("speed", s),)) for s in (0.85, 1.15))
    ratio = len(tts.synthesize(texts[1], slow)) / len(tts.synthesize(texts[1], fast))
    assert 1.2 < ratio < 1.5  # 1.15 / 0.85 = 1.35: played slower is longer
    alone = tts.synthesize(texts[0], slow, cache_dir=tmp_path / "alone")
    assert tts.prefill_cache([(t, slow) for t in texts], tmp_path / "batch") == 3
    assert tts.prefill_cache([(t, slow) for t in texts], tmp_path / "batch") == 0  # all cached now

    def boom(*_a, **_k):
        raise AssertionError("synthesised again despite the prefilled cache")

    monkeypatch.setattr(tts, "synthesize_raw", boom)
    batched = [tts.synthesize(t, slow, cache_dir=tmp_path / "batch") for t in texts]
    assert np.array_equal(batched[0], alone)  # one Java process per text or per batch: the same audio
    assert len(batched[1]) > len(batched[2])


@needs["pico"]
def test_pico_rate_and_pitch():
    text = "the rain is falling on the roof"
    voice = Voice("pico", "en-US")
    slow, fast = (tts.synthesize(text, Rendition(voice, (("pitch", 100), ("rate", r)))) for r in (80, 125))
    assert 1.3 < len(slow) / len(fast) < 1.8  # rate is a percentage of the voice's own: 125 / 80 = 1.56
    low, high = (tts.synthesize(text, Rendition(voice, (("pitch", p), ("rate", 100)))) for p in (60, 140))
    assert 1.9 < median_f0(high) / median_f0(low) < 2.8  # 140 / 60 = 2.33
    draws = [dict(tts.sample_rendition(voice, np.random.default_rng(i)).params) for i in range(50)]
    assert all(80 <= d["rate"] <= 125 and 60 <= d["pitch"] <= 140 for d in draws)


def test_a_missing_engine_names_its_install_command(monkeypatch):
    monkeypatch.setattr(tts, "engine_installed", lambda engine: engine != "pico")
    with pytest.raises(StarError, match="pip install ttspico"):
        tts.check_engines([Voice("pico", "en-US"), Voice("espeak", "en-us+m1")])
