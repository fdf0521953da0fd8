"""Lexicon expansion: parsing festival lexicons and mining words near exactly one category."""

import re

import numpy as np

from star.bridge.expand import lexicon_words, mine, proper_nouns


def test_lexicon_and_proper_nouns_parse(tmp_path):
    lex = tmp_path / "lex.out"
    lex.write_text(
        'MNCL\n("a" dt (((ax) 0)))\n("downpour" nil (((d aw n) 1)))\n("rain" n (((r ey n) 1)))\n'
        '("barksdale" nil (((b aa r k s) 1)))\n("x1" nil ())\n'
    )
    assert lexicon_words(lex) == ["barksdale", "downpour", "rain"]
    pos = tmp_path / "pos"
    pos.write_text('MNCL\n("barksdale" ((nnp -10.304) ) () )\n("scream" ((nn -11.0) (vb -10.1) ) () )\n')
    assert proper_nouns(pos) == {"barksdale"}


def test_mine_keeps_close_unambiguous_words():
    protos = np.eye(3, dtype=np.float32)[:2]  # two categories along axes 0 and 1
    words = ["near_a", "near_b", "between", "far", "seen"]
    emb = np.array([[0.9, 0.1, 0.4], [0.1, 0.8, 0.5], [0.6, 0.6, 0.5], [0.0, 0.1, 1.0], [1.0, 0.0, 0.0]])
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    out = mine(words, emb, protos, ["a", "b"], min_sim=0.5, margin=0.1, per_class=5, exclude={"seen"})
    assert [w for w, _ in out["a"]] == ["near_a"] and [w for w, _ in out["b"]] == ["near_b"]


def test_merge_mined_keeps_each_word_once_and_checks_categories(tmp_path):
    import json

    import pytest

    from star.bridge.expand import merge_mined
    from star.errors import StarError

    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps({"dog": [["puppy", 0.6]], "rain": [["drizzle", 0.5]]}))
    second.write_text(json.dumps({"dog": [["hound", 0.5]], "rain": [["puppy", 0.45]]}))
    merged = merge_mined([first, second], ["dog", "rain", "rooster"])
    assert merged == {"dog": [("puppy", 0.6), ("hound", 0.5)], "rain": [("drizzle", 0.5)], "rooster": []}
    second.write_text(json.dumps({"cat": [["kitten", 0.7]]}))
    with pytest.raises(StarError, match="cat"):
        merge_mined([second], ["dog"])


def test_is_common_drops_rare_surnames():
    from star.bridge.expand import is_common

    assert is_common("puppy", 2.3) and not is_common("barkdull", 2.3)
    assert is_common("barkdull", 0.0)  # 0 keeps every word


def test_context_jobs_use_training_shapes_only():
    from star.bridge.expand import context_jobs
    from star.data.captions import default_captions

    caps = default_captions()
    jobs = context_jobs("toddler", "crying_baby", ["dog", "rain", "crying_baby"], np.random.default_rng(0))
    singles = [text for cats, text, kind in jobs if kind == "single"]
    assert singles == caps.phrasings("toddler")  # every generic training request shape, once
    scenes = [(cats, text) for cats, text, kind in jobs if kind == "overlay"]
    assert len(scenes) == len(jobs) - len(singles) == len(caps.scene_templates("overlay", 2))
    for cats, text in scenes:  # the word beside another category's sound; both are targets
        assert "crying_baby" in cats and set(cats) - {"crying_baby"} <= {"dog", "rain"} and "toddler" in text
    # The literal words of the held-out shapes ("mixed with", "I want to hear") never occur.
    held_out = caps.scene_templates("overlay", 2, held_out=True) + caps.phrasings("{name}", held_out=True)
    pieces = {piece.strip() for t in held_out for piece in re.split(r"\{[^}]*\}", t) if piece.strip()}
    assert pieces and not any(piece in text for piece in pieces for _, text, _ in jobs)


def test_context_jobs_sequences_name_events_in_time_order():
    from star.bridge.expand import context_jobs
    from star.data.captions import default_captions

    caps = default_captions()
    jobs = context_jobs("hound", "dog", ["dog", "rain"], np.random.default_rng(1), ("sequence", "repeat"))
    sequences = [(cats, text) for cats, text, kind in jobs if kind == "sequence"]
    assert len(sequences) == len(caps.scene_templates("sequence", 2))
    rain = caps.phrase("rain")
    for cats, text in sequences:  # categories listed in the order the caption names them
        first = text.index("hound") < text.index(rain.noun if rain.noun in text else rain.clause)
        assert cats == (["dog", "rain"] if first else ["rain", "dog"]), text
    assert {tuple(cats) for cats, _ in sequences} == {("dog", "rain"), ("rain", "dog")}  # both orders occur
    repeats = [(cats, text) for cats, text, kind in jobs if kind == "repeat"]
    assert len(repeats) == len(caps.scene_templates("repeat", 1))
    assert all(cats == ["dog"] and "hound" in text for cats, text in repeats)
    assert not any(kind == "overlay" for _, _, kind in jobs)


def test_speak_rows_write_kinds_and_time_ordered_events(tmp_path):
    import shutil

    import pytest

    from star.audio.io import load_audio
    from star.bridge.expand import speak_rows

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    jobs = [
        (["rain", "dog"], "rain falls, then a hound", "sequence"),
        (["dog", "rain"], "a hound over rain falling"),  # no kind: two categories are an overlay
        (["dog"], "a hound"),
    ]
    rows = speak_rows(jobs, tmp_path, "t", 0, "test", voices=["espeak"])
    assert [r["kind"] for r in rows] == ["sequence", "overlay", "single"]
    assert [(e["category"], e["onset"], e["offset"]) for e in rows[0]["events"]] == [
        ("rain", 0.0, 2.5),
        ("dog", 2.5, 5.0),
    ]
    assert all(e["onset"] == 0.0 and e["offset"] == 5.0 for e in rows[1]["events"])
    for r in rows:  # each caption was really spoken
        assert load_audio(tmp_path / r["speech"]).shape[-1] > 8000
