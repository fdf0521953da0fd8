"""Real synthesised speech for the encoder tests (espeak-ng, resampled to 16 kHz by star.audio)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from star.audio import load_audio

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "speech"


def _synthesise(out_dir: Path, name: str, text: str) -> Path:
    path = out_dir / f"{name}.wav"
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True, timeout=30)
    return path


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with dog.wav ("a dog is barking") and rain.wav ("rain is falling on the roof")."""
    if shutil.which("espeak-ng") is None:
        pytest.skip(
            "espeak-ng is not installed (apt-get install espeak-ng) - needed to synthesise test speech"
        )
    out = tmp_path_factory.mktemp("speech")
    _synthesise(out, "dog", "a dog is barking")
    _synthesise(out, "rain", "rain is falling on the roof")
    return out


@pytest.fixture(scope="session")
def dog_wav(speech_dir: Path) -> np.ndarray:
    """About 1.2 s of espeak-ng saying "a dog is barking", mono float32 at 16 kHz."""
    return load_audio(speech_dir / "dog.wav")


@pytest.fixture(scope="session")
def rain_wav(speech_dir: Path) -> np.ndarray:
    return load_audio(speech_dir / "rain.wav")
