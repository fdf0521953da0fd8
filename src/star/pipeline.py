"""`Pipeline`: the one public entry object. The CLI, the server and the web page only call it.

    pipe = Pipeline.from_pretrained()            # the embedded default model, offline
    wav, sr = pipe.generate(speech="prompt.wav")  # end to end: speech -> bridge -> generator -> vocoder
    wav, sr = pipe.generate(text="a dog barks")  # text -> generator (the Stage-2(a) path)
    wav, sr = pipe.generate(speech="p.wav", mode="cascade")  # ASR -> text -> generator
    heard = pipe.listen("prompt.wav")             # events with probabilities
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from star.audio import SAMPLE_RATE, load_audio, peak_normalize, prepare_waveform, write_wav
from star.config import JsonConfig
from star.errors import StarError
from star.generator.dit import repeat_for_slots

MODES = ("e2e", "cascade")
PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_fast_bf16() -> bool:
    """True when /proc/cpuinfo lists AMX-BF16 or AVX512-BF16 (Linux; False where it cannot tell)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def use_bf16(precision: str) -> bool:
    if precision not in PRECISIONS:
        raise StarError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision == "bf16" or (precision == "auto" and cpu_has_fast_bf16())


SAMPLING_FIELDS = ("steps", "cfg", "sampler", "shift", "eta")


@dataclass
class PipelineConfig(JsonConfig):
    """What ties the parts of a model folder together (saved as pipeline.json)."""

    speech_encoder: str = "whisper-tiny.en"
    text_encoder: str = "minilm"
    steps: int = 8
    cfg: float = 3.0
    sampler: str = "euler"
    # Sampling time shift (SD3's): > 1 spends more of the steps near the noise end, where the spectral
    # envelope is decided (3 gives better accuracy, KL and FD at 8 steps: docs/GENERATOR.md, STEPS.md).
    shift: float = 1.0
    # Stochastic sampling: fraction of fresh noise mixed in at each Euler step (0 = deterministic ODE).
    eta: float = 0.0
    # Generator arithmetic: "bf16" (about 1.5x faster where the CPU has AMX or AVX512-BF16), "fp32", or
    # "auto" = bf16 exactly when the CPU has those instructions (elsewhere emulated bf16 is slower).
    precision: str = "auto"
    seconds: float = 5.0
    min_seconds: float = 1.0
    max_seconds: float = 10.0
    max_speech_seconds: float = 30.0
    max_steps: int = 200
    max_cfg: float = 20.0
    loudness_peak_db: float = -1.0
    # Sampling settings of the text generator (text prompts and the cascade) where they differ from the
    # ones above, e.g. {"cfg": 5.0, "shift": 3.0} when the speech generator is a distilled student that
    # samples without guidance (star.train.reflow).
    text_sampling: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = sorted(set(self.text_sampling) - set(SAMPLING_FIELDS))
        if bad:
            raise StarError(f"text_sampling cannot set {', '.join(bad)}; allowed: {', '.join(SAMPLING_FIELDS)}")

    def sampling(self, generator: str) -> dict[str, Any]:
        """Default steps, cfg, sampler, shift and eta of the "e2e" (speech) or the "text" generator."""
        own = {name: getattr(self, name) for name in SAMPLING_FIELDS}
        return {**own, **self.text_sampling} if generator == "text" else own


def generator_kind(has_speech: bool, mode: str) -> str:
    """Which generator serves a request: "e2e" (speech-tuned) for speech end to end, else "text"."""
    return "e2e" if has_speech and mode == "e2e" else "text"


SpeechInput = str | Path | bytes | tuple[np.ndarray, int]


def check_inputs(
    cfg: PipelineConfig,
    *,
    speech: Any,
    text: str | None,
    seconds: float,
    steps: int,
    guidance: float,
    mode: str,
) -> None:
    """Validate user options at the boundary so the models below can trust them."""
    if (speech is None) == (text is None):
        raise StarError("give exactly one of speech or text")
    if text is not None and not text.strip():
        raise StarError("text prompt is empty")
    if text is not None and len(text) > 500:
        raise StarError("text prompt is longer than 500 characters")
    if mode not in MODES:
        raise StarError(f"mode must be one of {MODES}, got {mode!r}")
    if not (cfg.min_seconds <= seconds <= cfg.max_seconds):
        raise StarError(f"seconds must be between {cfg.min_seconds:g} and {cfg.max_seconds:g}, got {seconds:g}")
    if not (1 <= steps <= cfg.max_steps):
        raise StarError(f"steps must be between 1 and {cfg.max_steps}, got {steps}")
    if not (0.0 <= guidance <= cfg.max_cfg):
        raise StarError(f"cfg must be between 0 and {cfg.max_cfg:g}, got {guidance:g}")


