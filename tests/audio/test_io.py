"""Audio loading: every kind of bad input gets a clear AudioError; good input comes out mono 16 kHz."""

import io
import struct

import numpy as np
import pytest
import soundfile as sf

from star.audio import SAMPLE_RATE, MelSpec, load_audio, peak_normalize, write_wav
from star.audio.mel import MelConfig
from star.errors import AudioError


def _wav_bytes(wav: np.ndarray, sr: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wav, sr, subtype=subtype, format=fmt)
    return buf.getvalue()


def _tone(sr: int, seconds: float = 1.0, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("sr", [8000, 16000, 44100, 96000])
def test_resamples_to_model_rate(sr):
    wav = load_audio(_wav_bytes(_tone(sr), sr))
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - SAMPLE_RATE) <= 2


def test_stereo_is_mixed_to_mono():
    left = _tone(16000)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    wav = load_audio(_wav_bytes(stereo, 16000))
    assert wav.ndim == 1
    assert np.allclose(wav, left / 2, atol=1e-3)


@pytest.mark.parametrize("fmt,subtype", [("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_flac_and_ogg(fmt, subtype):
    wav = load_audio(_wav_bytes(_tone(22050), 22050, subtype=subtype, fmt=fmt))
    assert abs(len(wav) - SAMPLE_RATE) < 50 and np.abs(wav).max() > 0.3


def test_path_roundtrip(tmp_path):
    path = write_wav(tmp_path / "sub" / "a.wav", _tone(16000))
    assert np.allclose(load_audio(path), _tone(16000), atol=1e-3)


def test_write_clips_out_of_range(tmp_path):
    path = write_wav(tmp_path / "loud.wav", np.array([2.0, -3.0, 0.5], dtype=np.float32))
    data, _ = sf.read(path)
    assert data.max() <= 1.0 and data.min() >= -1.0


@pytest.mark.parametrize(
    "payload,message",
    [
        (b"", "empty"),
        (b"this is definitely not audio" * 10, "not a readable audio"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "not a readable audio"),  # truncated header
    ],
)
def test_bad_bytes(payload, message):
    with pytest.raises(AudioError, match=message):
        load_audio(payload)


def test_zero_sample_wav():
    with pytest.raises(AudioError, match="no samples|truncated|not a readable"):
        load_audio(_wav_bytes(np.zeros(0, dtype=np.float32), 16000))


def test_truncated_data_chunk():
    data = _wav_bytes(_tone(16000), 16000)
    # Cut the file mid-way: the header promises more samples than exist.
    wav = load_audio(data[: len(data) // 3])
    assert 0 < len(wav) < SAMPLE_RATE


def test_nan_samples():
    bad = _tone(16000)
    bad[100] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        load_audio(_wav_bytes(bad, 16000, subtype="FLOAT"))


def test_silence():
    with pytest.raises(AudioError, match="silent"):
        load_audio(_wav_bytes(np.zeros(16000, dtype=np.float32), 16000))
    assert load_audio(_wav_bytes(np.zeros(16000, dtype=np.float32), 16000), allow_silent=True).max() == 0


def test_lying_two_hour_header_decodes_only_what_is_there():
    # A PCM wav header claiming 2 h of audio, followed by only a few bytes: no 2-hour allocation.
    n_bytes = 2 * 3600 * 16000 * 2
    header = b"RIFF" + struct.pack("<I", 36 + n_bytes) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
    header += b"data" + struct.pack("<I", n_bytes) + struct.pack("<200h", *([3000, -3000] * 100))
    assert len(load_audio(header)) == 200


def test_too_long_is_refused_before_decoding(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, np.full(8000 * 61, 0.1, dtype=np.float32), 8000, subtype="PCM_U8")
    with pytest.raises(AudioError, match="limit is 60 s"):
        load_audio(path, max_seconds=60)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(tmp_path / "nope.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(tmp_path / "empty.wav")


def test_peak_normalize():
    out = peak_normalize(_tone(16000) * 0.1, peak_db=-1.0)
    assert np.isclose(np.abs(out).max(), 10 ** (-1 / 20), atol=1e-4)
    silent = np.zeros(10, dtype=np.float32)
    assert np.array_equal(peak_normalize(silent), silent)


def test_mel_shape_and_frames():
    cfg = MelConfig()
    mel = MelSpec(cfg).of_numpy(_tone(16000, seconds=5.0))
    assert mel.shape == (64, cfg.frames(5.0)) == (64, 313)
    # a 440 Hz tone puts its energy in the low mel bins
    assert mel[:, 100].argmax() < 16


def test_play_at_speed_moves_tempo_and_pitch_together():
    from star.audio.io import play_at_speed

    tone = _tone(SAMPLE_RATE, seconds=2.0, freq=400.0)
    assert np.array_equal(play_at_speed(tone, 1.0), tone)
    for factor in (0.85, 1.15):
        played = play_at_speed(tone, factor)
        assert played.dtype == np.float32
        assert len(played) == pytest.approx(len(tone) / factor, rel=0.01)  # slower is longer
        spectrum = np.abs(np.fft.rfft(played))
        peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(played)
        assert peak_hz == pytest.approx(400.0 * factor, rel=0.01)  # and lower
    with pytest.raises(AudioError, match="positive"):
        play_at_speed(tone, 0.0)


def test_played_length_is_the_length_play_at_speed_returns():
    from star.audio.io import play_at_speed, played_length

    for factor in (0.85, 0.9, 1.0, 1.1, 1.15, 2.0):
        for n in (1, 159, 16000, 32001):
            assert played_length(n, factor) == len(play_at_speed(np.zeros(n, np.float32), factor))
    with pytest.raises(AudioError, match="positive"):
        played_length(100, -1.0)
