"""Speech-to-text for the cascaded baseline (ASR -> text encoder): Whisper tiny.en, beam search.

Uses the same bundled CTranslate2 model (and the same loaded instance) as the `whisper-tiny.en` speech
encoder. Decoding is deterministic (temperature 0, no sampling fallback) and has no VAD filter, so the
cascade's latency is the plain cost of recognising the prompt.
"""

from __future__ import annotations

import numpy as np

from star.encoders.speech import check_wavs, load_whisper


class WhisperASR:
    """`transcribe(wav)` -> text, for 16 kHz mono float32 speech."""

    name = "whisper-tiny.en"

    def __init__(
        self, beam_size: int = 5, language: str = "en", vad_filter: bool = False, cpu_threads: int = 1
    ) -> None:
        self.beam_size = beam_size
        self.language = language
        self.vad_filter = vad_filter
        self.cpu_threads = cpu_threads

    def transcribe(self, wav: np.ndarray) -> str:
        """One waveform -> its transcript (stripped; "" when nothing was recognised)."""
        (wav,) = check_wavs([wav], f"ASR {self.name}")
        model = load_whisper(self.cpu_threads)
        segments, _ = model.transcribe(
            wav,
            language=self.language,
            beam_size=self.beam_size,
            vad_filter=self.vad_filter,
            temperature=0.0,
            without_timestamps=True,  # only the text is used; timestamp tokens would cost decode steps
            condition_on_previous_text=False,
        )
        return " ".join(s.text.strip() for s in segments).strip()
