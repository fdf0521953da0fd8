"""`hf:` speech encoders with tiny randomly-initialised HuBERT / WavLM / Whisper saved locally (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from star.encoders import build_speech_encoder
from star.encoders.speech import HFSpeechEncoder
from star.errors import StarError


def _save_tiny(kind: str, out: Path) -> Path:
    import transformers as tf

    torch.manual_seed(0)
    # strides 5*4*16 = 320 samples: 50 frames/s like the real models
    conv = {
        "conv_dim": (32, 32, 32),
        "conv_stride": (5, 4, 16),
        "conv_kernel": (10, 8, 16),
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 2,
    }
    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 37}
    if kind == "hubert":
        model = tf.HubertModel(tf.HubertConfig(**small, **conv))
        fe = tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True)
    elif kind == "wavlm":
        model = tf.WavLMModel(tf.WavLMConfig(**small, **conv, num_buckets=32, max_bucket_distance=64))
        fe = tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True)
    else:
        cfg = tf.WhisperConfig(
            d_model=32,
            encoder_layers=2,
            encoder_attention_heads=2,
            encoder_ffn_dim=37,
            decoder_layers=1,
            decoder_attention_heads=2,
            decoder_ffn_dim=37,
            vocab_size=100,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
            num_mel_bins=80,
            max_source_positions=200,
            max_target_positions=16,
        )
        model = tf.WhisperModel(cfg)
        fe = tf.WhisperFeatureExtractor(feature_size=80, chunk_length=4)  # 4 s window = 200 frames
    path = out / kind
    model.save_pretrained(path)
    fe.save_pretrained(path)
    return path


@pytest.fixture(scope="module", params=["hubert", "wavlm", "whisper"])
def tiny(request, tmp_path_factory: pytest.TempPathFactory) -> HFSpeechEncoder:
    path = _save_tiny(request.param, tmp_path_factory.mktemp("hf"))
    enc = build_speech_encoder(f"hf:{path}")
    assert isinstance(enc, HFSpeechEncoder) and enc.name == f"hf:{path}"
    return enc


def test_shapes_and_mask(tiny: HFSpeechEncoder, dog_wav: np.ndarray, rain_wav: np.ndarray) -> None:
    assert tiny.dim == 32 and tiny.frame_rate == 50.0
    frames, mask = tiny.encode([dog_wav, rain_wav])
    t = [tiny.num_frames(dog_wav.size), tiny.num_frames(rain_wav.size)]
    assert frames.shape == (2, max(t), 32) and mask.sum(1).tolist() == t
    assert torch.isfinite(frames).all() and torch.all(frames[~mask] == 0)
    # frame count follows the encoder's frame rate (within one frame of the receptive-field edge)
    assert abs(t[0] - dog_wav.size / 16000 * tiny.frame_rate) <= 2


def test_batch_matches_single(tiny: HFSpeechEncoder, dog_wav: np.ndarray, rain_wav: np.ndarray) -> None:
    batch, mask = tiny.encode([rain_wav, dog_wav])
    single = torch.from_numpy(tiny.encode_one(dog_wav))
    assert torch.allclose(batch[1, : int(mask[1].sum())], single, atol=1e-5)


def test_very_short_input(tiny: HFSpeechEncoder) -> None:
    frames, mask = tiny.encode([np.full(50, 0.01, np.float32)])
    assert frames.shape[0] == 1 and mask.sum() >= 1 and torch.isfinite(frames).all()


def test_unsupported_model_type(tmp_path: Path) -> None:
    import transformers as tf

    tf.BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
    ).save_pretrained(tmp_path)
    with pytest.raises(StarError, match="not supported"):
        build_speech_encoder(f"hf:{tmp_path}")


def test_missing_local_model(tmp_path: Path) -> None:
    with pytest.raises(StarError):
        build_speech_encoder(f"hf:{tmp_path / 'nothing-here'}")


def test_whisper_is_cut_to_its_window(tiny: HFSpeechEncoder, dog_wav: np.ndarray) -> None:
    if not tiny.is_whisper:
        pytest.skip("only Whisper has a fixed input window")
    frames, mask = tiny.encode([np.resize(dog_wav, 5 * 16000)])  # the tiny model's window is 4 s
    assert frames.shape == (1, 200, 32) and mask.all()
