"""Bounded load on loopback: a full queue answers 429 at once, a missed deadline 504, and 50 requests from 8
concurrent clients finish with no 5xx. Latency figures go to test-artifacts/serve-load-<label>.json and
are printed (run with -s to see them); docs/SERVE.md quotes them."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_helpers import ARTIFACTS, fake_app, live_server, tone, wav_bytes

from star.serve import ServeSettings

PROMPT = wav_bytes(tone(1.5))


def _request(i: int) -> dict:
    """A mix of the three ways to call /v1/generate."""
    if i % 3 == 0:
        return {"method": "POST", "url": "/v1/generate", "json": {"text": "a dog barks", "seconds": 2, "seed": i}}
    fmt = "json" if i % 3 == 2 else "wav"
    return {"method": "POST", "url": f"/v1/generate?format={fmt}", "files": {"speech": ("p.wav", PROMPT)},
            "data": {"seconds": "2", "seed": str(i)}}


async def _run_load(url: str, requests: int, concurrency: int) -> dict:
    latencies: list[float] = []
    statuses: Counter = Counter()
    todo = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=180, limits=limits) as client:

        async def one_client() -> None:
            for i in todo:
                t0 = time.perf_counter()
                r = await client.request(**_request(i))
                statuses[r.status_code] += 1
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies) if latencies else np.array([np.nan])
    return {"requests": requests, "concurrency": concurrency, "statuses": dict(sorted(statuses.items())),
            "ok": statuses[200], "rejected_429": statuses[429], "wall_s": round(wall, 3),
            "throughput_rps": round(statuses[200] / wall, 2),
            "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
            "p95_ms": round(float(np.percentile(lat, 95)) * 1000, 1)}


def _report(label: str, result: dict) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    Path(ARTIFACTS / f"serve-load-{label}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nserve load [{label}]: {json.dumps(result)}")


def _assert_no_5xx(result: dict) -> None:
    assert not [s for s in result["statuses"] if s >= 500], result
    assert set(result["statuses"]) <= {200, 429}, result
    assert sum(result["statuses"].values()) == result["requests"]


def test_load_50_requests_8_concurrent():
    """Queue as deep as the clients: every request is served."""
    app, pipe = fake_app(ServeSettings(queue_size=8), delay=0.02)  # 20 ms stands in for the model
    with live_server(app) as url:
        result = asyncio.run(_run_load(url, 50, 8))
        assert httpx.get(f"{url}/healthz").json()["waiting"] == 0
    _report("fake-model", result)
    _assert_no_5xx(result)
    assert result["ok"] == 50 and pipe.calls >= 50


def test_load_with_small_queue_sheds_with_429():
    """More clients than queue slots: the surplus is refused at once with 429, never a 5xx or a hang."""
    app, _ = fake_app(ServeSettings(queue_size=2), delay=0.05)
    with live_server(app) as url:
        result = asyncio.run(_run_load(url, 50, 8))
    _report("fake-model-queue2", result)
    _assert_no_5xx(result)
    assert result["rejected_429"] > 0 and result["ok"] >= 3


@pytest.mark.model
def test_load_real_model(real_url):
    result = asyncio.run(_run_load(real_url, 50, 8))
    _report("default-model", result)
    _assert_no_5xx(result)


def _post_in_thread(url: str, out: dict, key: str, **kwargs) -> threading.Thread:
    def run() -> None:
        out[key] = httpx.post(url, timeout=30, **kwargs)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_full_queue_answers_429_at_once():
    gate = threading.Event()
    app, pipe = fake_app(ServeSettings(queue_size=1, warmup=False), gate=gate)
    with live_server(app) as url:
        got: dict = {}
        running = _post_in_thread(f"{url}/v1/generate", got, "running", json={"text": "a dog", "seconds": 1})
        _wait_for(lambda: pipe.calls == 1)
        queued = _post_in_thread(f"{url}/v1/generate", got, "queued", json={"text": "a cat", "seconds": 1})
        _wait_for(lambda: app.state.worker.waiting == 1)
        t0 = time.perf_counter()
        refused = httpx.post(f"{url}/v1/generate", json={"text": "a cow", "seconds": 1})
        assert refused.status_code == 429 and time.perf_counter() - t0 < 2
        assert "busy" in refused.json()["error"] and refused.headers["retry-after"] == "1"
        assert httpx.get(f"{url}/healthz").status_code == 200
        gate.set()
        running.join(10)
        queued.join(10)
        assert got["running"].status_code == 200 and got["queued"].status_code == 200


def test_deadline_answers_504_and_drops_the_queued_job():
    gate = threading.Event()
    app, pipe = fake_app(ServeSettings(queue_size=2, timeout_s=0.5, warmup=False), gate=gate)
    with live_server(app) as url:
        got: dict = {}
        first = _post_in_thread(f"{url}/v1/generate", got, "first", json={"text": "a dog", "seconds": 1})
        _wait_for(lambda: pipe.calls == 1)
        second = httpx.post(f"{url}/v1/generate", json={"text": "a cat", "seconds": 1})
        assert second.status_code == 504 and "longer than 0.5 s" in second.json()["error"]
        first.join(10)
        assert got["first"].status_code == 504
        gate.set()
        _wait_for(lambda: app.state.worker.waiting == 0)
        time.sleep(0.1)
        assert pipe.calls == 1  # the second job was cancelled before it ran
        ok = httpx.post(f"{url}/v1/generate", json={"text": "a dog", "seconds": 1})
        assert ok.status_code == 200  # the server recovered
