"""How much a generator uses its condition: validation flow loss under its own, the null and another clip's condition.

    python -m star.eval.condition_use --task-config runs/generator_text_more/task_config.json MODEL_DIR [MODEL_DIR ...]

Same fixed clips, crops, noise and times as the trainer's validation (`GeneratorTask.eval_batches`). A
generator that ignores its condition scores the same under all three; the gap between the null and the
own condition is what classifier-free guidance amplifies, and a swapped condition (each clip gets the
next clip's, within its batch) should be worse than none. Text conditions (stage 2a task configs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

CONDITIONS = ("own", "null", "swapped")


@torch.no_grad()
def condition_use(model: Any, batches: list[dict[str, torch.Tensor]], times: list[float]) -> dict[str, dict[str, float]]:
    """{f"t{t}": {"own", "null", "swapped": mean flow loss}} over the batches (weighted by clips)."""
    model.eval()
    out: dict[str, dict[str, float]] = {}
    for t in times:
        totals, clips = dict.fromkeys(CONDITIONS, 0.0), 0
        for batch in batches:
            b = batch["mel"].shape[0]
            null, null_mask = model.null_condition(b, batch["cond"].shape[1])
            swap = torch.roll(torch.arange(b), 1)
            options = {"own": (batch["cond"], batch["cond_mask"]), "null": (null, null_mask),
                       "swapped": (batch["cond"][swap], batch["cond_mask"][swap])}
            for name, (cond, mask) in options.items():
                loss = model(batch["mel"], cond, mask, batch["mel_mask"], t=torch.full((b,), t),
                             noise=batch["noise"], drop=False)
                totals[name] += float(loss) * b
            clips += b
        out[f"t{t:g}"] = {k: v / clips for k, v in totals.items()}
    return out


def main(argv: list[str] | None = None) -> None:
    from star.generator import load_generator
    from star.train.generator_task import GeneratorTask, GeneratorTaskConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="generator folders (generator.safetensors/json)")
    parser.add_argument("--task-config", required=True, type=Path, help="a stage-2a task config (its validation clips)")
    parser.add_argument("--times", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.9])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cfg = GeneratorTaskConfig.load(args.task_config)
    task = GeneratorTask(cfg, out_dir=Path(cfg.out_dir))
    batches = task.eval_batches()
    for folder in args.models:
        scores = condition_use(load_generator(folder), batches, args.times)
        print(json.dumps({"model": str(folder), **{t: {k: round(v, 4) for k, v in s.items()} for t, s in scores.items()}}))


if __name__ == "__main__":
    main()
