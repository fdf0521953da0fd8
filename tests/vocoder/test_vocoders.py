"""Vocoder contract: lengths, range, Griffin-Lim quality on real audio, save/load, builder errors."""

import pytest
import torch

from star.audio import MelSpec
from star.errors import StarError
from star.vocoder import (
    GriffinLimVocoder,
    NeuralVocoder,
    Vocoder,
    VocoderConfig,
    build_vocoder,
    load_vocoder,
    save_vocoder,
)
from star.vocoder.loss import MultiResolutionSTFTLoss, spectral_distances

DEBUG = VocoderConfig(dim=32, intermediate=64, layers=2)


def _neural(seed: int = 0) -> NeuralVocoder:
    torch.manual_seed(seed)
    return NeuralVocoder(DEBUG).eval()


@pytest.mark.parametrize("make", [_neural, lambda: GriffinLimVocoder(n_iter=4)], ids=["neural", "griffin-lim"])
@pytest.mark.parametrize("frames", [1, 2, 17, 313])
def test_output_length(make, frames):
    vocoder = make()
    mel = torch.randn(2, 64, frames) - 4
    with torch.no_grad():
        assert vocoder(mel).shape == (2, frames * 256)
        samples = max(1, frames * 256 - 100)
        assert vocoder(mel, samples=samples).shape == (2, samples)


def test_output_length_matches_melspec_round_trip():
    wav = torch.randn(1, 80000) * 0.1  # 5 s -> 313 frames -> at least 80000 samples back
    mel = MelSpec()(wav)
    assert mel.shape[-1] == 313
    with torch.no_grad():
        assert _neural()(mel, samples=80000).shape == (1, 80000)


@pytest.mark.parametrize("make", [_neural, lambda: GriffinLimVocoder(n_iter=4)], ids=["neural", "griffin-lim"])
def test_output_range_is_clamped(make):
    vocoder = make()
    if isinstance(vocoder, NeuralVocoder):
        torch.nn.init.constant_(vocoder.head.bias, 5.0)  # force huge magnitudes
    loud = torch.full((1, 64, 40), 9.0)  # far above any real log-mel
    with torch.no_grad():
        wav = vocoder(loud)
    assert torch.isfinite(wav).all()
    assert wav.abs().max() <= 1.0
    assert wav.abs().max() > 0.5, "the test must actually drive the output to the limit"


def test_bad_mel_shape_is_rejected():
    with pytest.raises(ValueError, match="64"):
        _neural()(torch.zeros(1, 80, 10))
    with pytest.raises(ValueError, match="64"):
        GriffinLimVocoder()(torch.zeros(64, 10))


def test_griffin_lim_round_trip_beats_noise(real_clip):
    mel = MelSpec()(real_clip)
    with torch.no_grad():
        wav = GriffinLimVocoder(n_iter=16)(mel, samples=real_clip.shape[-1])
    noise = torch.randn_like(real_clip) * real_clip.std()
    ours, ref = spectral_distances(wav, real_clip), spectral_distances(noise, real_clip)
    assert ours["mel_l1"] < 0.25 * ref["mel_l1"]
    assert ours["stft"] < 0.8 * ref["stft"]  # rain is noise-like, so noise is a fair rival here


def test_griffin_lim_magnitude_fits_mel():
    """The NNLS filterbank inverse reproduces the mel it came from (up to what 64 bands can say)."""
    wav = torch.randn(1, 8000) * 0.1
    spec = MelSpec()
    gl = GriffinLimVocoder()
    mel = spec(wav)
    mag = gl.magnitude(mel)
    assert (mag >= 0).all()
    refit = torch.log(gl.inverse.fb @ mag.clamp(min=1e-5))
    assert (refit - mel).abs().mean() < 0.05


def test_stft_loss_zero_on_identity_and_positive_otherwise():
    loss = MultiResolutionSTFTLoss()
    a, b = torch.randn(2, 4096), torch.randn(2, 4096)
    same = loss(a, a)
    assert float(same["sc"]) == pytest.approx(0.0, abs=1e-5)
    assert float(same["log_mag"]) == pytest.approx(0.0, abs=1e-5)
    diff = loss(a, b)
    assert float(diff["sc"]) > 0.5 and float(diff["log_mag"]) > 0.1


@pytest.mark.parametrize("fp16", [False, True])
def test_neural_save_load_round_trip(tmp_path, fp16):
    vocoder = _neural(seed=3)
    save_vocoder(vocoder, tmp_path, fp16=fp16)
    assert (tmp_path / "vocoder.json").is_file()
    loaded = build_vocoder(tmp_path)
    assert isinstance(loaded, NeuralVocoder) and loaded.cfg == DEBUG
    assert next(loaded.parameters()).dtype == torch.float32
    mel = torch.randn(1, 64, 30) - 4
    with torch.no_grad():
        a, b = vocoder(mel), loaded(mel)
    if fp16:
        assert torch.allclose(a, b, atol=2e-2 * float(a.abs().max()) + 1e-6)
    else:
        assert torch.equal(a, b)


def test_load_rejects_weights_of_another_shape(tmp_path):
    save_vocoder(_neural(), tmp_path)
    VocoderConfig(dim=48, intermediate=64, layers=2).save(tmp_path / "vocoder.json")
    with pytest.raises(StarError, match="shape mismatch"):
        load_vocoder(tmp_path)


def test_build_vocoder_names(tmp_path):
    assert isinstance(build_vocoder("griffin-lim"), GriffinLimVocoder)
    for vocoder in (build_vocoder("griffin-lim"), _neural()):
        assert isinstance(vocoder, Vocoder) and vocoder.sample_rate == 16000
    with pytest.raises(StarError, match="unknown vocoder 'hifigan'"):
        build_vocoder("hifigan")
    with pytest.raises(StarError, match="vocoder.safetensors"):
        build_vocoder(tmp_path)  # a folder without weights
