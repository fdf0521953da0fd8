"""The evaluation classifier: training maths, release-file round trip, and the shipped model on real clips."""

import numpy as np
import pytest

from star.errors import StarError
from star.eval.classifier import ClassifierConfig, EventClassifier, fit_softmax_regression
from star.eval.train_classifier import Scene, render_scene, sequence_frame_targets


def test_softmax_regression_fits_soft_targets():
    rng = np.random.default_rng(0)
    centres = np.array([[3.0, 0.0], [0.0, 3.0], [-3.0, -3.0]])
    x = np.concatenate([c + rng.normal(size=(50, 2)) for c in centres])
    y = np.repeat(np.eye(3), 50, axis=0)
    w, b = fit_softmax_regression(x, y, l2=1e-3)
    assert np.mean(np.argmax(x @ w.T + b, axis=1) == np.repeat(np.arange(3), 50)) > 0.95
    # A point trained towards 50/50 between classes 0 and 1 lands between them.
    x2 = np.concatenate([x, np.zeros((40, 2)) + [1.5, 1.5]])
    y2 = np.concatenate([y, np.tile([0.5, 0.5, 0.0], (40, 1))])
    w, b = fit_softmax_regression(x2, y2, l2=1e-3)
    z = np.array([1.5, 1.5]) @ w.T + b
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    assert abs(p[0] - p[1]) < 0.15 and p[2] < 0.1


def _toy_classifier(vocab=("a", "b", "c")) -> tuple[EventClassifier, list, list]:
    rng = np.random.default_rng(1)
    windows, labels = [], []
    for k in range(30):
        label = k % len(vocab)
        centre = np.zeros(512)
        centre[label * 10 : label * 10 + 10] = 3.0
        windows.append(centre + rng.normal(size=(int(rng.integers(1, 6)), 512)))
        labels.append(label)
    return EventClassifier(ClassifierConfig(vocabulary=list(vocab))).fit_windows(windows, labels), windows, labels


def test_fit_save_load_round_trip(tmp_path):
    clf, windows, labels = _toy_classifier()
    assert all(np.argmax(clf.proba_from_windows(w)) == y for w, y in zip(windows, labels, strict=True))
    frame = clf.frame_proba_from_windows(windows[0])
    assert frame.shape == (len(windows[0]), 3) and np.allclose(frame.sum(axis=1), 1, atol=1e-5)
    clf.save(tmp_path)
    back = EventClassifier.load(tmp_path)
    assert back.vocabulary == ["a", "b", "c"]
    assert np.allclose(back.proba_from_windows(windows[3]), clf.proba_from_windows(windows[3]))
    # Weights that do not fit the config are refused clearly.
    cfg = ClassifierConfig.load(tmp_path / "eval_classifier.json")
    cfg.vocabulary = ["a", "b", "c", "d"]
    cfg.save(tmp_path / "eval_classifier.json")
    with pytest.raises(StarError, match="does not fit"):
        EventClassifier.load(tmp_path)


def test_invalid_training_input():
    clf = EventClassifier(ClassifierConfig(vocabulary=["a", "b"]))
    with pytest.raises(StarError):
        clf.fit_windows([np.zeros((2, 512))] * 3, [0, 0, 0])  # one class only
    with pytest.raises(StarError):
        clf.index("helicopter")
    with pytest.raises(StarError):
        EventClassifier(ClassifierConfig(vocabulary=["a"]))


def test_scene_rendering_and_frame_targets():
    sr = 16_000
    a = np.sin(np.arange(3 * sr) / sr * 2 * np.pi * 440).astype(np.float32)
    b = 0.1 * np.ones(5 * sr, np.float32)
    seq = render_scene(Scene("s", 1, "sequence", 0, 1, 0.0), a, b)
    assert len(seq) == 5 * sr and abs(np.abs(seq).max() - 0.9) < 1e-4
    assert np.sqrt(np.mean(seq[: 2 * sr] ** 2)) > 0.5 and seq[3 * sr :].std() < 1e-3  # tone, then constant
    targets = sequence_frame_targets(np.array([1.16, 2.5, 3.84]), 0, 2, 3)
    assert np.allclose(targets[:, 0], [1.0, 0.5, 0.0]) and np.allclose(targets.sum(axis=1), 1.0)


def test_shipped_classifier_on_real_clips(classifier, real_clips):
    assert len(classifier.vocabulary) == 10
    report = classifier.cfg.report
    assert report["train_folds"] == [1, 2, 3] and report["test"]["accuracy"] >= 0.8
    held_out = [c for c in real_clips if c["fold"] == 4]  # never seen in training
    assert held_out
    for clip in held_out:
        p = classifier.predict_proba(clip["wav"], 16_000)
        assert p.shape == (10,) and abs(p.sum() - 1) < 1e-5
        assert classifier.vocabulary[int(np.argmax(p))] == clip["category"]
    frames, times = classifier.frame_proba(held_out[0]["wav"], 16_000)
    assert frames.shape == (len(times), 10) and np.all(np.diff(times) > 0)
    assert classifier.vocabulary[int(np.argmax(frames.mean(axis=0)))] == held_out[0]["category"]



def test_train_event_classifier_end_to_end(tmp_path):
    """The training entry on the committed mini corpus: reads meta.csv, embeds, mixes scenes, saves."""
    from pathlib import Path

    from star.eval.train_classifier import read_corpus, train_event_classifier

    mini = Path(__file__).resolve().parents[1] / "fixtures" / "esc10_mini"
    if not (mini / "meta.csv").is_file():
        pytest.skip("tests/fixtures/esc10_mini is missing")
    cache = tmp_path / "emb.npz"
    report = train_event_classifier(mini, tmp_path / "clf", train_folds=(1, 2, 3, 4), test_folds=(),
                                    cache=cache, scenes_per_fold=1, l2=0.1, progress=False)
    assert report["train_folds"] == [1, 2, 3, 4] and "test" not in report
    clf = EventClassifier.load(tmp_path / "clf")
    rows = read_corpus(mini)
    assert clf.vocabulary == sorted(r["category"] for r in rows)
    with np.load(cache) as z:
        keys = sorted(z.files)
        assert sum(k.startswith("scene") for k in keys) == 2  # folds 2 and 4 hold two classes each
        # Every training clip is recognised from its cached embedding (6 clips, 6 classes).
        for r in rows:
            windows = z[f"{r['path'].name}@{clf.cfg.hop_frames}"]
            assert clf.vocabulary[int(np.argmax(clf.proba_from_windows(windows)))] == r["category"]
