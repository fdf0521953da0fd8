"""Vocabulary expansion for stage 1: teach the bridge words its training captions never used.

A bridge trained on a few phrasings per sound learns those words only; a listener who says "a downpour"
or "a toddler sobbing" gets a guess. The text encoder knows such synonyms, so we distil that knowledge:
every word of a general English pronunciation lexicon (festival's CMU dictionary, ~105k words) is
embedded with the text encoder, words close to exactly one category's training captions are kept
(similarity to that category's caption centroid >= min_sim and ahead of the runner-up by >= margin),
and they are spoken in training voices (espeak-ng, flite) inside generic carrier phrases. Mining sees
only the lexicon, the text encoder and the training captions - never validation or test phrasings.

Negatives come from the same lexicon: words far from every category (similarity < 0.2), spoken plainly
or as a request for an unknown sound, with all-zero targets, so the event head stays low on speech
that names no known sound (which `listen` must answer with "no spoken sound request heard").

    python -m star.bridge.expand --manifest runs/data/esc10_train/prompts.jsonl --out runs/bridge/expand
    python -m star.bridge.expand --phrasings --renditions 3 --manifest runs/data/esc10_train/prompts.jsonl \
        --out runs/bridge/phrasings
    python -m star.bridge.expand --negatives --manifest runs/data/esc10_train/prompts.jsonl \
        --out runs/bridge/negatives --lexicon-cache runs/bridge/expand/lexicon_minilm.npz
    python -m star.bridge.expand --manifest runs/data/esc10_train/prompts.jsonl --out runs/bridge/expand_many \
        --reuse-mined runs/bridge/expand/mined.json runs/bridge/expand_wf/mined.json --min-zipf 2.3 \
        --texts-per-word 5 --renditions 2 --seed 3   # the mined words again, 10 renditions each
    python -m star.bridge.expand --oov --out runs/bridge/oov               # other sounds, training voices
    python -m star.bridge.expand --oov --test --out runs/bridge/oov_test   # held out, festival voices
write `prompts.jsonl` (train split; `--oov --test` the test split; expansion also `mined.json`, words per
category + similarity).

Requests for sounds outside the vocabulary ("a cat meowing", `oov_sounds.json`) are the negatives that
matter most to `listen`: they use the request shapes and the sound words of real prompts, so without them
the head answers "a car horn honking" with the nearest category it knows.
"""

from __future__ import annotations

import argparse
import json
import re
from importlib import resources
from pathlib import Path

import numpy as np
from tqdm import tqdm

from star.data.captions import SCENE_KINDS
from star.data.manifest import write_jsonl
from star.errors import StarError

LEXICON = Path("/usr/share/festival/dicts/cmu/cmudict-0.4.out")
# Festival's WSJ part-of-speech lexicon: words it only knows as proper nouns are names, not sounds.
POS_LEXICON = Path("/usr/share/festival/dicts/wsj.wp39.poslexR")
# Carrier phrases: a bare word and generic request shapes (the training captions' generic forms).
TEMPLATES = ("{w}", "the sound of {w}", "a recording of {w}", "play {w}", "{w} nearby")
# Negatives: words far from every category, spoken plainly or as a request for a sound we do not know.
NEGATIVE_TEMPLATES = ("{w}", "the sound of {w}", "I like {w}", "{w} is here", "tell me about {w}")
# Requests for sounds outside the vocabulary: the request shapes of the training captions.
OOV_TEMPLATES = ("{w}", "the sound of {w}", "play {w}", "I'd like to hear {w}", "a recording of {w}", "{w} nearby")


def lexicon_words(path: str | Path = LEXICON) -> list[str]:
    """Lower-case alphabetic headwords (3-16 letters) of a festival lexicon file, sorted."""
    path = Path(path)
    if not path.is_file():
        raise StarError(f"{path}: lexicon not found (apt-get install festlex-cmu)")
    text = path.read_text(encoding="latin-1")
    return sorted({m.group(1) for m in re.finditer(r'^\("([a-z]{3,16})" ', text, re.MULTILINE)})


def pos_tags(path: str | Path = POS_LEXICON) -> dict[str, dict[str, float]]:
    """word -> {tag: log probability} of a festival POS lexicon; empty if the file is missing."""
    path = Path(path)
    if not path.is_file():
        return {}
    return {
        m.group(1): {tag: float(logp) for tag, logp in re.findall(r"\((\w+) ([-\d.]+)\)", m.group(2))}
        for m in re.finditer(
            r'^\("([a-z]+)" \(((?:\(\w+ [-\d.]+\) )+)\)', path.read_text(encoding="latin-1"), re.MULTILINE
        )
    }


