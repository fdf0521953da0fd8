"""The one place that turns an encoder name into an encoder; instances are cached per process.

Speech: `whisper-tiny.en` (default), `speech-embedding`, `hf:<id or path>`.
Text: `minilm` (default), `hf:<id or path>`.
ASR (cascade baseline): `whisper-tiny.en`.
Building is cheap; weights load on first use (and the implementation modules are imported only here).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from star.errors import StarError

if TYPE_CHECKING:
    from star.encoders.asr import WhisperASR
    from star.encoders.speech import SpeechEncoder
    from star.encoders.text import TextEncoder

DEFAULT_SPEECH_ENCODER = "whisper-tiny.en"
DEFAULT_TEXT_ENCODER = "minilm"
DEFAULT_ASR = "whisper-tiny.en"
HF_PREFIX = "hf:"
_HF_HINT = f"{HF_PREFIX}<id or path>"

_CACHE: dict[tuple[str, str], object] = {}
_LOCK = threading.Lock()


def _speech_factories() -> dict[str, Callable[[], SpeechEncoder]]:
    from star.encoders import speech

    return {
        speech.WHISPER_NAME: speech.WhisperTinyEncoder,
        speech.SPEECH_EMBEDDING_NAME: speech.SpeechEmbeddingEncoder,
    }


def _text_factories() -> dict[str, Callable[[], TextEncoder]]:
    from star.encoders import text

    return {text.MINILM_NAME: text.MiniLMTextEncoder}


def speech_encoder_names() -> list[str]:
    return [*_speech_factories(), _HF_HINT]


def text_encoder_names() -> list[str]:
    return [*_text_factories(), _HF_HINT]


def _build(
    kind: str, name: str, factories: dict[str, Callable[[], object]], hf: Callable[[str], object] | None
):
    if not isinstance(name, str) or not name:
        raise StarError(f"{kind} name must be a non-empty string")
    key = (kind, name)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        if hf is not None and name.startswith(HF_PREFIX) and len(name) > len(HF_PREFIX):
            built = hf(name[len(HF_PREFIX) :])
        elif name in factories:
            built = factories[name]()
        else:
            valid = ", ".join([*factories, *([_HF_HINT] if hf is not None else [])])
            raise StarError(f"unknown {kind} {name!r}; valid: {valid}")
        _CACHE[key] = built
        return built


def build_speech_encoder(name: str = DEFAULT_SPEECH_ENCODER) -> SpeechEncoder:
    """Name -> SpeechEncoder; the same instance is returned for the same name within a process."""
    from star.encoders import speech

    return _build("speech encoder", name, _speech_factories(), speech.HFSpeechEncoder)


def build_text_encoder(name: str = DEFAULT_TEXT_ENCODER) -> TextEncoder:
    """Name -> TextEncoder; the same instance is returned for the same name within a process."""
    from star.encoders import text

    return _build("text encoder", name, _text_factories(), text.HFTextEncoder)


def build_asr(name: str = DEFAULT_ASR) -> WhisperASR:
    """Name -> ASR with `transcribe(wav) -> str` (cascade baseline), cached like the encoders."""
    from star.encoders import asr

    return _build("ASR", name, {asr.WhisperASR.name: asr.WhisperASR}, None)
