"""Regenerates docs/RESULTS.md: E2E vs cascade on held-out-voice prompts, clean and noisy, the latency
table of `star bench`, and spectrograms of a few examples.

    python -m star.eval.results --festival /work/runs/data/esc10_festival/prompts.jsonl --out docs/

Runs `star bench --json` once in its own process (unless `--bench` names a saved report), then
`star.eval.evaluator.run_eval` twice: clean prompts, and the same prompts with white noise at
`--noise-snr` dB (unless `--reuse` finds their outputs under `--runs`). The page quotes medians and
records the command, the date and the load average of the machine during the measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from star.audio import SAMPLE_RATE, load_audio

FIGURES = "figures"
N_EXAMPLES = 3
INTRO = (
    "synthesised by festival voices that no model was trained on. festival **ked** is a speaker we "
    "never trained on; festival kal and slt are the same speakers as two flite training voices (another "
    "synthesiser), so they are reported apart. Reference rows: the real clips the prompts describe, scored "
    "the same way (the ceiling), and white noise (the floor). FD: Fréchet distance on aisfx embeddings "
    "against real clips; event accuracy (single-event and repeat prompts), KL (real vs generated "
    "posteriors, paired by prompt) and IS from an event classifier trained on real ESC-10 clips only; "
    "both-present on two-event scenes (the two requested events are the two the classifier finds most "
    "present in any window); ordering error on two-event sequences, and over those with both events "
    "present; ASR WER of the cascade's transcripts against the caption. Counts of scored clips in "
    "parentheses."
)


# ---------------------------------------------------------------- spectrograms


def spectrogram_figure(panels: list[tuple[str, np.ndarray]], title: str, path: Path) -> Path:
    """Log-mel spectrograms (the model's own representation) of clips side by side, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from star.audio import MelSpec

    mel = MelSpec()
    specs = [mel.of_numpy(np.asarray(wav, np.float32)) for _, wav in panels]  # [64, frames] each
    vmax = max(max(float(spec.max()) for spec in specs), -5.0)  # one colour scale for every panel
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 2.8), sharey=True, squeeze=False)
    for ax, (label, wav), spec in zip(axes[0], panels, specs, strict=True):
        ax.imshow(
            spec,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=-11.5,
            vmax=vmax,
            extent=(0.0, len(wav) / SAMPLE_RATE, 0, spec.shape[0]),
        )
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("s")
    axes[0][0].set_ylabel("mel bin")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def pick_examples(prompts: list[Any], n: int = N_EXAMPLES) -> list[Any]:
    """One prompt per scene kind first (single, overlay, sequence, repeat), then the rest, ked first."""
    ordered = sorted(prompts, key=lambda p: ("ked" not in p.voice, p.id))
    chosen, kinds = [], set()
    for p in ordered:
        if p.kind not in kinds:
            chosen.append(p)
            kinds.add(p.kind)
    chosen += [p for p in ordered if p not in chosen]
    return chosen[:n]


def example_figures(
    manifest: Path, run_dir: Path, docs: Path, limit: int | None
) -> list[tuple[Path, Any, dict]]:
    """PNGs of real reference | E2E | cascade for a few prompts of a clean run, with their transcripts."""
    from star.eval.evaluator import read_prompts

    scores = json.loads((run_dir / "scores.json").read_text())
    transcripts = {c["id"]: c for c in scores.get("clips", {}).get("cascade", [])}
    out = []
    for p in pick_examples(read_prompts(manifest, limit)):
        panels = []
        if p.audio is not None and p.audio.is_file():
            panels.append(("real clip", load_audio(p.audio, SAMPLE_RATE, allow_silent=True)))
        for mode in scores["modes"]:
            wav_path = run_dir / mode / f"{p.id}.wav"
            if wav_path.is_file():
                panels.append(
                    (mode.upper() if mode == "e2e" else mode, load_audio(wav_path, allow_silent=True))
                )
        if not panels:
            continue
        png = spectrogram_figure(panels, f'"{p.caption}" ({p.voice})', docs / FIGURES / f"example_{p.id}.png")
        out.append((png, p, transcripts.get(p.id, {})))
    return out


