"""Where a waveform is audible: frame energy in dB and the active region above a threshold.

Used to annotate real clips (onset/offset of the audible sound), to trim sources before they are
placed in a scene (so scene annotations match what one hears) and as the fallback when the VAD
finds no speech in a synthesised prompt.
"""

from __future__ import annotations

import numpy as np

from star.audio.io import SAMPLE_RATE

FRAME_SECONDS = 0.02
HOP_SECONDS = 0.01
# A frame is active when it is within REL_DB of the loudest frame and above ABS_FLOOR_DB: relative, so a
# quiet recording is still found; absolute, so the noise floor of a nearly silent clip is not "sound".
REL_DB = 30.0
ABS_FLOOR_DB = -60.0


def frame_db(wav: np.ndarray, sr: int = SAMPLE_RATE, hop_seconds: float = HOP_SECONDS) -> np.ndarray:
    """RMS level in dBFS of 20 ms frames every `hop_seconds`: [frames]; frame i starts at i * hop."""
    frame, hop = round(FRAME_SECONDS * sr), round(hop_seconds * sr)
    wav = np.asarray(wav, dtype=np.float32)
    if wav.size < frame:
        wav = np.pad(wav, (0, frame - wav.size))
    n = 1 + (wav.size - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]  # [frames, frame]
    rms = np.sqrt(np.mean(wav[idx].astype(np.float64) ** 2, axis=1))
    return (20.0 * np.log10(np.maximum(rms, 1e-10))).astype(np.float32)


def active_frames(
    wav: np.ndarray, sr: int = SAMPLE_RATE, *, rel_db: float = REL_DB, floor_db: float = ABS_FLOOR_DB
) -> np.ndarray:
    """Bool mask over `frame_db` frames: True where the frame is audible."""
    db = frame_db(wav, sr)
    return db >= max(float(db.max()) - rel_db, floor_db)


def active_region(
    wav: np.ndarray, sr: int = SAMPLE_RATE, *, rel_db: float = REL_DB, floor_db: float = ABS_FLOOR_DB
) -> tuple[int, int] | None:
    """(start, end) sample indices spanning the first to the last audible frame, or None if silent."""
    mask = active_frames(wav, sr, rel_db=rel_db, floor_db=floor_db)
    if not mask.any():
        return None
    hop, frame = round(HOP_SECONDS * sr), round(FRAME_SECONDS * sr)
    first, last = int(np.argmax(mask)), int(len(mask) - 1 - np.argmax(mask[::-1]))
    # Boundaries at the edges of the frames' central hop: a frame half over the sound is loud enough to be
    # active, so its full extent would start (and end) the region up to a hop early (late).
    start = first * hop + (frame - hop) // 2 if first > 0 else 0
    end = last * hop + (frame + hop) // 2 if last < len(mask) - 1 else len(wav)
    return start, min(len(wav), end)


def active_fraction(wav: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """Share of frames that are audible: ~1 for textures (rain, engines), low for sparse events (barks)."""
    return float(active_frames(wav, sr).mean())


def rms_db(wav: np.ndarray) -> float:
    """Overall RMS level in dBFS (-200 for digital silence)."""
    rms = float(np.sqrt(np.mean(np.asarray(wav, dtype=np.float64) ** 2))) if wav.size else 0.0
    return 20.0 * np.log10(max(rms, 1e-10))
