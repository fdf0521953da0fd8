"""Corpus loading: ESC-10 layout, files beside meta.csv, configurable columns, clear errors."""

import shutil

import pytest

from star.data.corpus import CorpusConfig, load_corpus
from star.errors import StarError


def test_loads_mini_corpus_with_folds(mini_corpus_dir):
    corpus = load_corpus(mini_corpus_dir)
    assert len(corpus.clips) == 6
    assert corpus.vocab == sorted(corpus.vocab) and len(corpus.vocab) == 6
    dog = next(c for c in corpus.clips if c.category == "dog")
    assert dog.id == "2-118072-A" and dog.fold == "2" and dog.license == "CC0-1.0" and dog.author == "ipears1"
    assert dog.path.is_absolute() and dog.path.is_file()
    assert {c.id for c in corpus.split("validation")} == {"4-164661-B", "4-188033-A"}  # fold 4
    assert len(corpus.split("train")) == 4


def test_files_beside_meta_and_custom_columns(tmp_path, mini_corpus_dir):
    root = tmp_path / "mine"
    root.mkdir()
    lines = ["name,label,group"]
    for i, f in enumerate(sorted((mini_corpus_dir / "audio").glob("*.ogg"))[:3]):
        shutil.copyfile(f, root / f.name)
        lines.append(f"{f.name},thing_{i},{'b' if i == 0 else 'a'}")
    (root / "meta.csv").write_text("\n".join(lines) + "\n")
    cfg = CorpusConfig(filename_column="name", category_column="label", fold_column="group",
                       validation_folds=["b"])
    cfg.save(root / "corpus.json")  # picked up automatically
    corpus = load_corpus(root)
    assert corpus.vocab == ["thing_0", "thing_1", "thing_2"]
    assert [c.id for c in corpus.split("validation")] == [corpus.clips[0].id]
    assert all(c.path.parent == root.resolve() for c in corpus.clips)


def test_without_fold_column_split_is_a_stable_hash(tmp_path, mini_corpus_dir):
    root = tmp_path / "nofold"
    shutil.copytree(mini_corpus_dir / "audio", root / "audio")
    rows = [f"{f.name},cat{i % 2}" for i, f in enumerate(sorted((root / "audio").glob("*.ogg")))]
    (root / "meta.csv").write_text("filename,category\n" + "\n".join(rows) + "\n")
    a = load_corpus(root, CorpusConfig(validation_fraction=0.5))
    b = load_corpus(root, CorpusConfig(validation_fraction=0.5))
    assert [a.split_of(c) for c in a.clips] == [b.split_of(c) for c in b.clips]
    assert {a.split_of(c) for c in a.clips} <= {"train", "validation"}
    everything = load_corpus(root, CorpusConfig(validation_fraction=1.0))
    assert all(everything.split_of(c) == "validation" for c in everything.clips)


def test_explicit_train_folds_leave_other_folds_out(mini_corpus_dir):
    corpus = load_corpus(mini_corpus_dir, CorpusConfig(train_folds=["1", "2"], validation_folds=["4"]))
    assert corpus.split_of(next(c for c in corpus.clips if c.fold == "3")) is None
    assert len(corpus.split("train")) == 3


def test_errors_are_star_errors(tmp_path, mini_corpus_copy):
    with pytest.raises(StarError, match="not found"):
        load_corpus(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StarError, match="no meta.csv"):
        load_corpus(empty)
    (empty / "meta.csv").write_text("filename,fold,category\n")
    with pytest.raises(StarError, match="no clips"):
        load_corpus(empty)
    (empty / "meta.csv").write_text("file,category\nx.wav,dog\n")
    with pytest.raises(StarError, match="missing column 'filename'"):
        load_corpus(empty)
    (mini_corpus_copy / "audio" / "2-118072-A.ogg").unlink()
    with pytest.raises(StarError, match="1 listed file"):
        load_corpus(mini_corpus_copy)
