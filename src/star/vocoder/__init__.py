"""Vocoders: log-mel [b, 64, frames] -> waveform [b, samples] at 16 kHz.

`build_vocoder("griffin-lim" | folder)` is the entry point; `NeuralVocoder` is the trained default,
`GriffinLimVocoder` the zero-training fallback.
"""

from star.vocoder.builders import GRIFFIN_LIM, Vocoder, build_vocoder, load_vocoder, save_vocoder
from star.vocoder.griffin_lim import GriffinLimVocoder
from star.vocoder.neural import NeuralVocoder, VocoderConfig

__all__ = [
    "GRIFFIN_LIM",
    "GriffinLimVocoder",
    "NeuralVocoder",
    "Vocoder",
    "VocoderConfig",
    "build_vocoder",
    "load_vocoder",
    "save_vocoder",
]
