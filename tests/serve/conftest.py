"""Fixtures for the server tests: a spoken prompt, and a real server around the default model."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import EXAMPLE_PROMPT, HAS_DEFAULT_MODEL, MODEL_DIR, NO_MODEL_REASON, live_server

from star.serve import ServeSettings, create_app


@pytest.fixture(scope="session")
def spoken_prompt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wav of someone saying "a dog is barking": the committed example (festival ked voice) when it
    exists, else espeak-ng."""
    if EXAMPLE_PROMPT.is_file():
        return EXAMPLE_PROMPT
    if shutil.which("espeak-ng") is None:
        pytest.skip("no examples/dog_barking_ked.wav and no espeak-ng (apt-get install espeak-ng)")
    path = tmp_path_factory.mktemp("prompt") / "dog.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "a dog is barking"], check=True, capture_output=True,
                   timeout=30)
    return path


@pytest.fixture(scope="session")
def real_url() -> Iterator[str]:
    """A real uvicorn server around Pipeline.from_pretrained() (the embedded default model)."""
    if not HAS_DEFAULT_MODEL:
        pytest.skip(NO_MODEL_REASON)
    with live_server(create_app(settings=ServeSettings(model_dir=MODEL_DIR)), timeout=300) as url:
        yield url
