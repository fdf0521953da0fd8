"""Prompt augmentation: noise colour and SNR as requested, speed by resampling, deterministic."""

import numpy as np
import pytest
from scipy.signal import welch

from star.data.augment import AugmentConfig, add_noise, add_reverb, augment, change_speed, colored_noise

SR = 16000


def _band_power(x, lo, hi):
    f, p = welch(x, SR, nperseg=4096)
    return float(p[(f >= lo) & (f < hi)].mean())


@pytest.mark.parametrize("color, slope", [("white", 0.0), ("pink", -10.0), ("brown", -20.0)])
def test_noise_colour_has_the_right_spectral_slope(color, slope):
    x = colored_noise(SR * 4, color, np.random.default_rng(0))
    assert abs(float(np.sqrt(np.mean(x**2))) - 1.0) < 1e-3
    # dB per decade between 100-200 Hz and 1-2 kHz: 0 (white), -10 (pink), -20 (brown).
    measured = 10 * np.log10(_band_power(x, 1000, 2000) / _band_power(x, 100, 200))
    assert abs(measured - slope) < 2.5, measured


@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
def test_add_noise_hits_the_requested_snr(snr):
    rng = np.random.default_rng(1)
    t = np.arange(SR * 2) / SR
    clean = (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)
    noisy = add_noise(clean, snr, "pink", rng)
    noise = noisy - clean
    measured = 10 * np.log10(np.mean(clean**2) / np.mean(noise**2))
    assert abs(measured - snr) < 0.1


def test_change_speed_scales_length_and_pitch():
    t = np.arange(SR) / SR
    tone = np.sin(2 * np.pi * 500 * t).astype(np.float32)
    fast = change_speed(tone, 1.25)
    assert abs(len(fast) - SR / 1.25) <= 2
    f, p = welch(fast, SR, nperseg=2048)
    assert abs(f[np.argmax(p)] - 625) < 10  # 500 Hz played 1.25x faster


def test_reverb_adds_a_decaying_tail():
    click = np.zeros(SR // 2, np.float32)
    click[100] = 1.0
    wet = add_reverb(click, 0.4, np.random.default_rng(0))
    assert len(wet) > len(click)
    tail = np.abs(wet[200:])
    early, late = tail[: SR // 20].mean(), tail[SR // 4 : SR // 4 + SR // 20].mean()
    assert 0 < late < early


def test_augment_is_deterministic_and_reports_what_it_did():
    t = np.arange(SR) / SR
    wav = (0.5 * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    cfg = AugmentConfig(p_speed=1.0, p_reverb=1.0, p_noise=1.0)
    a, pa = augment(wav, np.random.default_rng(3), cfg)
    b, pb = augment(wav, np.random.default_rng(3), cfg)
    assert np.array_equal(a, b) and pa == pb
    assert set(pa) == {"speed", "rt60", "noise", "snr_db", "peak_db"}
    assert abs(20 * np.log10(np.max(np.abs(a))) - pa["peak_db"]) < 0.01
    clean, pc = augment(wav, np.random.default_rng(3), AugmentConfig(p_speed=0, p_reverb=0, p_noise=0))
    assert set(pc) == {"peak_db"} and len(clean) == len(wav)
