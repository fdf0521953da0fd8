"""Built-in speech encoders on real synthesised speech: shapes, masks, batch-vs-single, short input, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from star.encoders import build_speech_encoder
from star.encoders.speech import SpeechEncoder
from star.errors import StarError

# name -> (dim, frames per second)
BUILTIN = {"whisper-tiny.en": (384, 50.0), "speech-embedding": (96, 12.5)}


@pytest.fixture(scope="module", params=list(BUILTIN))
def encoder(request) -> SpeechEncoder:
    return build_speech_encoder(request.param)


@pytest.fixture(scope="module")
def whisper() -> SpeechEncoder:
    return build_speech_encoder("whisper-tiny.en")


def test_builder_caches_instance(encoder: SpeechEncoder) -> None:
    assert build_speech_encoder(encoder.name) is encoder
    assert (encoder.dim, encoder.frame_rate) == BUILTIN[encoder.name]


def test_shapes_and_mask(encoder: SpeechEncoder, dog_wav: np.ndarray, rain_wav: np.ndarray) -> None:
    frames, mask = encoder.encode([dog_wav, rain_wav])
    t = [encoder.num_frames(dog_wav.size), encoder.num_frames(rain_wav.size)]
    assert frames.shape == (2, max(t), encoder.dim) and frames.dtype == torch.float32
    assert mask.dtype == torch.bool and mask.sum(1).tolist() == t
    assert torch.all(frames[~mask] == 0)
    assert frames[mask].abs().mean() > 0.01  # real features, not zeros
    # the frame count follows the frame rate (the window of speech-embedding loses ~0.7 s)
    assert abs(t[1] - rain_wav.size / 16000 * encoder.frame_rate) <= 10


def test_batch_matches_single(encoder: SpeechEncoder, dog_wav: np.ndarray, rain_wav: np.ndarray) -> None:
    half = dog_wav[: dog_wav.size // 2]
    items = [dog_wav, rain_wav, half, dog_wav]
    batch, mask = encoder.encode(items)
    for i, w in enumerate(items):
        single = torch.from_numpy(encoder.encode_one(w))
        n = int(mask[i].sum())
        assert n == single.shape[0]
        assert torch.allclose(batch[i, :n], single, atol=1e-3), i


def test_different_speech_gives_different_features(encoder: SpeechEncoder, dog_wav, rain_wav) -> None:
    a = encoder.encode_one(dog_wav).mean(0)
    b = encoder.encode_one(rain_wav).mean(0)
    assert np.abs(a - b).mean() > 0.01 * np.abs(a).mean()


def test_very_short_input_is_padded(encoder: SpeechEncoder) -> None:
    frames, mask = encoder.encode([np.full(10, 0.01, np.float32)])
    assert frames.shape == (1, 1, encoder.dim) and mask.all() and torch.isfinite(frames).all()


def test_whisper_two_seconds_gives_100_frames(whisper: SpeechEncoder, dog_wav: np.ndarray) -> None:
    wav = np.concatenate([dog_wav, np.zeros(32000 - dog_wav.size, np.float32)])
    frames, mask = whisper.encode([wav])
    assert frames.shape == (1, 100, 384) and mask.all()


def test_whisper_longer_than_30s(whisper: SpeechEncoder, dog_wav: np.ndarray) -> None:
    wav = np.resize(dog_wav, 31 * 16000)  # the CTranslate2 encoder alone rejects > 30 s
    frames, mask = whisper.encode([wav])
    assert frames.shape == (1, 1550, 384) and mask.all()
    # the first piece is the first 30 s (up to the log-mel's clip-level normalisation)
    a, b = frames[0, :1500].numpy(), whisper.encode_one(wav[: 30 * 16000])
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.99


@pytest.mark.parametrize(
    "bad",
    [
        [],
        np.zeros(16000, np.float32),
        [np.zeros(0, np.float32)],
        [np.zeros((2, 100), np.float32)],
        [np.full(100, np.nan, np.float32)],
    ],
)
def test_invalid_input(whisper: SpeechEncoder, bad) -> None:
    with pytest.raises(StarError):
        whisper.encode(bad)


def test_unknown_speech_encoder_lists_valid_names() -> None:
    with pytest.raises(StarError, match="whisper-tiny.en.*speech-embedding"):
        build_speech_encoder("hubert-xxl")


def test_played_at_speed_hears_the_resampled_speech_and_is_cached_apart(whisper, dog_wav, tmp_path) -> None:
    import soundfile as sf

    from star.audio.io import play_at_speed
    from star.encoders.cache import FeatureCache
    from star.encoders.speech import PlayedAtSpeed

    slow = PlayedAtSpeed(whisper, 0.85)
    assert slow.name == "whisper-tiny.en@x0.85" and (slow.dim, slow.frame_rate) == (whisper.dim, whisper.frame_rate)
    frames = slow.encode_one(dog_wav)
    assert np.array_equal(frames, whisper.encode_one(play_at_speed(dog_wav, 0.85)))
    assert len(frames) == slow.num_frames(len(dog_wav)) > whisper.num_frames(len(dog_wav))  # 15 % longer
    path = tmp_path / "dog.wav"
    sf.write(path, dog_wav, 16000)
    assert FeatureCache(tmp_path, slow.name).file_for(path) != FeatureCache(tmp_path, whisper.name).file_for(path)
