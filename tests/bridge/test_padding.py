"""The padded set: neutral words around known requests, the category kept as the target."""

from __future__ import annotations

import numpy as np
import pytest

from star.bridge.padding import padded_jobs, pos_pools, with_adjective
from star.errors import StarError

POOLS = {"jj": ["quiet", "old", "public"], "nn": ["table", "school", "report"], "vbg": ["reading", "making"]}


def test_with_adjective_goes_after_the_first_article():
    assert with_adjective("a dog barking", "old") == "an old dog barking"
    assert with_adjective("an infant crying", "quiet") == "a quiet infant crying"
    assert with_adjective("I'd like to hear the sea", "old") == "I'd like to hear the old sea"
    assert with_adjective("toddler", "quiet") == "quiet toddler"
    assert with_adjective("play rain", "quiet") is None  # no place for it


def test_pos_pools_use_each_words_most_likely_tag(tmp_path):
    lexicon = tmp_path / "pos.lex"
    lexicon.write_text(
        'MNCL\n("quiet" ((jj -1.5) (nn -4.0) ) () )\n("table" ((nn -0.5) ) () )\n'
        '("reading" ((nn -3.0) (vbg -0.7) ) () )\n("quickly" ((rb -0.1) ) () )\n'
    )
    pools = pos_pools(["quiet", "table", "reading", "quickly", "absent"], lexicon)
    assert pools == {"jj": ["quiet"], "nn": ["table"], "vbg": ["reading"]}
    with pytest.raises(StarError, match="POS lexicon"):
        pos_pools(["quiet"], tmp_path / "missing.lex")


def test_padded_jobs_keep_a_training_request_and_its_category():
    from star.data.captions import default_captions

    caps = default_captions()
    vocab = ["dog", "rain"]
    mined = {"dog": ["hound"], "rain": []}
    jobs = padded_jobs(vocab, POOLS, 60, np.random.default_rng(0), mined)
    assert len(jobs) == 120
    pool_words = {w for p in POOLS.values() for w in p}
    shapes = {"adjective": 0, "suffix": 0}
    for cats, text in jobs:
        (cat,) = cats
        sources = caps.train(cat) + caps.extra(cat) + mined[cat]
        assert pool_words & set(text.replace(",", "").split()), text  # something was added
        if any(text.startswith((s + " ", s + ",")) for s in sources):
            shapes["suffix"] += 1
            continue
        # Otherwise an adjective was put in: taking it out (and a/an) gives the source back.
        plain = " ".join(w for w in text.split() if w not in POOLS["jj"]).replace("an ", "a ")
        assert plain in {s.replace("an ", "a ") for s in sources}, text
        shapes["adjective"] += 1
    assert shapes["adjective"] > 10 and shapes["suffix"] > 50
    assert sum("hound" in text for cats, text in jobs if cats == ["dog"]) > 10  # mined words are padded too
    held_out = {s for c in vocab for s in caps.held_out(c)}
    assert not any(h in text for h in held_out for _, text in jobs)
