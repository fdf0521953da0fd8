"""`listen` on real synthesised speech: a tiny stage-1 model trained here names the spoken event, and
non-speech input (noise, tones, silence) is answered with "no spoken sound request heard"."""

import json

import numpy as np
import pytest

from star.audio import load_audio
from star.bridge import BridgeConfig, StageOneConfig
from star.bridge.calibrate import choose, synthetic_negatives
from star.bridge.listen import NO_REQUEST, Listener, speech_ratio
from star.train import TrainConfig
from star.train.bridge_task import BridgeTaskConfig, train_bridge


@pytest.fixture(scope="module")
def tiny_model_dir(prompts_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_bridge")
    bridge = BridgeConfig(width=48, queries=4, layers=1, heads=2, ffn_mult=2, dropout=0.0)
    cfg = BridgeTaskConfig(
        manifest=str(prompts_manifest),
        out_dir=str(out / "run"),
        cache_dir=str(out / "cache"),
        model=StageOneConfig(bridge=bridge),
        train=TrainConfig(
            steps=60, lr=3e-3, warmup=5, log_every=10, eval_every=30, ckpt_every=60, monitor=""
        ),
        batch_size=12,
        align_weight=0.5,
    )
    cfg.save(out / "cfg.json")
    train_bridge(out / "cfg.json")
    return out / "run" / "last"


def _rows(manifest):
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def test_listen_names_the_spoken_event(tiny_model_dir, prompts_manifest):
    listener = Listener.from_folder(tiny_model_dir)
    for row in [r for r in _rows(prompts_manifest) if r["split"] == "train"][::3]:
        result = listener.listen(load_audio(prompts_manifest.parent / row["speech"]))
        assert result.is_request, result.reason
        assert result.events[0][0] == row["events"][0]["category"], (row["caption"], result.events)
        assert result.caption in listener.cfg.captions
        d = result.to_dict()
        assert json.loads(json.dumps(d)) == d and d["events"][0]["category"] == result.events[0][0]


@pytest.mark.parametrize("name", ["white_noise", "tone_440", "silence", "chords", "melody"])
def test_non_speech_is_not_a_request(tiny_model_dir, name):
    wav = synthetic_negatives()[name]
    result = Listener.from_folder(tiny_model_dir).listen(wav)
    assert not result.is_request and result.events == [] and result.caption == ""
    assert result.reason.startswith(NO_REQUEST)
    assert result.to_dict()["is_request"] is False


def test_speech_ratio_separates_speech_from_noise(prompts_manifest):
    row = _rows(prompts_manifest)[0]
    speech = load_audio(prompts_manifest.parent / row["speech"])
    assert speech_ratio(speech) > 0.6
    # Silence around a prompt (a real recording) does not dilute the ratio.
    assert speech_ratio(np.pad(speech, (32000, 32000))) > 0.6
    assert speech_ratio(synthetic_negatives()["white_noise"]) < 0.1
    assert speech_ratio(np.zeros(100, dtype=np.float32)) == 0.0


def test_choose_thresholds_keeps_recall_and_rejects():
    pos = np.array([[0.9, 0.8, 0.7], [0.8, 0.9, 0.6], [0.7, 0.7, 0.8]])
    neg = np.array([[0.0, 0.9, 0.9], [0.9, 0.1, 0.2], [0.8, 0.4, 0.3]])
    th, rates = choose(pos, neg, min_recall=1.0)
    assert rates["prompt_recall"] == 1.0 and rates["negative_rejection"] == 1.0
    assert th.min_speech_ratio <= 0.7 and th.min_event_prob <= 0.7 and th.min_caption_sim <= 0.6


def test_choose_never_tightens_the_speech_ratio_past_its_cap():
    # The negatives differ from the prompts only in speech ratio (0.6 vs 0.9): a free grid would refuse
    # them all with a 0.65 ratio; capped, the ratio stays at "mostly speech" and they are let through.
    pos = np.array([[0.9, 0.8, 0.7], [0.95, 0.9, 0.6]])
    neg = np.array([[0.6, 0.8, 0.7], [0.6, 0.9, 0.6]])
    free, free_rates = choose(pos, neg, min_recall=1.0, max_speech_ratio=1.0)
    assert free.min_speech_ratio > 0.6 and free_rates["negative_rejection"] == 1.0
    capped, rates = choose(pos, neg, min_recall=1.0)
    assert capped.min_speech_ratio <= 0.5 and rates["negative_rejection"] == 0.0


def test_evaluate_folder_scores_validation_and_lists_misses(tiny_model_dir, prompts_manifest, tmp_path):
    from star.bridge.evaluate import evaluate_folder

    res = evaluate_folder(tiny_model_dir, [str(prompts_manifest)], tmp_path / "cache")
    (name, r), = res.items()
    assert name.endswith(":validation")
    n_val = sum(1 for row in _rows(prompts_manifest) if row["split"] in ("val", "validation"))
    assert r["prompts"] == n_val and 0.0 <= r["top1"] <= 1.0 and 0.0 <= r["map"] <= 1.0
    assert sum(r["misses"].values()) == round((1 - r["top1"]) * r["single"])
    singles = [row for row in _rows(prompts_manifest)
               if row["split"] in ("val", "validation") and len({e["category"] for e in row["events"]}) == 1]
    assert r["wordings"] == len({row["caption"] for row in singles})
    lo, hi = r["top1_interval"]
    assert lo <= r["top1"] <= hi


def test_slot_accuracy_on_hand_computed_halves():
    from star.bridge.evaluate import slot_accuracy

    # prompts: "dog, then rain" (halves right), "rain, then dog" (halves swapped), a single dog (both halves
    # dog), a single rain (second half says dog)
    seq = np.array([[0, 1], [1, 0], [-1, -1], [-1, -1]])
    targets = np.array([[1, 1], [1, 1], [1, 0], [0, 1]], dtype=np.float32)
    halves = np.array([[[2, 0], [0, 2]], [[2, 0], [0, 2]], [[2, 0], [2, 0]], [[0, 2], [2, 0]]], dtype=np.float32)
    assert slot_accuracy(halves, seq, targets, np.array([2, 3])) == {"sequences": 0.5, "single": 0.5}


def test_cue_strength_counts_only_words_heard_mostly_with_the_category(tmp_path):
    import json

    from star.bridge.evaluate import cue_counts, cue_strength

    rows = [
        {"caption": "a dog barking", "events": [{"category": "dog"}]},
        {"caption": "a dog howling", "events": [{"category": "dog"}]},
        {"caption": "a puppy", "events": [{"category": "dog"}]},
        {"caption": "a rooster", "events": [{"category": "rooster"}]},
        {"caption": "a rooster crowing", "events": [{"category": "rooster"}]},
        {"caption": "a puppy show", "events": []},  # no sound asked for
        {"caption": "a cat", "events": []},
        {"caption": "a puppy in a scene", "events": [{"category": "dog"}, {"category": "rain"}]},  # skipped
        {"caption": "a dog, held out", "split": "val", "events": [{"category": "dog"}]},  # skipped
    ]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"speech": f"{n}.wav", **r}) + "\n" for n, r in enumerate(rows)))
    cues = cue_counts([str(path)])
    assert cues["a"] == {"dog": 3, "rooster": 2, "": 2} and cues["dog"] == {"dog": 2}
    assert cue_strength("a dog barking", "dog", cues) == 2  # "a" is heard with dog 3 times, but not mostly
    assert cue_strength("a puppy yapping", "dog", cues) == 1  # puppy: once with dog, once with no sound
    assert cue_strength("a puppy yapping", "rooster", cues) == 0


