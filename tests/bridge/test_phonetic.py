"""The phonetic route: shapes, masking, decoding, hashing, fusion, save/load, and a short real training run."""

import json
import shutil

import numpy as np
import pytest
import torch

from star.bridge.phonetic import (
    PhonemeBag,
    PhonemeCTC,
    PhoneticConfig,
    PhoneticReader,
    fuse,
    greedy_phonemes,
    load_phonetic,
    ngram_buckets,
    save_phonetic,
)
from star.errors import StarError
from star.train.trainer import TrainConfig


def tiny(**kw) -> PhoneticConfig:
    return PhoneticConfig(in_dim=16, ctc_width=8, ctc_layers=1, buckets=97, bag_dim=8, out_dim=12, dropout=0.0,
                          vocab=["dog", "rain"], **kw)


def test_ctc_shapes_and_padding_does_not_change_real_frames():
    torch.manual_seed(0)
    ctc = PhonemeCTC(tiny()).eval()
    x = torch.randn(1, 10, 16)
    alone = ctc(x, torch.ones(1, 10, dtype=torch.bool))
    padded = torch.cat([x, torch.randn(1, 5, 16)], 1)  # garbage after the end
    mask = torch.zeros(1, 15, dtype=torch.bool)
    mask[:, :10] = True
    out = ctc(padded, mask)
    assert out.shape == (1, 15, len(tiny().phonemes) + 1)
    assert torch.allclose(out[:, :10], alone, atol=1e-5)


def test_greedy_decoding_collapses_repeats_and_blanks_within_the_mask():
    path = [0, 3, 3, 0, 3, 5, 5, 0, 7]  # blank=0; output i is phoneme i-1
    lp = torch.full((1, len(path), 10), -10.0)
    lp[0, torch.arange(len(path)), torch.tensor(path)] = 0.0
    mask = torch.ones(1, len(path), dtype=torch.bool)
    assert greedy_phonemes(lp, mask) == [[2, 2, 4, 6]]
    mask[0, 6:] = False
    assert greedy_phonemes(lp, mask) == [[2, 2, 4]]


def test_ngram_buckets_are_deterministic_and_in_range():
    a = ngram_buckets([1, 2, 3], [1, 2, 3], 97, edge=43)
    assert a == ngram_buckets([1, 2, 3], [1, 2, 3], 97, edge=43)
    assert len(a) == 5 + 4 + 3 and all(0 <= b < 97 for b in a)
    assert a != ngram_buckets([3, 2, 1], [1, 2, 3], 97, edge=43)  # order matters beyond unigrams


def test_bag_is_normalised_and_batch_independent():
    torch.manual_seed(0)
    bag = PhonemeBag(tiny()).eval()
    seqs = [[1, 2, 3], [4, 5], [6]]
    batch = bag(seqs)
    assert batch.shape == (3, 12)
    assert torch.allclose(batch.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(bag([seqs[1]]), batch[1:2], atol=1e-6)


def test_fusion_weight_moves_the_ranking_from_bridge_to_phonetic():
    probs = np.array([[0.9, 0.1]])
    sims = np.array([[0.0, 0.5]])
    assert fuse(probs, sims, 0.0).argmax() == 0
    assert fuse(probs, sims, 20.0).argmax() == 1


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    reader = PhoneticReader(tiny()).eval()
    reader.prototypes.copy_(torch.nn.functional.normalize(torch.randn(2, 12), dim=-1))
    save_phonetic(reader, tmp_path)
    loaded = load_phonetic(tmp_path)
    frames, mask = torch.randn(2, 9, 16), torch.ones(2, 9, dtype=torch.bool)
    assert torch.allclose(loaded.similarities(frames, mask), reader.similarities(frames, mask), atol=1e-5)
    assert loaded.cfg.vocab == ["dog", "rain"]


def test_another_phoneme_inventory_is_refused():
    with pytest.raises(StarError, match="phoneme inventory"):
        PhoneticReader(tiny(phonemes=["a", "b"]))


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_short_training_on_real_speech_lowers_both_losses_and_resumes(prompts_manifest, tmp_path):
    from star.train.phonetic_task import PhoneticTaskConfig, TextCorpusConfig, train_phonetic

    def cfg(steps):
        train = {"lr": 3e-3, "warmup": 2, "log_every": 5, "eval_every": 10, "ckpt_every": 10, "threads": 1}
        c = PhoneticTaskConfig(
            manifest=str(prompts_manifest), out_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"),
            model=PhoneticConfig(ctc_width=32, ctc_layers=1, buckets=4096, bag_dim=16),
            ctc=TrainConfig(steps=steps, monitor="val_per", monitor_mode="min", **train),
            bag=TrainConfig(steps=steps, monitor="val_top1", **train),
            corpus=TextCorpusConfig(top_words=300, sequences=200), ctc_batch=6, bag_batch=32, speech_prompts=12)
        path = tmp_path / f"phonetic{steps}.json"
        c.save(path)
        return path

    result = train_phonetic(cfg(60))
    for stage in ("ctc", "bag"):
        log = [json.loads(x) for x in (tmp_path / "run" / stage / "log.jsonl").read_text().splitlines()]
        losses = [r["loss"] for r in log if "loss" in r]
        assert losses[-1] < 0.8 * losses[0], (stage, losses)
    reader = load_phonetic(result["release"])
    assert reader.cfg.vocab == ["dog", "rain", "rooster"]
    assert torch.allclose(reader.prototypes.norm(dim=-1), torch.ones(3), atol=1e-4)
    corpus = json.loads((tmp_path / "run" / "corpus.json").read_text())
    held_out = {"i want to hear a dog bark", "i want to hear the rain", "i want to hear a rooster"}
    assert not held_out & {t.lower() for t in corpus["texts"]}  # validation phrasings never in the corpus
    assert "a dog barks" in corpus["texts"]  # training captions are
    resumed = train_phonetic(cfg(70))
    assert resumed["ctc"]["step"] == 70 and resumed["bag"]["step"] == 70


def test_fusion_weight_is_chosen_on_validation_only(tmp_path):
    from star.bridge.evaluate import choose_fusion_weight

    save_phonetic(PhoneticReader(tiny()), tmp_path)
    results = {
        "esc10_train:validation": {"fused": {"2.0": {"top1": 0.8, "map": 0.9}, "8.0": {"top1": 0.9, "map": 0.8}}},
        "esc10_festival": {"fused": {"2.0": {"top1": 1.0, "map": 1.0}, "8.0": {"top1": 0.5, "map": 0.5}}},
    }
    assert choose_fusion_weight(results, tmp_path) == 8.0
    assert load_phonetic(tmp_path).cfg.fusion_weight == 8.0
    with pytest.raises(StarError, match="validation"):
        choose_fusion_weight({"esc10_festival": results["esc10_festival"]}, tmp_path)


def test_evaluate_says_plainly_when_the_phonetic_folder_is_missing(tmp_path):
    from star.bridge.evaluate import main
    from star.builders import DEFAULT_MODEL

    with pytest.raises(SystemExit, match="error: missing config file"):
        main(["--model", str(DEFAULT_MODEL), "--manifest", str(tmp_path / "x.jsonl"), "--phonetic", str(tmp_path)])
