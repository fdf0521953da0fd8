"""Rectified flow: loss, condition dropout, sampler invariants (with stub networks), CFG, determinism, save/load."""

import pytest
import torch
from generator_helpers import randomize, tiny_config

from star.errors import StarError
from star.generator import FlowMatching, load_generator, save_generator


class ConstantField(torch.nn.Module):
    """velocity = a(cond) everywhere: a per-sample constant = masked mean of the condition's first channel."""

    def forward(self, x, t, cond, cond_mask, x_mask=None):
        m = cond_mask.float()
        a = (cond[..., 0] * m).sum(1) / m.sum(1)  # [b]
        return a[:, None, None].expand_as(x).clone()


class LinearField(torch.nn.Module):
    """velocity = x: the exact flow from t=1 to t=0 is x0 = x1 * e^-1."""

    def forward(self, x, t, cond, cond_mask, x_mask=None):
        return x.clone()


class PointMass(torch.nn.Module):
    """The exact velocity when all data is the constant 0.5: x_t = (1 - t) 0.5 + t e, so v = (x - 0.5) / t."""

    def forward(self, x, t, cond, cond_mask, x_mask=None):
        return (x - 0.5) / t[:, None, None]


def _cond(b=2, n=4, c=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, c, generator=g), torch.ones(b, n, dtype=torch.bool)


def _flow(backbone=None, **kw):
    return FlowMatching(tiny_config(**kw), backbone).eval()


@pytest.mark.parametrize("method", ["euler", "heun"])
@pytest.mark.parametrize("guidance", [1.0, 3.0])
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_constant_field_integrates_exactly_with_guidance(method, guidance, shift):
    flow = _flow(ConstantField())
    cond, mask = _cond()
    noise = torch.randn(2, 64, 30)
    out = flow.sample(cond, mask, 30, steps=5, cfg=guidance, method=method, noise=noise, clamp=False,
                      shift=shift)
    a_cond = cond[..., 0].mean(1)
    a_null = flow.null_token[0].detach()
    v = a_null + guidance * (a_cond - a_null)  # guidance 1 is the plain conditional velocity
    torch.testing.assert_close(out, noise - v[:, None, None], atol=1e-5, rtol=1e-5)


def test_heun_beats_euler_on_curved_field():
    flow = _flow(LinearField())
    cond, mask = _cond()
    noise = torch.randn(2, 64, 10)
    exact = noise * torch.exp(torch.tensor(-1.0))
    err = {m: (flow.sample(cond, mask, 10, steps=8, cfg=1.0, method=m, noise=noise, clamp=False) - exact)
           .abs().max() for m in ("euler", "heun")}
    assert err["heun"] < err["euler"] / 3


def test_time_shift_moves_steps_towards_noise():
    seen = []

    class Recorder(LinearField):
        def forward(self, x, t, cond, cond_mask, x_mask=None):
            seen.append(float(t[0]))
            return super().forward(x, t, cond, cond_mask)

    flow = _flow(Recorder())
    cond, mask = _cond()
    flow.sample(cond, mask, 4, steps=4, cfg=1.0, shift=3.0)
    assert seen[0] == 1.0 and seen == sorted(seen, reverse=True)
    assert seen[1] == pytest.approx(3 * 0.75 / (1 + 2 * 0.75))  # 0.9: more steps where the layout forms


