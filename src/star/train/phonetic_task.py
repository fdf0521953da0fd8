"""Training the phonetic route (star.bridge.phonetic) in two stages, both on the shared Trainer:

1. `ctc`: the CTC phoneme head on cached speech frames of the training prompts, targets the espeak-ng
   phonemes of each prompt's text. Monitored: phoneme error rate on the validation prompts.
2. `bag`: the phoneme n-gram bag, on a text corpus (wordfreq's most common words alone and in random
   short sequences, plus the training captions), each text's phonemes corrupted as the CTC head would,
   target its MiniLM embedding; mixed with the CTC head's phoneme strings of training prompts. Monitored:
   top-1 of the validation prompts against each category's caption centroid.

The corpus is category-blind and never holds a validation or test phrasing. `star train phonetic --config
FILE` runs both and writes the release folder `out_dir/release`.
"""

from __future__ import annotations

import hashlib
import json
import random
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
from star.train.trainer import TrainConfig, Trainer
from star.weights import load_weights, save_weights


@dataclass
class TextCorpusConfig(JsonConfig):
    top_words: int = 40000  # wordfreq's most common words, each alone once
    sequences: int = 80000  # random sequences of those words
    min_words: int = 2
    max_words: int = 5
    seed: int = 0


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
    bag_batch: int = 256
    speech_share: float = 0.25  # of each bag batch: the CTC head's output on training prompts
    speech_prompts: int = 12000
    substitute: float = 0.08  # corruption of the text phonemes, about the CTC head's error rate
    delete: float = 0.04
    insert: float = 0.03
    temperature: float = 0.05  # InfoNCE of the bag against the batch's text embeddings
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
    ids = dict(zip(*_unique_phonemes([r["caption"] for r in train + val])))
    for r in train + val:
        r["phonemes"] = ids[r["caption"]]
    return train, val


def _unique_phonemes(texts: list[str]) -> tuple[list[str], list[list[int]]]:
    unique = sorted(set(texts))
    return unique, text_phoneme_ids(unique)


class PhonemeCTCTask:
    """Stage 1: frames -> phonemes (CTC)."""

    def __init__(self, cfg: PhoneticTaskConfig, train: list[dict], val: list[dict]):
        self.cfg = cfg
        self.model = PhonemeCTC(cfg.model)
        feats = load_features(train, cfg.model.speech_encoder, cfg.cache_dir)
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
            yield frames, mask, [self.items[i][1] for i in chunk]

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


