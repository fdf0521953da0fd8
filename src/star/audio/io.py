"""Loading and writing audio: any wav/flac/ogg -> mono float32 at the model rate, with clear errors."""

from __future__ import annotations

import io
from fractions import Fraction
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from star.errors import AudioError

SAMPLE_RATE = 16_000
SILENCE_PEAK = 1e-4  # below this (about -80 dBFS) a clip carries nothing usable
DEFAULT_MAX_SECONDS = 600.0

AudioSource = str | Path | bytes | io.IOBase


def load_audio(
    source: AudioSource,
    sr: int = SAMPLE_RATE,
    *,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    allow_silent: bool = False,
) -> np.ndarray:
    """Read `source` (path, bytes or file object) as mono float32 at `sr` Hz.

    Raises AudioError for a missing file, bytes that are not audio, an empty or corrupt stream,
    a duration above `max_seconds` (checked on the header, before decoding), non-finite samples
    and, unless `allow_silent`, digital silence.
    """
    name = str(source) if isinstance(source, (str, Path)) else "<upload>"
    if isinstance(source, (str, Path)):
        if not Path(source).is_file():
            raise AudioError(f"{name}: no such file")
        if Path(source).stat().st_size == 0:
            raise AudioError(f"{name}: file is empty")
    elif isinstance(source, bytes):
        if not source:
            raise AudioError(f"{name}: empty input")
        source = io.BytesIO(source)
    try:
        with sf.SoundFile(source) as f:
            rate, frames = f.samplerate, f.frames
            if frames <= 0:
                raise AudioError(f"{name}: audio has no samples")
            if max_seconds is not None and frames / rate > max_seconds:
                raise AudioError(
                    f"{name}: audio is {frames / rate:.0f} s long, the limit is {max_seconds:.0f} s"
                )
            data = f.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        # libsndfile's message names the file object (`<_io.BytesIO object at 0x...>`); keep only its reason.
        reason = getattr(exc, "error_string", None) or str(exc).split(":")[-1].strip()
        raise AudioError(f"{name}: not a readable audio file ({reason})") from None
    if data.shape[0] == 0:
        raise AudioError(f"{name}: audio stream is truncated or empty")
    return prepare_waveform(data.mean(axis=1), rate, sr, name=name, allow_silent=allow_silent)


def prepare_waveform(
    wav: np.ndarray, rate: int, sr: int = SAMPLE_RATE, *, name: str = "<array>", allow_silent: bool = False
) -> np.ndarray:
    """Validate an in-memory waveform ([t] or [t, channels]) and bring it to mono float32 at `sr`."""
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 2:
        wav = wav.mean(axis=1)
    if wav.ndim != 1 or wav.size == 0:
        raise AudioError(f"{name}: expected a non-empty mono or multi-channel waveform")
    if not np.all(np.isfinite(wav)):
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    if rate <= 0:
        raise AudioError(f"{name}: invalid sample rate {rate}")
    if rate != sr:
        g = gcd(int(rate), int(sr))
        wav = resample_poly(wav, sr // g, int(rate) // g).astype(np.float32)
    if not allow_silent and float(np.max(np.abs(wav))) < SILENCE_PEAK:
        raise AudioError(f"{name}: audio is silent")
    return wav


def _speed_ratio(factor: float) -> Fraction:
    """A playing speed as the nearest fraction with a denominator <= 40 (the polyphase resampling ratio)."""
    if factor <= 0:
        raise AudioError(f"a playing speed must be positive, not {factor}")
    return Fraction(factor).limit_denominator(40)


def play_at_speed(wav: np.ndarray, factor: float) -> np.ndarray:
    """`wav` played `factor` times as fast (resampled: tempo, pitch and formants move together, as in
    the speed perturbation of ASR training); `played_length` samples long."""
    ratio = _speed_ratio(factor)
    if ratio == 1:
        return np.asarray(wav, dtype=np.float32)
    return resample_poly(wav, ratio.denominator, ratio.numerator).astype(np.float32)


def played_length(num_samples: int, factor: float) -> int:
    """How many samples `play_at_speed` returns for `num_samples` (resample_poly's ceil(n * up / down))."""
    ratio = _speed_ratio(factor)
    return -(-num_samples * ratio.denominator // ratio.numerator)


def peak_normalize(wav: np.ndarray, peak_db: float = -1.0) -> np.ndarray:
    """Scale so the peak sits at `peak_db` dBFS; silence is returned unchanged (never divided by ~0)."""
    peak = float(np.max(np.abs(wav))) if wav.size else 0.0
    if peak < SILENCE_PEAK:
        return wav.astype(np.float32)
    return (wav * (10 ** (peak_db / 20) / peak)).astype(np.float32)


def write_wav(path: str | Path, wav: np.ndarray, sr: int = SAMPLE_RATE) -> Path:
    """Write 16-bit PCM wav, clipping to [-1, 1] only as a last guard; creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0), sr, subtype="PCM_16")
    return path
