"""Helpers shared by the data tests (a module with its own name: several test folders have a conftest)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from star.audio.io import SAMPLE_RATE
from star.data.activity import frame_db

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MINI = FIXTURES / "esc10_mini"


def onset_contrast_db(wav: np.ndarray, onset: float, window: float = 0.1) -> float:
    """Level (dB) in the `window` s after `onset` minus the level in the `window` s before it."""
    db = frame_db(wav)  # 10 ms hop
    i = round(onset * 100)
    w = int(window * 100)
    after = db[i : i + w]
    before = db[max(0, i - w - 2) : max(0, i - 2)]  # stay 20 ms clear of the frame straddling the onset
    if before.size == 0:
        before = np.array([-200.0])
    return float(np.max(after) - np.max(before))


def first_loud_time(wav: np.ndarray, below_max_db: float = 45.0) -> float:
    """Start time of the first 10 ms-hop frame within `below_max_db` of the loudest frame."""
    db = frame_db(wav)
    return float(np.argmax(db > db.max() - below_max_db)) / 100.0


__all__ = ["MINI", "SAMPLE_RATE", "first_loud_time", "onset_contrast_db"]