def test_sample_shapes_steps_and_determinism():
    flow = FlowMatching(tiny_config())
    randomize(flow).eval()
    cond, mask = _cond()
    for frames in (1, 63, 313):
        assert flow.sample(cond, mask, frames, steps=1).shape == (2, 64, frames)
    a = flow.sample(cond, mask, 40, generator=torch.Generator().manual_seed(7))
    b = flow.sample(cond, mask, 40, generator=torch.Generator().manual_seed(7))
    c = flow.sample(cond, mask, 40, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # guidance on/off are different predictions
    assert not torch.allclose(a, flow.sample(cond, mask, 40, cfg=1.0, generator=torch.Generator().manual_seed(7)))


def test_samples_are_denormalised_and_clamped():
    flow = _flow(ConstantField(), mel_mean=[-5.0] * 64, mel_std=[2.0] * 64, mel_min=-11.5, mel_max=2.0)
    cond, mask = _cond()
    cond[0, :, 0] = 100.0  # a huge velocity drives the sample far out of range
    noise = torch.zeros(2, 64, 8)
    raw = flow.sample(cond, mask, 8, cfg=1.0, noise=noise, clamp=False)
    torch.testing.assert_close(raw[1], -5.0 + 2.0 * (0 - cond[1, :, 0].mean()).expand(64, 8))
    out = flow.sample(cond, mask, 8, cfg=1.0, noise=noise)
    assert out.min() >= -11.5 and out.max() <= 2.0
    assert out[0].max() == -11.5


def test_loss_and_padding_mask():
    flow = FlowMatching(tiny_config())
    randomize(flow).eval()
    g = torch.Generator().manual_seed(0)
    mel, noise = torch.randn(2, 64, 48, generator=g), torch.randn(2, 64, 48, generator=g)
    cond, cmask = _cond()
    t = torch.tensor([0.3, 0.8])
    mask = torch.ones(2, 48, dtype=torch.bool)
    mask[:, 32:] = False
    loss = flow(mel, cond, cmask, mask, t=t, noise=noise)
    assert loss.dim() == 0 and loss > 0
    junk = mel.clone()
    junk[..., 32:] = 1000.0
    torch.testing.assert_close(flow(junk, cond, cmask, mask, t=t, noise=noise), loss)
    loss_short = flow(mel[..., :32], cond, cmask, None, t=t, noise=noise[..., :32])
    torch.testing.assert_close(loss_short, loss, atol=1e-5, rtol=1e-5)


def test_condition_dropout_uses_null_token():
    flow = FlowMatching(tiny_config(cond_drop=1.0))
    randomize(flow)
    g = torch.Generator().manual_seed(0)
    mel, noise = torch.randn(2, 64, 16, generator=g), torch.randn(2, 64, 16, generator=g)
    cond, cmask = _cond()
    t = torch.tensor([0.5, 0.5])
    dropped = flow.train()(mel, cond, cmask, t=t, noise=noise)
    null, null_mask = flow.null_condition(2, cond.shape[1])
    torch.testing.assert_close(dropped, flow.eval()(mel, null, null_mask, t=t, noise=noise))
    assert not torch.allclose(dropped, flow(mel, cond, cmask, t=t, noise=noise))
    dropped.backward()
    assert flow.null_token.grad is not None and flow.null_token.grad.abs().sum() > 0


def test_invalid_inputs():
    flow = FlowMatching(tiny_config())
    cond, mask = _cond()
    with pytest.raises(StarError):
        flow.sample(cond[..., :8], mask, 10)
    with pytest.raises(StarError):
        flow.sample(cond, torch.zeros_like(mask), 10)
    with pytest.raises(StarError):
        flow.sample(cond, mask, 10, method="rk4")
    with pytest.raises(StarError):
        flow.sample(cond, mask, 0)


def test_save_load_round_trip(tmp_path):
    flow = FlowMatching(tiny_config(mel_mean=[-4.0] * 64, mel_std=[3.0] * 64))
    randomize(flow).eval()
    save_generator(flow, tmp_path)
    loaded = load_generator(tmp_path)
    assert loaded.cfg == flow.cfg
    cond, mask = _cond()
    a = flow.sample(cond, mask, 20, generator=torch.Generator().manual_seed(0))
    b = loaded.sample(cond, mask, 20, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    # a config that does not fit the weights fails clearly
    (tmp_path / "generator.json").write_text((tmp_path / "generator.json").read_text().replace('"dim": 32', '"dim": 64'))
    with pytest.raises(StarError, match="does not fit"):
        load_generator(tmp_path)


def test_bf16_sampling_stays_close_to_float32():
    flow = FlowMatching(tiny_config())
    randomize(flow, seed=1)
    with torch.no_grad():
        for p in flow.parameters():
            p.mul_(0.25)  # keep the random network in a realistic range
    flow.eval()
    cond, mask = _cond()
    a = flow.sample(cond, mask, 40, generator=torch.Generator().manual_seed(0), clamp=False)
    b = flow.sample(cond, mask, 40, generator=torch.Generator().manual_seed(0), clamp=False, bf16=True)
    assert b.dtype == torch.float32
    assert ((a - b).norm() / a.norm()) < 0.05


@pytest.mark.parametrize("shift", [0.0, -1.0])
def test_time_shift_must_be_positive(shift):
    flow = _flow(LinearField())
    cond, mask = _cond()
    with pytest.raises(StarError, match="shift"):
        flow.sample(cond, mask, 4, steps=2, cfg=1.0, shift=shift)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_stochastic_steps_keep_an_exact_field_exact(eta):
    # Every step's data estimate is the point mass, whatever noise is renewed along the way.
    flow = _flow(PointMass())
    cond, mask = _cond()
    out = flow.sample(cond, mask, 12, steps=6, cfg=1.0, eta=eta, clamp=False, shift=3.0,
                      generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, torch.full_like(out, 0.5), atol=1e-4, rtol=0)


def test_eta_zero_is_euler_and_eta_is_seeded():
    flow = FlowMatching(tiny_config())
    randomize(flow).eval()
    cond, mask = _cond()

    def run(eta, seed=3):
        return flow.sample(cond, mask, 40, eta=eta, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(0.0), flow.sample(cond, mask, 40, generator=torch.Generator().manual_seed(3)))
    assert torch.equal(run(0.7), run(0.7))
    assert not torch.allclose(run(0.7), run(0.0))
    assert not torch.allclose(run(0.7), run(0.7, seed=4))


@pytest.mark.parametrize(("eta", "method"), [(-0.1, "euler"), (1.5, "euler"), (0.5, "heun")])
def test_eta_out_of_range_or_with_heun_is_refused(eta, method):
    flow = _flow(LinearField())
    cond, mask = _cond()
    with pytest.raises(StarError, match="eta"):
        flow.sample(cond, mask, 4, steps=2, cfg=1.0, eta=eta, method=method)
