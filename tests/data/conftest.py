"""Shared fixtures for the data tests: the committed mini corpus (six CC0 ESC-10 clips) and helpers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from data_helpers import MINI

from star.audio.io import load_audio
from star.data.corpus import load_corpus
from star.data.scenes import Source


@pytest.fixture(scope="session")
def mini_corpus_dir() -> Path:
    return MINI


@pytest.fixture
def mini_corpus_copy(tmp_path) -> Path:
    """A writable copy of the mini corpus (own meta.csv), for tests that edit or build from it."""
    dst = tmp_path / "corpus"
    shutil.copytree(MINI, dst)
    return dst


@pytest.fixture(scope="session")
def mini_sources() -> dict[str, Source]:
    corpus = load_corpus(MINI)
    return {c.id: Source(c.id, c.category, load_audio(c.path, allow_silent=True)) for c in corpus.clips}