def proper_nouns(path: str | Path = POS_LEXICON) -> set[str]:
    """Words tagged only as proper nouns (nnp/nnps) in a festival POS lexicon; empty if it is missing."""
    return {w for w, tags in pos_tags(path).items() if set(tags) <= {"nnp", "nnps"}}


def embed_words(words: list[str], text_encoder, cache_file: str | Path | None = None) -> np.ndarray:
    """Sentence embeddings [n, e] float16 of `words`, cached in an .npz keyed by the word list."""
    if cache_file is not None and Path(cache_file).is_file():
        data = np.load(cache_file)
        if list(data["words"]) == words:
            return data["emb"]
    out = []
    for s in tqdm(range(0, len(words), 512), desc="embedding lexicon", unit="batch"):
        out.append(text_encoder.embed(words[s : s + 512]).numpy().astype(np.float16))
    emb = np.concatenate(out)
    if cache_file is not None:
        Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache_file, words=np.array(words), emb=emb)
    return emb


def mine(
    words: list[str],
    word_emb: np.ndarray,
    prototypes: np.ndarray,
    vocab: list[str],
    *,
    min_sim: float = 0.45,
    margin: float = 0.08,
    per_class: int = 40,
    exclude: set[str] = frozenset(),
) -> dict[str, list[tuple[str, float]]]:
    """Words close to one category's centroid. word_emb [n, e], prototypes [k, e] (normalised)."""
    sims = word_emb.astype(np.float32) @ prototypes.T  # [n, k]
    order = np.sort(sims, axis=1)
    best, second = order[:, -1], order[:, -2]
    cls = sims.argmax(1)
    keep = (best >= min_sim) & (best - second >= margin)
    out: dict[str, list[tuple[str, float]]] = {c: [] for c in vocab}
    for i in np.argsort(-best):
        if keep[i] and words[i] not in exclude and len(out[vocab[cls[i]]]) < per_class:
            out[vocab[cls[i]]].append((words[i], round(float(best[i]), 3)))
    return out


def caption_prototypes(rows: list[dict], vocab: list[str], text_encoder) -> np.ndarray:
    """Normalised centroid [k, e] of each category's single-event training captions."""
    from star.train.bridge_task import row_categories

    protos = []
    for c in vocab:
        caps = sorted(
            {r["caption"] for r in rows if row_categories(r) == [c] and r.get("split", "train") == "train"}
        )
        if not caps:
            raise StarError(f"no single-event training caption for {c!r}")
        v = text_encoder.embed(caps).mean(0).numpy()
        protos.append(v / np.linalg.norm(v))
    return np.stack(protos)


def build_expansion(
    manifest: str | Path,
    out_dir: str | Path,
    *,
    per_class: int = 40,
    texts_per_word: int = 2,
    renditions: int = 2,
    min_sim: float = 0.42,
    margin: float = 0.08,
    seed: int = 0,
    lexicon: str | Path = LEXICON,
    skip_mined: str | Path | None = None,
    reuse_mined: list[str | Path] | None = None,
    min_zipf: float = 0.0,
    contexts: bool = False,
    context_scenes: tuple[str, ...] = ("overlay",),
) -> Path:
    """Mine, speak and write `out_dir/prompts.jsonl`; returns its path.

    `lexicon` is a festival lexicon file or "wordfreq" (the general word-frequency list, fewer names and
    more everyday words than cmudict); `skip_mined` a previous run's mined.json whose words are skipped;
    `reuse_mined` earlier runs' mined.json files to speak again instead of mining (more renditions of the
    same words); `min_zipf` drops words rarer than this Zipf frequency (surnames cmudict is full of);
    `contexts` speaks each word in the training captions' own shapes instead (`context_jobs`), and in the
    scene templates of `context_scenes`."""
    from star.train.bridge_task import read_manifest, read_vocab

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = read_manifest(manifest)
    vocab = read_vocab(manifest, rows)
    if reuse_mined:
        mined = merge_mined(reuse_mined, vocab)
    else:
        mined = mine_lexicon(rows, vocab, out, per_class, min_sim, margin, lexicon, skip_mined)
    mined = {c: [(w, s) for w, s in found if is_common(w, min_zipf)] for c, found in mined.items()}
    (out / "mined.json").write_text(json.dumps(mined, indent=1) + "\n")
    rng = np.random.default_rng(seed)
    jobs = []
    for cat, found in mined.items():
        for word, _ in found:
            if contexts:
                jobs += [job for job in context_jobs(word, cat, vocab, rng, context_scenes) for _ in range(renditions)]
                continue
            for t in rng.choice(len(TEMPLATES), size=texts_per_word, replace=False):
                jobs += [([cat], TEMPLATES[t].format(w=word))] * renditions
    return write_jsonl(out / "prompts.jsonl", speak_rows(jobs, out, "x", seed, "lexicon-expansion"))


