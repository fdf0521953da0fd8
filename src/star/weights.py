"""Release weights: `<name>.safetensors` plus the `<name>.json` config they were built with.

Training checkpoints (optimizer, step, RNG) live elsewhere (`star.train.trainer`); these files are
what ships, and loading checks every tensor's shape against the freshly built module.

Shipped files may store big matrices compactly (`compact_state`): float16, or int8 with one float16
scale per output row (`<key>` int8 + `<key>.q8_scale`); `load_weights` restores float32 either way.
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


Q8_SUFFIX = ".q8_scale"


def compact_state(state: dict[str, torch.Tensor], storage: str = "float16",
                  min_numel: int = 4096) -> dict[str, torch.Tensor]:
    """Big float tensors as float16, or (storage "int8") 2-D ones as int8 rows with a float16 scale each.

    Small tensors (biases, norms, statistics) stay as they are: they are cheap and sensitive.
    """
    if storage not in ("float16", "int8"):
        raise StarError(f"storage must be float16 or int8, got {storage!r}")
    out: dict[str, torch.Tensor] = {}
    for key, v in state.items():
        if not v.is_floating_point() or v.numel() < min_numel:
            out[key] = v
        elif storage == "int8" and v.dim() == 2:
            scale = v.float().abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0  # [rows, 1]
            out[key] = (v.float() / scale).round().clamp(-127, 127).to(torch.int8)
            out[key + Q8_SUFFIX] = scale.half()
        else:
            out[key] = v.half()
    return {k: v.contiguous() for k, v in out.items()}


def _expand_compact(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Undo `compact_state`: int8 rows times their scales; float16 stays (load_state_dict casts it)."""
    scales = {k[: -len(Q8_SUFFIX)]: state[k] for k in state if k.endswith(Q8_SUFFIX)}
    out = {k: v for k, v in state.items() if not k.endswith(Q8_SUFFIX)}
    for key, scale in scales.items():
        if key not in out or out[key].dtype != torch.int8:
            raise StarError(f"int8 scale without int8 weights for {key!r}")
        out[key] = out[key].float() * scale.float()
    return out


def load_weights(module: torch.nn.Module, folder: str | Path, name: str, new: tuple[str, ...] = ()
                 ) -> torch.nn.Module:
    """Load `folder/name.safetensors` into `module`, failing clearly on missing keys or shape mismatch.

    Keys starting with a prefix in `new` may be missing: layers added to a trained model keep their
    initialisation.
    """
    path = Path(folder) / f"{name}.safetensors"
    if not path.is_file():
        raise StarError(f"missing weights file {path}")
    state = _expand_compact(load_file(str(path)))
    expected = module.state_dict()
    missing = sorted(k for k in set(expected) - set(state) if not k.startswith(new))
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
    module.load_state_dict(state, strict=not new)
    return module


def load_config(cls: type[JsonConfig], folder: str | Path, name: str) -> JsonConfig:
    path = Path(folder) / f"{name}.json"
    if not path.is_file():
        raise StarError(f"missing config file {path}")
    return cls.load(path)
