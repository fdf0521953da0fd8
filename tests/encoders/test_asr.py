"""Whisper tiny.en ASR (cascade baseline) on real synthesised speech."""

from __future__ import annotations

import numpy as np
import pytest

from star.encoders import build_asr
from star.encoders.asr import WhisperASR
from star.errors import StarError


def test_transcribes_spoken_caption(dog_wav: np.ndarray) -> None:
    asr = build_asr()
    assert isinstance(asr, WhisperASR) and asr.beam_size == 5 and asr is build_asr("whisper-tiny.en")
    text = asr.transcribe(dog_wav)
    assert "dog" in text.lower(), text


def test_rejects_bad_input() -> None:
    with pytest.raises(StarError):
        WhisperASR().transcribe(np.zeros(0, np.float32))


@pytest.mark.parametrize("name", ["whisper-large", "hf:openai/whisper-tiny"])
def test_unknown_asr(name: str) -> None:
    with pytest.raises(StarError, match="whisper-tiny.en"):
        build_asr(name)