def pointed_reader(vocab: list[str], favoured: str | None, weight: float):
    """A phonetic reader whose route always points at `favoured` (cosine 1 there, -1 elsewhere), or at no
    category (None: the same cosine everywhere): the wiring is under test, not a trained route."""
    import torch

    from star.bridge.phonetic import PhoneticConfig, PhoneticReader

    reader = PhoneticReader(PhoneticConfig(ctc_width=16, ctc_layers=1, buckets=64, bag_dim=8, vocab=vocab,
                                           fusion_weight=weight)).eval()
    direction = torch.nn.functional.normalize(torch.randn(reader.cfg.out_dim), dim=0)
    with torch.no_grad():
        last = reader.bag.mlp[-1]
        last.weight.zero_()
        last.bias.copy_(direction)  # every prompt lands on `direction`
        for k, name in enumerate(vocab):
            reader.prototypes[k] = direction if favoured in (None, name) else -direction
    return reader


def test_a_phonetic_reader_beside_the_bridge_is_fused_into_the_events(tiny_model_dir, prompts_manifest, tmp_path):
    import shutil

    from star.bridge.phonetic import save_phonetic
    from star.errors import StarError

    row = next(r for r in _rows(prompts_manifest) if r["split"] == "train")
    wav = load_audio(prompts_manifest.parent / row["speech"])
    alone = Listener.from_folder(tiny_model_dir)
    assert alone.phonetic is None
    heard = alone.listen(wav)
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    vocab = list(alone.cfg.vocab)
    other = next(c for c in vocab if c != heard.events[0][0])

    save_phonetic(pointed_reader(vocab, None, 20.0), folder)  # sees no category stand out: changes nothing
    flat = Listener.from_folder(folder)
    assert flat.phonetic is not None
    assert np.allclose(list(flat.listen(wav).scores.values()), list(heard.scores.values()), atol=1e-4)

    save_phonetic(pointed_reader(vocab, other, 20.0), folder)  # sure of another event: it wins
    fused = Listener.from_folder(folder).listen(wav)
    assert fused.events[0][0] == other and fused.scores[other] > heard.scores[other]

    save_phonetic(pointed_reader(vocab[::-1], None, 20.0), folder)
    with pytest.raises(StarError, match="vocabularies"):
        Listener.from_folder(folder)