def context_jobs(
    word: str,
    category: str,
    vocab: list[str],
    rng: np.random.Generator,
    scenes: tuple[str, ...] = ("overlay",),
) -> list[tuple[list[str], str, str]]:
    """A mined word in every training request shape of captions.json ("I'd like to hear {name}", ...) and in
    every training scene template of `scenes` ("overlay", "sequence": two events, beside another category's
    sound, both the targets, in a random order; "repeat": the word alone, a random count): the sentences the
    category's own words are heard in, rather than five carrier phrases. Held-out shapes are never used.
    Jobs are (categories in caption order, caption, manifest kind)."""
    from star.data.captions import TIMES, Phrase, default_captions

    caps = default_captions()
    # An unknown category's phrasings are the generic training request shapes filled with its name.
    jobs = [([category], text, "single") for text in caps.phrasings(word)] if word not in caps.known_categories else []
    others = [c for c in vocab if c != category]
    mined = Phrase(noun=word, clause=word)
    for kind in scenes:
        for template in caps.scene_templates(kind, 1 if kind == "repeat" else 2):
            if kind == "repeat":
                times, count = TIMES[int(rng.choice(sorted(TIMES)))]
                jobs.append(([category], template.format(a=mined, times=times, count=count), kind))
                continue
            other = others[int(rng.integers(len(others)))]
            slots = [(category, mined), (other, caps.phrase(other))]
            if rng.random() < 0.5:
                slots.reverse()
            (ca, a), (cb, b) = slots
            jobs.append(([ca, cb], template.format(a=a, b=b), kind))
    return jobs


def merge_mined(paths: list[str | Path], vocab: list[str]) -> dict[str, list[tuple[str, float]]]:
    """The union of earlier runs' mined.json (each word once, under its first category)."""
    out: dict[str, list[tuple[str, float]]] = {c: [] for c in vocab}
    done: set[str] = set()
    for path in paths:
        for cat, found in json.loads(Path(path).read_text()).items():
            if cat not in out:
                raise StarError(f"{path}: category {cat!r} is not in the manifest's vocabulary")
            out[cat] += [(w, s) for w, s in found if w not in done]
            done |= {w for w, _ in found}
    return out


def is_common(word: str, min_zipf: float) -> bool:
    """Whether `word` is at least as frequent as `min_zipf` in wordfreq's English list (0: always)."""
    if min_zipf <= 0:
        return True
    try:
        from wordfreq import zipf_frequency
    except ImportError:
        raise StarError("--min-zipf needs `wordfreq` (pip install wordfreq)") from None
    return zipf_frequency(word, "en") >= min_zipf


def mine_lexicon(
    rows: list[dict],
    vocab: list[str],
    out: Path,
    per_class: int,
    min_sim: float,
    margin: float,
    lexicon: str | Path,
    skip_mined: str | Path | None,
) -> dict[str, list[tuple[str, float]]]:
    """Mine the lexicon for words near one category's training captions (see `mine`)."""
    from star.data.captions import words as caption_words
    from star.encoders import build_text_encoder

    text = build_text_encoder("minilm")
    if str(lexicon) == "wordfreq":
        from star.bridge.general import frequency_words

        words = sorted(set(frequency_words()))
    else:
        words = lexicon_words(lexicon)
    word_emb = embed_words(words, text, out / "lexicon_minilm.npz")
    # Words the training captions already use teach nothing new.
    seen = {
        w
        for r in rows
        if r.get("split", "train") == "train"
        for w in caption_words(r["caption"])
    }
    if skip_mined is not None:
        seen |= {w for found in json.loads(Path(skip_mined).read_text()).values() for w, _ in found}
    return mine(
        words,
        word_emb,
        caption_prototypes(rows, vocab, text),
        vocab,
        min_sim=min_sim,
        margin=margin,
        per_class=per_class,
        exclude=seen | proper_nouns(),
    )


