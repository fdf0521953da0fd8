"""evaluate_clips on real clips standing in for generated ones (the answers are known)."""

import numpy as np
import pytest

from star.eval.scoring import evaluate_clips, requested_events
from star.eval.train_classifier import Scene, render_scene

SR = 16_000


def _request(*cats, kind=None, step=2.5):
    return {"kind": kind, "events": [{"category": c, "onset": i * step, "offset": i * step + step}
                                     for i, c in enumerate(cats)]}


def test_requested_events_orders_by_onset():
    req = {"kind": "sequence", "events": [{"category": "dog", "onset": 2.5}, {"category": "rain", "onset": 0.0}]}
    assert requested_events(req) == ("sequence", ["rain", "dog"])
    assert requested_events({"events": [{"category": "dog"}, {"category": "dog"}]})[0] == "single"
    with pytest.raises(ValueError):
        requested_events({"events": []})


def test_real_clips_score_like_real_clips(classifier, real_clips, by_category):
    generated = [(c["wav"], SR, _request(c["category"], kind="single")) for c in real_clips]
    # Scenes mixed from real clips the way the classifier's scenes are: fire (held out) then rooster,
    # requested in that order and swapped; fire and clock (both held out) at once.
    fire, rooster, clock = by_category["crackling_fire"], by_category["rooster"], by_category["clock_tick"]
    sequence = render_scene(Scene("t", 4, "sequence", 0, 1, 0.0), fire, rooster)
    overlay = render_scene(Scene("t", 4, "overlay", 0, 1, 0.0), fire, clock)
    generated += [
        (sequence, SR, _request("crackling_fire", "rooster", kind="sequence")),
        (sequence, SR, _request("rooster", "crackling_fire", kind="sequence")),
        (overlay, SR, _request("crackling_fire", "clock_tick", kind="overlay", step=0.0)),
        (np.zeros(5 * SR, np.float32), SR, _request("dog", kind="single")),  # a failed generation
    ]
    references = [(c["wav"], SR) for c in real_clips] + [None, None, None, (by_category["dog"], SR)]

    scores = evaluate_clips(generated, references, classifier=classifier)
    assert scores["n"] == 10
    assert scores["event_accuracy_n"] == 7 and scores["event_accuracy"] == pytest.approx(6 / 7)  # silence misses
    assert scores["both_events_present_n"] == 3 and scores["both_events_present"] == 1.0
    assert scores["ordering_error_n"] == 2 and scores["ordering_error"] == 0.5  # only the swapped request errs
    assert scores["ordering_error_heard_n"] == 2 and scores["ordering_error_heard"] == 0.5  # both events heard
    assert scores["silence_rate"] == pytest.approx(1 / 10) and scores["clipping_rate"] == 0.0
    # Six clips paired with themselves (KL 0) and silence paired with a dog: the mean is that one KL / 7.
    p_dog, p_silence = (classifier.predict_proba(w, SR) for w in (by_category["dog"], generated[-1][0]))
    expected = float(np.sum(p_dog * np.log(p_dog / p_silence))) / 7
    assert scores["kl_n"] == 7 and scores["kl"] == pytest.approx(expected, rel=1e-3) and expected > 0.01
    assert scores["fd"] is not None and scores["fd_n_reference"] == 6  # the dog reference is counted once
    assert scores["inception_score"] > 2.0  # six distinct confident classes among ten clips (uniform: 1)
    rows = scores["clips"]
    assert rows[0]["requested"] == [real_clips[0]["category"]] and "correct" in rows[0]
    assert rows[7]["requested"] == ["rooster", "crackling_fire"] and rows[7]["both_present"]
    assert [rows[i]["order_wrong"] for i in (6, 7)] == [False, True] and "order_wrong" not in rows[8]


def test_fd_of_a_set_against_itself_is_near_zero(classifier, real_clips):
    clips = [(c["wav"][:SR], SR, _request(c["category"])) for c in real_clips[:3]]  # 1 s: one block each
    scores = evaluate_clips(clips, fd_reference=[(w, sr) for w, sr, _ in clips], classifier=classifier)
    assert scores["fd"] == pytest.approx(0.0, abs=1e-3) and scores["fd_n_reference"] == 3
    assert scores["kl"] is None and scores["ordering_error"] is None


def test_bad_inputs(classifier, real_clips):
    with pytest.raises(ValueError):
        evaluate_clips([], classifier=classifier)
    with pytest.raises(ValueError):
        evaluate_clips([(real_clips[0]["wav"], SR, _request("dog"))], references=[], classifier=classifier)
