"""Training the phonetic route (star.bridge.phonetic) in two stages, both on the shared Trainer:

1. `ctc`: the CTC phoneme head on cached speech frames of the training prompts, targets the espeak-ng
   phonemes of each prompt's text. Monitored: phoneme error rate on the validation prompts.
2. `bag`: the phoneme n-gram bag, on a text corpus (wordfreq's most common words alone and in random
   short sequences, plus the training captions, optionally natural phrases such as WordNet's), each text's
   phonemes corrupted as the CTC head would, target its MiniLM embedding; mixed with the CTC head's phoneme
   strings of training prompts (optionally read by heads that never heard their wordings, `speech_folds`).
   Monitored: top-1 of the validation prompts against each category's caption centroid.

The corpus is category-blind and never holds a validation or test phrasing. `star train phonetic --config
FILE` runs both and writes the release folder `out_dir/release`.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from star.bridge.phonetic import (
    PhonemeBag,
    PhonemeCTC,
    PhoneticConfig,
    PhoneticReader,
    greedy_phonemes,
    save_phonetic,
)
from star.config import JsonConfig
from star.data.manifest import read_manifest
from star.data.phonemes import PHONEMES, text_phoneme_ids
from star.errors import StarError
from star.train.bridge_task import VAL_SPLITS, collate_frames, load_features, read_vocab, row_categories
from star.train.phonetic_corpus import TextCorpusConfig, build_corpus
from star.train.trainer import TrainConfig, Trainer
from star.weights import load_weights, save_weights


@dataclass
class PhoneticTaskConfig(JsonConfig):
    manifest: str = ""  # training prompts; its validation split is what both stages are monitored on
    extra_manifests: list[str] = field(default_factory=list)  # more spoken training prompts
    exclude_manifests: list[str] = field(default_factory=list)  # test prompts: their phrasings never enter the corpus
    out_dir: str = "runs/phonetic"
    cache_dir: str = "runs/cache/features"
    model: PhoneticConfig = field(default_factory=PhoneticConfig)
    ctc: TrainConfig = field(default_factory=TrainConfig)
    bag: TrainConfig = field(default_factory=TrainConfig)
    corpus: TextCorpusConfig = field(default_factory=TextCorpusConfig)
    ctc_batch: int = 48
    ctc_feature_mask: float = 0.0  # SpecAugment-like: this share of the frame channels zeroed per prompt,
    ctc_time_masks: int = 0  # and this many spans of up to 5 frames (for voices the head never heard)
    bag_batch: int = 256
    speech_share: float = 0.25  # of each bag batch: the CTC head's output on training prompts
    speech_prompts: int = 12000
    # 0: the bag's spoken sample is read by the CTC head that heard it in training. k >= 2: the training
    # wordings are split into k folds, one more head is trained per fold without it, and each prompt is read
    # by the head that never heard its wording: the slips the bag learns are then those of unheard speech.
    speech_folds: int = 0
    # Corruption of the text phonemes, like the CTC head's own slips: "uniform" (any phoneme for any, at the
    # rates below) or "measured" (the head's confusions, deletions and insertions on the spoken sample,
    # each rate x noise_scale: held-out voices slip more than the training voices it was measured on).
    corruption: str = "uniform"
    substitute: float = 0.08
    delete: float = 0.04
    insert: float = 0.03
    noise_scale: float = 1.0
    # Share of the uniform substitutions drawn from the phoneme's own class (vowel for vowel, consonant for
    # consonant), as the CTC head's slips mostly are ("puppy" heard as /pɑːpi/; STUDY part 14).
    same_class: float = 0.0
    # Share of the short vowels (REDUCIBLE) said as a schwa before the corruption: connected speech, and
    # festival's diphone voices, reduce unstressed vowels ("yapping" as /jæpəŋ/; STUDY part 12).
    reduce_vowels: float = 0.0
    temperature: float = 0.05  # InfoNCE of the bag against the batch's text embeddings
    # Weight of a second distillation term: the bag's softmax over its cosines to the category centroids (at
    # `temperature`) matches the text encoder's (KL). The cosine loss weighs all 384 directions alike; this
    # one weighs the few that decide `listen` (STUDY part 16).
    category_kd: float = 0.0
    max_val: int = 300


def spoken_rows(cfg: PhoneticTaskConfig) -> tuple[list[dict], list[dict]]:
    """(training rows of every manifest, validation rows of the main one), each with "phonemes"."""
    if not cfg.manifest:
        raise StarError("phonetic config needs a manifest")
    train, val = [], []
    for i, m in enumerate([cfg.manifest, *cfg.extra_manifests]):
        for r in read_manifest(m):
            if r.get("split", "train") in VAL_SPLITS:
                if i == 0:
                    val.append(r)
            elif r.get("split", "train") == "train":
                train.append(r)
    unique = sorted({r["caption"] for r in train + val})
    ids = dict(zip(unique, text_phoneme_ids(unique, cfg.model.word_boundaries)))
    for r in train + val:
        r["phonemes"] = ids[r["caption"]]
    return train, val


def mask_frames(frames: torch.Tensor, mask: torch.Tensor, channel_share: float, time_masks: int,
                rng: random.Random) -> torch.Tensor:
    """SpecAugment on the encoder's frames [b, t, d] (in place): about `channel_share` of each prompt's
    channels zeroed, and `time_masks` spans of 1-5 real frames."""
    if channel_share > 0:
        draw = torch.rand(frames.shape[0], 1, frames.shape[2], generator=torch.Generator().manual_seed(rng.randrange(2**31)))
        frames *= draw >= channel_share
    for b, n in enumerate(mask.sum(1).tolist()):
        for _ in range(time_masks):
            start = rng.randrange(max(1, n - 5))
            frames[b, start : start + rng.randint(1, 5)] = 0.0
    return frames


class PhonemeCTCTask:
    """Stage 1: frames -> phonemes (CTC)."""

    def __init__(self, cfg: PhoneticTaskConfig, train: list[dict], val: list[dict], feats: list[np.ndarray] | None = None):
        self.cfg = cfg
        self.model = PhonemeCTC(cfg.model)
        feats = feats if feats is not None else load_features(train, cfg.model.speech_encoder, cfg.cache_dir)
        self.feats = feats  # of every training row, in order: the bag stage reads a sample of them too
        # CTC needs at least one frame per label; a longer label than the prompt cannot be aligned.
        keep = [i for i, r in enumerate(train) if 0 < len(r["phonemes"]) < len(feats[i])]
        self.items = [(feats[i], train[i]["phonemes"]) for i in keep]
        val = val[: cfg.max_val]
        self.val = list(zip(load_features(val, cfg.model.speech_encoder, cfg.cache_dir), [r["phonemes"] for r in val]))

    def batches(self, rank: int, world: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[list[int]]]]:
        rng = random.Random(self.cfg.ctc.seed + rank)
        order = sorted(range(len(self.items)), key=lambda i: len(self.items[i][0]))[rank::world]
        chunks = [order[s : s + self.cfg.ctc_batch] for s in range(0, len(order), self.cfg.ctc_batch)]
        while True:
            chunk = rng.choice(chunks)  # similar lengths in a batch: little padding
            frames, mask = collate_frames([self.items[i][0] for i in chunk])
            yield mask_frames(frames, mask, self.cfg.ctc_feature_mask, self.cfg.ctc_time_masks, rng), mask, [self.items[i][1] for i in chunk]

    def loss(self, model: torch.nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        frames, mask, labels = batch
        log_probs = model(frames, mask)  # [b, t, p+1]
        targets = torch.tensor([p + 1 for lab in labels for p in lab])
        loss = F.ctc_loss(log_probs.transpose(0, 1), targets, mask.sum(1), torch.tensor([len(x) for x in labels]),
                          zero_infinity=True)
        return {"loss": loss}

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        return {"val_per": phoneme_error_rate(model, self.val)}

    def export(self, model: torch.nn.Module, folder: Path) -> None:
        save_weights(model, None, folder, "ctc")


def alignment(ref: list[int], hyp: list[int]) -> list[tuple[int | None, int | None]]:
    """A minimal-edit alignment: pairs (ref phoneme, hyp phoneme), None on the side of an insertion or a
    deletion."""
    n, m = len(ref), len(hyp)
    cost = [[i + j if i == 0 or j == 0 else 0 for j in range(m + 1)] for i in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i][j] = min(cost[i - 1][j] + 1, cost[i][j - 1] + 1, cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]))
    pairs: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i or j:
        if i and j and cost[i][j] == cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            pairs.append((ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif i and cost[i][j] == cost[i - 1][j] + 1:
            pairs.append((ref[i - 1], None))
            i -= 1
        else:
            pairs.append((None, hyp[j - 1]))
            j -= 1
    return pairs[::-1]


def edit_distance(a: list[int], b: list[int]) -> int:
    return sum(x != y for x, y in alignment(a, b))


class MeasuredNoise:
    """Corrupts phoneme strings the way the CTC head garbles speech: per reference phoneme, its deletion
    rate and its substitutes as observed; insertions at the observed rate and mix. Rates x `scale`.
    `symbols`: the size of the inventory the ids index (a word boundary is one more)."""

    def __init__(self, pairs: list[tuple[list[int], list[int]]], scale: float = 1.0, symbols: int = len(PHONEMES)):
        n = symbols  # the last column of `counts` stands for a deletion
        counts = np.zeros((n, n + 1))  # [ref, hyp or n = deleted]
        inserted = np.zeros(n)
        for ref, hyp in pairs:
            for r, h in alignment(ref, hyp):
                if r is None:
                    inserted[h] += 1
                else:
                    counts[r, n if h is None else h] += 1
        seen = counts.sum(1, keepdims=True)
        rates = counts / np.maximum(seen, 1)
        self.delete = np.clip(rates[:, n] * scale, 0, 0.9)
        wrong = rates[:, :n] * (1 - np.eye(n))
        self.substitute = np.clip(wrong.sum(1) * scale, 0, 0.9)
        self.substitutes = [(w / w.sum()).cumsum() if w.sum() else None for w in wrong]  # cumulative, for bisect
        self.insert = min(0.9, inserted.sum() / max(1, seen.sum()) * scale)
        self.inserts = (inserted / max(1, inserted.sum())).cumsum()

    def __call__(self, ids: list[int], rng: random.Random) -> list[int]:
        out = []
        for i in ids:
            r = rng.random()
            if r < self.delete[i]:
                continue
            sub = self.substitutes[i]
            out.append(int(np.searchsorted(sub, rng.random())) if sub is not None and r < self.delete[i] + self.substitute[i] else i)
            if rng.random() < self.insert:
                out.append(int(np.searchsorted(self.inserts, rng.random())))
        return out or ids


@torch.no_grad()
def phoneme_edits(model: torch.nn.Module, items: list[tuple[np.ndarray, list[int]]],
                  ignore: int | None = None) -> list[tuple[int, int]]:
    """(edits between the greedy phonemes and the reference, reference length) of each item; symbol
    `ignore` (a word boundary) is left out of the output before counting."""
    hyps = [[i for i in hyp if i != ignore] for hyp in speech_phonemes(model, [f for f, _ in items])]
    return [(edit_distance(hyp, ref), len(ref)) for hyp, (_, ref) in zip(hyps, items)]


def error_rate(edits: list[tuple[int, int]]) -> float:
    """Edits over reference phonemes, pooled over items."""
    return sum(e for e, _ in edits) / max(1, sum(n for _, n in edits))


def phoneme_error_rate(model: torch.nn.Module, items: list[tuple[np.ndarray, list[int]]]) -> float:
    """Edits between the greedy phonemes and the reference, over reference phonemes."""
    return error_rate(phoneme_edits(model, items))


@torch.no_grad()
def speech_phonemes(ctc: PhonemeCTC, feats: list[np.ndarray]) -> list[list[int]]:
    out: list[list[int]] = []
    for s in range(0, len(feats), 64):
        frames, mask = collate_frames(feats[s : s + 64])
        out += greedy_phonemes(ctc(frames, mask), mask)
    return out


def wording_fold(caption: str, folds: int) -> int:
    """A prompt's fold by its wording (stable across runs and machines), so that no voice of it is heard."""
    return zlib.crc32(caption.lower().encode()) % folds