# ---------------------------------------------------------------- markdown


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def latency_table(b: dict[str, Any]) -> str:
    rows = [
        (
            "speech-processing latency, E2E (speech encoder + bridge)",
            f"{b['e2e_latency_median_ms']:.1f} ms",
            f"{b['e2e_latency_p90_ms']:.1f} ms",
        ),
        (
            (
                f"speech-processing latency, cascade (Whisper tiny.en ASR, beam "
                f"{b.get('asr_beam_size', '?')} + MiniLM)"
            ),
            f"{b['cascade_latency_median_ms']:.1f} ms",
            f"{b['cascade_latency_p90_ms']:.1f} ms",
        ),
        (
            "E2E / cascade",
            f"{b['latency_ratio']:.3f} (-{b['latency_reduction_pct']:.1f} %)",
            f"-{b['latency_reduction_p90_pct']:.1f} %",
        ),
        (
            (
                f"generation of {b['generate_audio_seconds']:g} s of audio "
                f"(generator + vocoder, {b['generate_steps']} steps)"
            ),
            f"{b['generation_median_s']:.3f} s",
            f"{b['generation_p90_s']:.3f} s",
        ),
        ("real-time factor (generation time / audio length)", f"{b['real_time_factor']:.3f}", ""),
        (
            "spoken prompt -> 5 s of audio, E2E, in a warm process",
            f"{b['speech_to_audio_median_s']:.3f} s",
            "",
        ),
        ("peak RSS of the benchmark process (ru_maxrss)", f"{b['peak_rss_mb']:.0f} MiB", ""),
        ("RSS growth from loading and running the model", f"{b['rss_delta_mb']:.0f} MiB", ""),
    ]
    if "cold_start_s" in b:
        rows += [
            (
                "cold start to first audio (new process: import, load, generate once)",
                f"{b['cold_start_s']:.2f} s",
                "",
            ),
            ("peak RSS of that cold-start process", f"{b['cold_start_peak_rss_mb']:.0f} MiB", ""),
        ]
    lines = ["| measurement | median | p90 |", "|---|---:|---:|"]
    lines += [f"| {a} | {m} | {p} |" for a, m, p in rows]
    parts = ("encoder", "bridge", "asr", "text_encoder")
    if all(f"{k}_median_ms" in b for k in parts):
        lines.append("")
        lines.append(
            "Breakdown (median per prompt, ms): speech encoder {:.1f}, bridge {:.1f}; ASR {:.1f}, text "
            "encoder {:.1f}.".format(*(b[f"{k}_median_ms"] for k in parts))
        )
    return "\n".join(lines)


def machine_line(b: dict[str, Any]) -> str:
    return (
        f"{b['machine_cpu']}, {b['machine_cores']} cores, torch {b['torch']} with {b['torch_threads']} "
        f"intra-op threads (speech encoder / ASR: CTranslate2 with {b.get('speech_encoder_cpu_threads')} / "
        f"{b.get('asr_cpu_threads')} threads), Python {b['python']}"
    )


def load_note(loads: list[float], cores: int) -> str:
    """Say whether other work was running: a 1-minute load above the core count means shared CPUs."""
    if not loads:
        return ""
    hi = max(loads)
    if hi > 0.75 * cores:
        return (
            f"**Timing caveat:** other jobs (model training) shared the {cores} cores during these "
            f"measurements; the 1-minute load average was {min(loads):.1f}-{hi:.1f}. Latencies and speeds "
            "are therefore pessimistic and noisy; E2E and cascade were measured interleaved in the same "
            "process, so their ratio is the robust figure."
        )
    return f"The machine was otherwise idle (1-minute load average {hi:.1f})."


# ---------------------------------------------------------------- the page


def _row(scores: dict[str, Any] | None, system: str, group: str = "all") -> dict[str, Any]:
    for r in (scores or {}).get("rows", []):
        if r["system"] == system and r["group"] == group:
            return r
    return {}


