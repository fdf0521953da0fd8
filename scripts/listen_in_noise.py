"""`listen`'s top-1 on single-event prompts with white noise added (STUDY part 20): does a model folder's
choice of events hold up in noise? Thresholds are ignored (the fused scores' best event is taken).

    python scripts/listen_in_noise.py --manifest runs/data/esc10_train/prompts.jsonl \
        --models runs/model_v12 src/star/assets/default --snr 10 5

The noise of prompt i is drawn with seed i and scaled to the prompt's own power, so every model hears the
same noisy prompts. A training manifest contributes its validation split (`scored_rows`).
"""

from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

from star.audio import load_audio
from star.bridge.evaluate import scored_rows
from star.bridge.listen import Listener
from star.train.bridge_task import row_categories


def with_noise(wav: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(wav)).astype(np.float32)
    noise *= np.sqrt(np.mean(wav**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return wav + noise


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--models", nargs="+", required=True, help="model folders (bridge + phonetic reader)")
    p.add_argument("--snr", type=float, nargs="+", default=[10.0, 5.0], help="signal-to-noise ratios in dB")
    a = p.parse_args()
    rows, name = scored_rows(a.manifest)
    rows = [r for r in rows if len(row_categories(r)) == 1]
    print(f"| model | clean | {' | '.join(f'{s:g} dB' for s in a.snr)} |\n|---|" + "---:|" * (len(a.snr) + 1))
    for model in a.models:
        listener = Listener.from_folder(model)
        cells = []
        for snr in (None, *a.snr):
            right = 0
            for i, r in enumerate(tqdm(rows, desc=f"{model} {name} {snr}")):
                wav = load_audio(r["speech"])
                probs = listener.signals(wav if snr is None else with_noise(wav, snr, i))[0]
                right += listener.cfg.vocab[int(probs.argmax())] == row_categories(r)[0]
            cells.append(f"{right / len(rows):.3f}")
        print(f"| {model} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
