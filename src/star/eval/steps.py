"""Quality against sampler steps: regenerates docs/STEPS.md.

    python -m star.eval.steps --festival runs/data/esc10_festival/prompts.jsonl --out docs/STEPS.md \
        [--model DIR] [--steps 1 2 4 8 16] [--methods euler heun] [--shifts 1 3] [--limit 40]

Each (sampler, steps) setting generates the same held-out prompts end to end with the same seeds and is
scored by `star.eval.evaluator.run_eval` (event accuracy, KL, FD against the prompts' real clips) and
timed (median wall time of the generator per clip, from the pipeline's own timings). Heun makes two
network calls per step (one on its last step), so compare settings by "network calls", not by steps.
The time shift (SD3's) moves the steps towards the noise end: shift 3 puts half of 8 steps above t = 0.75.
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

INTRO = (
    "End-to-end generation (spoken festival prompts -> bridge -> generator -> vocoder) of the same "
    "held-out prompts with the same seeds, at each sampler setting. Event accuracy and KL come from the "
    "event classifier trained on real ESC-10 clips only; FD from aisfx embeddings against the prompts' "
    "real clips. `calls` = backbone evaluations per clip (each batches the conditional and the "
    "unconditional branch for classifier-free guidance); time = median generator wall time per 5 s clip."
)


def network_calls(method: str, steps: int) -> int:
    """Backbone evaluations per sample (each one batched over the conditional and null condition)."""
    return 2 * steps - 1 if method == "heun" else steps


def sweep(
    festival: Path,
    runs: Path,
    settings: list[tuple[str, int, float]],
    *,
    model: Path | None = None,
    limit: int = 40,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One E2E evaluation per (method, steps, shift); rows with the scores of all prompts and the timing."""
    from star.eval.classifier import EventClassifier
    from star.eval.evaluator import CachedClassifier, run_eval
    from star.pipeline import Pipeline

    pipe = Pipeline.from_pretrained(model)
    classifier = CachedClassifier(EventClassifier.load())
    rows = []
    for method, steps, shift in settings:
        pipe.cfg.sampler, pipe.cfg.shift = method, shift
        generator_s = []
        timed = _TimedPipeline(pipe, generator_s)
        scores = run_eval(festival, runs / f"{method}_{steps}_shift{shift:g}", mode="e2e", limit=limit,
                          steps=steps, seed=seed, pipe=timed, classifier=classifier, reference_rows=False)
        row = next(r for r in scores["rows"] if r["system"] == "e2e" and r["group"] == "all")
        rows.append({"method": method, "steps": steps, "shift": shift, "calls": network_calls(method, steps),
                     "generator_median_s": float(np.median(generator_s)), **row})
    return rows


class _TimedPipeline:
    """The pipeline, recording the generator's share of each call (the evaluator times the whole call)."""

    def __init__(self, pipe: Any, sink: list[float]):
        self._pipe, self._sink = pipe, sink

    def generate(self, *args: Any, **kwargs: Any):
        out = self._pipe.generate(*args, **kwargs)
        self._sink.append(self._pipe.last_timings["generator_s"])
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)


def format_page(rows: list[dict[str, Any]], command: str, load: tuple[float, float]) -> str:
    def cell(v: Any, digits: int) -> str:
        return "–" if v is None else f"{v:.{digits}f}"

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    measured = f"Measured {when} UTC, load average {load[0]:.1f} -> {load[1]:.1f} on {os.cpu_count()} cores."
    lines = [
        "# Quality against sampler steps",
        "",
        INTRO,
        "",
        f"Regenerate: `{command}`",
        "",
        measured,
        "",
        ("| sampler | steps | shift | calls | event acc. ↑ | KL ↓ | FD ↓ | both present ↑ | generator s (median) "
         "| most common top-1 |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        top = r.get("most_common_top1")
        lines.append(
            f"| {r['method']} | {r['steps']} | {r['shift']:g} | {r['calls']} | {cell(r.get('event_accuracy'), 2)} "
            f"| {cell(r.get('kl'), 2)} | {cell(r.get('fd'), 1)} | {cell(r.get('both_events_present'), 2)} "
            f"| {cell(r['generator_median_s'], 3)} | {f'{top[0]} ({top[1]})' if top else '–'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate docs/STEPS.md: generation quality against sampler steps.")
    parser.add_argument("--festival", type=Path, required=True, help="held-out prompts manifest (JSONL)")
    parser.add_argument("--out", type=Path, default=Path("docs/STEPS.md"))
    parser.add_argument("--runs", type=Path, default=Path("runs/steps"), help="where the generated clips go")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the embedded model)")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--methods", nargs="+", default=["euler", "heun"], choices=["euler", "heun"])
    parser.add_argument("--shifts", type=float, nargs="+", default=[1.0], help="sampling time shifts (> 0)")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    command = "python -m star.eval.steps " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    load0 = os.getloadavg()[0]
    settings = [(m, s, k) for m in args.methods for s in args.steps for k in args.shifts]
    rows = sweep(args.festival, args.runs, settings, model=args.model, limit=args.limit, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(format_page(rows, command, (load0, os.getloadavg()[0])))
    (args.runs / "steps.json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
