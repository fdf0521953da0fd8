"""Which stage loses a category end to end: the bridge (wrong event heard) or the generator (right event, wrong sound)?

    python scripts/bridge_vs_generator.py --manifest runs/data/esc10_festival/prompts.jsonl \
        --clips runs/eval_v4/e2e [--model DIR]

For every single-event prompt, the bridge's most probable event (its own head, as `star listen`) is compared
with the request, and the clip that `star eval --mode e2e` generated for it (CLIPS/<id>.wav) is classified by
the evaluation classifier. Prints a markdown table per category.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import torch
from tqdm import tqdm

from star.audio import SAMPLE_RATE, load_audio
from star.eval.classifier import EventClassifier
from star.eval.evaluator import read_prompts
from star.pipeline import Pipeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", type=Path, required=True, help="prompts.jsonl of the evaluation")
    ap.add_argument("--clips", type=Path, required=True, help="the e2e/ folder that `star eval` wrote")
    ap.add_argument("--model", default=None, help="model folder whose bridge to ask (default: the embedded one)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    pipe, classifier = Pipeline.from_pretrained(args.model), EventClassifier.load()
    counts: dict[str, Counter] = {}
    prompts = [p for p in read_prompts(args.manifest) if len({e["category"] for e in p.events}) == 1]
    for p in tqdm(prompts, desc="prompts"):
        asked = p.events[0]["category"]
        scores = pipe.listen(p.speech).scores
        heard = max(scores, key=scores.get) == asked
        made = classifier.predict(load_audio(args.clips / f"{p.id}.wav", allow_silent=True), SAMPLE_RATE) == asked
        counts.setdefault(asked, Counter())[heard, made] += 1

    print("| category | bridge right | clip recognised, bridge right | clip recognised, bridge wrong |")
    print("|---|---:|---:|---:|")
    for category, c in sorted(counts.items()):
        right, wrong = c[True, True] + c[True, False], c[False, True] + c[False, False]
        print(f"| {category} | {right}/{right + wrong} | {c[True, True]}/{right} | {c[False, True]}/{wrong} |")


if __name__ == "__main__":
    main()
