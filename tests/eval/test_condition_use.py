"""The condition-use diagnostic: a generator blind to its condition shows no gap, a conditioned one does."""

import pytest
import torch

from star.eval.condition_use import condition_use
from star.generator import GeneratorConfig, build_generator


def _batches() -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 3:] = False
    return [{"mel": torch.randn(3, 8, 24, generator=g), "mel_mask": torch.ones(3, 24, dtype=torch.bool),
             "cond": torch.randn(3, 5, 16, generator=g), "cond_mask": mask,
             "noise": torch.randn(3, 8, 24, generator=g)}]


def _generator() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_generator(GeneratorConfig(patch=4, dim=16, depth=2, heads=2, mlp_ratio=2.0, cond_dim=16, n_mels=8,
                                            mel_mean=[0.0] * 8, mel_std=[1.0] * 8))
    with torch.no_grad():  # an untrained DiT's zero-initialised output would make every loss the same
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


def test_a_generator_that_reads_its_condition_shows_a_gap():
    scores = condition_use(_generator(), _batches(), [0.5, 0.9])
    assert set(scores) == {"t0.5", "t0.9"}
    for s in scores.values():
        assert len({round(v, 6) for v in s.values()}) == 3  # own, null and swapped all differ


def test_a_generator_blind_to_its_condition_shows_none():
    model = _generator()
    with torch.no_grad():  # every condition token maps to the same (zero) vector
        model.backbone.cond_in[1].weight.zero_()
        model.backbone.cond_in[1].bias.zero_()
    for s in condition_use(model, _batches(), [0.5]).values():
        assert s["null"] == pytest.approx(s["own"], rel=1e-5)
        assert s["swapped"] == pytest.approx(s["own"], rel=1e-5)
