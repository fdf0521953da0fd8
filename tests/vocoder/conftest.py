"""Real audio for vocoder tests: the committed CC0 ESC-10 mini corpus (tests/fixtures/esc10_mini)."""

from pathlib import Path

import pytest
import torch

from star.audio import load_audio

MINI_CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "esc10_mini"


@pytest.fixture(scope="session")
def mini_corpus() -> Path:
    if not (MINI_CORPUS / "meta.csv").is_file():
        pytest.skip(f"committed audio fixtures missing: {MINI_CORPUS}/meta.csv")
    return MINI_CORPUS


@pytest.fixture(scope="session")
def real_clip(mini_corpus) -> torch.Tensor:
    """The loudest 2 s of the first fixture clip, [1, samples]."""
    wav = torch.from_numpy(load_audio(min((mini_corpus / "audio").glob("*.ogg"))))
    n = 32000
    if wav.numel() <= n:
        return wav[None]
    best = max(range(0, wav.numel() - n, 1600), key=lambda s: float(wav[s : s + n].square().sum()))
    return wav[best : best + n][None]
