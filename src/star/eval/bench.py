"""`star bench`: latency, speed and memory of a model folder, E2E and cascade side by side in ONE process.

What is measured (the targets in DESIGN.md):
- speech-processing latency, from end of speech (the whole waveform in memory) to generator condition
  ready: E2E = speech encoder + bridge, cascade = ASR (Whisper tiny.en, beam search) + text encoder.
  Both through `Pipeline.condition`, on the same committed spoken prompts, interleaved (the order of
  the two modes alternates per call so neither always runs on a warm cache), after a warm-up pass;
  median and p90 over every (prompt, repeat) call;
- `listen` latency (what the bridge and the phonetic route heard, with every reading the model asks for),
  median and p90 over the same prompts and repeats;
- generation time for 5 s of audio (generator + vocoder, from `Pipeline.last_timings`), median over
  repeats, and its real-time factor;
- peak RSS of this process (`ru_maxrss`) and the RSS growth from before the model was loaded;
- cold start to first audio: a fresh interpreter that imports star, loads the pipeline and generates
  once, timed from just before it is spawned.

Progress goes to stderr; the report is a flat dict of JSON-ready values (`--json` prints it as one line).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from star.audio import SAMPLE_RATE, load_audio
from star.errors import StarError

REPO_ROOT = Path(__file__).resolve().parents[3]
PROMPT_DIRS = ("examples", "tests/fixtures/speech")
TARGET_REDUCTION_PCT = 90.0
STAR_PAPER_REDUCTION_PCT = 76.9  # 156 ms -> 36 ms in the STAR paper
GEN_SECONDS = 5.0
WARMUP_PROMPTS = 3


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- machine and memory


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def current_rss_mb() -> float:
    """Resident set size now (VmRSS), in MiB; ru_maxrss only gives the peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process (ru_maxrss: KiB on Linux, bytes on macOS), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def machine_info() -> dict[str, Any]:
    return {
        "machine_cpu": cpu_model(),
        "machine_cores": os.cpu_count() or 0,
        "machine_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------- prompts


def find_prompts(root: Path = REPO_ROOT) -> list[Path]:
    """The committed spoken prompts: examples/*.wav and tests/fixtures/speech/*.wav (sorted)."""
    found: list[Path] = []
    for sub in PROMPT_DIRS:
        found += sorted((root / sub).glob("*.wav"))
    return found


def stats_ms(seconds: list[float]) -> tuple[float, float]:
    """(median, p90) of durations in seconds, in milliseconds."""
    arr = np.asarray(seconds, dtype=np.float64) * 1000.0
    return float(np.median(arr)), float(np.percentile(arr, 90))


def _timed(fn, *args, **kwargs) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


# ---------------------------------------------------------------- the measurements


def measure_latency(pipe: Any, wavs: list[np.ndarray], repeats: int) -> dict[str, Any]:
    """E2E vs cascade condition latency on the same prompts, interleaved, after a warm-up pass."""
    from tqdm import tqdm

    for wav in wavs[:WARMUP_PROMPTS]:  # loads Whisper / MiniLM lazily and warms the allocators
        pipe.condition(speech=(wav, SAMPLE_RATE), mode="e2e")
        pipe.condition(speech=(wav, SAMPLE_RATE), mode="cascade")
    times: dict[str, list[float]] = {"e2e": [], "cascade": []}
    calls = [(r, i) for r in range(repeats) for i in range(len(wavs))]
    for r, i in tqdm(calls, desc="latency", file=sys.stderr):
        order = ("e2e", "cascade") if (r + i) % 2 == 0 else ("cascade", "e2e")
        for mode in order:
            dt, _ = _timed(pipe.condition, speech=(wavs[i], SAMPLE_RATE), mode=mode)
            times[mode].append(dt)

    # Breakdown, once per prompt: where each path spends its time.
    parts: dict[str, list[float]] = {"encoder": [], "bridge": [], "asr": [], "text_encoder": []}
    encoder, bridge = pipe.parts.speech_encoder, pipe.parts.bridge
    with torch.no_grad():
        for wav in wavs:
            dt, (frames, mask) = _timed(encoder.encode, [wav])
            parts["encoder"].append(dt)
            parts["bridge"].append(_timed(bridge, frames, mask)[0])
            dt, text = _timed(pipe.transcribe, wav)
            parts["asr"].append(dt)
            parts["text_encoder"].append(_timed(pipe.condition_from_text, text or "silence")[0])

    e2e_med, e2e_p90 = stats_ms(times["e2e"])
    cas_med, cas_p90 = stats_ms(times["cascade"])
    ratio = e2e_med / cas_med
    out: dict[str, Any] = {
        "latency_calls_per_mode": len(times["e2e"]),
        "e2e_latency_median_ms": e2e_med,
        "e2e_latency_p90_ms": e2e_p90,
        "cascade_latency_median_ms": cas_med,
        "cascade_latency_p90_ms": cas_p90,
        "latency_ratio": ratio,
        "latency_reduction_pct": 100.0 * (1.0 - ratio),
        "latency_reduction_p90_pct": 100.0 * (1.0 - e2e_p90 / cas_p90),
        "latency_target_pct": TARGET_REDUCTION_PCT,
        "latency_target_met": bool(100.0 * (1.0 - ratio) >= TARGET_REDUCTION_PCT),
        "star_paper_reduction_pct": STAR_PAPER_REDUCTION_PCT,
    }
    for name, values in parts.items():
        out[f"{name}_median_ms"] = stats_ms(values)[0]
    return out


def measure_listen(pipe: Any, wavs: list[np.ndarray], repeats: int) -> dict[str, Any]:
    """`Pipeline.listen` on the prompts, after one warm-up call: every reading of the phonetic route
    (STUDY part 20) costs an encoder and a bridge pass."""
    from tqdm import tqdm

    listener = pipe.parts.listener()
    pipe.listen((wavs[0], SAMPLE_RATE))
    times = [_timed(pipe.listen, (wav, SAMPLE_RATE))[0]
             for _ in tqdm(range(repeats), desc="listen", file=sys.stderr) for wav in wavs]
    median, p90 = stats_ms(times)
    readings = len(listener.phonetic.cfg.reading_speeds) if listener.phonetic is not None else 1
    return {"listen_latency_median_ms": median, "listen_latency_p90_ms": p90, "listen_readings": readings}


def measure_generation(
    pipe: Any, wav: np.ndarray, repeats: int, seconds: float = GEN_SECONDS
) -> dict[str, Any]:
    """Generator + vocoder time for `seconds` of audio (E2E prompt), median over repeats after a warm-up."""
    from tqdm import tqdm

    pipe.generate(speech=(wav, SAMPLE_RATE), seconds=seconds, seed=0)
    rows = []
    for r in tqdm(range(repeats), desc="generate", file=sys.stderr):
        pipe.generate(speech=(wav, SAMPLE_RATE), seconds=seconds, seed=r)
        rows.append(dict(pipe.last_timings))
    gen = [row["generator_s"] for row in rows]
    voc = [row["vocoder_s"] for row in rows]
    both = [g + v for g, v in zip(gen, voc, strict=True)]
    median = float(np.median(both))
    return {
        "generate_audio_seconds": seconds,
        "generate_steps": int(pipe.cfg.steps),
        "generate_cfg": float(pipe.cfg.cfg),
        "generator_median_s": float(np.median(gen)),
        "vocoder_median_s": float(np.median(voc)),
        "generation_median_s": median,
        "generation_p90_s": float(np.percentile(both, 90)),
        "real_time_factor": median / seconds,
        "speech_to_audio_median_s": float(np.median([row["total_s"] for row in rows])),
    }


_COLD_START = r"""
import json, resource, sys, time
t0 = time.time()
import star
from star.pipeline import Pipeline
t1 = time.time()
pipe = Pipeline.from_pretrained(sys.argv[1] if sys.argv[1] else None)
t2 = time.time()
wav, sr = pipe.generate(speech=sys.argv[2], seconds=float(sys.argv[3]), seed=0)
t3 = time.time()
# VmHWM, not ru_maxrss: Linux carries the parent's peak over fork + exec into the child's ru_maxrss.
hwm = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")]
print(json.dumps({"t_start": t0, "t_first_audio": t3, "import_s": t1 - t0, "load_s": t2 - t1,
                  "generate_s": t3 - t2, "samples": int(len(wav)),
                  "maxrss_kb": hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def measure_cold_start(model_dir: Path | None, prompt: Path, seconds: float = GEN_SECONDS) -> dict[str, Any]:
    """Fresh interpreter: import star, load the pipeline, generate once; timed from spawn to first audio."""
    cmd = [sys.executable, "-c", _COLD_START, str(model_dir or ""), str(prompt), str(seconds)]
    t_spawn = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise StarError(f"cold-start subprocess failed: {tail[0]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "cold_start_s": res["t_first_audio"] - t_spawn,
        "cold_start_interpreter_s": res["t_start"] - t_spawn,
        "cold_start_import_s": res["import_s"],
        "cold_start_load_s": res["load_s"],
        "cold_start_generate_s": res["generate_s"],
        "cold_start_peak_rss_mb": res["maxrss_kb"] / 1024.0,
    }


def run_bench(
    model_dir: str | Path | None = None,
    repeats: int = 5,
    *,
    prompts: list[Path] | None = None,
    cold_start: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Measure everything in one process and return one flat JSON-ready dict (see the module docstring).

    `prompts` defaults to the committed spoken prompts (`find_prompts`); `threads` sets torch's intra-op
    thread count first (default: leave torch's choice, which is reported).
    """
    from star.pipeline import Pipeline

    if repeats < 1:
        raise StarError(f"repeats must be >= 1, got {repeats}")
    prompts = find_prompts() if prompts is None else [Path(p) for p in prompts]
    if not prompts:
        raise StarError(f"no spoken prompts found in {', '.join(str(REPO_ROOT / d) for d in PROMPT_DIRS)}")
    if threads is not None:
        torch.set_num_threads(int(threads))

    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_avg_start": list(os.getloadavg()),
        **machine_info(),
    }
    rss_before = current_rss_mb()
    _log(f"loading pipeline from {model_dir or 'the embedded default model'}")
    load_s, pipe = _timed(Pipeline.from_pretrained, model_dir)
    report["model"] = str(pipe.folder) if pipe.folder is not None else str(model_dir)
    report["load_s"] = load_s
    for part in ("speech_encoder", "asr"):
        obj = getattr(pipe.parts, part, None)
        obj = obj() if callable(obj) and part == "asr" else obj
        report[f"{part}_cpu_threads"] = getattr(obj, "cpu_threads", None)
        if part == "asr":
            report["asr_beam_size"] = getattr(obj, "beam_size", None)

    wavs = [load_audio(p, SAMPLE_RATE) for p in prompts]
    lengths = [len(w) / SAMPLE_RATE for w in wavs]
    report.update(
        {
            "prompts": len(wavs),
            "prompt_seconds_median": float(np.median(lengths)),
            "prompt_seconds_max": float(max(lengths)),
            "repeats": repeats,
        }
    )
    _log(f"latency on {len(wavs)} prompts x {repeats} repeats (median prompt {np.median(lengths):.2f} s)")
    report.update(measure_latency(pipe, wavs, repeats))
    _log("listen latency")
    report.update(measure_listen(pipe, wavs, repeats))
    _log(f"generation of {GEN_SECONDS:g} s of audio x {repeats}")
    report.update(measure_generation(pipe, wavs[0], repeats))
    report["peak_rss_mb"] = peak_rss_mb()
    report["rss_before_load_mb"] = rss_before
    report["rss_after_mb"] = current_rss_mb()
    report["rss_delta_mb"] = report["rss_after_mb"] - rss_before
    report["peak_rss_delta_mb"] = report["peak_rss_mb"] - rss_before
    del pipe
    if cold_start:
        _log("cold start in a fresh process")
        report.update(measure_cold_start(Path(model_dir) if model_dir else None, prompts[0]))
    report["load_avg_end"] = list(os.getloadavg())
    return report


