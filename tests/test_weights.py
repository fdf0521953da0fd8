"""Release weights: compact storage (float16 / int8 rows) round-trips into float32 modules, shape checks."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from star.builders import DEFAULT_MODEL
from star.errors import StarError
from star.weights import Q8_SUFFIX, compact_state, load_weights, save_weights


def _module() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(96, 128), torch.nn.LayerNorm(128), torch.nn.Linear(128, 8))


@pytest.mark.parametrize("storage, tolerance", [("float16", 1e-3), ("int8", 1e-2)])
def test_compact_storage_loads_back_close_to_float32(tmp_path, storage, tolerance):
    source = _module()
    path = save_weights(source, None, tmp_path, "m")
    state = compact_state(load_file(str(path)), storage)
    big = state["0.weight"]
    assert big.dtype == (torch.int8 if storage == "int8" else torch.float16)
    assert ("0.weight" + Q8_SUFFIX in state) == (storage == "int8")
    assert state["0.bias"].dtype == torch.float32  # small tensors stay exact
    save_file(state, str(tmp_path / "c.safetensors"))
    loaded = load_weights(_module(), tmp_path, "c")
    w, w0 = loaded.state_dict()["0.weight"], source.state_dict()["0.weight"]
    assert w.dtype == torch.float32
    assert float((w - w0).norm() / w0.norm()) < tolerance
    assert torch.equal(loaded.state_dict()["0.bias"], source.state_dict()["0.bias"])


def test_shape_mismatch_and_orphan_scale_are_clear_errors(tmp_path):
    save_weights(_module(), None, tmp_path, "m")
    with pytest.raises(StarError, match="does not fit"):
        load_weights(torch.nn.Sequential(torch.nn.Linear(96, 64)), tmp_path, "m")
    state = load_file(str(tmp_path / "m.safetensors"))
    state["0.weight" + Q8_SUFFIX] = torch.ones(128, 1, dtype=torch.float16)  # weights are not int8
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(StarError, match="int8"):
        load_weights(_module(), tmp_path, "bad")
    with pytest.raises(StarError, match="storage"):
        compact_state(state, "int4")


@pytest.mark.model
def test_int8_generator_samples_like_float32(tmp_path):
    from star.generator import load_generator

    # The shipped weights already sit on an int8 grid; jitter them off it (half a step, row-wise) to
    # get a realistic float32 generator whose int8 copy must still sample the same audio.
    reference = load_generator(DEFAULT_MODEL)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in reference.parameters():
            if p.dim() == 2 and p.numel() >= 4096:
                step = p.abs().amax(dim=1, keepdim=True) / 127.0
                p.add_(torch.randn_like(p) * step * 0.5)
    save_weights(reference, reference.cfg, tmp_path / "fp32", "generator")
    state = compact_state(load_file(str(tmp_path / "fp32" / "generator.safetensors")), "int8")
    assert any(k.endswith(Q8_SUFFIX) for k in state)
    save_file(state, str(tmp_path / "generator.safetensors"))
    (tmp_path / "generator.json").write_text((tmp_path / "fp32" / "generator.json").read_text())
    quantised = load_generator(tmp_path)
    cond = torch.randn(1, 6, reference.cfg.cond_dim)
    mask = torch.ones(1, 6, dtype=torch.bool)
    a = reference.sample(cond, mask, 63, steps=4, generator=torch.Generator().manual_seed(0))
    b = quantised.sample(cond, mask, 63, steps=4, generator=torch.Generator().manual_seed(0))
    assert float((a - b).norm() / a.norm()) < 0.01
