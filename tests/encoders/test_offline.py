"""The bundled encoders load and run with no network: offline flags set and every proxy unroutable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r"""
import sys
import numpy as np
import torch
from star.audio import load_audio
from star.encoders import build_asr, build_speech_encoder, build_text_encoder

torch.set_num_threads(1)
wav = load_audio(sys.argv[1])
tokens, mask = build_text_encoder("minilm").encode(["a dog barking"])
assert tokens.shape[-1] == 384 and mask.any()
for name in ("whisper-tiny.en", "speech-embedding"):
    frames, mask = build_speech_encoder(name).encode([wav])
    assert mask.sum() > 0 and np.isfinite(frames.numpy()).all(), name
print("TEXT:", build_asr().transcribe(wav))
"""


@pytest.mark.slow  # a fresh interpreter pays the torch + transformers import again
def test_encoders_work_offline(speech_dir: Path, tmp_path: Path) -> None:
    dead = "http://127.0.0.1:9"
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf-home"),  # an empty hub cache: nothing may come from there either
        HTTP_PROXY=dead,
        HTTPS_PROXY=dead,
        ALL_PROXY=dead,
        http_proxy=dead,
        https_proxy=dead,
        all_proxy=dead,
        OMP_NUM_THREADS="1",  # the test runs beside others on a small CPU
        NO_PROXY="",
        no_proxy="",
    )
    res = subprocess.run(  # noqa: PLW1510 - the return code is asserted below
        [sys.executable, "-c", SCRIPT, str(speech_dir / "dog.wav")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "dog" in res.stdout.lower(), res.stdout
