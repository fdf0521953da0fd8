"""Helpers for the server tests: a fast pipeline double, a real uvicorn server on loopback, wav makers.

`FakePipeline` has the public API of `star.pipeline.Pipeline` with the real input checks (`check_inputs`,
`star.audio.load_audio` / `prepare_waveform`) and a trivial generator (a quiet sine), so HTTP-layer tests
run in milliseconds. Tests against the real default model use `real_url`, which skips until the model
folder exists.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf
import uvicorn

from star.audio.io import SAMPLE_RATE, load_audio, prepare_waveform
from star.builders import DEFAULT_MODEL
from star.pipeline import PipelineConfig, check_inputs
from star.serve import ServeSettings, create_app

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
EXAMPLE_PROMPT = REPO / "examples" / "dog_barking_ked.wav"
# The real-model tests use the embedded default; STAR_SERVE_TEST_MODEL points them at another folder.
MODEL_DIR = Path(os.environ.get("STAR_SERVE_TEST_MODEL", DEFAULT_MODEL))
HAS_DEFAULT_MODEL = (MODEL_DIR / "pipeline.json").is_file()
NO_MODEL_REASON = f"the default model is not in {MODEL_DIR} yet (pipeline.json missing)"


class FakeHeard:
    """The shape of star.bridge.listen.ListenResult.to_dict(), with numpy numbers as the real one may have."""

    def __init__(self, events: list[tuple[str, float]], is_request: bool = True):
        self.events, self.is_request = events, is_request

    def to_dict(self) -> dict:
        return {"events": [{"category": c, "prob": np.float32(p)} for c, p in self.events],
                "caption": "a dog is barking" if self.is_request else "", "is_request": self.is_request,
                "reason": "heard a spoken sound request" if self.is_request else "no spoken sound request heard",
                "scores": {"dog": np.float32(0.9 if self.is_request else 0.1), "rain": np.float32(0.05)}}


class FakePipeline:
    """Same calls as Pipeline; `gate` (an Event) holds every call until set, `delay` simulates work."""

    def __init__(self, delay: float = 0.0, gate: threading.Event | None = None):
        self.cfg = PipelineConfig()
        self.sample_rate = SAMPLE_RATE
        self.last_timings: dict[str, float] = {}
        self.last_transcript: str | None = None
        self.delay, self.gate = delay, gate
        self.calls = 0

    def _wav(self, speech, allow_silent: bool = False) -> np.ndarray:
        if isinstance(speech, tuple):
            return prepare_waveform(speech[0], speech[1], SAMPLE_RATE, allow_silent=allow_silent)
        return load_audio(speech, SAMPLE_RATE, max_seconds=self.cfg.max_speech_seconds, allow_silent=allow_silent)

    def _work(self) -> None:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait(30)
        time.sleep(self.delay)

    def generate(self, speech=None, text=None, *, seconds=None, steps=None, cfg=None, seed=None, mode="e2e"):
        seconds = self.cfg.seconds if seconds is None else float(seconds)
        steps = self.cfg.steps if steps is None else int(steps)
        guidance = self.cfg.cfg if cfg is None else float(cfg)
        check_inputs(self.cfg, speech=speech, text=text, seconds=seconds, steps=steps, guidance=guidance,
                     mode=mode)
        t0 = time.perf_counter()
        if speech is not None:
            self._wav(speech)
        self._work()
        t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        self.last_timings = {"total_s": time.perf_counter() - t0}
        self.last_transcript = "a dog is barking" if mode == "cascade" and speech is not None else None
        return (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SAMPLE_RATE

    def listen(self, speech) -> FakeHeard:
        wav = self._wav(speech, allow_silent=True)
        self._work()
        if float(np.max(np.abs(wav))) < 1e-4:
            return FakeHeard([], is_request=False)
        return FakeHeard([("dog", 0.9), ("rain", 0.05)])


@contextmanager
def live_server(app, timeout: float = 120.0) -> Iterator[str]:
    """Run `app` under a real uvicorn server on a free 127.0.0.1 port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start (see the log above)")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def fake_app(settings: ServeSettings | None = None, **fake_kwargs):
    pipe = FakePipeline(**fake_kwargs)
    return create_app(lambda: pipe, settings or ServeSettings()), pipe


def wav_bytes(wav: np.ndarray, sr: int = SAMPLE_RATE, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wav, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def tone(seconds: float, sr: int = SAMPLE_RATE, freqs=(440.0,), amp: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (amp * sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)).astype(np.float32)


def decoded_seconds(data: bytes) -> float:
    info = sf.info(io.BytesIO(data))
    return info.frames / info.samplerate
