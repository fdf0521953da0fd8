"""The representation study: how well does each speech representation carry *which sound was asked for*?

A linear probe (one-vs-rest logistic regression, sklearn) is trained on the training prompts of each
representation and scored on: validation prompts (training voices, held-out phrasings), held-out
festival voices (ked, the unseen speaker, apart from kal/slt, which are flite's speakers), and the
validation prompts with white noise at 10 and 5 dB SNR (deterministic by seed). mAP counts every prompt
(scenes have several labels); top-1 uses single-event prompts. Representations: log-mel mean+std,
speech_embedding mean, whisper-tiny.en mean, the stage-1 bridges (MLP; Q-Former without / with the
alignment loss; optionally with lexicon expansion), and text references (MiniLM of the true caption,
of the ASR transcript). Bridges are trained per seed with a short schedule; their own event head is
reported too. Results are means (± std) over seeds, written as a Markdown page.

    python -m star.eval.study --train runs/data/esc10_train/prompts.jsonl \
        --festival runs/data/esc10_festival/prompts.jsonl --out docs/STUDY.md --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from star.audio import load_audio
from star.errors import StarError
from star.train.bridge_task import (
    VAL_SPLITS,
    BridgeTask,
    BridgeTaskConfig,
    mean_average_precision,
    multi_hot,
    read_manifest,
    read_vocab,
    row_categories,
    top1_accuracy,
)

SNRS = (10, 5)


@dataclass
class EvalSet:
    name: str
    rows: list[dict]
    wavs: list[np.ndarray] | None = None  # in memory for noisy copies; None = read rows' speech files

    @property
    def key(self) -> str:
        """Cache key: the name plus a digest of the prompt ids (a different subsample misses the cache)."""
        import hashlib

        digest = hashlib.sha1(
            "\n".join(str(r.get("id", r["speech"])) for r in self.rows).encode()
        ).hexdigest()
        return f"{self.name}_{digest[:10]}"

    def iter_wavs(self):
        if self.wavs is not None:
            yield from self.wavs
        else:
            for r in self.rows:
                yield load_audio(r["speech"])

    def subset(self, name: str, keep: Callable[[dict], bool]) -> EvalSet:
        idx = [i for i, r in enumerate(self.rows) if keep(r)]
        wavs = [self.wavs[i] for i in idx] if self.wavs is not None else None
        return EvalSet(name, [self.rows[i] for i in idx], wavs)

    def head(self, n: int) -> EvalSet:
        return EvalSet(self.name, self.rows[:n], self.wavs[:n] if self.wavs is not None else None)


def _subsample(rows: list[dict], limit: int, seed: int = 0) -> list[dict]:
    if limit <= 0 or len(rows) <= limit:
        return rows
    pick = np.random.default_rng(seed).choice(len(rows), size=limit, replace=False)
    return [rows[i] for i in sorted(pick)]


def _voice_group(row: dict) -> str:
    return "ked" if "ked" in str(row.get("voice", "")) else "kal_slt"


# ---- representations ---------------------------------------------------------------------------------
def pool_mean(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32).mean(0)


def pool_mean_std(frames: np.ndarray) -> np.ndarray:
    f = frames.astype(np.float32)
    return np.concatenate([f.mean(0), f.std(0)])


class Features:
    """Per-representation feature extraction for a list of waveforms, cached by (set name, rep)."""

    def __init__(self, cache_dir: Path, feature_cache: str):
        self.cache_dir = cache_dir
        self.feature_cache = feature_cache
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._frames: dict[tuple[str, str], list[np.ndarray]] = {}

    def frames(self, encoder_name: str, s: EvalSet) -> list[np.ndarray]:
        """Encoder frames for each waveform of the set (cached on disk per set)."""
        key = (encoder_name, s.name)
        if key not in self._frames:
            path = self.cache_dir / f"frames_{encoder_name}_{s.key}.pt"
            from star.encoders import build_speech_encoder

            enc = build_speech_encoder(encoder_name)
            if s.wavs is None:  # real files: the shared feature cache (training already filled it)
                from star.encoders.cache import FeatureCache

                files = FeatureCache(self.feature_cache, encoder_name).ensure(
                    [r["speech"] for r in s.rows], enc
                )
                self._frames[key] = [np.load(f) for f in files]
            elif path.is_file():
                self._frames[key] = torch.load(path, weights_only=False)
            else:
                out = [
                    enc.encode_one(w).astype(np.float16)
                    for w in tqdm(s.wavs, desc=f"{encoder_name} {s.name}")
                ]
                torch.save(out, path)
                self._frames[key] = out
        return self._frames[key]

    def logmel(self, s: EvalSet) -> np.ndarray:
        from star.audio import MelSpec

        path = self.cache_dir / f"logmel_{s.key}.npy"
        if path.is_file():
            return np.load(path)
        mel = MelSpec()
        out = np.stack(
            [pool_mean_std(mel.of_numpy(w).T) for w in tqdm(s.iter_wavs(), desc=f"log-mel {s.name}")]
        )
        np.save(path, out)
        return out

    def transcripts(self, s: EvalSet) -> list[str]:
        from star.encoders.asr import WhisperASR

        path = self.cache_dir / f"asr_{s.key}.json"
        if path.is_file():
            return json.loads(path.read_text())
        asr = WhisperASR()
        out = [
            asr.transcribe(w) or "nothing"
            for w in tqdm(s.iter_wavs(), desc=f"ASR {s.name}", total=len(s.rows))
        ]
        path.write_text(json.dumps(out))
        return out


# ---- probe -------------------------------------------------------------------------------------------
def probe_scores(
    x_train: np.ndarray, y_train: np.ndarray, tests: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """One-vs-rest logistic regression on standardised features; returns decision scores per test set."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), OneVsRestClassifier(LogisticRegression(C=0.5, max_iter=2000)))
    clf.fit(x_train, y_train.astype(int))
    return {k: clf.decision_function(v) for k, v in tests.items()}