def edit_distance(a: list[int], b: list[int]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


@torch.no_grad()
def phoneme_error_rate(model: torch.nn.Module, items: list[tuple[np.ndarray, list[int]]]) -> float:
    """Edits between the greedy phonemes and the reference, over reference phonemes."""
    hyps = speech_phonemes(model, [f for f, _ in items])
    errors = sum(edit_distance(hyp, ref) for hyp, (_, ref) in zip(hyps, items))
    return errors / max(1, sum(len(ref) for _, ref in items))


@torch.no_grad()
def speech_phonemes(ctc: PhonemeCTC, feats: list[np.ndarray]) -> list[list[int]]:
    out: list[list[int]] = []
    for s in range(0, len(feats), 64):
        frames, mask = collate_frames(feats[s : s + 64])
        out += greedy_phonemes(ctc(frames, mask), mask)
    return out


def build_corpus(cfg: PhoneticTaskConfig, captions: list[str], held_out: set[str], text_encoder) -> dict[str, Any]:
    """Texts, their phonemes and MiniLM embeddings (cached in out_dir/corpus.*: ~12 min to embed)."""
    out = Path(cfg.out_dir)
    # The texts depend on the captions and the excluded phrasings too, not only on the corpus settings.
    key = {**cfg.corpus.to_dict(), "inputs": hashlib.sha1(json.dumps([sorted(set(captions)), sorted(held_out)]).encode()).hexdigest()}
    if (out / "corpus.json").is_file() and (out / "corpus.npy").is_file():
        data = json.loads((out / "corpus.json").read_text())
        if data["config"] == key:
            return {**data, "emb": np.load(out / "corpus.npy")}
    from tqdm import tqdm

    from star.bridge.general import frequency_words

    c = cfg.corpus
    rng = random.Random(c.seed)
    words = frequency_words(top=c.top_words, skip=0)
    texts = list(words)
    texts += [" ".join(rng.choice(words) for _ in range(rng.randint(c.min_words, c.max_words))) for _ in range(c.sequences)]
    texts += sorted(set(captions))
    texts = [t for t in dict.fromkeys(texts) if t.lower() not in held_out]
    phonemes = text_phoneme_ids(texts)
    emb = np.concatenate(
        [text_encoder.embed(texts[s : s + 256]).numpy() for s in tqdm(range(0, len(texts), 256), desc="corpus embeddings")]
    ).astype(np.float16)
    out.mkdir(parents=True, exist_ok=True)
    (out / "corpus.json").write_text(json.dumps({"config": key, "texts": texts, "phonemes": phonemes}))
    np.save(out / "corpus.npy", emb)
    return {"texts": texts, "phonemes": phonemes, "emb": emb}


class PhonemeBagTask:
    """Stage 2: phoneme strings -> text embedding space."""

    def __init__(self, cfg: PhoneticTaskConfig, corpus: dict[str, Any], speech: list[list[int]],
                 speech_emb: np.ndarray, val_phonemes: list[list[int]], val_labels: np.ndarray,
                 prototypes: np.ndarray):
        self.cfg = cfg
        self.model = PhonemeBag(cfg.model)
        self.corpus_ids = corpus["phonemes"]
        self.corpus_emb = torch.from_numpy(np.asarray(corpus["emb"], np.float32))
        self.speech, self.speech_emb = speech, torch.from_numpy(np.asarray(speech_emb, np.float32))
        self.val_phonemes, self.val_labels = val_phonemes, val_labels
        self.prototypes = torch.from_numpy(prototypes)

    def corrupt(self, ids: list[int], rng: random.Random) -> list[int]:
        c, n = self.cfg, len(PHONEMES)
        out = []
        for i in ids:
            r = rng.random()
            if r < c.delete:
                continue
            out.append(rng.randrange(n) if r < c.delete + c.substitute else i)
            if rng.random() < c.insert:
                out.append(rng.randrange(n))
        return out or ids

    def batches(self, rank: int, world: int) -> Iterator[tuple[list[list[int]], torch.Tensor]]:
        rng = random.Random(self.cfg.bag.seed + rank)
        n_speech = round(self.cfg.bag_batch * self.cfg.speech_share) if self.speech else 0
        while True:
            ci = [rng.randrange(len(self.corpus_ids)) for _ in range(self.cfg.bag_batch - n_speech)]
            si = [rng.randrange(len(self.speech)) for _ in range(n_speech)]
            seqs = [self.corrupt(self.corpus_ids[i], rng) for i in ci] + [self.speech[i] for i in si]
            yield seqs, torch.cat([self.corpus_emb[ci], self.speech_emb[si]])

    def loss(self, model: torch.nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        seqs, target = batch
        z = model(seqs)  # [b, e]
        cos = (z * target).sum(-1)
        nce = F.cross_entropy(z @ target.T / self.cfg.temperature, torch.arange(len(z)))
        return {"loss": (1 - cos).mean() + 0.5 * nce, "cos": cos.mean().detach()}

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
    speech = speech_phonemes(ctc, [ctc_task.feats[i] for i in picked])  # frames the CTC stage already loaded
    speech_emb = np.concatenate([text_encoder.embed([r["caption"] for r in spoken[s : s + 256]]).numpy()
                                 for s in range(0, len(spoken), 256)])
    single = [i for i, r in enumerate(val[: cfg.max_val]) if len(row_categories(r)) == 1]
    val_phonemes = speech_phonemes(ctc, [ctc_task.val[i][0] for i in single])  # ctc_task.val is val[: max_val]
    labels = np.array([vocab.index(row_categories(val[i])[0]) for i in single])
    torch.set_num_threads(cfg.bag.threads)
    bag_task = PhonemeBagTask(cfg, corpus, speech, speech_emb, val_phonemes, labels, prototypes)
    bag_summary = Trainer(bag_task, cfg.bag, out / "bag").fit()

    reader = PhoneticReader(cfg.model)
    reader.ctc.load_state_dict(ctc.state_dict())
    load_weights(reader.bag, out / "bag" / "best", "bag")
    reader.prototypes.copy_(torch.from_numpy(prototypes))
    save_phonetic(reader, out / "release")
    return {"ctc": ctc_summary, "bag": bag_summary, "release": str(out / "release")}