def test_evaluate_fuses_a_phonetic_reader_and_reports_each_route(tiny_model_dir, prompts_manifest, tmp_path):
    from star.bridge.evaluate import evaluate_folder
    from star.bridge.phonetic import save_phonetic

    vocab = list(Listener.from_folder(tiny_model_dir).cfg.vocab)
    save_phonetic(pointed_reader(vocab, "dog", 50.0), tmp_path / "reader")  # always says dog, loudly
    res = evaluate_folder(tiny_model_dir, [str(prompts_manifest)], tmp_path / "cache", phonetic_dir=tmp_path / "reader",
                          fusion_weights=[0.0])
    (r,) = res.values()
    val = [row for row in _rows(prompts_manifest)
           if row["split"] in ("val", "validation") and len({e["category"] for e in row["events"]}) == 1]
    dogs = sum(row["events"][0]["category"] == "dog" for row in val) / len(val)
    assert r["fused"]["50.0"]["top1"] == pytest.approx(dogs) == r["top1"]  # the reader's weight is the headline
    assert r["fused"]["0.0"]["top1"] == pytest.approx(r["bridge"]["top1"])  # weight 0: the bridge alone
    assert r["phonetic"]["top1"] == pytest.approx(dogs)
    assert r["phoneme_error"] >= 0.9  # an untrained CTC head spells nothing right
    voices = {"espeak" if row.get("engine") == "espeak" else row["voice"].split(":")[-1] for row in _rows(prompts_manifest)
              if row["split"] in ("val", "validation")}
    assert set(r["phoneme_error_per_voice"]) == voices and all(e >= 0.9 for e in r["phoneme_error_per_voice"].values())


def test_evaluate_scores_the_route_on_each_captions_true_phonemes(tiny_model_dir, prompts_manifest, tmp_path):
    """"true_phonemes": the bag reads each caption's own phonemes instead of what the CTC head heard."""
    import torch

    from star.bridge.evaluate import evaluate_folder, scored_rows
    from star.bridge.model import load_stage_one
    from star.bridge.phonetic import PhoneticConfig, PhoneticReader, fuse, save_phonetic
    from star.data.phonemes import text_phoneme_ids
    from star.train.bridge_task import (
        collate_frames,
        load_features,
        multi_hot,
        predict_features,
        top1_accuracy,
    )

    vocab = list(Listener.from_folder(tiny_model_dir).cfg.vocab)
    torch.manual_seed(0)
    reader = PhoneticReader(PhoneticConfig(ctc_width=16, ctc_layers=1, buckets=64, bag_dim=8, vocab=vocab,
                                           fusion_weight=4.0)).eval()  # untrained, but its bag reads its input
    with torch.no_grad():
        reader.prototypes.copy_(torch.nn.functional.normalize(torch.randn(len(vocab), reader.cfg.out_dim), dim=1))
    save_phonetic(reader, tmp_path / "reader")
    cache = tmp_path / "cache"
    (r,) = evaluate_folder(tiny_model_dir, [str(prompts_manifest)], cache, phonetic_dir=tmp_path / "reader").values()

    rows = scored_rows(str(prompts_manifest))[0]
    feats = load_features(rows, "whisper-tiny.en", cache)
    with torch.no_grad():
        true = (reader.bag(text_phoneme_ids([x["caption"] for x in rows])) @ reader.prototypes.T).numpy()
    heard = reader.similarities(*collate_frames(feats)).numpy()
    assert not np.allclose(true, heard, atol=1e-3)  # an untrained head does not hear the captions' phonemes
    targets = multi_hot(rows, vocab)
    single = targets.sum(1) == 1
    fused = fuse(predict_features(load_stage_one(tiny_model_dir), feats)[0], true, 4.0)
    assert r["true_phonemes"]["phonetic"]["top1"] == pytest.approx(top1_accuracy(true[single], targets[single]))
    assert r["true_phonemes"]["fused"]["top1"] == pytest.approx(top1_accuracy(fused[single], targets[single]))
    assert sum(r["true_phonemes"]["misses"].values()) == round((1 - r["true_phonemes"]["fused"]["top1"]) * single.sum())


