"""`star bench`: every figure present and positive on the committed default model (timings are never asserted
against targets here: that is what the benchmark itself reports)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import star
from star.eval.bench import REPO_ROOT, find_prompts, format_report, run_bench, stats_ms

DEFAULT_MODEL = Path(star.__file__).parent / "assets" / "default"  # = star.pipeline.DEFAULT_MODEL

NEEDS_MODEL = pytest.mark.skipif(
    not (DEFAULT_MODEL / "pipeline.json").is_file(),
    reason=f"the default model is not built yet ({DEFAULT_MODEL}/pipeline.json missing)",
)

NUMERIC_KEYS = [
    "e2e_latency_median_ms",
    "e2e_latency_p90_ms",
    "cascade_latency_median_ms",
    "cascade_latency_p90_ms",
    "latency_ratio",
    "listen_latency_median_ms",
    "listen_latency_p90_ms",
    "listen_readings",
    "encoder_median_ms",
    "bridge_median_ms",
    "asr_median_ms",
    "text_encoder_median_ms",
    "generation_median_s",
    "generator_median_s",
    "vocoder_median_s",
    "real_time_factor",
    "speech_to_audio_median_s",
    "peak_rss_mb",
    "rss_before_load_mb",
    "rss_after_mb",
    "load_s",
    "cold_start_s",
    "cold_start_import_s",
    "cold_start_load_s",
    "cold_start_generate_s",
    "cold_start_peak_rss_mb",
    "torch_threads",
    "machine_cores",
    "prompts",
    "prompt_seconds_median",
]


def test_stats_ms_median_and_p90():
    median, p90 = stats_ms([0.001 * k for k in range(1, 11)])  # 1..10 ms
    assert median == pytest.approx(5.5)
    assert p90 == pytest.approx(9.1)  # numpy's linear interpolation: 9 + 0.1 * (10 - 9)


def test_committed_prompts_are_found():
    prompts = find_prompts()
    if not prompts:
        pytest.skip(f"no committed spoken prompts under {REPO_ROOT}/examples or tests/fixtures/speech yet")
    assert all(p.suffix == ".wav" and p.is_file() for p in prompts)
    expected = sorted((REPO_ROOT / "examples").glob("*.wav")) + sorted(
        (REPO_ROOT / "tests" / "fixtures" / "speech").glob("*.wav")
    )
    assert prompts == expected


@NEEDS_MODEL
def test_run_bench_reports_every_figure(capsys):
    prompts = find_prompts()[:2]
    report = run_bench(repeats=1, prompts=prompts)
    json.dumps(report)  # JSON-ready, as `star bench --json` prints it
    assert capsys.readouterr().out == ""  # progress goes to stderr only
    for key in NUMERIC_KEYS:
        assert isinstance(report[key], (int, float)) and math.isfinite(report[key]) and report[key] > 0, key
    # A difference, not a size: earlier tests in the same process may already hold (or have freed) the
    # model's memory, so it can be zero or negative in a full run.
    assert math.isfinite(report["rss_delta_mb"])
    assert report["rss_delta_mb"] == pytest.approx(report["rss_after_mb"] - report["rss_before_load_mb"])
    assert report["latency_calls_per_mode"] == 2
    assert report["latency_reduction_pct"] == pytest.approx(100 * (1 - report["latency_ratio"]))
    assert report["generate_audio_seconds"] == 5.0
    assert report["real_time_factor"] == pytest.approx(report["generation_median_s"] / 5.0)
    assert report["machine_cpu"]
    text = format_report(report)
    assert "E2E / cascade" in text and "% lower" in text and "cold start" in text
    assert f"listen ({report['listen_readings']} readings)" in text