def unheard_speech_phonemes(cfg: PhoneticTaskConfig, ctc_task: PhonemeCTCTask, train: list[dict], val: list[dict],
                            picked: list[int], out: Path) -> list[list[int]]:
    """The picked training prompts read by CTC heads that never heard their wording: one head per fold of
    `wording_fold`, trained on the other folds (out/ctc_fold{i}, resumable like the main head)."""
    folds = [wording_fold(r["caption"], cfg.speech_folds) for r in train]
    speech: dict[int, list[int]] = {}
    for k in range(cfg.speech_folds):
        heard = [i for i, f in enumerate(folds) if f != k]
        task = PhonemeCTCTask(cfg, [train[i] for i in heard], val, [ctc_task.feats[i] for i in heard])
        Trainer(task, cfg.ctc, out / f"ctc_fold{k}").fit()
        head = load_weights(PhonemeCTC(cfg.model), out / f"ctc_fold{k}" / "best", "ctc").eval()
        mine = [i for i in picked if folds[i] == k]
        speech.update(zip(mine, speech_phonemes(head, [ctc_task.feats[i] for i in mine])))
    return [speech[i] for i in picked]


SCHWA = PHONEMES.index("ə")
REDUCIBLE = frozenset(PHONEMES.index(v) for v in ("ɪ", "ʌ", "ɛ", "ʊ", "ᵻ"))
VOWELS = tuple(i for i, p in enumerate(PHONEMES) if p[0] in "aeiouæɐɑɔəɚɛɜɪʊʌᵻ")
CONSONANTS = tuple(i for i in range(len(PHONEMES)) if i not in VOWELS)


