"""Text -> phonemes with espeak-ng (American English), for the phonetic route of the bridge.

The phoneme targets of the CTC head and the inputs of the phoneme-to-meaning encoder are both spelled
with this module, so speech and text meet in one inventory. espeak-ng is the Debian package the data
pipeline already speaks prompts with; its phonemizer knows any spelling, not only dictionary words.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence

from star.errors import StarError

# espeak-ng en-us IPA symbols, stress dropped, the length mark kept on its vowel; diphthongs are two
# symbols ("aɪ" = a + ɪ). Rare symbols (glottal stop, syllabic mark) are dropped.
PHONEMES: tuple[str, ...] = (
    "a", "b", "d", "e", "f", "h", "i", "iː", "j", "k", "l", "m", "n", "o", "oː", "p", "s", "t", "uː",
    "v", "w", "z", "æ", "ð", "ŋ", "ɐ", "ɑː", "ɔ", "ɔː", "ə", "ɚ", "ɛ", "ɜː", "ɡ", "ɪ", "ɹ", "ɾ", "ʃ",
    "ʊ", "ʌ", "ʒ", "θ", "ᵻ",
)  # fmt: skip
PHONEME_INDEX = {p: i for i, p in enumerate(PHONEMES)}
# Between two words, in inventories that keep word boundaries (an option of the phonetic route, off by
# default: it did not pay, STUDY part 17).
WORD_BOUNDARY = "|"
WORD_BOUNDARY_ID = len(PHONEMES)  # its index: the one symbol after PHONEMES
ESPEAK_VOICE = "en-us"
_CHUNK = 5000  # lines per espeak-ng call


def _clean(text: str) -> str:
    # Punctuation would split a line into clauses (one output line each); digits are spelled out anyway.
    return re.sub(r"[^a-z' ]+", " ", text.lower()).strip() or "uh"


def phonemize(texts: Sequence[str]) -> list[str]:
    """texts -> one IPA string each (words separated by spaces)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise StarError("phonemizing needs espeak-ng (apt-get install espeak-ng)")
    out: list[str] = []
    for start in range(0, len(texts), _CHUNK):
        chunk = [_clean(t) for t in texts[start : start + _CHUNK]]
        run = subprocess.run(
            [exe, "-q", "--ipa", "-v", ESPEAK_VOICE], check=False, input="\n".join(chunk) + "\n", capture_output=True, text=True
        )
        lines = [line.strip() for line in run.stdout.split("\n") if line.strip()]
        if run.returncode != 0 or len(lines) != len(chunk):
            raise StarError(f"espeak-ng phonemized {len(lines)} of {len(chunk)} lines: {run.stderr.strip()[:200]}")
        out += lines
    return out


def inventory(word_boundaries: bool = False) -> tuple[str, ...]:
    """The symbols phoneme ids index: PHONEMES, then WORD_BOUNDARY if words are kept apart."""
    return (*PHONEMES, WORD_BOUNDARY) if word_boundaries else PHONEMES


def phoneme_ids(ipa: str, word_boundaries: bool = False) -> list[int]:
    """An IPA string -> indices into `inventory(word_boundaries)`: with word boundaries, the index of
    WORD_BOUNDARY between words, else none. Unknown symbols are dropped."""
    words = [_word_ids(w) for w in re.split(r"[ -]+", ipa)]
    words = [w for w in words if w]
    if not word_boundaries:
        return [i for w in words for i in w]
    return [i for n, w in enumerate(words) for i in ([WORD_BOUNDARY_ID] if n else []) + w]


def _word_ids(ipa: str) -> list[int]:
    """One word's IPA -> ids: stress and nasal marks dropped, the length mark kept on its vowel."""
    symbols: list[str] = []
    for ch in re.sub("[ˈˌ\u0303]", "", ipa):
        if ch == "ː" and symbols:
            symbols[-1] += ch
        else:
            symbols.append(ch)
    return [PHONEME_INDEX[s] for s in symbols if s in PHONEME_INDEX]


def text_phoneme_ids(texts: Sequence[str], word_boundaries: bool = False) -> list[list[int]]:
    """texts -> phoneme indices of each (`phoneme_ids`)."""
    return [phoneme_ids(ipa, word_boundaries) for ipa in phonemize(texts)]
