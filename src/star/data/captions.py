"""Caption phrasings: how people ask for each sound, split into training and held-out wording.

The phrasings are hand-written data (`captions.json`, package data). Held-out phrasings are listed
explicitly in that file (chosen to include unseen synonyms such as "a toddler sobbing"), so the split
is fixed and reviewable rather than an accident of a random seed. Categories that are not in the file
(a user's own corpus) get generic templates built from the category name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

SCENE_KINDS = ("overlay", "sequence", "repeat")
TIMES = {2: ("twice", "two"), 3: ("three times", "three"), 4: ("four times", "four")}


@dataclass(frozen=True)
class Phrase:
    """Short forms used to compose scene captions: noun "a dog barking", clause "a dog barks"."""

    noun: str
    clause: str


def category_name(category: str) -> str:
    """Readable form of a category id: 'sea_waves' -> 'sea waves'."""
    return category.replace("_", " ").replace("-", " ").strip()


class Captions:
    """Phrasings per category and scene templates, from `captions.json` or a dict of the same shape."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self._data = data if data is not None else _package_data()
        self._categories: dict[str, Any] = self._data["categories"]
        self._generic: dict[str, Any] = self._data["generic"]
        self._scenes: dict[str, Any] = self._data["scenes"]

    @property
    def known_categories(self) -> list[str]:
        return sorted(self._categories)

    def phrasings(self, category: str, *, held_out: bool = False) -> list[str]:
        """Training phrasings (default) or the held-out ones for `category`."""
        key = "held_out" if held_out else "train"
        if category in self._categories:
            return list(self._categories[category][key])
        name = category_name(category)
        return [t.format(name=name) for t in self._generic[key]]

    def train(self, category: str) -> list[str]:
        return self.phrasings(category)

    def held_out(self, category: str) -> list[str]:
        return self.phrasings(category, held_out=True)

    def extra(self, category: str) -> list[str]:
        """More training phrasings (`captions_extra.json`, synonyms) for stage 1; [] if none are written."""
        return list(_extra_data()["categories"].get(category, []))

    def phrase(self, category: str) -> Phrase:
        if category in self._categories:
            entry = self._categories[category]
            return Phrase(noun=entry["noun"], clause=entry["clause"])
        name = category_name(category)
        return Phrase(noun=self._generic["noun"].format(name=name), clause=self._generic["clause"].format(name=name))

    def scene_templates(self, kind: str, n_events: int, *, held_out: bool = False) -> list[str]:
        """Templates for a scene of `kind` with `n_events` distinct sources (repeat: always 1)."""
        if kind not in SCENE_KINDS:
            raise ValueError(f"unknown scene kind {kind!r}; expected one of {SCENE_KINDS}")
        key = "repeat" if kind == "repeat" else f"{kind}{n_events}"
        if key not in self._scenes:
            raise ValueError(f"no caption templates for a {kind} scene of {n_events} events")
        return list(self._scenes[key]["held_out" if held_out else "train"])

    def scene_captions(
        self, kind: str, categories: list[str], *, held_out: bool = False, times: int = 2
    ) -> list[str]:
        """Every template of `kind` filled with `categories` (in caption order: a, b, c).

        For overlay, `a` is the foreground and `b` (and `c`) the background; for sequence the order is
        the time order; for repeat `categories` is the single repeated category and `times` its count.
        """
        n = 1 if kind == "repeat" else len(categories)
        if kind == "repeat" and times not in TIMES:
            raise ValueError(f"repeat count {times} not supported (use one of {sorted(TIMES)})")
        slots = {name: self.phrase(cat) for name, cat in zip("abc", categories)}
        words = TIMES.get(times, ("", ""))
        return [
            t.format(**slots, times=words[0], count=words[1])
            for t in self.scene_templates(kind, n, held_out=held_out)
        ]


@lru_cache(maxsize=1)
def _package_data() -> dict[str, Any]:
    text = resources.files("star.data").joinpath("captions.json").read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def _extra_data() -> dict[str, Any]:
    text = resources.files("star.data").joinpath("captions_extra.json").read_text(encoding="utf-8")
    return json.loads(text)


def word_stem(word: str) -> str:
    """Crude stem for vocabulary checks: 'puppies', 'puppy' -> 'pup'; 'sobbing', 'sobs' -> 'sob'."""
    w = word.lower()
    for suffix in ("ings", "ing", "ies", "ers", "er", "es", "ed", "s", "y"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            break
    if len(w) > 3 and w[-1] == w[-2]:
        w = w[:-1]
    return w


def words(text: str) -> set[str]:
    """Lower-case alphabetic words of a phrasing."""
    return set(re.findall(r"[a-z]+", text.lower()))


def held_out_only_words(captions: Captions | None = None) -> set[str]:
    """Words of the held-out phrasings (categories, generic, scenes) that no original training phrasing
    uses: the wording the test prompts check generalisation on, so extra training text must avoid them."""
    data = (captions or default_captions())._data
    train: set[str] = set()
    held: set[str] = set()
    for entry in data["categories"].values():
        for s in entry["train"] + [entry["noun"], entry["clause"]]:
            train |= words(s)
        for s in entry["held_out"]:
            held |= words(s)
    for group in [data["generic"], *data["scenes"].values()]:
        for s in group["train"]:
            train |= words(s)
        for s in group["held_out"]:
            held |= words(s)
    return held - train


@lru_cache(maxsize=1)
def default_captions() -> Captions:
    """The package's captions (loaded once)."""
    return Captions()