def reduce_vowels(ids: list[int], share: float, rng: random.Random) -> list[int]:
    """Each short vowel (REDUCIBLE) of `ids` said as a schwa with probability `share`."""
    return [SCHWA if i in REDUCIBLE and rng.random() < share else i for i in ids] if share > 0 else ids


def substitute(i: int, same_class: float, rng: random.Random, symbols: int = len(PHONEMES)) -> int:
    """A random symbol of the inventory (`symbols` long) in place of `i`: with probability `same_class` a
    phoneme of its own class (vowel or consonant)."""
    if same_class and rng.random() < same_class:  # no draw when off, so earlier bags reproduce
        return rng.choice(VOWELS if i in VOWELS else CONSONANTS)
    return rng.randrange(symbols)


class PhonemeBagTask:
    """Stage 2: phoneme strings -> text embedding space."""

    def __init__(self, cfg: PhoneticTaskConfig, corpus: dict[str, Any], speech: list[list[int]],
                 speech_emb: np.ndarray, val_phonemes: list[list[int]], val_labels: np.ndarray,
                 prototypes: np.ndarray, measured: MeasuredNoise | None = None):
        self.cfg = cfg
        self.model = PhonemeBag(cfg.model)
        self.corpus_ids = corpus["phonemes"]
        self.corpus_emb = torch.from_numpy(np.asarray(corpus["emb"], np.float32))
        self.speech, self.speech_emb = speech, torch.from_numpy(np.asarray(speech_emb, np.float32))
        self.val_phonemes, self.val_labels = val_phonemes, val_labels
        self.prototypes = torch.from_numpy(prototypes)
        self.corrupt = measured if measured is not None else self.uniform_noise

    def uniform_noise(self, ids: list[int], rng: random.Random) -> list[int]:
        c, n = self.cfg, len(self.cfg.model.phonemes)
        out = []
        for i in ids:
            r = rng.random()
            if r < c.delete:
                continue
            out.append(substitute(i, c.same_class, rng, n) if r < c.delete + c.substitute else i)
            if rng.random() < c.insert:
                out.append(rng.randrange(n))
        return out or ids

    def batches(self, rank: int, world: int) -> Iterator[tuple[list[list[int]], torch.Tensor]]:
        rng = random.Random(self.cfg.bag.seed + rank)
        n_speech = round(self.cfg.bag_batch * self.cfg.speech_share) if self.speech else 0
        while True:
            ci = [rng.randrange(len(self.corpus_ids)) for _ in range(self.cfg.bag_batch - n_speech)]
            si = [rng.randrange(len(self.speech)) for _ in range(n_speech)]
            text = [reduce_vowels(self.corpus_ids[i], self.cfg.reduce_vowels, rng) for i in ci]
            seqs = [self.corrupt(ids, rng) for ids in text] + [self.speech[i] for i in si]
            yield seqs, torch.cat([self.corpus_emb[ci], self.speech_emb[si]])

    def loss(self, model: torch.nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        seqs, target = batch
        z = model(seqs)  # [b, e]
        cos = (z * target).sum(-1)
        nce = F.cross_entropy(z @ target.T / self.cfg.temperature, torch.arange(len(z)))
        out = {"loss": (1 - cos).mean() + 0.5 * nce, "cos": cos.mean().detach()}
        if self.cfg.category_kd > 0:
            t = self.cfg.temperature
            kd = F.kl_div((z @ self.prototypes.T / t).log_softmax(-1), (target @ self.prototypes.T / t).softmax(-1),
                          reduction="batchmean")
            out["loss"] = out["loss"] + self.cfg.category_kd * kd
            out["kd"] = kd.detach()
        return out

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        sims = model(self.val_phonemes) @ self.prototypes.T
        return {"val_top1": float((sims.argmax(1).numpy() == self.val_labels).mean())}

    def export(self, model: torch.nn.Module, folder: Path) -> None:
        save_weights(model, None, folder, "bag")


def train_phonetic(config_path: str | Path) -> dict[str, Any]:
    """Both stages, then `out_dir/release` (PhoneticReader with the category centroids)."""
    from star.bridge.expand import caption_prototypes
    from star.encoders.builders import build_text_encoder

    cfg = PhoneticTaskConfig.load(config_path)
    if cfg.corruption not in ("uniform", "measured"):
        raise StarError(f"phonetic corruption must be 'uniform' or 'measured', not {cfg.corruption!r}")
    if cfg.speech_folds == 1 or cfg.speech_folds < 0:
        raise StarError(f"speech_folds must be 0 (off) or at least 2, not {cfg.speech_folds}")
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "phonetic_task.json")
    torch.set_num_threads(cfg.ctc.threads)
    # Once the CTC head is confident its log-space backward is full of denormal floats, which made steps
    # 3.4x slower on this CPU (measured on 8 batches of 48 prompts: 1.80 s vs 0.53 s).
    torch.set_flush_denormal(True)
    train, val = spoken_rows(cfg)
    ctc_task = PhonemeCTCTask(cfg, train, val)
    ctc_summary = Trainer(ctc_task, cfg.ctc, out / "ctc").fit()
    ctc = load_weights(PhonemeCTC(cfg.model), out / "ctc" / "best", "ctc").eval()

    text_encoder = build_text_encoder()
    main_rows = read_manifest(cfg.manifest)
    vocab = read_vocab(cfg.manifest, main_rows)  # the bridge's vocabulary, in its head order
    cfg.model.vocab = vocab
    prototypes = caption_prototypes(main_rows, vocab, text_encoder)
    held_out = {r["caption"].lower() for r in val}
    held_out |= {r["caption"].lower() for m in cfg.exclude_manifests for r in read_manifest(m)}
    corpus = build_corpus(cfg, [r["caption"] for r in train], held_out, text_encoder)
    rng = random.Random(cfg.bag.seed)
    picked = rng.sample(range(len(train)), min(cfg.speech_prompts, len(train)))
    spoken = [train[i] for i in picked]
    if cfg.speech_folds >= 2:
        speech = unheard_speech_phonemes(cfg, ctc_task, train, val, picked, out)
    else:
        speech = speech_phonemes(ctc, [ctc_task.feats[i] for i in picked])  # frames the CTC stage already loaded
    speech_emb = np.concatenate([text_encoder.embed([r["caption"] for r in spoken[s : s + 256]]).numpy()
                                 for s in range(0, len(spoken), 256)])
    single = [i for i, r in enumerate(val[: cfg.max_val]) if len(row_categories(r)) == 1]
    val_phonemes = speech_phonemes(ctc, [ctc_task.val[i][0] for i in single])  # ctc_task.val is val[: max_val]
    labels = np.array([vocab.index(row_categories(val[i])[0]) for i in single])
    measured = None
    if cfg.corruption == "measured":  # the slips on the spoken sample, scaled up for new voices
        measured = MeasuredNoise([(r["phonemes"], hyp) for r, hyp in zip(spoken, speech)], cfg.noise_scale,
                                 len(cfg.model.phonemes))
    torch.set_num_threads(cfg.bag.threads)
    bag_task = PhonemeBagTask(cfg, corpus, speech, speech_emb, val_phonemes, labels, prototypes, measured)
    bag_summary = Trainer(bag_task, cfg.bag, out / "bag").fit()

    reader = PhoneticReader(cfg.model)
    reader.ctc.load_state_dict(ctc.state_dict())
    load_weights(reader.bag, out / "bag" / "best", "bag")
    reader.prototypes.copy_(torch.from_numpy(prototypes))
    save_phonetic(reader, out / "release")
    return {"ctc": ctc_summary, "bag": bag_summary, "release": str(out / "release")}

