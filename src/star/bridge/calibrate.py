"""Calibrate `listen`'s "is this a spoken sound request?" thresholds on real data and write them into a
model folder's bridge.json.

Positives: spoken prompts (a manifest's validation prompts, plus held-out-voice prompts if given).
Negatives: real non-speech recordings (ESC-10 clips), synthetic noise, tones and chords, silence, and
speech that names no sound (sentences spoken by espeak-ng), and optionally requests for sounds outside the
vocabulary (`star.bridge.expand --oov`). Each threshold is a grid value; the chosen
triple keeps >= `min_recall` of the prompts and rejects as many negatives as possible. `--answer-sets`
manifests are only scored: the share of their single-event prompts that `listen` accepts, and accepts with
the right first event, under the chosen thresholds (STUDY part 20).

    python -m star.bridge.calibrate --model runs/bridge/best --manifest runs/data/esc10_train/prompts.jsonl \
        runs/data/esc10_festival/prompts.jsonl --esc10 ../shared/data/esc10 \
        --oov runs/bridge/oov/prompts.jsonl --oov-test runs/bridge/oov_test/prompts.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from star.audio import SAMPLE_RATE, load_audio
from star.bridge.listen import Listener
from star.bridge.model import ListenThresholds, StageOneConfig

# Speech that asks for no sound: the listener must not turn it into a guess.
OFF_TOPIC = (
    "what time is it",
    "please send me the report by friday",
    "my name is john and I live in london",
    "turn left at the next corner",
    "how much does this cost",
    "the meeting starts at nine",
    "can you tell me the weather forecast",
    "I think we should buy a new car",
    "thank you very much",
    "set an alarm for seven thirty",
    "where is the nearest station",
    "she reads a book every evening",
)
# Never used to choose thresholds: the rejection rate on these is reported as a held-out figure.
OFF_TOPIC_TEST = (
    "could you call my sister tonight",
    "add milk and eggs to the shopping list",
    "how tall is the eiffel tower",
    "please book a table for two at eight",
    "what did the doctor say yesterday",
    "read the last email again",
    "I lost my keys somewhere in the kitchen",
    "the train to manchester is delayed",
    "remind me to water the plants",
    "how do you spell necessary",
    "switch off the lights in the bedroom",
    "our team won the match on sunday",
    "translate good morning into french",
    "my phone battery is almost empty",
    "who wrote this song",
    "the shop closes at half past five",
    "play the sound of a trumpet",
    "I'd like to hear a violin",
    "the sound of a car engine starting",
    "a vacuum cleaner running",
)
OFF_TOPIC_VOICES = ("en-us+m3", "en-gb+f2", "en-us+f4")
OFF_TOPIC_TEST_VOICES = ("en-gb-scotland+m1", "en-us+f2", "en-029+m7", "en-gb-x-rp+f4")


def synthetic_negatives(seed: int = 0, seconds: float = 4.0) -> dict[str, np.ndarray]:
    """Noise (white, brown), tones, a chord progression, a melody and silence, deterministic by seed."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    out = {
        "white_noise": 0.1 * rng.standard_normal(n),
        "brown_noise": np.cumsum(rng.standard_normal(n)) / 300.0,
        "tone_440": 0.3 * np.sin(2 * np.pi * 440 * t),
        "silence": np.zeros(n),
        "quiet_hum": 0.01 * np.sin(2 * np.pi * 50 * t) + 0.001 * rng.standard_normal(n),
    }
    chords = [(261.6, 329.6, 392.0), (220.0, 261.6, 329.6), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7)]
    prog = np.zeros(n)
    for i, chord in enumerate(chords):
        seg = slice(i * n // 4, (i + 1) * n // 4)
        prog[seg] = sum(np.sin(2 * np.pi * f * t[seg]) for f in chord) / 6
    out["chords"] = prog
    notes = 220 * 2 ** (rng.integers(0, 12, size=16) / 12)
    melody = np.concatenate([np.sin(2 * np.pi * f * t[: n // 16]) * np.exp(-3 * t[: n // 16]) for f in notes])
    out["melody"] = 0.4 * np.pad(melody, (0, n - len(melody)))
    out["drums"] = np.where((np.arange(n) % (SAMPLE_RATE // 2)) < 800, rng.standard_normal(n), 0.0) * 0.5
    return {k: v.astype(np.float32) for k, v in out.items()}


def off_topic_speech(
    texts: tuple[str, ...] = OFF_TOPIC, voices: tuple[str, ...] = OFF_TOPIC_VOICES
) -> dict[str, np.ndarray]:
    """Sentences that ask for no known sound, spoken by espeak-ng -> {"speech:TEXT": waveform}."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(texts):
            voice = voices[i % len(voices)]
            path = Path(tmp) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
            out[f"speech:{text}"] = load_audio(path)
    return out


def esc10_clips(folder: str | Path, per_class: int = 6) -> dict[str, np.ndarray]:
    import csv

    folder = Path(folder)
    rows = list(csv.DictReader((folder / "meta.csv").open()))
    out = {}
    for cat in sorted({r["category"] for r in rows}):
        for r in [r for r in rows if r["category"] == cat][:per_class]:
            out[f"esc10:{cat}:{r['filename']}"] = load_audio(folder / "audio" / r["filename"])
    return out


def choose(
    pos: np.ndarray, neg: np.ndarray, min_recall: float, max_speech_ratio: float = 0.5
) -> tuple[ListenThresholds, dict]:
    """pos, neg [n, 3] signals (speech ratio, max prob, caption sim) -> thresholds and their rates.

    The speech ratio only tells speech from everything else. Telling a request for a known sound from
    other speech is the job of the other two signals, so the ratio's threshold stops at
    `max_speech_ratio`: tightened further, it refuses spoken requests for unknown sounds and real prompts
    alike, by how much of the recording was speech, and that would not carry over to a new room.
    """
    grid = np.round(np.arange(0.0, 0.95, 0.05), 2)
    grids = [grid[grid <= max_speech_ratio + 1e-9], grid, grid]
    best = None
    for th in itertools.product(*grids):
        accept_pos = (pos >= np.array(th)).all(1).mean()
        if accept_pos < min_recall:
            continue
        reject_neg = 1 - (neg >= np.array(th)).all(1).mean()
        # Prefer more rejected negatives, then higher recall, then the most lenient thresholds.
        key = (reject_neg, accept_pos, -sum(th))
        if best is None or key > best[0]:
            best = (key, th)
    if best is None:
        raise RuntimeError("no thresholds reach the requested recall")
    (reject, recall, _), th = best
    return ListenThresholds(*map(float, th)), {"prompt_recall": recall, "negative_rejection": reject}


def spoken_requests(manifests: list[str] | tuple[str, ...]) -> dict[str, np.ndarray]:
    """Every prompt of manifests of requests for unknown sounds (`star.bridge.expand --oov`)."""
    from star.train.bridge_task import read_manifest

    return {f"oov:{r['caption']}:{r['id']}": load_audio(r["speech"]) for m in manifests for r in read_manifest(m)}


def answer_rates(listener: Listener, manifests: list[str] | tuple[str, ...], limits: np.ndarray,
                 alter: Callable[[np.ndarray, int], np.ndarray] | None = None) -> dict:
    """{set: {"accepted", "accepted_right", "prompts"}} over the single-event prompts of each manifest
    (a training manifest's validation split, `scored_rows`), under thresholds `limits` [3]. `alter(wav, i)`,
    if given, changes prompt i of a set before it is heard (scripts/listen_in_noise.py adds noise)."""
    from star.bridge.evaluate import scored_rows
    from star.train.bridge_task import row_categories

    out = {}
    for m in manifests:
        rows, name = scored_rows(m)
        rows = [r for r in rows if len(row_categories(r)) == 1]
        accepted = right = 0
        for i, r in enumerate(tqdm(rows, desc=name)):
            wav = load_audio(r["speech"])
            probs, _, sim, ratio = listener.signals(wav if alter is None else alter(wav, i))
            if (np.array([ratio, probs.max(), sim]) >= limits).all():
                accepted += 1
                right += listener.cfg.vocab[int(probs.argmax())] == row_categories(r)[0]
        out[name] = {"accepted": accepted / len(rows), "accepted_right": right / len(rows), "prompts": len(rows)}
    return out


def calibrate(
    model_dir: str | Path,
    manifests: list[str],
    esc10: str | None,
    min_recall: float = 0.98,
    max_speech_ratio: float = 0.5,
    max_prompts: int = 150,
    write: bool = True,
    oov: list[str] | tuple[str, ...] = (),
    oov_test: list[str] | tuple[str, ...] = (),
    answer_sets: list[str] | tuple[str, ...] = (),
) -> dict:
    """Choose the thresholds; `oov` manifests add requests for unknown sounds to the negatives that choose
    them, `oov_test` ones (held out: other sounds, festival voices) and `answer_sets` (`answer_rates`) are
    only scored."""
    from star.train.bridge_task import read_manifest

    listener = Listener.from_folder(model_dir)
    rng = np.random.default_rng(0)
    prompts = []
    for m in manifests:
        rows = [r for r in read_manifest(m) if r.get("split") in ("val", "validation", "test")]
        pick = rng.choice(len(rows), size=min(max_prompts, len(rows)), replace=False)
        prompts += [rows[i]["speech"] for i in sorted(pick)]
    negatives = {
        **synthetic_negatives(),
        **off_topic_speech(),
        **(esc10_clips(esc10) if esc10 else {}),
        **spoken_requests(oov),
    }

    def sig(wav):
        probs, _, sim, ratio = listener.signals(wav)
        return [ratio, float(probs.max()), sim]

    # Half of the prompts get 0.5-2 s of silence around them, as a real recording would.
    def padded(i, wav):
        if i % 2:
            return wav
        lead, tail = (int(rng.uniform(0.5, 2.0) * SAMPLE_RATE) for _ in range(2))
        return np.pad(wav, (lead, tail))

    pos = np.array([sig(padded(i, load_audio(p))) for i, p in enumerate(tqdm(prompts, desc="prompts"))])
    neg_names = list(negatives)
    neg = np.array([sig(negatives[k]) for k in tqdm(neg_names, desc="non-requests")])
    th, rates = choose(pos, neg, min_recall, max_speech_ratio)
    limits = np.array([th.min_speech_ratio, th.min_event_prob, th.min_caption_sim])
    accepted = [k for k, s in zip(neg_names, neg) if (s >= limits).all()]

    def accepted_of(clips: dict[str, np.ndarray]) -> list[str]:
        return [k for k, w in tqdm(clips.items(), desc="held out") if (np.array(sig(w)) >= limits).all()]

    test = off_topic_speech(OFF_TOPIC_TEST, OFF_TOPIC_TEST_VOICES)
    test_accepted = accepted_of(test)
    held_out = {}
    if oov_test:
        oov_clips = spoken_requests(oov_test)
        oov_accepted = accepted_of(oov_clips)
        held_out = {
            "held_out_oov_rejection": 1 - len(oov_accepted) / len(oov_clips),
            "held_out_oov_accepted": oov_accepted,
        }
    report = {
        "thresholds": th.to_dict(),
        **rates,
        "held_out_off_topic_rejection": 1 - len(test_accepted) / len(test),
        "held_out_off_topic_accepted": test_accepted,
        **held_out,
        **({"answers": answer_rates(listener, answer_sets, limits)} if answer_sets else {}),
        "n_prompts": len(pos),
        "n_negatives": len(neg),
        "accepted_negatives": accepted,
        "prompt_signal_p05": np.percentile(pos, 5, axis=0).round(3).tolist(),
        "negative_signal_p95": np.percentile(neg, 95, axis=0).round(3).tolist(),
    }
    if write:
        cfg_path = Path(model_dir) / "bridge.json"
        cfg = StageOneConfig.load(cfg_path)
        cfg.listen = th
        cfg.save(cfg_path)
        (Path(model_dir) / "listen_calibration.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Calibrate listen's request thresholds into bridge.json")
    p.add_argument("--model", required=True, help="folder with bridge.safetensors + bridge.json")
    p.add_argument("--manifest", required=True, nargs="+", help="prompt manifests (their val/test prompts)")
    p.add_argument("--esc10", help="ESC-10 folder (meta.csv + audio/) for real non-speech clips")
    p.add_argument("--min-recall", type=float, default=0.98)
    p.add_argument("--max-speech-ratio", type=float, default=0.5,
                   help="the speech-ratio threshold never goes above this (it only separates speech from non-speech)")
    p.add_argument("--oov", nargs="*", default=[], help="manifests of requests for unknown sounds (negatives)")
    p.add_argument("--oov-test", nargs="*", default=[], help="held-out such manifests: scored, never used to choose")
    p.add_argument("--answer-sets", nargs="*", default=[],
                   help="manifests whose single-event prompts are scored: accepted, and accepted with the right event")
    p.add_argument("--no-write", action="store_true", help="report only; leave bridge.json as it is")
    a = p.parse_args(argv)
    report = calibrate(a.model, a.manifest, a.esc10, a.min_recall, a.max_speech_ratio, write=not a.no_write,
                       oov=a.oov, oov_test=a.oov_test, answer_sets=a.answer_sets)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
