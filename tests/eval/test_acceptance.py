"""The acceptance check: its prompt sets, the real recordings it pairs with them, and one small run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from star.audio import SAMPLE_RATE, load_audio
from star.data.captions import default_captions
from star.data.tts import FESTIVAL_VOICES
from star.errors import StarError
from star.eval.acceptance import attach_real_clips, main, request_rows, wording_rows

MINI = Path(__file__).resolve().parents[1] / "fixtures" / "esc10_mini"
VOCAB = ["dog", "rooster", "rain", "sea_waves"]


def test_requests_name_every_category_in_every_festival_voice_and_every_pair_in_both_orders_of_kind():
    caps = default_captions()
    rows = request_rows(VOCAB, caps, takes=2)
    singles = [r for r in rows if r["kind"] == "single"]
    assert len(singles) == len(VOCAB) * len(FESTIVAL_VOICES) * 2
    for c in VOCAB:
        mine = [r for r in singles if r["events"][0]["category"] == c]
        assert {r["caption"] for r in mine} == {caps.phrase(c).noun}
        assert {r["voice"] for r in mine} == {f"festival:{v}" for v in FESTIVAL_VOICES}
    pairs = len(VOCAB) * (len(VOCAB) - 1) // 2
    for kind in ("sequence", "overlay"):
        scenes = [r for r in rows if r["kind"] == kind]
        assert len(scenes) == pairs
        assert len({frozenset(e["category"] for e in r["events"]) for r in scenes}) == pairs
    for r in (r for r in rows if r["kind"] == "sequence"):
        first, second = (e["category"] for e in sorted(r["events"], key=lambda e: e["onset"]))
        caption = r["caption"]  # the event spoken first is the one that comes first
        assert caption.index(caps.phrase(first).clause) < caption.index(caps.phrase(second).clause)
    assert len({r["id"] for r in rows}) == len(rows)


def test_wordings_are_the_training_phrasings_in_every_festival_voice():
    caps = default_captions()
    rows = wording_rows(["dog", "rain"], caps)
    assert len(rows) == (len(caps.train("dog")) + len(caps.train("rain"))) * len(FESTIVAL_VOICES)
    assert {r["caption"] for r in rows if r["events"][0]["category"] == "rain"} == set(caps.train("rain"))
    assert not {r["caption"] for r in rows} & set(caps.held_out("dog") + caps.held_out("rain"))


def test_real_recordings_are_validation_clips_and_scene_mixes_of_them(tmp_path):
    rows = request_rows(["clock_tick", "crackling_fire"], default_captions(), takes=1)
    attach_real_clips(rows, MINI, tmp_path)
    for r in rows:
        wav = load_audio(r["audio"], SAMPLE_RATE)
        assert np.abs(wav).max() > 0.01
        if r["kind"] == "single":
            assert Path(r["audio"]).parent.parent == MINI  # a clip of the corpus itself, fold 4
        else:
            assert Path(r["audio"]).parent == tmp_path / "real" and len(wav) >= 5 * SAMPLE_RATE - 1
    with pytest.raises(StarError, match="no validation clip of dog"):
        attach_real_clips(request_rows(["dog"], default_captions(), takes=1), MINI, tmp_path)


def test_a_small_run_writes_the_page_with_every_section(tmp_path, capsys):
    docs = tmp_path / "docs"
    code = main(["--out", str(tmp_path / "run"), "--docs", str(docs), "--categories", "dog", "rooster",
                 "--takes", "1", "--cache", str(tmp_path / "cache")])
    assert code == 0
    page = (docs / "ACCEPTANCE.md").read_text()
    for section in ("## Generated sounds, per category", "## Summary", "## Two-event scenes",
                    "## What the model hears"):
        assert section in page
    assert page.count("\n| dog | ") == 1 and page.count("\n| rooster | ") == 1
    # Each top-1 of what the model hears carries its interval over wordings, around it.
    heard = re.findall(r"\| \*\*(\d\.\d{3})\*\* \| (\d\.\d{3})-(\d\.\d{3}) \((\d+)\) \|", page)
    assert heard and all(float(lo) <= float(top1) <= float(hi) and int(n) > 0 for top1, lo, hi, n in heard)
    # The default model has a phonetic route: each row ends with both routes alone and the top-1 with every
    # phoneme heard right, a number in every row.
    lines = page.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("| prompts | wording |"))
    assert lines[at].endswith("| bridge alone | phonetic route alone | top-1 if every phoneme were heard right |")
    rows = lines[at + 2 : lines.index("", at)]  # below the header and its alignment line, up to the blank line
    assert rows and all(r.count("|") == lines[at].count("|") and re.search(r"\| \d\.\d{3} \|$", r) for r in rows)
    assert (docs / "figures" / "acceptance_0.png").stat().st_size > 1000
    clips = json.loads((tmp_path / "run" / "scores.json").read_text())["clips"]
    assert len(clips["e2e"]) == len(clips["cascade"]) == 3 * 2 + 2
    assert main(["--out", str(tmp_path / "run"), "--categories", "trumpet"]) == 1
    assert "not in the model's vocabulary: trumpet" in capsys.readouterr().err
