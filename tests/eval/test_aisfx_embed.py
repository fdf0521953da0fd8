"""The aisfx wrapper: our essentia-style front end, the three patches, and embeddings of real clips."""

import numpy as np
import pytest

from star.eval.aisfx_embed import (
    AISFX_SR,
    N_MELS,
    WINDOW_FRAMES,
    AisfxEmbedder,
    aisfx_spectrogram,
    clip_embedding_from_windows,
    essentia_mel_weights,
    window_centres,
)


@pytest.fixture(scope="module")
def embedder() -> AisfxEmbedder:
    return AisfxEmbedder()


def test_mel_weights_are_unit_sum_triangles():
    w = essentia_mel_weights()
    assert w.shape == (N_MELS, 1025)
    assert np.allclose(w.sum(axis=1), 1.0, atol=1e-5)
    peaks = w.argmax(axis=1)
    assert np.all(np.diff(peaks) >= 0) and peaks[0] < 5 and peaks[-1] > 900  # ordered, spanning 0-22 kHz


def test_spectrogram_frames_and_frequency():
    t = np.arange(AISFX_SR) / AISFX_SR
    tone = 0.5 * np.sin(2 * np.pi * 1000.0 * t)  # 1 s at 44.1 kHz
    spec = aisfx_spectrogram(tone)
    assert spec.shape == (45, N_MELS)  # frames centred at k*1024 while they start inside the clip
    band = int(np.argmax(spec[20]))
    w = essentia_mel_weights()
    assert band == int(np.argmax(w[:, round(1000 / (AISFX_SR / 2048))]))  # the band whose triangle holds 1 kHz
    assert 0.5 < spec.max() <= 1.0  # a loud tone sits near aisfx's normalisation maximum
    assert np.all(aisfx_spectrogram(np.zeros(AISFX_SR)) == 0)  # silence -> 0


def test_band_limit_removes_content_above_8k(embedder):
    t = np.arange(AISFX_SR) / AISFX_SR
    high = 0.5 * np.sin(2 * np.pi * 12_000.0 * t)
    # Away from the clip edges (where the abrupt start/stop is broadband) only the resampler's
    # stop-band residue (about -50 dB) is left; unfiltered, the tone is near full scale.
    assert embedder.spectrogram(high, AISFX_SR)[5:40].max() < 0.15
    assert AisfxEmbedder(band_limit=None).spectrogram(high, AISFX_SR)[5:40].max() > 0.5


def test_real_clips_give_finite_embeddings(embedder, by_category):
    wav = by_category["rooster"]  # 5 s
    frames = embedder.embed_frames(wav, 16_000)
    assert frames.shape == (3, 512) and np.all(np.isfinite(frames))  # blocks at 0, 50, 100 of 217 frames
    clip = embedder.embed(wav, 16_000)
    assert clip.shape == (512,) and np.allclose(clip, frames.mean(axis=0))
    short = embedder.embed(wav[:16_000], 16_000)  # 1 s: padded to one 2.32 s block
    assert short.shape == (512,) and np.all(np.isfinite(short)) and np.abs(short).sum() > 0
    assert embedder.spectrogram(wav[:16_000], 16_000).shape == (WINDOW_FRAMES, N_MELS)
    dense, times = embedder.windows(wav, 16_000, hop_frames=10)
    assert dense.shape == (12, 512) and np.allclose(times, window_centres(12, 10))
    assert np.allclose(clip_embedding_from_windows(dense, 10), clip, atol=1e-5)
    # Different sounds are far apart compared with a clip and its own first half.
    other = embedder.embed(by_category["rain"], 16_000)
    half = embedder.embed(wav[: len(wav) // 2], 16_000)
    assert np.linalg.norm(clip - other) > np.linalg.norm(clip - half)


def test_invalid_audio_is_rejected(embedder):
    from star.errors import AudioError

    with pytest.raises(AudioError):
        embedder.embed(np.array([0.0, np.nan, 0.1], np.float32), 16_000)
    with pytest.raises(ValueError):
        embedder.windows(np.zeros(16_000, np.float32), 16_000, hop_frames=0)