def metrics(scores: np.ndarray, rows: list[dict], targets: np.ndarray) -> dict[str, float]:
    single = np.array([len(row_categories(r)) == 1 for r in rows])
    return {
        "map": mean_average_precision(scores, targets),
        "top1": top1_accuracy(scores[single], targets[single]),
    }


# ---- the study ---------------------------------------------------------------------------------------
@dataclass
class BridgeVariant:
    name: str
    kind: str
    align_weight: float
    extra: bool = False


def train_variant(v: BridgeVariant, seed: int, args, work: Path):
    """Train (or reuse) one stage-1 bridge for the study; returns the best StageOneModel."""
    from star.bridge import load_stage_one

    out = work / "bridges" / f"{v.name}-seed{seed}"
    if not (out / "done").is_file():
        cfg = BridgeTaskConfig.load(args.bridge_config) if args.bridge_config else BridgeTaskConfig()
        cfg.manifest, cfg.out_dir, cfg.cache_dir = args.train, str(out), args.cache
        cfg.model.bridge.kind = v.kind
        cfg.align_weight = v.align_weight
        cfg.extra_manifests = list(args.extra) if v.extra else []
        cfg.report_manifests = []
        cfg.train.seed, cfg.train.steps = seed, args.bridge_steps
        cfg.train.warmup = min(cfg.train.warmup, args.bridge_steps // 10)
        cfg.train.eval_every = cfg.train.ckpt_every = max(50, args.bridge_steps // 5)
        from star.train import Trainer

        torch.set_num_threads(1)
        Trainer(BridgeTask(cfg), cfg.train, out).fit()
        (out / "done").write_text("ok\n")
    return load_stage_one(out / "best")


def run_study(args) -> str:
    t0 = time.monotonic()
    work = Path(args.work)
    feats = Features(work / "features", args.cache)
    rows = read_manifest(args.train)
    vocab = read_vocab(args.train, rows)
    train_rows = _subsample([r for r in rows if r.get("split", "train") == "train"], args.max_train)
    val_rows = _subsample([r for r in rows if r.get("split") in VAL_SPLITS], args.max_eval)
    fest_rows = _subsample(read_manifest(args.festival), 2 * args.max_eval)
    y_train = multi_hot(train_rows, vocab)

    train = EvalSet("train", train_rows)
    val = EvalSet("val", val_rows)
    val_wavs = list(val.head(args.max_noisy or len(val.rows)).iter_wavs())
    fest = EvalSet("festival", fest_rows)
    clean_sets = [
        val,
        fest.subset("fest_ked", lambda r: _voice_group(r) == "ked"),
        fest.subset("fest_kal_slt", lambda r: _voice_group(r) != "ked"),
    ]
    columns = ["val", "fest_ked", "fest_kal_slt", *[f"snr{s}" for s in SNRS]]

    from star.data.augment import add_noise

    def noisy_sets(seed: int) -> list[EvalSet]:
        out = []
        for snr in SNRS:
            rng = np.random.default_rng(1000 * seed + snr)
            n = args.max_noisy or len(val.rows)
            out.append(
                EvalSet(
                    f"val_snr{snr}_seed{seed}",
                    val.rows[:n],
                    [add_noise(w, snr, "white", rng) for w in val_wavs[:n]],
                )
            )
        return out

    results: dict[str, dict[str, list[float]]] = {}  # rep -> "col/metric" -> values over seeds

    def record(rep: str, col: str, m: dict[str, float]) -> None:
        for k, v in m.items():
            results.setdefault(rep, {}).setdefault(f"{col}/{k}", []).append(v)

    def evaluate_rep(
        rep: str, extract: Callable[[EvalSet], np.ndarray], seed: int, sets: list[EvalSet]
    ) -> None:
        scores = probe_scores(extract(train), y_train, {s.name: extract(s) for s in sets})
        for s, col in zip(sets, columns):
            record(rep, col, metrics(scores[s.name], s.rows, multi_hot(s.rows, vocab)))

    text = None
    variants = [
        BridgeVariant("MLP bridge + align", "mlp", args.align_weight),
        BridgeVariant("Q-Former, no align", "qformer", 0.0),
        BridgeVariant("Q-Former + align", "qformer", args.align_weight),
    ]
    if args.extra:
        variants.append(BridgeVariant("Q-Former + align + lexicon", "qformer", args.align_weight, extra=True))
    for seed in args.seeds:
        sets = clean_sets + noisy_sets(seed)
        evaluate_rep("log-mel mean+std", feats.logmel, seed, sets)
        for enc, label in (
            ("speech-embedding", "speech_embedding mean"),
            ("whisper-tiny.en", "whisper-tiny.en mean"),
        ):
            try:
                evaluate_rep(
                    label, lambda s, e=enc: np.stack([pool_mean(f) for f in feats.frames(e, s)]), seed, sets
                )
            except StarError as exc:  # an encoder missing on this machine leaves its row out, said plainly
                print(f"skipping {label}: {exc}", file=sys.stderr)
        for v in variants:
            model = train_variant(v, seed, args, work)
            bridge_out = {}

            def bridge_rep(s: EvalSet, model=model, bridge_out=bridge_out) -> np.ndarray:
                from star.train.bridge_task import collate_frames

                fr = feats.frames("whisper-tiny.en", s)
                pooled, probs = [], []
                with torch.no_grad():
                    for i in range(0, len(fr), 128):
                        x, m = collate_frames(fr[i : i + 128])
                        tokens, tmask = model.bridge(x, m)
                        p = model.bridge.pooled(tokens, tmask)
                        pooled.append(p.numpy())
                        probs.append(torch.sigmoid(model.head(p)).numpy())
                bridge_out[s.name] = np.concatenate(probs)
                return np.concatenate(pooled)

            evaluate_rep(f"{v.name} (probe)", bridge_rep, seed, sets)
            for s, col in zip(sets, columns):
                record(
                    f"{v.name} (own head)", col, metrics(bridge_out[s.name], s.rows, multi_hot(s.rows, vocab))
                )
        # Text references: the probe learns from caption embeddings of the training prompts.
        from star.encoders import build_text_encoder

        text = text or build_text_encoder("minilm")
        cap_train = text.embed([r["caption"] for r in train.rows]).numpy()
        ref_sets = {s.name: text.embed([r["caption"] for r in s.rows]).numpy() for s in sets}
        scores = probe_scores(cap_train, y_train, ref_sets)
        for s, col in zip(sets, columns):
            record(
                "MiniLM of the true caption", col, metrics(scores[s.name], s.rows, multi_hot(s.rows, vocab))
            )
        if seed == args.seeds[0] and not args.no_asr:  # ASR is the slow part: once, on a subset
            asr_sets = [s.head(args.max_asr) for s in sets]
            asr_emb = {s.name: text.embed(feats.transcripts(s)).numpy() for s in asr_sets}
            scores = probe_scores(cap_train, y_train, asr_emb)
            for s, col in zip(asr_sets, columns):
                record(
                    "MiniLM of the ASR transcript",
                    col,
                    metrics(scores[s.name], s.rows, multi_hot(s.rows, vocab)),
                )
        if args.out:  # a page after every seed, so a long study shows results early
            sizes = {"train": len(train.rows), **{s.name: len(s.rows) for s in clean_sets}}
            Path(args.out).write_text(render(results, columns, args, sizes, (time.monotonic() - t0) / 60))
    minutes = (time.monotonic() - t0) / 60
    sizes = {"train": len(train.rows), **{s.name: len(s.rows) for s in clean_sets}}
    return render(results, columns, args, sizes, minutes)


def _fmt(values: list[float]) -> str:
    v = np.array(values, dtype=float)
    if np.isnan(v).all():
        return "-"
    if len(v) == 1 or np.nanstd(v) < 5e-4:
        return f"{np.nanmean(v):.3f}"
    return f"{np.nanmean(v):.3f} ± {np.nanstd(v):.3f}"


def render(results, columns, args, sizes, minutes) -> str:
    cmd = "python -m star.eval.study " + " ".join(shlex.quote(a) for a in args.argv)
    head = "| representation | " + " | ".join(f"{c} mAP | {c} top-1" for c in columns) + " |"
    sep = "|---" * (1 + 2 * len(columns)) + "|"
    lines = [head, sep]
    for rep, vals in results.items():
        cells = [_fmt(vals.get(f"{c}/{m}", [float("nan")])) for c in columns for m in ("map", "top1")]
        lines.append(f"| {rep} | " + " | ".join(cells) + " |")
    return "\n".join(
        [
            "# Representation study (stage 1)",
            "",
            "What carries *which sound was asked for* from a spoken prompt? Each representation gets a linear",
            "probe (one-vs-rest logistic regression on standardised features) trained on the training prompts;",
            "bridges also report their own event head. Columns: `val` = validation prompts (training voices,",
            "held-out phrasings); `fest_ked` = festival ked, the truly unseen speaker; `fest_kal_slt` = festival",
            "kal/slt (the same speakers as flite's kal/slt, so only the synthesiser is new); `snr10`/`snr5` =",
            "the first validation prompts with white noise at 10/5 dB SNR. mAP counts every prompt (scenes have",
            "several labels); top-1 counts single-event prompts.",
            "",
            f"Seeds: {' '.join(map(str, args.seeds))} (they vary bridge training and the added noise; the probes",
            "themselves are deterministic, so representations without a trained part show no spread on clean",
            f"sets). Prompts: {json.dumps(sizes)}, noisy: {args.max_noisy or sizes['val']}. Bridges: {args.bridge_steps} steps each. ASR reference: first",
            f"seed only, first {args.max_asr} prompts of each set. Wall time: {minutes:.1f} min.",
            "",
            "```",
            cmd,
            "```",
            "",
            *lines,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description="Linear-probe study of speech representations for sound requests")
    p.add_argument("--train", required=True, help="training prompts manifest (train + val splits)")
    p.add_argument("--festival", required=True, help="held-out festival-voice prompts manifest")
    p.add_argument("--out", required=True, help="Markdown page to write (e.g. docs/STUDY.md)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--work", default="runs/study", help="cache and bridge runs")
    p.add_argument("--cache", default="runs/cache/features", help="speech feature cache")
    p.add_argument("--bridge-config", help="BridgeTaskConfig JSON the study's bridges start from")
    p.add_argument("--bridge-steps", type=int, default=400)
    p.add_argument("--align-weight", type=float, default=1.0)
    p.add_argument("--extra", nargs="*", default=[], help="extra training manifests for a 'lexicon' variant")
    p.add_argument(
        "--max-train", type=int, default=0, help="cap on training prompts for the probes (0 = all)"
    )
    p.add_argument("--max-eval", type=int, default=400, help="cap on validation prompts (festival: twice)")
    p.add_argument("--max-noisy", type=int, default=150, help="validation prompts given noise (0 = all)")
    p.add_argument("--max-asr", type=int, default=150)
    p.add_argument("--no-asr", action="store_true")
    p.add_argument("--notes", help="Markdown file appended to the page (e.g. the stage-1 experiments log)")
    args = p.parse_args(argv)
    args.argv = argv
    # One thread for torch and for every BLAS/OpenMP pool (sklearn's probes, encoding the noisy copies):
    # with more, sums are ordered by the machine's core count and the table's figures moved between a
    # 1- and a 2-thread run of the same command.
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        page = run_study(args)
    if args.notes:
        page += "\n" + Path(args.notes).read_text()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(page)
    print(page)


if __name__ == "__main__":
    main()
