"""Requests for sounds outside the vocabulary (oov_sounds.json): honest train/test split, no category leaks."""

from star.bridge.expand import OOV_TEMPLATES, oov_phrasings
from star.data.captions import default_captions, held_out_only_words, word_stem, words

# Words any request may use: articles, prepositions, request verbs.
FUNCTION_WORDS = {"a", "an", "the", "on", "in", "at", "of", "as", "it", "their", "someone", "people", "playing"}


def content_stems(phrases: list[str]) -> set[str]:
    return {word_stem(w) for p in phrases for w in words(p) - FUNCTION_WORDS}


def test_both_lists_exist_and_have_no_duplicates():
    train, test = oov_phrasings("train"), oov_phrasings("test")
    assert len(train) >= 60 and len(test) >= 20
    assert len(set(train)) == len(train) and len(set(test)) == len(test)


def test_held_out_requests_share_no_content_word_with_training_ones():
    shared = content_stems(oov_phrasings("train")) & content_stems(oov_phrasings("test"))
    assert not shared, shared


def test_training_requests_avoid_the_held_out_wording_of_known_sounds():
    # Negatives must not teach the head to refuse the words the festival test prompts check.
    caps = default_captions()
    banned = {word_stem(w) for w in held_out_only_words(caps)}
    for phrase in oov_phrasings("train") + [t.format(w="") for t in OOV_TEMPLATES]:
        assert not {word_stem(w) for w in words(phrase)} & banned, phrase


def test_no_request_names_a_known_category():
    caps = default_captions()
    known = {word_stem(w) for c in caps.known_categories for w in words(caps.phrase(c).noun)}
    for phrase in oov_phrasings("train") + oov_phrasings("test"):
        assert not content_stems([phrase]) & known, phrase
