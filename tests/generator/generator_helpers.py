"""Tiny generator configs for the tests (own module name: several test folders have a conftest)."""

import torch

from star.generator import GeneratorConfig


def tiny_config(**kw) -> GeneratorConfig:
    base = {"patch": 4, "dim": 32, "depth": 2, "heads": 2, "mlp_ratio": 2.0, "cond_dim": 16, "steps": 4}
    base.update(kw)
    return GeneratorConfig(**base)


def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Replace the zero-initialised (AdaLN-zero, output) weights: an untrained DiT outputs zeros,
    which would make every invariance test pass trivially."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return module
