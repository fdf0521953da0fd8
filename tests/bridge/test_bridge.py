"""Bridge modules: shapes, masking (padding never changes outputs), configs, weights round trip."""

import math

import pytest
import torch

from star.bridge import (
    BridgeConfig,
    StageOneModel,
    build_bridge,
    load_bridge,
    load_stage_one,
    save_stage_one,
)
from star.bridge.base import pool_frames
from star.bridge.model import info_nce
from star.errors import StarError


def _cfg(kind):
    return BridgeConfig(
        kind=kind, width=32, queries=5, layers=2, heads=4, ffn_mult=2, mlp_tokens=3, dropout=0.0
    )


@pytest.mark.parametrize("kind,q", [("qformer", 5), ("mlp", 3)])
def test_shapes(kind, q):
    bridge = build_bridge(_cfg(kind)).eval()
    frames, mask = torch.randn(2, 17, 384), torch.ones(2, 17, dtype=torch.bool)
    tokens, token_mask = bridge(frames, mask)
    assert tokens.shape == (2, q, 384) and token_mask.shape == (2, q) and token_mask.all()
    assert bridge.pooled(tokens, token_mask).shape == (2, 384)


@pytest.mark.parametrize("kind", ["qformer", "mlp"])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_padding_does_not_change_outputs(kind, stride):
    torch.manual_seed(0)
    cfg = _cfg(kind)
    cfg.frame_stride = stride
    bridge = build_bridge(cfg).eval()
    lengths = [23, 9, 16]
    items = [torch.randn(n, 384) for n in lengths]
    frames = torch.full((3, 23, 384), 7.0)  # padding holds garbage, not zeros: it must be ignored
    mask = torch.zeros(3, 23, dtype=torch.bool)
    for i, x in enumerate(items):
        frames[i, : len(x)] = x
        mask[i, : len(x)] = True
    with torch.no_grad():
        batched, _ = bridge(frames, mask)
        for i, x in enumerate(items):
            single, _ = bridge(x[None], torch.ones(1, len(x), dtype=torch.bool))
            torch.testing.assert_close(batched[i], single[0], atol=1e-5, rtol=1e-4)


def test_pool_frames_is_masked_mean():
    x = torch.arange(10.0).view(1, 5, 2)
    mask = torch.tensor([[True, True, True, False, False]])
    pooled, pmask = pool_frames(x, mask, 2)
    assert pooled.shape == (1, 3, 2) and pmask.tolist() == [[True, True, False]]
    torch.testing.assert_close(pooled[0, :2], torch.tensor([[1.0, 2.0], [4.0, 5.0]]))


def test_invalid_inputs_and_configs():
    bridge = build_bridge(_cfg("qformer"))
    with pytest.raises(StarError):
        bridge(torch.randn(1, 5, 100), torch.ones(1, 5, dtype=torch.bool))  # wrong feature size
    with pytest.raises(StarError):
        bridge(torch.randn(1, 5, 384), torch.zeros(1, 5, dtype=torch.bool))  # no real frame
    with pytest.raises(StarError):
        build_bridge(BridgeConfig(kind="lstm"))
    with pytest.raises(StarError):
        build_bridge(BridgeConfig(width=30, heads=4))


def test_info_nce_prefers_matching_pairs():
    torch.manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    ids = torch.arange(4)
    good = info_nce(text, text, ids, 0.07)
    bad = info_nce(text.roll(1, 0), text, ids, 0.07)
    assert good < 0.1 < bad
    # Two prompts of one caption: the loss floor is log(2) per duplicated item, not a push apart.
    dup = torch.cat([text[:1], text[:1], text[2:]])
    assert float(info_nce(dup, dup, torch.tensor([0, 0, 2, 3]), 0.07)) == pytest.approx(
        0.5 * math.log(2), abs=0.05
    )


@pytest.mark.parametrize("kind", ["qformer", "mlp"])
def test_weights_round_trip(tmp_path, kind, debug_stage_one):
    torch.manual_seed(0)
    model = StageOneModel(debug_stage_one(kind)).eval()
    model.caption_emb.normal_()
    save_stage_one(model, tmp_path)
    assert (tmp_path / "bridge.safetensors").is_file() and (tmp_path / "bridge.json").is_file()
    loaded = load_stage_one(tmp_path)
    assert loaded.cfg.to_dict() == model.cfg.to_dict()
    frames, mask = torch.randn(2, 12, 384), torch.ones(2, 12, dtype=torch.bool)
    with torch.no_grad():
        a, b = model.predict(frames, mask), loaded.predict(frames, mask)
    torch.testing.assert_close(a.logits, b.logits)
    torch.testing.assert_close(a.tokens, b.tokens)
    torch.testing.assert_close(model.caption_emb, loaded.caption_emb)
    assert isinstance(load_bridge(tmp_path), type(model.bridge))


def test_weights_shape_mismatch_is_clear(tmp_path, debug_stage_one):
    save_stage_one(StageOneModel(debug_stage_one()), tmp_path)
    cfg = debug_stage_one(vocab=["dog", "rain", "rooster", "sneezing"])
    cfg.save(tmp_path / "bridge.json")  # config no longer matches the weights
    with pytest.raises(StarError, match="shape mismatch"):
        load_stage_one(tmp_path)
