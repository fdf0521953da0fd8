"""Each metric on inputs whose answer can be worked out by hand."""

import math

import numpy as np
import pytest

from star.eval.metrics import (
    BothEventsPresent,
    ClippingRate,
    EventAccuracy,
    FrechetDistance,
    InceptionScore,
    KLDivergence,
    OrderingError,
    SilenceRate,
    WordErrorRate,
    event_time,
    frechet_distance,
    grouped_interval,
    normalize_text,
    word_edits,
)


def _design(scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """All sign patterns in d dims: sample mean = shift, unbiased covariance = diag(scale^2 * 2^d/(2^d-1))."""
    d = len(scale)
    signs = np.array(np.meshgrid(*[[-1.0, 1.0]] * d)).reshape(d, -1).T  # [2^d, d]
    return signs * scale + shift


def test_fd_identical_sets_is_zero():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(200, 8)) @ rng.normal(size=(8, 8))
    fd = FrechetDistance()
    fd.update(generated=emb[:120], reference=emb)
    fd.update(generated=emb[120:])  # streaming in two pieces gives the same statistics
    assert fd.compute() == pytest.approx(0.0, abs=1e-8)


def test_fd_diagonal_gaussians_closed_form():
    # |mu1-mu2|^2 + sum_i (sqrt(s1_i) - sqrt(s2_i))^2 for diagonal covariances.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected)
    # Same through the update/compute path, on point sets with exactly these sample statistics.
    a, b = np.array([1.0, 2.0, 3.0]), np.array([2.0, 1.0, 3.0])
    fd = FrechetDistance()
    fd.update(generated=_design(a, mu1), reference=_design(b, mu2))
    k = 8 / 7  # unbiased variance of the 8 sign patterns
    expected = 5 + k * np.sum((a - b) ** 2)
    assert fd.compute() == pytest.approx(expected)


def test_fd_needs_two_sets():
    fd = FrechetDistance()
    fd.update(generated=np.zeros((4, 3)))
    with pytest.raises(ValueError):
        fd.compute()
    with pytest.raises(ValueError):
        fd.update(reference=np.zeros((4, 5)) + np.nan)


def test_kl_divergence():
    kl = KLDivergence()
    p = np.array([[0.2, 0.3, 0.5], [0.9, 0.05, 0.05]])
    kl.update(p, p)
    assert kl.compute() == pytest.approx(0.0, abs=1e-12)
    kl.reset()
    kl.update(generated=[0.25, 0.75], reference=[0.5, 0.5])
    # 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75)
    assert kl.compute() == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))
    kl.update(generated=[0.5, 0.5], reference=[0.5, 0.5])  # mean over pairs
    assert kl.compute() == pytest.approx((0.5 * math.log(2) + 0.5 * math.log(2 / 3)) / 2)


def test_inception_score():
    score = InceptionScore()
    score.update(np.full((5, 4), 0.25))
    assert score.compute() == pytest.approx(1.0)
    score.reset()
    score.update(np.eye(4))
    assert score.compute() == pytest.approx(4.0)
    score.reset()  # two confident classes out of four: IS = 2
    score.update(np.eye(4)[[0, 1, 0, 1]])
    assert score.compute() == pytest.approx(2.0)


def test_event_accuracy_and_both_events():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.4, 0.5, 0.1]])
    acc = EventAccuracy()
    acc.update(p, [0, 2, 0])
    assert acc.compute() == pytest.approx(2 / 3)
    both = BothEventsPresent()
    both.update(p, [(1, 0), (2, 1), (0, 2)])
    assert both.compute() == pytest.approx(2 / 3)  # third clip's top-2 is {1, 0}


def _sequence(first: int, second: int, n_frames: int = 20, n_classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Event `first` dominates the first half, `second` the second half."""
    p = np.full((n_frames, n_classes), 0.05)
    p[: n_frames // 2, first] = 0.85
    p[n_frames // 2 :, second] = 0.85
    return p / p.sum(axis=1, keepdims=True), np.linspace(0.0, 5.0, n_frames)


@pytest.mark.parametrize("method", ["centroid", "onset"])
def test_ordering_error(method):
    p, t = _sequence(first=1, second=3)
    assert event_time(p, t, 1, method) < event_time(p, t, 3, method)
    err = OrderingError(method)
    err.update(p, t, first=1, second=3)
    assert err.compute() == 0.0
    err.update(p, t, first=3, second=1)  # swapped request
    assert err.compute() == 0.5
    err.update(p, t, first=0, second=1)  # class 0 never moves: order unreadable -> error
    assert err.compute() == pytest.approx(2 / 3)


def test_silence_and_clipping_rates():
    t = np.linspace(0, 1, 16000, endpoint=False)
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    silence = SilenceRate(threshold=1e-3)
    for wav in (tone, tone * 1e-4, np.zeros(100), tone):
        silence.update(wav)
    assert silence.compute() == 0.5
    clipping = ClippingRate(level=0.999, max_fraction=1e-3)
    hard = np.clip(tone * 4, -1, 1)  # most samples at the rails
    few = tone.copy()
    few[:10] = 1.0  # 10 / 16000 < 1e-3: a few touching samples are not clipping
    for wav in (tone, hard, few):
        clipping.update(wav)
    assert clipping.compute() == pytest.approx(1 / 3)


def test_word_error_rate():
    assert normalize_text("A Dog's bark, then RAIN!") == ["a", "dogs", "bark", "then", "rain"]
    assert word_edits(["a", "cat", "sat"], ["the", "cat", "sat", "down"]) == 2  # 1 sub + 1 del
    wer = WordErrorRate()
    wer.update("A dog barks.", "a dog barks")
    assert wer.compute() == 0.0
    wer.update("the rooster", "a rooster crows")  # 1 sub + 1 del over 3 words
    assert wer.compute() == pytest.approx(2 / 6)
    wer.update("crackling fire", "")  # insertions count, no reference words added
    assert wer.compute() == pytest.approx(4 / 6)


def test_grouped_interval_counts_groups_not_items():
    # 10 wordings of 8 renditions each; one wording is missed in every rendition (share 0.9).
    correct = [w != 0 for w in range(10) for _ in range(8)]
    wordings = [w for w in range(10) for _ in range(8)]
    lo, hi = grouped_interval(correct, wordings)
    # Resampling 10 wordings: the 2.5 % tail draws the missed one 3 times (share 0.7); a third of draws lack it.
    assert (lo, hi) == (0.7, 1.0)
    # The same 80 items as if independent: a binomial interval around 0.9, far narrower.
    lo_items, hi_items = grouped_interval(correct, list(range(80)))
    assert lo < lo_items < 0.9 < hi_items < hi
    assert grouped_interval(correct, wordings, seed=3) == grouped_interval(correct, wordings, seed=3)


def test_grouped_interval_edges_and_bad_input():
    assert grouped_interval([True] * 5, ["a", "a", "b", "b", "c"]) == (1.0, 1.0)
    assert grouped_interval([False, False], ["a", "b"]) == (0.0, 0.0)
    with pytest.raises(ValueError):
        grouped_interval([True, False], ["a"])
    with pytest.raises(ValueError):
        grouped_interval([], [])
    with pytest.raises(ValueError):
        grouped_interval([True], ["a"], level=1.0)
