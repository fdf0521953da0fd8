"""The phonetic bag's text corpus: what it reads to learn which phoneme strings mean what.

Category-blind: wordfreq's most common words alone and in random short sequences, the training captions,
captions with one word swapped, and optional natural phrases (star.data.wordnet_phrases); never a held-out
phrasing. Texts, their phonemes and MiniLM embeddings are cached in the run folder.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from star.config import JsonConfig
from star.data.phonemes import text_phoneme_ids
from star.errors import StarError

if TYPE_CHECKING:
    from star.train.phonetic_task import PhoneticTaskConfig


@dataclass
class TextCorpusConfig(JsonConfig):
    top_words: int = 40000  # wordfreq's most common words, each alone once
    sequences: int = 80000  # random sequences of those words
    min_words: int = 2
    max_words: int = 5
    swapped: int = 0  # training captions with one word swapped for a random common word (sentences, not lists)
    # Files of natural phrases, one per line (star.data.wordnet_phrases writes WordNet's): words inside
    # phrases that decide what they mean. A phrase holding a held-out phrasing anywhere is left out.
    phrases: list[str] = field(default_factory=list)
    seed: int = 0


def read_phrases(paths: list[str]) -> list[str]:
    """The non-empty lines of each phrase file, in order."""
    phrases = []
    for path in paths:
        if not Path(path).is_file():
            raise StarError(f"phrase file not found: {path} (python -m star.data.wordnet_phrases --out {path} writes one)")
        phrases += [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return phrases


def corpus_texts(cfg: TextCorpusConfig, captions: list[str], held_out: set[str], phrases: Sequence[str] = ()) -> list[str]:
    """The category-blind corpus: common words alone, random sequences of them, the captions, captions
    with one word swapped (so carrier phrases like "I want to hear" meet many words), and natural `phrases`
    that hold no held-out phrasing; never a held-out phrasing."""
    from star.bridge.general import frequency_words

    rng = random.Random(cfg.seed)
    words = frequency_words(top=cfg.top_words, skip=0)
    texts = list(words)
    texts += [" ".join(rng.choice(words) for _ in range(rng.randint(cfg.min_words, cfg.max_words))) for _ in range(cfg.sequences)]
    unique = sorted(set(captions))
    texts += unique
    for _ in range(cfg.swapped):
        tokens = rng.choice(unique).split()
        tokens[rng.randrange(len(tokens))] = rng.choice(words)
        texts.append(" ".join(tokens))
    # Phrases come from outside, so a held-out phrasing may sit inside one ("... rode out a stormy sea").
    pattern = re.compile("|".join(rf"\b{re.escape(h)}\b" for h in sorted(held_out))) if held_out else None
    texts += [t for t in phrases if not (pattern and pattern.search(t.lower()))]
    return [t for t in dict.fromkeys(texts) if t.lower() not in held_out]


def build_corpus(cfg: PhoneticTaskConfig, captions: list[str], held_out: set[str], text_encoder) -> dict[str, Any]:
    """Texts, their phonemes and MiniLM embeddings, cached in out_dir/corpus.*; a changed corpus embeds only
    its new texts (the whole corpus takes ~12 min)."""
    out = Path(cfg.out_dir)
    # The texts depend on the captions and the excluded phrasings too, not only on the corpus settings.
    phrases = read_phrases(cfg.corpus.phrases)
    inputs = [sorted(set(captions)), sorted(held_out)] + ([phrases] if phrases else [])
    key = {**cfg.corpus.to_dict(), "inputs": hashlib.sha1(json.dumps(inputs).encode()).hexdigest()}
    cached: dict[str, Any] = {"texts": [], "phonemes": [], "emb": np.zeros((0, 0), np.float16)}
    boundaries = cfg.model.word_boundaries
    if (out / "corpus.json").is_file() and (out / "corpus.npy").is_file():
        cached = {**json.loads((out / "corpus.json").read_text()), "emb": np.load(out / "corpus.npy")}
    same_spelling = cached.get("word_boundaries", False) == boundaries
    if cached.get("config") == key and same_spelling:
        return cached
    from tqdm import tqdm

    texts = corpus_texts(cfg.corpus, captions, held_out, phrases)
    known = {t: i for i, t in enumerate(cached["texts"])}
    new = [t for t in texts if t not in known]
    # Embeddings carry over to a reader with or without word boundaries; phonemes only within one kind.
    respell = new if same_spelling else texts
    new_phonemes = dict(zip(respell, text_phoneme_ids(respell, boundaries)))
    new_emb = [text_encoder.embed(new[s : s + 256]).numpy().astype(np.float16) for s in tqdm(range(0, len(new), 256), desc="corpus embeddings")]
    new_row = {t: i for i, t in enumerate(new)}
    new_emb = np.concatenate(new_emb) if new_emb else np.zeros((0, cached["emb"].shape[-1]), np.float16)
    emb = np.stack([cached["emb"][known[t]] if t in known else new_emb[new_row[t]] for t in texts]).astype(np.float16)
    phonemes = [new_phonemes[t] if t in new_phonemes else cached["phonemes"][known[t]] for t in texts]
    out.mkdir(parents=True, exist_ok=True)
    (out / "corpus.json").write_text(json.dumps({"config": key, "word_boundaries": boundaries, "texts": texts,
                                                 "phonemes": phonemes}))
    np.save(out / "corpus.npy", emb)
    return {"texts": texts, "phonemes": phonemes, "emb": emb}
