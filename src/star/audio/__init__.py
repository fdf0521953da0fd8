"""Audio I/O and the log-mel representation shared by every model."""

from star.audio.io import SAMPLE_RATE, load_audio, peak_normalize, prepare_waveform, write_wav
from star.audio.mel import MelSpec

__all__ = ["SAMPLE_RATE", "MelSpec", "load_audio", "peak_normalize", "prepare_waveform", "write_wav"]
