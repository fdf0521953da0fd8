"""`star eval`: generate for every prompt of a manifest in E2E and/or cascade mode, then score the clips.

Owns the evaluation run: reading the prompts manifest, the optional deterministic speech noise, the
generation loop (same seed and sampler settings for both modes), writing OUT/<mode>/<id>.wav, and
the tables OUT/scores.json + OUT/table.md. The metrics and the models behind them belong to
`star.eval.scoring` (`evaluate_clips`); this module only feeds them.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np

from star.audio import SAMPLE_RATE, load_audio, write_wav
from star.errors import AudioError, StarError

# "caption" feeds the words the prompt speaks to the text generator: a cascade with a perfect
# transcript, the ceiling that separates what the speech path loses from what the generator cannot make.
MODE_SETS = {"e2e": ("e2e",), "cascade": ("cascade",), "both": ("e2e", "cascade"), "caption": ("caption",)}
SYSTEM_NAMES = {
    "e2e": "E2E (speech -> bridge)",
    "cascade": "cascade (ASR -> text)",
    "caption": "caption (true words -> text)",
}


@dataclass
class EvalPrompt:
    """One line of a prompts manifest (paths already resolved against the manifest's folder)."""

    id: str
    speech: Path
    caption: str
    events: list[dict[str, Any]]
    kind: str = "single"
    voice: str = ""
    audio: Path | None = None  # the real clip the prompt describes (reference for FD / KL)
    extra: dict[str, Any] = field(default_factory=dict)


def read_prompts(manifest: str | Path, limit: int | None = None) -> list[EvalPrompt]:
    """Parse and validate a prompts manifest; a bad entry raises StarError naming it, before any work.

    `limit` keeps `limit` prompts spread evenly over the file (not the first ones), so a manifest
    sorted by voice or by scene kind still yields a mixed subset; the choice is deterministic.
    """
    from star.data.manifest import read_manifest

    rows = read_manifest(manifest)  # JSON per line, audio/speech resolved against the manifest's folder
    prompts, seen = [], set()
    for n, item in enumerate(rows, 1):
        where = f"{manifest}: entry {n}"
        missing = [k for k in ("id", "speech", "caption", "events") if k not in item]
        if missing:
            raise StarError(f"{where}: missing {', '.join(missing)}")
        pid = str(item["id"])
        if not pid or "/" in pid or "\\" in pid or pid.startswith(".") or pid in seen:
            raise StarError(f"{where}: id {pid!r} is not a unique safe file name")
        seen.add(pid)
        events = item["events"]
        if (
            not isinstance(events, list)
            or not events
            or not all(isinstance(e, dict) and "category" in e for e in events)
        ):
            raise StarError(f"{where}: events must be a non-empty list of {{category, onset, offset}}")
        known = {"id", "speech", "caption", "events", "kind", "voice", "audio"}
        prompts.append(
            EvalPrompt(
                id=pid,
                speech=Path(item["speech"]),
                caption=str(item["caption"]),
                events=events,
                kind=str(
                    item.get("kind") or ("single" if len({e["category"] for e in events}) == 1 else "overlay")
                ),
                voice=str(item.get("voice", "")),
                audio=Path(item["audio"]) if item.get("audio") else None,
                extra={k: v for k, v in item.items() if k not in known},
            )
        )
    if not prompts:
        raise StarError(f"{manifest}: no prompts")
    if limit is not None and limit < len(prompts):
        if limit < 1:
            raise StarError(f"limit must be >= 1, got {limit}")
        prompts = stratified_subset(prompts, limit)
    return prompts


def stratified_subset(prompts: list[EvalPrompt], limit: int) -> list[EvalPrompt]:
    """`limit` prompts shared as evenly as possible between the strata (scene kind x number of distinct
    events), each stratum's share spread evenly over it; manifest order is kept. Deterministic, and a
    small subset still holds the two-event scenes that ordering and both-present need."""
    strata: dict[tuple[str, int], list[int]] = {}
    for i, p in enumerate(prompts):
        strata.setdefault((p.kind, len({str(e["category"]) for e in p.events})), []).append(i)
    share = dict.fromkeys(strata, 0)
    left = limit
    while left:  # round robin over the strata that still have prompts to give
        for key, idx in strata.items():
            if left and share[key] < len(idx):
                share[key] += 1
                left -= 1
    keep = []
    for key, idx in strata.items():
        if share[key]:
            keep += [idx[j] for j in np.linspace(0, len(idx) - 1, share[key]).round().astype(int)]
    return [prompts[i] for i in sorted(keep)]


def prompt_seed(base: int, prompt_id: str) -> int:
    """Per-prompt seed, stable across runs and processes (str hash is salted; crc32 is not)."""
    return (int(base) + zlib.crc32(prompt_id.encode())) % (2**31)


def add_noise(wav: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """White Gaussian noise at `snr_db` against the speech's mean power, from a seeded generator.

    Power is taken over the whole prompt (TTS prompts carry little leading/trailing silence), so the
    same file and seed always give the same noisy prompt.
    """
    wav = np.asarray(wav, dtype=np.float32)
    power = float(np.mean(wav.astype(np.float64) ** 2))
    if power <= 0:
        raise AudioError("cannot add noise at an SNR to a silent prompt")
    noise = np.random.default_rng(seed).standard_normal(len(wav))
    noisy = wav + noise * np.sqrt(power / 10.0 ** (snr_db / 10.0))
    peak = float(np.max(np.abs(noisy)))
    return (noisy / peak * 0.99 if peak > 0.99 else noisy).astype(np.float32)


def voice_group(voice: str) -> str:
    """Report group of a TTS voice: festival ked is the truly unseen speaker, festival kal/slt share
    their speakers with flite's training voices (DESIGN.md), so they are reported apart."""
    v = voice.lower()
    if "ked" in v:
        return "ked"
    if v.startswith("festival") or "kal" in v or "slt" in v:
        return "kal/slt"
    return v.split(":", 1)[0] or "unknown"


@dataclass
class Generated:
    """One generated clip and how it was made."""

    id: str
    mode: str
    path: Path
    wav: np.ndarray
    seconds: float  # wall time of pipe.generate
    condition_s: float | None = None
    transcript: str | None = None
    error: str | None = None  # set when the pipeline refused the prompt (the clip is then silence)


def generate_clips(
    pipe: Any,
    prompts: list[EvalPrompt],
    mode: str,
    out_dir: Path,
    *,
    seconds: float | None = None,
    steps: int | None = None,
    cfg: float | None = None,
    seed: int = 0,
    noise_snr: float | None = None,
) -> list[Generated]:
    """Generate OUT/<mode>/<id>.wav for every prompt. A prompt the pipeline refuses with a StarError (the
    cascade's ASR hearing no words) yields a silent clip and the error, so it counts against the mode
    instead of silently shrinking its test set."""
    import time

    from tqdm import tqdm

    seconds = float(pipe.cfg.seconds if seconds is None else seconds)
    results = []
    for p in tqdm(prompts, desc=f"generate {mode}"):
        if mode == "caption":  # the prompt's own words: its recording is not needed
            prompt: dict[str, Any] = {"text": p.caption}
        else:
            speech = load_audio(p.speech, SAMPLE_RATE)
            if noise_snr is not None:
                speech = add_noise(speech, noise_snr, prompt_seed(seed + 1, p.id))
            prompt = {"speech": (speech, SAMPLE_RATE), "mode": mode}
        t0 = time.perf_counter()
        try:
            wav, sr = pipe.generate(**prompt, seconds=seconds, steps=steps, cfg=cfg, seed=prompt_seed(seed, p.id))
            error = None
        except StarError as exc:
            wav, sr, error = np.zeros(round(seconds * SAMPLE_RATE), np.float32), SAMPLE_RATE, str(exc)
        elapsed = time.perf_counter() - t0
        timings = dict(getattr(pipe, "last_timings", {}) or {}) if error is None else {}
        # The cascade's transcript: Pipeline.last_transcript (older builds: last_timings["transcript"]).
        transcript = (
            (getattr(pipe, "last_transcript", None) or timings.get("transcript")) if error is None else None
        )
        results.append(
            Generated(
                id=p.id,
                mode=mode,
                path=write_wav(out_dir / mode / f"{p.id}.wav", wav, sr),
                wav=np.asarray(wav),
                seconds=elapsed,
                condition_s=timings.get("condition_s"),
                transcript=transcript if mode == "cascade" else None,
                error=error,
            )
        )
    return results


# ---------------------------------------------------------------- scoring


class CachedClassifier:
    """The event classifier with its per-clip analysis memoised, so scoring the same clips several times
    (all prompts, then each voice group) embeds each clip once."""

    def __init__(self, classifier: Any):
        self._clf = classifier
        self._cache: dict[str, Any] = {}

    def analyse(self, wav: np.ndarray, sr: int) -> Any:
        import hashlib

        wav = np.ascontiguousarray(wav, dtype=np.float32)
        key = hashlib.sha1(wav.tobytes() + str(sr).encode()).hexdigest()
        if key not in self._cache:
            self._cache[key] = self._clf.analyse(wav, sr)
        return self._cache[key]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._clf, name)


def noise_clip(seconds: float, seed: int, rms_db: float = -20.0) -> np.ndarray:
    """Seeded white noise at `rms_db` dBFS: the floor row of the tables."""
    n = round(seconds * SAMPLE_RATE)
    return (np.random.default_rng(seed).standard_normal(n) * 10.0 ** (rms_db / 20.0)).astype(np.float32)


def reference_embeddings(folder: Path, vocabulary: set[str], clf: Any) -> np.ndarray:
    """aisfx clip embeddings [n, 512] of the real clips in `folder` (meta.csv + audio/) whose category is
    one the prompts ask for."""
    from tqdm import tqdm

    from star.data.corpus import load_corpus

    clips = [c for c in load_corpus(folder).clips if c.category in vocabulary]
    if len(clips) < 2:
        raise StarError(f"{folder}: fewer than 2 reference clips of the categories {sorted(vocabulary)}")
    return np.stack(
        [
            clf.analyse(load_audio(c.path, SAMPLE_RATE, allow_silent=True), SAMPLE_RATE).embedding
            for c in tqdm(clips, desc="reference clips")
        ]
    )


def split_half_fd(embeddings: np.ndarray) -> float | None:
    """FD between the even and the odd half of a set of real-clip embeddings: the real-vs-real ceiling
    when no separate reference folder is given (each half is half the size, so it is a pessimistic one)."""
    from star.eval.metrics import FrechetDistance

    if len(embeddings) < 4:
        return None
    fd = FrechetDistance()
    fd.update(generated=embeddings[0::2], reference=embeddings[1::2])
    return fd.compute()


def _wer(pairs: list[tuple[str, str]]) -> float | None:
    from star.eval.metrics import WordErrorRate

    wer = WordErrorRate()
    for hyp, ref in pairs:
        wer.update(hyp, ref)
    try:
        return wer.compute()
    except ValueError:
        return None


def _summary(scores: dict[str, Any]) -> dict[str, Any]:
    """The metrics without per-clip rows, plus the classifier's most frequent top-1 label: a generator
    that ignores its condition shows up there at once (every clip heard as the same sound)."""
    from collections import Counter

    out = {k: v for k, v in scores.items() if k != "clips"}
    top = Counter(c["top1"] for c in scores.get("clips", [])).most_common(1)
    out["most_common_top1"] = [top[0][0], top[0][1]] if top else None
    return out


def score_mode(
    prompts: list[EvalPrompt],
    clips: list[Generated],
    references: list[tuple[np.ndarray, int] | None],
    clf: CachedClassifier,
    fd_reference: np.ndarray | None,
    groups: dict[str, list[int]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows (all prompts, then each voice group) for one mode, and per-clip details."""
    from star.eval.scoring import evaluate_clips

    rows, details = [], []
    for group, idx in groups.items():
        scores = evaluate_clips(
            [(clips[i].wav, SAMPLE_RATE, prompts[i]) for i in idx],
            [references[i] for i in idx],
            fd_reference=fd_reference,
            classifier=clf,
            progress=group == "all",
        )
        mode = clips[idx[0]].mode
        row = {
            "system": mode,
            "group": group,
            **_summary(scores),
            "refused": sum(clips[i].error is not None for i in idx),
            "generate_median_s": float(np.median([clips[i].seconds for i in idx])),
        }
        cond = [clips[i].condition_s for i in idx if clips[i].condition_s is not None]
        row["condition_median_ms"] = 1000.0 * float(np.median(cond)) if cond else None
        row["wer"] = (
            _wer([(clips[i].transcript or "", prompts[i].caption) for i in idx])
            if mode == "cascade"
            else None
        )
        rows.append(row)
        if group == "all":
            for i, c in zip(idx, scores["clips"], strict=True):
                g = clips[i]
                details.append(
                    {
                        "id": g.id,
                        "voice": prompts[i].voice,
                        "caption": prompts[i].caption,
                        "path": str(g.path),
                        "transcript": g.transcript,
                        "error": g.error,
                        "seconds": round(g.seconds, 4),
                        **{k: v for k, v in c.items() if k != "index"},
                    }
                )
    return rows, details


def score_references(
    prompts: list[EvalPrompt],
    references: list[tuple[np.ndarray, int] | None],
    clf: CachedClassifier,
    fd_reference: np.ndarray | None,
    seconds: float,
    seed: int,
) -> list[dict[str, Any]]:
    """The real clips the prompts describe, and white noise, scored like generated clips."""
    from star.eval.scoring import evaluate_clips

    rows = []
    have = [i for i, r in enumerate(references) if r is not None]
    if have:
        real = evaluate_clips(
            [(*references[i], prompts[i]) for i in have], None, fd_reference=fd_reference, classifier=clf
        )
        row = {"system": "real clips", "group": "all", **_summary(real)}
        if fd_reference is None:  # FD against themselves would be 0: use the split-half ceiling instead
            distinct = {id(clf.analyse(*references[i])): clf.analyse(*references[i]) for i in have}
            row["fd"] = split_half_fd(np.stack([a.embedding for a in distinct.values()]))
            row["fd_method"] = "split-half"
        rows.append(row)
    noise = [(noise_clip(seconds, prompt_seed(seed + 2, p.id)), SAMPLE_RATE, p) for p in prompts]
    scores = evaluate_clips(noise, references if have else None, fd_reference=fd_reference, classifier=clf)
    rows.append({"system": "white noise", "group": "all", **_summary(scores)})
    return rows


# ---------------------------------------------------------------- the run


def run_eval(
    manifest: str | Path,
    out: str | Path,
    *,
    mode: str = "both",
    model_dir: str | Path | None = None,
    limit: int | None = None,
    steps: int | None = None,
    cfg: float | None = None,
    seconds: float | None = None,
    seed: int = 0,
    noise_snr: float | None = None,
    reference: str | Path | None = None,
    pipe: Any = None,
    classifier: Any = None,
    reference_rows: bool = True,
) -> dict[str, Any]:
    """Generate OUT/<mode>/<id>.wav for every prompt and mode, score them, write OUT/scores.json and
    OUT/table.md; returns the scores without the per-clip details.

    FD is measured against the real clips the prompts describe (the manifest's `audio`), or against the
    clips of a `reference` folder (meta.csv + audio/) of the requested categories when given. `pipe`
    and `classifier` default to the model folder's Pipeline and the shipped EventClassifier;
    `reference_rows` adds the real-clip (ceiling) and white-noise (floor) rows.
    """
    import os
    import time
    from datetime import datetime

    from star.eval.classifier import EventClassifier

    if mode not in MODE_SETS:
        raise StarError(f"mode must be one of {sorted(MODE_SETS)}, got {mode!r}")
    out = Path(out)
    prompts = read_prompts(manifest, limit)
    for p in prompts:
        if not p.speech.is_file():
            raise StarError(f"{manifest}: prompt {p.id}: speech file {p.speech} not found")
    load_start = os.getloadavg()[0]
    t_start = time.perf_counter()
    if pipe is None:
        from star.pipeline import Pipeline

        pipe = Pipeline.from_pretrained(model_dir)
    clf = CachedClassifier(classifier if classifier is not None else EventClassifier.load())
    for p in prompts:
        for e in p.events:
            clf.index(str(e["category"]))  # unknown categories fail here, before any generation
    seconds = float(pipe.cfg.seconds if seconds is None else seconds)
    settings = {
        "model": str(getattr(pipe, "folder", None) or model_dir or "default"),
        "steps": int(pipe.cfg.steps if steps is None else steps),
        "cfg": float(pipe.cfg.cfg if cfg is None else cfg),
        "text_sampling": {} if cfg is not None else dict(getattr(pipe.cfg, "text_sampling", {})),  # the cascade's own
        "seconds": seconds,
        "seed": seed,
        "noise_snr": noise_snr,
        "limit": limit,
    }

    generated = {
        m: generate_clips(
            pipe,
            prompts,
            m,
            out,
            seconds=seconds,
            steps=steps,  # None: each generator's defaults (settings records them)
            cfg=cfg,
            seed=seed,
            noise_snr=noise_snr,
        )
        for m in MODE_SETS[mode]
    }

    loaded: dict[Path, tuple[np.ndarray, int]] = {}
    for p in prompts:
        if p.audio is not None and p.audio not in loaded:
            loaded[p.audio] = (load_audio(p.audio, SAMPLE_RATE, allow_silent=True), SAMPLE_RATE)
    references = [loaded.get(p.audio) if p.audio is not None else None for p in prompts]
    vocabulary = {str(e["category"]) for p in prompts for e in p.events}
    fd_reference = reference_embeddings(Path(reference), vocabulary, clf) if reference is not None else None

    groups: dict[str, list[int]] = {"all": list(range(len(prompts)))}
    by_voice: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        by_voice.setdefault(voice_group(p.voice), []).append(i)
    if len(by_voice) > 1:  # the unseen speaker first
        groups.update(sorted(by_voice.items(), key=lambda kv: (kv[0] != "ked", kv[0])))

    rows, clips = [], {}
    for m, gen in generated.items():
        mode_rows, clips[m] = score_mode(prompts, gen, references, clf, fd_reference, groups)
        rows += mode_rows
    if reference_rows:
        rows += score_references(prompts, references, clf, fd_reference, seconds, seed)

    scores = {
        "manifest": str(manifest),
        "out": str(out),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": settings,
        "modes": list(MODE_SETS[mode]),
        "n_prompts": len(prompts),
        "groups": {g: len(idx) for g, idx in groups.items()},
        "fd_reference": (
            f"{reference} ({len(fd_reference)} clips)"
            if fd_reference is not None
            else f"the prompts' real clips ({len(loaded)} distinct)"
        ),
        "load_avg": [load_start, os.getloadavg()[0]],
        "wall_s": time.perf_counter() - t_start,
        "rows": rows,
        "categories": per_category(clips),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "scores.json").write_text(json.dumps({**scores, "clips": clips}, indent=1))
    (out / "table.md").write_text(format_table(scores) + "\n")
    return scores


def per_category(clips: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, list[int]]]:
    """Single-event prompts per requested category and mode: {category: {mode: [correct, scored]}}."""
    out: dict[str, dict[str, list[int]]] = {}
    for mode, details in clips.items():
        for c in details:
            if "correct" in c:
                cell = out.setdefault(c["requested"][0], {}).setdefault(mode, [0, 0])
                cell[0] += int(c["correct"])
                cell[1] += 1
    return dict(sorted(out.items()))


# ---------------------------------------------------------------- tables

COLUMNS = [  # (header, row key, count key, digits)
    ("event acc. ↑", "event_accuracy", "event_accuracy_n", 2),
    ("both present ↑", "both_events_present", "both_events_present_n", 2),
    ("order err. ↓", "ordering_error", "ordering_error_n", 2),
    ("order err., both heard ↓", "ordering_error_heard", "ordering_error_heard_n", 2),
    ("KL ↓", "kl", None, 2),
    ("FD ↓", "fd", None, 1),
    ("IS ↑", "inception_score", None, 2),
    ("silent", "silence_rate", None, 2),
    ("clipped", "clipping_rate", None, 2),
    ("ASR WER", "wer", None, 2),
]


def _cell(row: dict[str, Any], key: str, count_key: str | None, digits: int) -> str:
    v = row.get(key)
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    text = f"{v:.{digits}f}"
    if key == "fd" and row.get("fd_method") == "split-half":
        text += "*"
    if count_key and row.get(count_key) is not None:
        text += f" ({row[count_key]})"
    return text


def format_table(scores: dict[str, Any]) -> str:
    """Markdown table of the rows of a run (counts of scored clips in parentheses)."""
    head = ["system", "voices", "clips"] + [c[0] for c in COLUMNS] + ["refused"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(COLUMNS) + 1)]
    for r in scores["rows"]:
        cells = [SYSTEM_NAMES.get(r["system"], r["system"]), r["group"], str(r["n"])]
        cells += [_cell(r, key, n_key, d) for _, key, n_key, d in COLUMNS]
        cells.append(str(r["refused"]) if "refused" in r else "–")
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"FD reference: {scores['fd_reference']}."]
    common = [
        f"{SYSTEM_NAMES.get(r['system'], r['system']).split(' (')[0]} {r['most_common_top1'][0]} "
        f"({r['most_common_top1'][1]}/{r['n']})"
        for r in scores["rows"]
        if r["group"] == "all" and r.get("most_common_top1")
    ]
    if common:
        notes.append(f"Most frequent top-1 label of the classifier: {', '.join(common)}.")
    if any(r.get("fd_method") == "split-half" and r.get("fd") is not None for r in scores["rows"]):
        notes.append(
            "*real-vs-real FD between two halves of the distinct real clips (each half the size: "
            "a pessimistic ceiling)."
        )
    return "\n".join(lines) + "\n\n" + " ".join(notes) + category_table(scores.get("categories"), SYSTEM_NAMES)


def category_table(categories: dict[str, dict[str, list[int]]] | None, names: dict[str, str]) -> str:
    """Event accuracy of single-event prompts per requested category (empty when there are none)."""
    if not categories:
        return ""
    modes = list(dict.fromkeys(m for per_mode in categories.values() for m in per_mode))
    lines = [
        "", "", "Event accuracy per requested category (single-event and repeat prompts; scored clips in parentheses):", "",
        "| category | " + " | ".join(names.get(m, m) for m in modes) + " |",
        "|---|" + "---:|" * len(modes),
    ]
    for category, per_mode in categories.items():
        cells = [f"{k / n:.2f} ({n})" if (k, n) != (0, 0) else "–" for k, n in (per_mode.get(m, [0, 0]) for m in modes)]
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
