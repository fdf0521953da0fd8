"""General distillation set: category-blind sentences, teacher labels, and the per-item event-loss weight."""

import numpy as np
import pytest
import torch

from star.bridge.general import (
    TEMPLATES_1,
    TEMPLATES_2,
    TEMPLATES_X,
    coverage_sentences,
    general_sentences,
    teacher_labels,
    without_held_out_words,
)


def test_general_sentences_are_distinct_deterministic_and_templated():
    words = [f"word{i}" for i in range(200)]
    a = general_sentences(words, 50, seed=3)
    assert a == general_sentences(words, 50, seed=3) and len(set(a)) == 50
    assert a != general_sentences(words, 50, seed=4)
    shapes = {t.replace("{a}", "").replace("{b}", "") for t in TEMPLATES_1 + TEMPLATES_2}
    for s in a:
        assert any(w in s for w in words)
        assert any(all(part in s for part in shape.split()) for shape in shapes)
    ext = general_sentences(words, 300, seed=0, extended=True)
    assert any(s.startswith("someone is ") for s in ext) and TEMPLATES_X


def test_coverage_speaks_every_word_once_per_pass_alone_or_in_pairs():
    words = [f"w{i}x" for i in range(301)]  # odd count: the last word must still be spoken
    a = coverage_sentences(words, passes=1, seed=5)
    assert a == coverage_sentences(words, passes=1, seed=5) and a != coverage_sentences(words, seed=6)
    spoken = [t for s in a for t in s.split() if t in set(words)]
    assert sorted(spoken) == sorted(words)  # each word exactly once
    per_sentence = [sum(t in set(words) for t in s.split()) for s in a]
    assert set(per_sentence) == {1, 2} and 100 < len(a) < 300
    twice = coverage_sentences(words, passes=2, seed=5)
    assert sorted(t for s in twice for t in s.split() if t in set(words)) == sorted(words * 2)


def test_without_held_out_words_drops_tested_words_and_their_stems():
    from star.data.captions import held_out_only_words

    banned = sorted(held_out_only_words())
    assert {"drizzle", "toddler", "sobbing"} <= set(banned)
    kept = without_held_out_words(["dog", "rain", "drizzle", "toddlers", "sobs", "table", *banned])
    assert kept == ["dog", "rain", "table"]


def test_teacher_labels_label_negative_or_skip():
    sims = np.array(
        [
            [0.60, 0.20],  # clearly the first category
            [0.50, 0.46],  # close to both: no event loss
            [0.10, 0.05],  # far from both: negative
            [0.40, 0.10],  # in between: no event loss
        ]
    )
    assert teacher_labels(sims, ["a", "b"], min_sim=0.45, margin=0.08, max_neg=0.3) == [["a"], None, [], None]


def test_frequency_words_are_plain_words():
    pytest.importorskip("wordfreq")
    from star.bridge.general import frequency_words

    words = frequency_words(top=2000, skip=150)
    assert len(words) > 1000 and all(w.isalpha() and 3 <= len(w) <= 16 for w in words)
    assert "the" not in words  # skipped: function words at the top of the list


def test_bce_weight_zero_removes_an_items_event_loss(debug_stage_one):
    from star.bridge import StageOneModel

    torch.manual_seed(0)
    model = StageOneModel(debug_stage_one())
    frames, mask = torch.randn(2, 20, 384), torch.ones(2, 20, dtype=torch.bool)
    targets = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    text = torch.nn.functional.normalize(torch.randn(2, 384), dim=-1)
    ids = torch.tensor([0, 1])
    full = model(frames, mask, targets, text, ids)["bce"]
    same = model(frames, mask, targets, text, ids, bce_weight=torch.ones(2))["bce"]
    assert torch.allclose(full, same)
    only_first = model(frames, mask, targets, text, ids, bce_weight=torch.tensor([1.0, 0.0]))["bce"]
    first = model(frames[:1], mask[:1], targets[:1], text[:1], ids[:1])["bce"]
    assert torch.allclose(only_first, first, atol=1e-6)


def test_parts_split_work_and_bad_parts_are_refused():
    from star.config import parse_part
    from star.errors import StarError

    assert parse_part("1/3") == (1, 3)
    for bad in ("3/3", "-1/2", "1", "a/b", "1/2/3"):
        with pytest.raises(StarError):
            parse_part(bad)
