"""Caption phrasings: enough, unique, disjoint train/held-out wording; scene captions state the structure."""

import pytest

from star.data.captions import Captions, category_name, default_captions

ESC10 = ["chainsaw", "clock_tick", "crackling_fire", "crying_baby", "dog", "helicopter", "rain", "rooster",
         "sea_waves", "sneezing"]


def test_every_esc10_category_has_hand_written_phrasings():
    cap = default_captions()
    assert cap.known_categories == ESC10
    for cat in ESC10:
        train, held = cap.train(cat), cap.held_out(cat)
        assert len(train) >= 12, cat
        assert len(train) + len(held) >= 15, cat
        assert len(held) >= 3, cat
        assert len(set(train)) == len(train) and len(set(held)) == len(held), f"duplicates in {cat}"
        assert not set(train) & set(held), f"train and held-out overlap for {cat}"
        assert all(p == p.strip() and p for p in train + held)


def test_phrasings_are_unique_across_categories():
    cap = default_captions()
    seen = {}
    for cat in ESC10:
        for p in cap.train(cat) + cap.held_out(cat):
            assert p not in seen, f"{p!r} is used by {seen.get(p)} and {cat}"
            seen[p] = cat


def test_no_count_words_in_single_event_phrasings():
    # "twice"/"two times" belong to repeat scenes; a single clip captioned with them would teach the wrong count.
    cap = default_captions()
    for cat in ESC10:
        for p in cap.train(cat) + cap.held_out(cat):
            assert not any(w in p.split() for w in ("twice", "times", "then")), p


def test_unknown_category_gets_generic_templates():
    cap = default_captions()
    train, held = cap.train("car_horn"), cap.held_out("car_horn")
    assert "the sound of car horn" in train
    assert len(train) >= 12 and len(held) >= 3 and not set(train) & set(held)
    assert all("car horn" in p for p in train + held)
    assert cap.phrase("car_horn").noun == "car horn"
    assert category_name("sea_waves") == "sea waves"


def test_split_is_deterministic():
    a, b = Captions(), Captions()
    assert [a.held_out(c) for c in ESC10] == [b.held_out(c) for c in ESC10]


@pytest.mark.parametrize("held_out", [False, True])
def test_sequence_captions_name_events_in_time_order(held_out):
    cap = default_captions()
    cats = ["rooster", "dog", "rain"]
    for caption in cap.scene_captions("sequence", cats, held_out=held_out):
        positions = []
        for c in cats:
            ph = cap.phrase(c)
            pos = [caption.find(s) for s in (ph.noun, ph.clause) if s in caption]
            assert pos, f"{c} missing from {caption!r}"
            positions.append(min(pos))
        assert positions == sorted(positions), caption


def test_repeat_and_overlay_captions():
    cap = default_captions()
    twice = cap.scene_captions("repeat", ["dog"], times=2)
    thrice = cap.scene_captions("repeat", ["dog"], times=3)
    assert all(("twice" in c or "two" in c) and "dog" in c for c in twice)
    assert all("three" in c for c in thrice)
    overlay = cap.scene_captions("overlay", ["dog", "rain"])
    assert "a dog barks while rain falls" in overlay
    assert "a dog barking with rain falling in the background" in overlay  # b is the background
    assert not set(overlay) & set(cap.scene_captions("overlay", ["dog", "rain"], held_out=True))
    with pytest.raises(ValueError):
        cap.scene_captions("chorus", ["dog", "rain"])


# ---- extra training phrasings (captions_extra.json) must keep the held-out wording unseen ------------
def test_extra_phrasings_exist_for_every_category():
    from star.data.captions import default_captions

    caps = default_captions()
    for cat in caps.known_categories:
        assert len(set(caps.extra(cat))) >= 35, cat


def test_extra_phrasings_never_contain_a_held_out_phrasing():
    from star.data.captions import default_captions

    caps = default_captions()
    held = [h.lower() for c in caps.known_categories for h in caps.held_out(c)]
    for cat in caps.known_categories:
        for phrase in caps.extra(cat):
            assert not any(h in phrase.lower() for h in held), phrase


def test_extra_phrasings_avoid_held_out_only_words_and_their_stems():
    from star.data.captions import default_captions, held_out_only_words, word_stem, words

    caps = default_captions()
    banned = held_out_only_words(caps)
    assert {"puppy", "cockerel", "drizzle", "hearth", "toddler", "want"} <= banned
    original = set().union(*(words(p) for c in caps.known_categories for p in caps.train(c)))
    banned_stems = {word_stem(w) for w in banned}
    for cat in caps.known_categories:
        for phrase in caps.extra(cat):
            new = words(phrase) - original
            assert not new & banned, (phrase, new & banned)
            assert not {word_stem(w) for w in new} & banned_stems, (phrase, new)


def test_word_stem():
    from star.data.captions import word_stem

    assert word_stem("puppies") == word_stem("puppy") == "pup"
    assert word_stem("sobbing") == word_stem("sobs") == "sob"
