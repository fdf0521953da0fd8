"""Feature cache: round trip, no re-encoding on a hit, invalidation on change, manifest helper."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from star.encoders import build_speech_encoder
from star.encoders.cache import FeatureCache, encode_manifest
from star.errors import StarError


class CountingEncoder:
    """Wraps a real encoder and counts how many waveforms it was asked to encode."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.dim, self.calls = inner, inner.name, inner.dim, 0

    def encode(self, wavs):
        self.calls += len(wavs)
        return self.inner.encode(wavs)


@pytest.fixture()
def encoder() -> CountingEncoder:
    return CountingEncoder(build_speech_encoder("whisper-tiny.en"))


@pytest.fixture()
def clips(speech_dir: Path, tmp_path: Path) -> list[Path]:
    out = []
    for name in ("dog", "rain"):
        shutil.copy(speech_dir / f"{name}.wav", tmp_path / f"{name}.wav")
        out.append(tmp_path / f"{name}.wav")
    return out


def test_round_trip_and_no_reencode(encoder: CountingEncoder, clips: list[Path], tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache", encoder.name)
    first = cache.get_or_encode(clips, encoder, batch_size=1, progress=False)
    assert encoder.calls == 2
    second = cache.get_or_encode(clips, encoder, progress=False)
    assert encoder.calls == 2  # all hits
    direct = [encoder.inner.encode_one(w) for w in map(_load, clips)]
    for a, b, d in zip(first, second, direct, strict=True):
        assert a.dtype == np.float16 and a.shape == d.shape and a.shape[1] == 384
        assert np.array_equal(a, b)
        assert np.allclose(a.astype(np.float32), d, atol=1e-2, rtol=1e-2)


def test_changed_file_is_reencoded(encoder: CountingEncoder, clips: list[Path], tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache", encoder.name)
    cache.get_or_encode(clips, encoder, progress=False)
    st = clips[0].stat()
    os.utime(clips[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    cache.get_or_encode(clips, encoder, progress=False)
    assert encoder.calls == 3
    assert cache.get(clips[1]) is not None and cache.get(tmp_path / "dog.wav") is not None


def test_other_encoder_name_misses(clips: list[Path], tmp_path: Path) -> None:
    a, b = FeatureCache(tmp_path, "whisper-tiny.en"), FeatureCache(tmp_path, "hf:org/model")
    assert a.file_for(clips[0]) != b.file_for(clips[0])
    assert b.dir.name == "hf_org_model"


def test_encoder_name_mismatch(encoder: CountingEncoder, clips: list[Path], tmp_path: Path) -> None:
    with pytest.raises(StarError, match="speech-embedding"):
        FeatureCache(tmp_path, "speech-embedding").get_or_encode(clips, encoder, progress=False)


def test_encode_manifest(encoder: CountingEncoder, clips: list[Path], tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    rows = [
        {"id": "a", "speech": "dog.wav"},
        {"id": "b", "text": "x"},
        {"id": "c", "speech": "rain.wav"},
        {"id": "d", "speech": "dog.wav"},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    files = encode_manifest(manifest, encoder, tmp_path / "cache", progress=False)
    assert set(files) == {"dog.wav", "rain.wav"} and encoder.calls == 2
    assert np.load(files["dog.wav"]).shape[1] == 384
    encode_manifest(manifest, encoder, tmp_path / "cache", progress=False)
    assert encoder.calls == 2


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StarError, match="no such speech file"):
        FeatureCache(tmp_path, "whisper-tiny.en").file_for(tmp_path / "nope.wav")


def _load(path: Path) -> np.ndarray:
    from star.audio import load_audio

    return load_audio(path)
