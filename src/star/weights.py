"""Release weights: `<name>.safetensors` plus the `<name>.json` config they were built with.

Training checkpoints (optimizer, step, RNG) live elsewhere (`star.train.trainer`); these files are
what ships, and loading checks every tensor's shape against the freshly built module.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from star.config import JsonConfig
from star.errors import StarError


def save_weights(module: torch.nn.Module, config: JsonConfig | None, folder: str | Path, name: str) -> Path:
    """Write `folder/name.safetensors` (+ `folder/name.json` when a config is given)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared storage; contiguous clones make tied weights explicit copies.
    state = {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}
    save_file(state, str(folder / f"{name}.safetensors"))
    if config is not None:
        config.save(folder / f"{name}.json")
    return folder / f"{name}.safetensors"


def load_weights(module: torch.nn.Module, folder: str | Path, name: str) -> torch.nn.Module:
    """Load `folder/name.safetensors` into `module`, failing clearly on missing keys or shape mismatch."""
    path = Path(folder) / f"{name}.safetensors"
    if not path.is_file():
        raise StarError(f"missing weights file {path}")
    state = load_file(str(path))
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {missing[:5]}")
        if unexpected:
            details.append(f"unexpected {unexpected[:5]}")
        if wrong:
            details.append(
                "shape mismatch " + ", ".join(f"{k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
                                              for k in wrong[:5])
            )
        raise StarError(f"{path} does not fit its config: " + "; ".join(details))
    module.load_state_dict(state)
    return module


def load_config(cls: type[JsonConfig], folder: str | Path, name: str) -> JsonConfig:
    path = Path(folder) / f"{name}.json"
    if not path.is_file():
        raise StarError(f"missing config file {path}")
    return cls.load(path)
