import pytest

from star.data.wordnet_phrases import gloss_phrases, main, wordnet_phrases
from star.errors import StarError

# Two synsets in WordNet 3.0's data-file format (the license header lines start with two spaces).
DATA_NOUN = """  1 This software and database is being provided to you, the LICENSEE, by
09426788 17 n 01 sea 0 003 @ 09225146 n 0000 | a division of an ocean or a large body of salt water partially enclosed by land; "the ship rode out a stormy sea"; "a calm sea"
04574348 06 n 01 whaleboat 0 001 @ 04158807 n 0000 | a long narrow boat designed for quick turning and use in rough seas
"""
DATA_ADJ = """00303727 00 a 01 stormy 0 001 ^ 00438567 a 0000 | (especially of weather) affected or characterized by storms or commotion; "a stormy day"; "a calm sea"
"""


def write_wordnet(folder, adv=True):
    (folder / "data.noun").write_text(DATA_NOUN, encoding="latin-1")
    (folder / "data.verb").write_text("", encoding="latin-1")
    (folder / "data.adj").write_text(DATA_ADJ, encoding="latin-1")
    if adv:
        (folder / "data.adv").write_text("", encoding="latin-1")


def test_gloss_phrases_takes_examples_where_a_clause_has_them_and_the_definition_elsewhere():
    gloss = 'a division of an ocean; "the ship rode out a stormy sea"; "a calm sea"  '
    assert gloss_phrases(gloss) == ["a division of an ocean", "the ship rode out a stormy sea", "a calm sea"]


def test_wordnet_phrases_reads_every_gloss_once_within_the_word_limits(tmp_path):
    write_wordnet(tmp_path)
    phrases = wordnet_phrases(tmp_path, min_words=2, max_words=8)
    assert phrases == ["the ship rode out a stormy sea", "a calm sea", "a stormy day"]  # "a calm sea" once
    assert "a long narrow boat designed for quick turning and use in rough seas" in wordnet_phrases(tmp_path, 2, 20)
    assert not any("LICENSEE" in p for p in wordnet_phrases(tmp_path, 1, 30))


def test_wordnet_phrases_without_wordnet_says_how_to_install_it(tmp_path, capsys):
    write_wordnet(tmp_path, adv=False)
    with pytest.raises(StarError, match="apt-get install wordnet-base"):
        wordnet_phrases(tmp_path)
    with pytest.raises(SystemExit, match="data.adv"):
        main(["--wordnet", str(tmp_path), "--out", str(tmp_path / "out.txt")])
    assert not (tmp_path / "out.txt").exists()


def test_main_writes_one_phrase_per_line(tmp_path):
    write_wordnet(tmp_path)
    main(["--wordnet", str(tmp_path), "--out", str(tmp_path / "p" / "phrases.txt"), "--max-words", "8"])
    lines = (tmp_path / "p" / "phrases.txt").read_text(encoding="utf-8").splitlines()
    assert lines == ["the ship rode out a stormy sea", "a calm sea", "a stormy day"]