def speak_rows(
    jobs: list[tuple[list[str], str]] | list[tuple[list[str], str, str]],
    out: Path,
    prefix: str,
    seed: int,
    source: str,
    voices: list[str] | None = None,
    split: str = "train",
    flite_pitch: tuple[int, int] | None = None,
) -> list[dict]:
    """Speak (categories, caption[, kind]) jobs -> manifest rows. Without a kind, one category is a
    "single" request and several an "overlay"; a "sequence" lists its events in time order, each in its
    share of a 5 s clip. Training prompts get waveform augmentation; validation and test prompts (any `split` but
    "train") and held-out festival voices are spoken plainly, as a data build speaks them."""
    from star.audio.io import write_wav
    from star.data.augment import AugmentConfig, augment
    from star.data.tts import is_held_out, plan_renditions, prefill_cache, resolve_voices, synthesize

    rng = np.random.default_rng(seed)
    chosen = resolve_voices(voices)
    plain = split != "train" or is_held_out(chosen)
    renditions = plan_renditions(chosen, len(jobs), rng, flite_pitch)
    prefill_cache([(job[1], r) for job, r in zip(jobs, renditions)], out / "tts_cache")  # FreeTTS in batches
    rows = []
    for n, (job, rendition) in enumerate(tqdm(list(zip(jobs, renditions)), desc=f"speaking {source}")):
        cats, caption = job[0], job[1]
        kind = job[2] if len(job) > 2 else "none" if not cats else "single" if len(cats) == 1 else "overlay"
        share = 5.0 / len(cats) if kind == "sequence" else 0.0
        wav = synthesize(caption, rendition, out / "tts_cache")
        wav, params = (wav, {}) if plain else augment(wav, rng, AugmentConfig())
        name = f"speech/{prefix}{n:05d}.wav"
        write_wav(out / name, wav)
        rows.append(
            {
                "id": f"{prefix}-{n:05d}",
                "caption": caption,
                "kind": kind,
                "split": split,
                "speech": name,
                "events": [
                    {"category": c, "onset": i * share, "offset": (i + 1) * share if share else 5.0}
                    for i, c in enumerate(cats)
                ],
                **rendition.to_dict(),
                "augment": params,
                "source": source,
            }
        )
    return rows


def build_phrasings(manifest: str | Path, out_dir: str | Path, *, renditions: int = 3, seed: int = 0) -> Path:
    """Speak the extra hand-written training phrasings (`captions_extra.json`) of every category."""
    from star.data.captions import default_captions
    from star.train.bridge_task import read_manifest, read_vocab

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = read_vocab(manifest, read_manifest(manifest))
    caps = default_captions()
    jobs = [([c], text) for c in vocab for text in caps.extra(c) for _ in range(renditions)]
    if not jobs:
        raise StarError(f"no extra phrasings for the categories of {manifest}")
    return write_jsonl(out / "prompts.jsonl", speak_rows(jobs, out, "p", seed, "extra-phrasings"))


def build_negatives(
    manifest: str | Path,
    out_dir: str | Path,
    *,
    words: int = 150,
    max_sim: float = 0.2,
    seed: int = 0,
    lexicon_cache: str | Path | None = None,
) -> Path:
    """Speech that asks for no known sound (all-zero targets), so the event head learns to stay low on it."""
    from star.encoders import build_text_encoder
    from star.train.bridge_task import read_manifest, read_vocab

    out = Path(out_dir)
    rows = read_manifest(manifest)
    vocab = read_vocab(manifest, rows)
    text = build_text_encoder("minilm")
    lex = lexicon_words()
    emb = embed_words(lex, text, lexicon_cache or out / "lexicon_minilm.npz").astype(np.float32)
    far = np.flatnonzero((emb @ caption_prototypes(rows, vocab, text).T).max(1) < max_sim)
    names = proper_nouns()
    rng = np.random.default_rng(seed)
    pool = [lex[i] for i in rng.permutation(far) if lex[i] not in names]
    jobs = [
        ([], NEGATIVE_TEMPLATES[k % len(NEGATIVE_TEMPLATES)].format(w=w)) for k, w in enumerate(pool[:words])
    ]
    return write_jsonl(out / "prompts.jsonl", speak_rows(jobs, out, "n", seed, "lexicon-negative"))