def summary_lines(
    clean: dict[str, Any], noisy: dict[str, Any] | None, bench: dict[str, Any] | None
) -> list[str]:
    """Headline figures as bullet points, each taken from the tables below."""
    out = []
    if bench is not None:
        out.append(
            f"- Speech-processing latency: E2E {bench['e2e_latency_median_ms']:.0f} ms vs cascade "
            f"{bench['cascade_latency_median_ms']:.0f} ms (median), "
            f"{bench['latency_reduction_pct']:.1f} % lower "
            f"(target >= 90 %; STAR paper 76.9 %)."
        )
        out.append(
            f"- 5 s of audio in {bench['generation_median_s']:.2f} s (real-time factor "
            f"{bench['real_time_factor']:.2f}; target <= 0.1), peak RSS {bench['peak_rss_mb']:.0f} MiB "
            f"(target <= 1.5 GB), first audio {bench['cold_start_s']:.0f} s after a cold start."
        )
    group = "ked" if _row(clean, "e2e", "ked") else "all"
    e2e, cas, real = _row(clean, "e2e", group), _row(clean, "cascade", group), _row(clean, "real clips")
    if e2e and cas:
        out.append(
            f"- Generated clips recognised as the requested sound "
            f"({'unseen voice ked' if group == 'ked' else 'all voices'}"
            f"): E2E {_fmt(e2e.get('event_accuracy'))}, cascade {_fmt(cas.get('event_accuracy'))}, real "
            f"recordings (all prompts) {_fmt(real.get('event_accuracy'))}; "
            f"FD E2E {_fmt(e2e.get('fd'), 0)}, cascade "
            f"{_fmt(cas.get('fd'), 0)}."
        )
    n_e2e, n_cas = _row(noisy, "e2e"), _row(noisy, "cascade")
    if n_e2e and n_cas:
        out.append(
            f"- Noisy prompts ({noisy['settings'].get('noise_snr'):g} dB SNR): event accuracy E2E "
            f"{_fmt(_row(clean, 'e2e').get('event_accuracy'))} -> {_fmt(n_e2e.get('event_accuracy'))}, "
            f"cascade "
            f"{_fmt(_row(clean, 'cascade').get('event_accuracy'))} -> {_fmt(n_cas.get('event_accuracy'))}; "
            f"the cascade's ASR WER {_fmt(_row(clean, 'cascade').get('wer'))} -> {_fmt(n_cas.get('wer'))}."
        )
    return out


def build_page(
    *,
    command: str,
    clean: dict[str, Any],
    noisy: dict[str, Any] | None,
    bench: dict[str, Any] | None,
    figures: list[tuple[Path, Any, dict]],
    docs: Path,
    loads: list[float],
) -> str:
    from star.eval.evaluator import format_table

    s = clean["settings"]
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cores = int(bench["machine_cores"]) if bench else (os.cpu_count() or 1)
    settings = (
        f"Model: `{s.get('model')}`; {s.get('steps')} sampler steps, guidance {s.get('cfg')}, "
        f"{s.get('seconds')} s clips, seed {s.get('seed')} (per-prompt seeds derived from it; both modes "
        "use the same seed and sampler settings for a prompt)."
    )
    intro = f"{clean['n_prompts']} spoken prompts from `{Path(clean['manifest']).name}`, " + INTRO
    out = [
        "# STAR results",
        "",
        f"Generated by `{command}` on {date}. Do not edit by hand: rerun the command.",
        "",
        settings,
        "",
        load_note(loads, cores),
        "",
        "## Summary",
        "",
        *summary_lines(clean, noisy, bench),
        "",
        "## E2E vs cascade on held-out-voice prompts",
        "",
        intro,
        "",
        format_table(clean),
        "",
    ]
    if noisy is not None:
        out += [
            f"## Noisy prompts (white noise at {noisy['settings'].get('noise_snr'):g} dB SNR)",
            "",
            (
                "The same prompts with seeded white noise added to the speech before either path hears it "
                "(reference rows as in the table above)."
            ),
            "",
            format_table(noisy),
            "",
        ]
    if bench is not None:
        measured = (
            f"Measured in one process on {bench['prompts']} committed spoken prompts (median length "
            f"{bench['prompt_seconds_median']:.2f} s) x {bench['repeats']} repeats after warm-up, E2E and "
            f"cascade interleaved. Machine: {machine_line(bench)}. Load average at start / end: "
            f"{bench['load_avg_start'][0]:.2f} / {bench['load_avg_end'][0]:.2f}. Date {bench['date']}."
        )
        targets = (
            f"Targets: latency at least {bench['latency_target_pct']:g} % lower than the cascade "
            f"({'met' if bench['latency_target_met'] else 'not met'}; the STAR paper reports "
            f"{bench['star_paper_reduction_pct']:g} %), real-time factor <= 0.1 "
            f"({'met' if bench['real_time_factor'] <= 0.1 else 'not met'}), peak RSS <= 1.5 GB "
            f"({'met' if bench['peak_rss_mb'] <= 1536 else 'not met'})."
        )
        out += [
            "## Latency, speed and memory (`star bench`)",
            "",
            measured,
            "",
            latency_table(bench),
            "",
            targets,
            "",
        ]
    if figures:
        out += [
            "## Examples",
            "",
            (
                "Log-mel spectrograms (64 mels, 0-8 kHz) of the real clip a prompt describes and of "
                "what each path generated for its spoken prompt (clean run)."
            ),
            "",
        ]
        for png, p, clip in figures:
            heard = f' The cascade heard: "{clip["transcript"]}"' if clip.get("transcript") else ""
            out += [
                f'**{p.id}** ({p.kind}, {p.voice}): "{p.caption}".{heard}',
                "",
                f"![{p.id}]({png.relative_to(docs).as_posix()})",
                "",
            ]
    return "\n".join(out).rstrip() + "\n"


