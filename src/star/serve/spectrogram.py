"""A PNG picture of a clip's log-mel spectrogram for the web page (the same mel the models use)."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from star.audio.io import SAMPLE_RATE, prepare_waveform
from star.audio.mel import LOG_FLOOR, MelSpec

ROW_REPEAT = 3  # 64 mel rows are too few to look at; the browser scales the width


def spectrogram_png(wav_bytes: bytes) -> bytes:
    """wav bytes -> PNG: time left to right, low frequencies at the bottom, magma colours."""
    # imported here: matplotlib is slow to import and only the page asks for pictures
    from matplotlib.image import imsave

    data, rate = sf.read(io.BytesIO(wav_bytes), dtype="float32", always_2d=True)
    wav = prepare_waveform(data, rate, SAMPLE_RATE, allow_silent=True)
    mel = MelSpec().of_numpy(wav)  # [64, frames], natural log, floor log(1e-5)
    top = float(mel.max())
    mel = np.clip(mel, max(top - 8.0, np.log(LOG_FLOOR)), top)  # 8 nats (~70 dB) of range
    out = io.BytesIO()
    imsave(out, np.repeat(mel, ROW_REPEAT, axis=0), cmap="magma", origin="lower", format="png")
    return out.getvalue()
