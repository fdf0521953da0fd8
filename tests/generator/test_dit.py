"""The DiT backbone: shapes for several lengths, condition-mask and audio-padding invariance, batch consistency."""

import pytest
import torch
from generator_helpers import randomize, tiny_config

from star.errors import StarError
from star.generator import DiT, GeneratorConfig
from star.generator.dit import repeat_for_slots, slot_attention_mask


def _inputs(b=2, t=40, n=5, c=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 64, t, generator=g), torch.rand(b, generator=g),
            torch.randn(b, n, c, generator=g), torch.ones(b, n, dtype=torch.bool))


@pytest.mark.parametrize("frames", [1, 7, 63, 313, 626])
def test_shapes_for_several_lengths(cfg, frames):
    model = randomize(DiT(cfg)).eval()
    x, t, cond, mask = _inputs(t=frames)
    out = model(x, t, cond, mask)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_untrained_model_predicts_zero(cfg):
    # AdaLN-zero + zero output layer: training starts from the identity-like "predict 0" network.
    out = DiT(cfg)(*_inputs())
    assert torch.equal(out, torch.zeros_like(out))


def test_masked_condition_tokens_do_not_change_output(cfg):
    model = randomize(DiT(cfg)).eval()
    x, t, cond, mask = _inputs(n=3)
    ref = model(x, t, cond, mask)
    junk = torch.randn(2, 4, 16) * 100
    junk[0, 0] = float("nan")  # even NaN padding must not leak
    padded = torch.cat([cond, junk], dim=1)
    pmask = torch.cat([mask, torch.zeros(2, 4, dtype=torch.bool)], dim=1)
    out = model(x, t, padded, pmask)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # ...while a real token there does change it (the test can fail)
    assert not torch.allclose(model(x, t, padded.nan_to_num(), torch.ones_like(pmask)), ref, atol=1e-3)


def test_condition_changes_output(cfg):
    model = randomize(DiT(cfg)).eval()
    x, t, cond, mask = _inputs()
    assert not torch.allclose(model(x, t, cond, mask), model(x, t, cond.flip(0), mask), atol=1e-3)


def test_audio_key_padding_mask(cfg):
    model = randomize(DiT(cfg)).eval()
    x, t, cond, mask = _inputs(t=40)  # 10 whole patches
    ref = model(x, t, cond, mask)
    padded = torch.cat([x, torch.randn(2, 64, 24) * 50], dim=-1)
    x_mask = torch.zeros(2, 64, dtype=torch.bool)
    x_mask[:, :40] = True
    out = model(padded, t, cond, mask, x_mask)
    torch.testing.assert_close(out[..., :40], ref, atol=1e-5, rtol=1e-5)


def test_batch_matches_single(cfg):
    model = randomize(DiT(cfg)).eval()
    x, t, cond, mask = _inputs(b=3)
    mask[1, 3:] = False
    full = model(x, t, cond, mask)
    for i in range(3):
        one = model(x[i : i + 1], t[i : i + 1], cond[i : i + 1], mask[i : i + 1])
        torch.testing.assert_close(one, full[i : i + 1], atol=1e-4, rtol=1e-4)


def test_frame_head_shapes_padding_and_identity_start():
    cfg = tiny_config(frame_head=5)
    model = randomize(DiT(cfg)).eval()
    assert model(*_inputs(t=39)).shape == (2, 64, 39)  # the head works per frame, any length
    x, t, cond, mask = _inputs(t=40)
    ref = model(x, t, cond, mask)
    assert torch.isfinite(ref).all()
    padded = torch.cat([x, torch.randn(2, 64, 24) * 50], dim=-1)  # the kernel reaches into the padding
    x_mask = torch.zeros(2, 64, dtype=torch.bool)
    x_mask[:, :40] = True
    torch.testing.assert_close(model(padded, t, cond, mask, x_mask)[..., :40], ref, atol=1e-4, rtol=1e-4)
    # a fresh head (zero last layer) leaves a trained backbone's prediction unchanged; a trained one does not
    plain = DiT(tiny_config()).eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    assert not torch.allclose(plain(x, t, cond, mask), ref, atol=1e-3)
    headed = DiT(cfg).eval()
    headed.load_state_dict(plain.state_dict(), strict=False)
    torch.testing.assert_close(headed(x, t, cond, mask), plain(x, t, cond, mask))
    with pytest.raises(StarError, match="frame_head"):
        tiny_config(frame_head=4).validate()


def test_invalid_configs():
    with pytest.raises(StarError):
        DiT(tiny_config(depth=3))
    with pytest.raises(StarError):
        DiT(tiny_config(dim=30, heads=4))
    with pytest.raises(StarError):
        tiny_config(mel_mean=[0.0] * 3).validate()
    with pytest.raises(StarError):
        tiny_config(time_slots=-1).validate()


def test_config_json_round_trip(tmp_path):
    cfg = tiny_config(mel_mean=[0.5] * 64, mel_std=[2.0] * 64)
    cfg.save(tmp_path / "g.json")
    assert GeneratorConfig.load(tmp_path / "g.json") == cfg
    assert cfg.frames(5.0) == 313


def test_time_slot_mask_splits_clip_and_condition_in_halves():
    cond_mask = torch.tensor([[True] * 4, [True, True, True, False], [True, False, False, False]])
    key_mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] * 6])
    mask = slot_attention_mask(cond_mask, key_mask, 6, 2)  # [3, 6, 4]
    first, second = [True, True, False, False], [False, False, True, True]
    assert mask[0].tolist() == [first] * 3 + [second] * 3
    # 3 real tokens: groups 0, 0, 1; 4 real patches: parts 0, 0, 1, 1 (padded patches count as the last part)
    assert mask[1].tolist() == [[True, True, False, False]] * 2 + [[False, False, True, False]] * 4
    # the null condition (one real token) leaves the second group empty: that part sees every real token
    assert mask[2].tolist() == [[True, False, False, False]] * 6


def test_time_slots_with_a_condition_in_every_slot_match_the_plain_model(cfg):
    # Each part sees every real token once, so cross-attention and the pooled condition are unchanged.
    plain = randomize(DiT(cfg)).eval()
    slotted = DiT(GeneratorConfig.from_dict({**cfg.to_dict(), "time_slots": 2})).eval()
    slotted.load_state_dict(plain.state_dict())
    x, t, cond, mask = _inputs(n=5)
    mask[1, 3:] = False
    tiled, tiled_mask = repeat_for_slots(cond, mask, 2)
    assert tiled_mask.sum(1).tolist() == [10, 6]
    torch.testing.assert_close(slotted(x, t, tiled, tiled_mask), plain(x, t, cond, mask), atol=1e-5, rtol=1e-5)
    # ...while different halves make a different clip (the test can fail)
    halves = torch.cat([cond, cond.flip(0)], dim=1)
    assert not torch.allclose(slotted(x, t, halves, torch.ones(2, 10, dtype=torch.bool)),
                              plain(x, t, cond, mask), atol=1e-3)
