"""`listen`'s top-1 on single-event prompts with white noise added (STUDY part 20): does a model folder's
choice of events hold up in noise? Thresholds are ignored (the fused scores' best event is taken).

    python scripts/listen_in_noise.py --manifest runs/data/esc10_train/prompts.jsonl \
        --models runs/model_v12 src/star/assets/default --snr 10 5

The noise of prompt i is drawn with seed i and scaled to the prompt's own power, so every model hears the
same noisy prompts. A training manifest contributes its validation split (`answer_rates`).
"""

from __future__ import annotations

import argparse

import numpy as np

from star.bridge.calibrate import answer_rates
from star.bridge.listen import Listener


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
    accept_all = np.full(3, -np.inf)  # thresholds ignored: "accepted and right" is then top-1
    print(f"| model | clean | {' | '.join(f'{s:g} dB' for s in a.snr)} |\n|---|" + "---:|" * (len(a.snr) + 1))
    for model in a.models:
        listener = Listener.from_folder(model)
        cells = []
        for snr in (None, *a.snr):
            alter = None if snr is None else (lambda wav, i, snr=snr: with_noise(wav, snr, i))
            (rates,) = answer_rates(listener, [a.manifest], accept_all, alter).values()
            cells.append(f"{rates['accepted_right']:.3f}")
        print(f"| {model} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
