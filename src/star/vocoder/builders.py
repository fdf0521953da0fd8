"""The one place that turns a vocoder name or folder into a vocoder, and that saves/loads neural ones.

    build_vocoder("griffin-lim")      zero-training fallback
    build_vocoder("path/to/folder")   a folder holding vocoder.safetensors + vocoder.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from star.audio.mel import MelConfig
from star.errors import StarError
from star.vocoder.griffin_lim import GriffinLimVocoder
from star.vocoder.neural import NeuralVocoder, VocoderConfig
from star.weights import load_config, load_weights, save_weights

GRIFFIN_LIM = "griffin-lim"
WEIGHTS_NAME = "vocoder"  # vocoder.safetensors + vocoder.json


@runtime_checkable
class Vocoder(Protocol):
    """log-mel [b, 64, frames] (star.audio.MelSpec) -> waveform [b, samples] in [-1, 1]."""

    sample_rate: int

    def __call__(self, mel: torch.Tensor, samples: int | None = None) -> torch.Tensor: ...


def save_vocoder(vocoder: NeuralVocoder, folder: str | Path, fp16: bool = True) -> Path:
    """Write release weights; fp16 storage halves the file and is loaded back into fp32."""
    module = vocoder
    if fp16:
        module = NeuralVocoder(vocoder.cfg)
        module.load_state_dict(vocoder.state_dict())
        module = module.half()
    return save_weights(module, vocoder.cfg, folder, WEIGHTS_NAME)


def load_vocoder(folder: str | Path) -> NeuralVocoder:
    """Folder with vocoder.safetensors + vocoder.json -> NeuralVocoder (fp32, eval, no grad)."""
    cfg = load_config(VocoderConfig, folder, WEIGHTS_NAME)
    try:
        cfg.check(MelConfig())
    except ValueError as exc:
        raise StarError(f"{folder}: {exc}") from None
    vocoder = NeuralVocoder(cfg)
    load_weights(vocoder, folder, WEIGHTS_NAME)  # load_state_dict casts fp16 storage to the fp32 params
    return vocoder.eval().requires_grad_(False)


def build_vocoder(name_or_folder: str | Path) -> Vocoder:
    """"griffin-lim" or a folder with neural vocoder weights -> a ready-to-call vocoder (eval mode)."""
    name = str(name_or_folder)
    if name == GRIFFIN_LIM:
        return GriffinLimVocoder().eval()
    folder = Path(name)
    if folder.is_dir() and (folder / f"{WEIGHTS_NAME}.safetensors").is_file():
        return load_vocoder(folder)
    raise StarError(
        f"unknown vocoder {name!r}: expected {GRIFFIN_LIM!r} or a folder holding "
        f"{WEIGHTS_NAME}.safetensors and {WEIGHTS_NAME}.json"
    )