def test_readings_at_other_speeds_are_averaged_by_listen_and_evaluate(tiny_model_dir, prompts_manifest, tmp_path):
    import shutil

    from star.audio.io import play_at_speed
    from star.bridge.evaluate import evaluate_folder, scored_rows
    from star.bridge.model import load_stage_one
    from star.bridge.phonetic import fuse, save_phonetic
    from star.train.bridge_task import (
        load_features,
        multi_hot,
        predict_features,
        row_categories,
        top1_accuracy,
    )

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    alone = Listener.from_folder(tiny_model_dir)
    vocab = list(alone.cfg.vocab)
    reader = pointed_reader(vocab, "dog", 2.0)
    reader.cfg.reading_speeds = [0.8, 1.0, 1.25]
    save_phonetic(reader, folder)
    row = next(r for r in _rows(prompts_manifest) if r["split"] == "train")
    wav = load_audio(prompts_manifest.parent / row["speech"])
    sims = reader.similarities(*alone.encoder.encode([wav])).numpy()  # the same for every reading
    by_hand = np.mean([fuse(alone.signals(play_at_speed(wav, s))[0][None], sims, 2.0)[0] for s in (0.8, 1.0, 1.25)], 0)
    heard = Listener.from_folder(folder).listen(wav)
    assert np.allclose(list(heard.scores.values()), 1 / (1 + np.exp(-by_hand)), atol=1e-4)
    reader.cfg.reading_speeds = [1.0]
    save_phonetic(reader, folder)
    once = Listener.from_folder(folder).listen(wav)
    logit = lambda result: np.log([p / (1 - p) for p in result.scores.values()])
    assert np.abs(logit(once) - logit(heard)).max() > 0.1  # the other readings count

    reader.cfg.reading_speeds, reader.cfg.fusion_weight = [1.0, 0.8], 0.0  # weight 0: the bridge's readings
    save_phonetic(reader, tmp_path / "reader")
    cache = tmp_path / "cache"
    (r,) = evaluate_folder(folder, [str(prompts_manifest)], cache, phonetic_dir=tmp_path / "reader").values()
    rows = scored_rows(str(prompts_manifest))[0]
    model = load_stage_one(folder)
    logits = [np.log(p / (1 - p)) for p in (predict_features(model, load_features(rows, "whisper-tiny.en", cache, speed=s))[0]
                                            for s in (1.0, 0.8))]
    targets, single = multi_hot(rows, vocab), [i for i, x in enumerate(rows) if len(row_categories(x)) == 1]
    assert r["top1"] == pytest.approx(top1_accuracy(np.mean(logits, 0)[single], targets[single]))
    assert r["bridge"]["top1"] == pytest.approx(top1_accuracy(logits[0][single], targets[single]))  # as spoken


def test_reading_speeds_must_include_the_prompt_as_spoken():
    from star.bridge.phonetic import PhoneticConfig
    from star.errors import StarError

    for speeds in ([], [0.9, 1.1], [0.0, 1.0]):
        with pytest.raises(StarError, match="reading_speeds"):
            PhoneticConfig(reading_speeds=speeds).validate()


def test_answer_rates_count_accepted_and_right_single_event_prompts(tiny_model_dir, prompts_manifest, tmp_path):
    from star.bridge.calibrate import answer_rates
    from star.bridge.evaluate import evaluate_folder

    listener = Listener.from_folder(tiny_model_dir)
    (top1,) = [r["top1"] for r in evaluate_folder(tiny_model_dir, [str(prompts_manifest)], tmp_path).values()]
    (rates,) = answer_rates(listener, [str(prompts_manifest)], np.zeros(3)).values()
    val = [r for r in _rows(prompts_manifest)
           if r["split"] in ("val", "validation") and len({e["category"] for e in r["events"]}) == 1]
    assert rates["prompts"] == len(val) and rates["accepted"] == 1.0
    assert rates["accepted_right"] == pytest.approx(top1)  # everything accepted: right as often as top-1
    (none,) = answer_rates(listener, [str(prompts_manifest)], np.array([0.0, 1.01, 0.0])).values()
    assert none["accepted"] == none["accepted_right"] == 0.0