def oov_phrasings(which: str) -> list[str]:
    """Requests for sounds outside the vocabulary (`oov_sounds.json`): "train" or held-out "test"."""
    if which not in ("train", "test"):
        raise StarError(f"OOV phrasings are 'train' or 'test', not {which!r}")
    # Package data is read the way captions.json is, so it also works from an installed wheel.
    return json.loads(resources.files("star.data").joinpath("oov_sounds.json").read_text(encoding="utf-8"))[which]


def build_oov(out_dir: str | Path, *, test: bool = False, renditions: int = 6, seed: int = 0) -> Path:
    """Speak requests for sounds we do not know, as all-zero-target prompts.

    Training phrasings go into request shapes (`OOV_TEMPLATES`) in training voices, so the event head
    learns that naming another sound is not naming one of ours; `test=True` speaks the held-out
    phrasings in festival voices (split "test"), to measure how often `listen` refuses them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    jobs = []
    for phrase in oov_phrasings("test" if test else "train"):
        shapes = [0] + list(rng.choice(np.arange(1, len(OOV_TEMPLATES)), size=renditions - 1))
        jobs += [([], OOV_TEMPLATES[k].format(w=phrase)) for k in shapes]
    rows = speak_rows(
        jobs, out, "o", seed, "oov-request",
        voices=["festival"] if test else None, split="test" if test else "train",
    )
    return write_jsonl(out / "prompts.jsonl", rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description="Mine synonyms from a lexicon and speak them as extra stage-1 prompts"
    )
    p.add_argument("--manifest", help="training prompts manifest (vocab + training captions); not for --oov")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--per-class", type=int, default=40)
    p.add_argument("--texts-per-word", type=int, default=2)
    p.add_argument("--renditions", type=int, help="spoken versions of each text (default 2; --oov 6, --test 4)")
    p.add_argument("--min-sim", type=float, default=0.42)
    p.add_argument("--margin", type=float, default=0.08)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--negatives", action="store_true", help="build the negative (no-sound) prompts instead")
    p.add_argument(
        "--phrasings", action="store_true", help="speak the extra phrasings of captions_extra.json instead"
    )
    p.add_argument(
        "--oov", action="store_true", help="speak requests for sounds outside the vocabulary (oov_sounds.json)"
    )
    p.add_argument("--test", action="store_true", help="with --oov: the held-out phrasings, in festival voices")
    p.add_argument("--negative-words", type=int, default=150)
    p.add_argument("--lexicon-cache", help="an existing lexicon_minilm.npz (embedding the lexicon is slow)")
    p.add_argument("--lexicon", default=str(LEXICON), help='a festival lexicon file, or "wordfreq"')
    p.add_argument("--skip-mined", help="mined.json of an earlier expansion: its words are not spoken again")
    p.add_argument(
        "--reuse-mined", nargs="+", help="mined.json files of earlier expansions: speak their words again, no mining"
    )
    p.add_argument(
        "--contexts", action="store_true", help="speak mined words in the training captions' shapes and scenes"
    )
    p.add_argument(
        "--context-scenes",
        nargs="+",
        choices=SCENE_KINDS,
        default=["overlay"],
        help="with --contexts: the scene templates to speak the words in (default: overlay)",
    )
    p.add_argument("--min-zipf", type=float, default=0.0, help="drop words rarer than this (wordfreq Zipf scale)")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if a.oov:
        print(build_oov(a.out, test=a.test, renditions=a.renditions or (4 if a.test else 6), seed=a.seed))
        return
    if not a.manifest:
        p.error("--manifest is required (except with --oov)")
    a.renditions = a.renditions or 2
    if a.phrasings:
        print(build_phrasings(a.manifest, a.out, renditions=a.renditions, seed=a.seed))
        return
    if a.negatives:
        print(
            build_negatives(
                a.manifest, a.out, words=a.negative_words, seed=a.seed, lexicon_cache=a.lexicon_cache
            )
        )
        return
    path = build_expansion(
        a.manifest,
        a.out,
        per_class=a.per_class,
        texts_per_word=a.texts_per_word,
        renditions=a.renditions,
        min_sim=a.min_sim,
        margin=a.margin,
        seed=a.seed,
        lexicon=a.lexicon,
        skip_mined=a.skip_mined,
        reuse_mined=a.reuse_mined,
        min_zipf=a.min_zipf,
        contexts=a.contexts,
        context_scenes=tuple(a.context_scenes),
    )
    print(path)


if __name__ == "__main__":
    main()