def bench_in_subprocess(model: Path | None, repeats: int, save: Path) -> dict[str, Any]:
    """`star bench --json` in a fresh process (its RSS figures are its own), saved to `save`."""
    import subprocess

    cmd = [sys.executable, "-m", "star.cli", "bench", "--json", "--repeats", str(repeats)]
    if model is not None:
        cmd += ["--model", str(model)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)  # progress stays on stderr
    if proc.returncode != 0:
        raise SystemExit(f"star bench failed (exit {proc.returncode})")
    save.parent.mkdir(parents=True, exist_ok=True)
    save.write_text(proc.stdout)
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Regenerate docs/RESULTS.md from evaluation and benchmark runs."
    )
    parser.add_argument(
        "--festival", type=Path, required=True, help="held-out festival prompts manifest (JSONL)"
    )
    parser.add_argument("--out", type=Path, default=Path("docs"), help="docs folder (RESULTS.md, figures/)")
    parser.add_argument("--runs", type=Path, default=Path("runs/results"), help="where eval runs write clips")
    parser.add_argument(
        "--limit", type=int, default=40, help="prompts to evaluate (spread over the manifest)"
    )
    parser.add_argument("--noise-snr", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--cfg", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reference", type=Path, default=None, help="folder of real clips (meta.csv + audio/)"
    )
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--bench", type=Path, default=None, help="a saved `star bench --json` report")
    parser.add_argument("--repeats", type=int, default=5, help="bench repeats when --bench is not given")
    parser.add_argument("--no-bench", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the evaluation runs")
    parser.add_argument("--reuse", action="store_true", help="reuse eval runs already under --runs")
    args = parser.parse_args(argv)

    import torch

    from star.eval.evaluator import run_eval

    command = "python -m star.eval.results " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    loads: list[float] = []
    common = {
        "mode": "both",
        "model_dir": args.model,
        "limit": args.limit,
        "steps": args.steps,
        "cfg": args.cfg,
        "seed": args.seed,
        "reference": args.reference,
    }
    runs = {
        "clean": (args.runs / "clean", None),
        "noisy": (args.runs / f"noisy_snr{args.noise_snr:g}", args.noise_snr),
    }
    # The benchmark runs first, in its own process: memory figures must not include the evaluation's.
    bench = None
    if args.bench is not None:
        bench = json.loads(args.bench.read_text())
    elif not args.no_bench:
        bench = bench_in_subprocess(args.model, args.repeats, args.runs / "bench.json")
    torch.set_num_threads(args.threads)  # after the benchmark: it reports the default thread count
    tables = {}
    for name, (run_dir, snr) in runs.items():
        if args.reuse and (run_dir / "scores.json").is_file():
            tables[name] = json.loads((run_dir / "scores.json").read_text())
        else:
            tables[name] = run_eval(
                args.festival, run_dir, noise_snr=snr, reference_rows=snr is None, **common
            )
        loads += tables[name].get("load_avg", [])
    if bench is not None:
        loads += [bench["load_avg_start"][0], bench["load_avg_end"][0]]
    figures = example_figures(args.festival, runs["clean"][0], args.out, args.limit)
    page = build_page(
        command=command,
        clean=tables["clean"],
        noisy=tables["noisy"],
        bench=bench,
        figures=figures,
        docs=args.out,
        loads=loads,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "RESULTS.md").write_text(page)
    print(f"wrote {args.out / 'RESULTS.md'} and {len(figures)} figures", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
