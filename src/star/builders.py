"""Turns a model folder into the parts a Pipeline runs (the one place that knows the folder layout).

A model folder holds:
    pipeline.json                         PipelineConfig: encoder names, sampler defaults, limits
    bridge.safetensors / bridge.json      Stage 1: bridge + event head + caption embeddings
    generator.safetensors / .json         Stage 2(b): speech-conditioned generator (end to end)
    generator_text/generator.*            Stage 2(a): text-conditioned generator (text and cascade)
    vocoder.safetensors / vocoder.json    neural vocoder (or "vocoder": "griffin-lim" in pipeline.json extra)
    MODEL_CARD.md
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from star.audio.mel import MelConfig
from star.errors import StarError

DEFAULT_MODEL = Path(__file__).parent / "assets" / "default"
HUB_PREFIX = "hf://"
TEXT_GENERATOR_DIR = "generator_text"


def resolve_model_folder(model: str | Path | None) -> Path:
    """None -> the embedded default; a folder path -> itself; `hf://owner/repo` -> a hub snapshot.

    The hub route is for users with network access; it is never taken by default, so every default
    works offline.
    """
    if model is None:
        folder = DEFAULT_MODEL
    elif isinstance(model, str) and model.startswith(HUB_PREFIX):
        folder = _hub_snapshot(model[len(HUB_PREFIX):])
    else:
        folder = Path(model)
    if not (folder / "pipeline.json").is_file():
        raise StarError(f"{folder}: not a STAR model folder (no pipeline.json)")
    return folder


def _hub_snapshot(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id))
    except Exception as exc:  # noqa: BLE001 - offline machines get one clear line
        raise StarError(f"could not fetch model {repo_id!r} from the hub ({type(exc).__name__}); "
                        "pass a local model folder with --model") from None


@dataclass
class Parts:
    """The loaded components; encoders, ASR and listener load lazily on first use."""

    speech_encoder_name: str
    text_encoder_name: str
    bridge: Any  # star.bridge.StageOneModel's bridge: (frames, mask) -> (tokens, token_mask)
    generator: Any  # FlowMatching conditioned on bridge tokens
    text_generator: Any  # FlowMatching conditioned on text tokens
    vocoder: Any  # mel [b, 64, t] -> wav [b, samples]
    stage_one: Any
    folder: Path | None = None  # the model folder: `listener` loads a phonetic reader from it, if there is one
    mel_config: MelConfig = field(default_factory=MelConfig)
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def speech_encoder(self) -> Any:
        from star.encoders import build_speech_encoder

        return build_speech_encoder(self.speech_encoder_name)

    @property
    def text_encoder(self) -> Any:
        from star.encoders import build_text_encoder

        return build_text_encoder(self.text_encoder_name)

    def asr(self) -> Any:
        from star.encoders import build_asr

        return build_asr()

    def listener(self) -> Any:
        if "listener" not in self._cache:
            from star.bridge.listen import Listener, load_phonetic_beside

            phonetic = load_phonetic_beside(self.folder, self.stage_one) if self.folder else None
            self._cache["listener"] = Listener(self.stage_one, self.speech_encoder, phonetic=phonetic)
        return self._cache["listener"]

    def generator_for(self, mode: str) -> Any:
        """e2e speech uses the speech-tuned generator; text and the cascade use the text generator."""
        return self.generator if mode == "e2e" else self.text_generator


def build_parts(cfg: Any, folder: Path) -> Parts:
    from star.bridge.model import load_stage_one
    from star.generator.flow import load_generator
    from star.vocoder import build_vocoder

    stage_one = load_stage_one(folder)
    text_folder = folder / TEXT_GENERATOR_DIR
    generator = load_generator(folder)
    text_generator = load_generator(text_folder) if text_folder.is_dir() else generator
    if generator.cfg.time_slots and not stage_one.cfg.order_slots:
        raise StarError(f"{folder}: the generator reads the bridge's tokens as time slots, but the bridge has none "
                        "(train it with order_slots)")
    vocoder_name = cfg.extra.get("vocoder", str(folder))
    return Parts(
        speech_encoder_name=cfg.speech_encoder,
        text_encoder_name=cfg.text_encoder,
        bridge=stage_one.bridge,
        generator=generator,
        text_generator=text_generator,
        vocoder=build_vocoder(vocoder_name).eval(),
        stage_one=stage_one,
        folder=folder,
    )
