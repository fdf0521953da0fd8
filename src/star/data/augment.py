"""Augmentation of spoken prompts: speed change, room reverb, coloured noise at a random SNR, level.

Every random choice comes from the caller's `np.random.Generator`, and `augment` returns the
parameters it drew, so a manifest line records exactly what was done to its wav.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import gcd

import numpy as np
from scipy.signal import fftconvolve, resample_poly

from star.audio.io import SAMPLE_RATE
from star.config import JsonConfig

NOISE_COLORS = ("white", "pink", "brown")
_COLOR_EXPONENT = {"white": 0.0, "pink": 0.5, "brown": 1.0}  # amplitude ~ f^-exponent


@dataclass
class AugmentConfig(JsonConfig):
    p_speed: float = 0.5
    speed: list[float] = field(default_factory=lambda: [0.9, 1.1])
    p_reverb: float = 0.2
    rt60_seconds: list[float] = field(default_factory=lambda: [0.15, 0.6])
    p_noise: float = 0.5
    snr_db: list[float] = field(default_factory=lambda: [5.0, 30.0])
    colors: list[str] = field(default_factory=lambda: list(NOISE_COLORS))
    peak_db: list[float] = field(default_factory=lambda: [-18.0, -1.0])  # output level (microphone gain)


def colored_noise(n: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of white/pink/brown noise with unit RMS (spectrally shaped white noise)."""
    if color not in _COLOR_EXPONENT:
        raise ValueError(f"unknown noise colour {color!r}; expected one of {NOISE_COLORS}")
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1] if n > 1 else 1.0  # no infinite gain at DC
    noise = np.fft.irfft(spec / freqs ** _COLOR_EXPONENT[color], n)
    noise -= noise.mean()
    return (noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)).astype(np.float32)


def add_noise(wav: np.ndarray, snr_db: float, color: str, rng: np.random.Generator) -> np.ndarray:
    """`wav` plus noise whose power is `snr_db` below the signal's."""
    signal_rms = float(np.sqrt(np.mean(wav.astype(np.float64) ** 2)))
    noise = colored_noise(len(wav), color, rng)
    return (wav + noise * np.float32(signal_rms * 10 ** (-snr_db / 20))).astype(np.float32)


def change_speed(wav: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster by resampling (pitch moves with it, like a tape)."""
    up = 1000
    down = round(up * factor)
    g = gcd(up, down)
    return resample_poly(wav, up // g, down // g).astype(np.float32)


def add_reverb(wav: np.ndarray, rt60: float, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Convolve with a synthetic room: exponentially decaying noise reaching -60 dB at `rt60` s."""
    n = max(1, int(rt60 * sr))
    t = np.arange(n) / sr
    ir = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # ln(1000) = 6.9078 -> -60 dB at rt60
    ir[0] = 1.0  # keep the direct path dominant so speech stays intelligible
    ir /= np.sqrt(np.sum(ir**2))
    return fftconvolve(wav, ir)[: len(wav) + n // 4].astype(np.float32)


def augment(wav: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> tuple[np.ndarray, dict]:
    """Randomly augment a 16 kHz prompt; returns (wav, params drawn)."""
    params: dict = {}
    if rng.random() < cfg.p_speed:
        params["speed"] = round(float(rng.uniform(*cfg.speed)), 3)
        wav = change_speed(wav, params["speed"])
    if rng.random() < cfg.p_reverb:
        params["rt60"] = round(float(rng.uniform(*cfg.rt60_seconds)), 3)
        wav = add_reverb(wav, params["rt60"], rng)
    if rng.random() < cfg.p_noise:
        params["noise"] = cfg.colors[int(rng.integers(len(cfg.colors)))]
        params["snr_db"] = round(float(rng.uniform(*cfg.snr_db)), 1)
        wav = add_noise(wav, params["snr_db"], params["noise"], rng)
    params["peak_db"] = round(float(rng.uniform(*cfg.peak_db)), 1)
    peak = float(np.max(np.abs(wav)))
    if peak > 0:
        wav = wav * np.float32(10 ** (params["peak_db"] / 20) / peak)
    return wav.astype(np.float32), params
