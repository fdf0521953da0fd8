"""espeak-ng phonemization for the phonetic route."""

import shutil

import pytest

from star.data.phonemes import PHONEMES, WORD_BOUNDARY, inventory, phoneme_ids, phonemize, text_phoneme_ids

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def test_one_line_per_text_whatever_the_punctuation():
    texts = ["a dog, barking loudly!", "rain... then thunder", "", "I'd like 3 birds"]
    ipa = phonemize(texts)
    assert len(ipa) == len(texts)
    assert all(ipa)  # an empty text is spoken as a filler, not dropped


def test_ids_spell_the_words():
    dog, rain = text_phoneme_ids(["dog", "rain"])
    assert [PHONEMES[i] for i in dog] == ["d", "ɑː", "ɡ"]
    assert [PHONEMES[i] for i in rain] == ["ɹ", "e", "ɪ", "n"]  # the diphthong is two symbols


def test_stress_spaces_and_unknown_symbols_are_dropped():
    assert phoneme_ids("ˈdɑːɡ  ʔ") == [PHONEMES.index("d"), PHONEMES.index("ɑː"), PHONEMES.index("ɡ")]
    assert phoneme_ids("") == []


def test_word_boundaries_sit_between_words_only():
    (plain,), (words,) = text_phoneme_ids(["a stormy sea"]), text_phoneme_ids(["a stormy sea"], word_boundaries=True)
    symbols = inventory(word_boundaries=True)
    assert symbols[: len(PHONEMES)] == PHONEMES and symbols[-1] == WORD_BOUNDARY
    said = "".join(symbols[i] for i in words)
    assert said.count(WORD_BOUNDARY) == 2 and said.endswith("|siː") and not said.startswith("|")
    assert [i for i in words if i != len(PHONEMES)] == plain  # the same phonemes, only the boundaries added
    assert phoneme_ids("ˈdɑːɡ  ʔ kˈæt", word_boundaries=True).count(len(PHONEMES)) == 1  # an empty word adds none
