"""Frozen encoders: speech (frames), text (tokens, sentence embeddings), ASR for the cascade, feature cache.

Importing this package is cheap: heavy runtimes (transformers, CTranslate2, TFLite) load on first use.
"""

from star.encoders.builders import (
    DEFAULT_ASR,
    DEFAULT_SPEECH_ENCODER,
    DEFAULT_TEXT_ENCODER,
    build_asr,
    build_speech_encoder,
    build_text_encoder,
    speech_encoder_names,
    text_encoder_names,
)

__all__ = [
    "DEFAULT_ASR",
    "DEFAULT_SPEECH_ENCODER",
    "DEFAULT_TEXT_ENCODER",
    "build_asr",
    "build_speech_encoder",
    "build_text_encoder",
    "speech_encoder_names",
    "text_encoder_names",
]