class Pipeline:
    """Speech (or text) in, audio out. Parts are loaded once and shared; calls are thread-compatible
    but not concurrent (the server queues requests)."""

    def __init__(self, cfg: PipelineConfig, parts: Any, folder: Path | None = None):
        self.cfg = cfg
        self.parts = parts  # star.builders.Parts: speech/text encoders, bridge, generator, vocoder, asr
        self.folder = folder
        self.sample_rate = SAMPLE_RATE
        self.last_timings: dict[str, float] = {}
        self.last_transcript: str | None = None  # what the cascade's ASR heard on the last call
        self.bf16 = use_bf16(cfg.precision)

    @classmethod
    def from_pretrained(cls, model: str | Path | None = None) -> Pipeline:
        """Load a model folder (default: the embedded model that ships in the package).

        `model` may also be `hf://owner/repo` for users with hub access (downloaded once, then cached).
        """
        from star.builders import build_parts, resolve_model_folder

        folder = resolve_model_folder(model)
        cfg = PipelineConfig.load(folder / "pipeline.json")
        return cls(cfg, build_parts(cfg, folder), folder)

    # ---- conditioning ------------------------------------------------------------------------
    def _speech_waveform(self, speech: SpeechInput, allow_silent: bool = False) -> np.ndarray:
        if isinstance(speech, tuple):
            wav, rate = speech
            return prepare_waveform(wav, rate, SAMPLE_RATE, allow_silent=allow_silent)
        return load_audio(speech, SAMPLE_RATE, max_seconds=self.cfg.max_speech_seconds, allow_silent=allow_silent)

    @torch.no_grad()
    def condition_from_speech(self, wav: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """End-to-end path: frozen speech encoder -> bridge tokens [1, q, 384] + mask [1, q]."""
        frames, mask = self.parts.speech_encoder.encode([wav])
        return self.parts.bridge(frames, mask)

    @torch.no_grad()
    def condition_from_text(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Text path: TextEncoder tokens [1, n, 384] + mask [1, n]."""
        return self.parts.text_encoder.encode([text])

    def transcribe(self, wav: np.ndarray) -> str:
        """Cascade front end: ASR (Whisper tiny.en, beam search)."""
        return self.parts.asr().transcribe(wav)

    def condition(self, *, speech: SpeechInput | None = None, text: str | None = None,
                  mode: str = "e2e") -> tuple[torch.Tensor, torch.Tensor, str | None]:
        """Condition tokens for one prompt, and the transcript when the cascade made one."""
        if text is not None:
            tokens, mask = self.condition_from_text(text)
            return tokens, mask, None
        wav = self._speech_waveform(speech)
        if mode == "cascade":
            transcript = self.transcribe(wav)
            if not transcript.strip():
                raise StarError("the speech recogniser heard no words in the prompt")
            tokens, mask = self.condition_from_text(transcript)
            return tokens, mask, transcript
        tokens, mask = self.condition_from_speech(wav)
        return tokens, mask, None

    # ---- generation --------------------------------------------------------------------------
    def generate(
        self,
        speech: SpeechInput | None = None,
        text: str | None = None,
        *,
        seconds: float | None = None,
        steps: int | None = None,
        cfg: float | None = None,
        seed: int | None = None,
        mode: str = "e2e",
    ) -> tuple[np.ndarray, int]:
        """Generate audio for a spoken (or written) prompt; returns (float32 mono wav, sample rate)."""
        which = generator_kind(speech is not None, mode)
        sampling = self.cfg.sampling(which)
        seconds = self.cfg.seconds if seconds is None else float(seconds)
        steps = sampling["steps"] if steps is None else int(steps)
        guidance = sampling["cfg"] if cfg is None else float(cfg)
        check_inputs(self.cfg, speech=speech, text=text, seconds=seconds, steps=steps, guidance=guidance,
                     mode=mode)
        t0 = time.perf_counter()
        tokens, mask, transcript = self.condition(speech=speech, text=text, mode=mode)
        t1 = time.perf_counter()
        generator = self.parts.generator_for(which)
        if generator.cfg.time_slots and which == "text":  # a text prompt holds for the whole clip
            tokens, mask = repeat_for_slots(tokens, mask, generator.cfg.time_slots)
        rng = torch.Generator().manual_seed(int(seed) if seed is not None else int(torch.seed() % 2**31))
        frames = self.parts.mel_config.frames(seconds)
        with torch.no_grad():
            mel = generator.sample(tokens, mask, frames, steps=steps, cfg=guidance,
                                   method=sampling["sampler"], shift=sampling["shift"], generator=rng,
                                   bf16=self.bf16, eta=sampling["eta"])
            t2 = time.perf_counter()
            wav = self.parts.vocoder(mel)[0].numpy()
        t3 = time.perf_counter()
        wav = wav[: round(seconds * SAMPLE_RATE)]
        wav = peak_normalize(wav, self.cfg.loudness_peak_db)
        self.last_timings = {"condition_s": t1 - t0, "generator_s": t2 - t1, "vocoder_s": t3 - t2,
                             "total_s": t3 - t0}
        self.last_transcript = transcript
        return wav, SAMPLE_RATE

    def generate_batch(self, manifest: str | Path, out_dir: str | Path, **options: Any) -> list[Path]:
        """Generate DIR/<id>.wav for each `{"id", "speech"|"text"}` line; relative paths resolve against
        the manifest's own folder. A bad item stops the batch before any work."""
        from star.data.manifest import read_manifest

        manifest = Path(manifest)
        jobs = []
        for n, item in enumerate(read_manifest(manifest), 1):  # speech paths resolved against its folder
            if "id" not in item or ("speech" in item) == ("text" in item):
                raise StarError(f'{manifest}: item {n}: need "id" and exactly one of "speech" or "text"')
            item_id = str(item["id"])
            if not item_id or "/" in item_id or "\\" in item_id or item_id.startswith("."):
                raise StarError(f"{manifest}: item {n}: id {item_id!r} is not a safe file name")
            jobs.append((item_id, item.get("speech"), item.get("text")))
        from tqdm import tqdm

        written = []
        for item_id, speech, text in tqdm(jobs, desc="generate", disable=len(jobs) < 2):
            wav, sr = self.generate(speech=speech, text=text, **options)
            written.append(write_wav(Path(out_dir) / f"{item_id}.wav", wav, sr))
        return written

    # ---- listening ---------------------------------------------------------------------------
    def listen(self, speech: SpeechInput) -> Any:
        """What the bridge heard: events with probabilities, the closest caption, or 'no request'."""
        # Silence is a fair question here: the answer is "no spoken sound request heard".
        return self.parts.listener().listen(self._speech_waveform(speech, allow_silent=True))