def format_report(r: dict[str, Any]) -> str:
    """Human-readable summary of a `run_bench` report (the `star bench` text output)."""
    verdict = "met" if r["latency_target_met"] else "NOT met"
    lines = [
        (
            f"machine: {r['machine_cpu']}, {r['machine_cores']} cores, torch threads {r['torch_threads']}, "
            f"load average {r['load_avg_start'][0]:.2f} -> {r['load_avg_end'][0]:.2f}"
        ),
        f"model: {r['model']}",
        f"prompts: {r['prompts']} (median {r['prompt_seconds_median']:.2f} s) x {r['repeats']} repeats",
        "speech-processing latency (end of speech -> condition ready):",
        (
            f"  E2E     (encoder + bridge)     median {r['e2e_latency_median_ms']:8.1f} ms   "
            f"p90 {r['e2e_latency_p90_ms']:8.1f} ms"
        ),
        (
            f"  cascade (ASR + text encoder)   median {r['cascade_latency_median_ms']:8.1f} ms   "
            f"p90 {r['cascade_latency_p90_ms']:8.1f} ms"
        ),
        (
            f"  E2E / cascade = {r['latency_ratio']:.3f}: {r['latency_reduction_pct']:.1f} % lower "
            f"(target >= {r['latency_target_pct']:g} %: {verdict}; "
            f"STAR paper {r['star_paper_reduction_pct']:g} %)"
        ),
        (
            f"listen ({r['listen_readings']} readings): median {r['listen_latency_median_ms']:.1f} ms   "
            f"p90 {r['listen_latency_p90_ms']:.1f} ms"
        ),
        (
            f"generation of {r['generate_audio_seconds']:g} s ({r['generate_steps']} steps): median "
            f"{r['generation_median_s']:.3f} s (generator {r['generator_median_s']:.3f} + vocoder "
            f"{r['vocoder_median_s']:.3f}), real-time factor {r['real_time_factor']:.3f}"
        ),
        (
            f"memory: peak RSS {r['peak_rss_mb']:.0f} MiB (+{r['peak_rss_delta_mb']:.0f} MiB over the "
            f"{r['rss_before_load_mb']:.0f} MiB before loading)"
        ),
    ]
    if "cold_start_s" in r:
        lines.append(
            f"cold start to first audio: {r['cold_start_s']:.2f} s (import {r['cold_start_import_s']:.2f}, "
            f"load {r['cold_start_load_s']:.2f}, generate {r['cold_start_generate_s']:.2f}; "
            f"peak RSS {r['cold_start_peak_rss_mb']:.0f} MiB)"
        )
    return "\n".join(lines)
