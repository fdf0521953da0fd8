"""MiniLM text encoder: shapes, masks, sentence-transformers parity, semantic ordering, errors."""

from __future__ import annotations

import pytest
import torch

from star.encoders import build_text_encoder
from star.encoders.text import MINILM_DIM, MiniLMTextEncoder
from star.errors import StarError


@pytest.fixture(scope="module")
def minilm() -> MiniLMTextEncoder:
    return build_text_encoder("minilm")


def test_builder_caches_instance(minilm: MiniLMTextEncoder) -> None:
    assert build_text_encoder("minilm") is minilm
    assert minilm.dim == MINILM_DIM == 384


def test_encode_shapes_and_mask(minilm: MiniLMTextEncoder) -> None:
    texts = ["a dog barking", "rain falling on a tin roof while thunder rolls in the distance"]
    tokens, mask = minilm.encode(texts)
    assert tokens.dtype == torch.float32 and mask.dtype == torch.bool
    assert tokens.shape[0] == 2 and tokens.shape[2] == 384 and mask.shape == tokens.shape[:2]
    # [CLS] a dog barking [SEP] is shorter than the second caption: its tail is padding
    assert mask[1].all() and not mask[0].all()
    assert mask[0].sum() == 5
    assert torch.all(tokens[0, ~mask[0]] == 0)


def test_encode_truncates_to_32_tokens(minilm: MiniLMTextEncoder) -> None:
    tokens, mask = minilm.encode([" ".join(["dog"] * 100)])
    assert tokens.shape == (1, 32, 384) and mask.all()


def test_padding_does_not_change_tokens(minilm: MiniLMTextEncoder) -> None:
    single, _ = minilm.encode(["a dog barking"])
    batch, mask = minilm.encode(["a dog barking", "a very long caption about many different sounds at once"])
    n = int(mask[0].sum())
    assert torch.allclose(single[0], batch[0, :n], atol=1e-4)


def test_embed_matches_sentence_transformers(minilm: MiniLMTextEncoder) -> None:
    from sentence_transformers import SentenceTransformer

    from star.encoders.text import minilm_path

    texts = ["a dog barking", "rain falling"]
    ref = torch.from_numpy(SentenceTransformer(str(minilm_path()), device="cpu").encode(texts))
    ours = minilm.embed(texts)
    assert ours.shape == (2, 384)
    assert torch.allclose(ours.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(ours, ref, atol=1e-4)


def test_similar_captions_are_closer(minilm: MiniLMTextEncoder) -> None:
    a, b, c = minilm.embed(["a dog barking", "dogs bark loudly", "rain falling"])
    assert float(a @ b) > float(a @ c) + 0.3
    assert float(a @ b) > float(b @ c) + 0.3


@pytest.mark.parametrize("bad", [[], "a dog", [""], ["ok", 3]])
def test_invalid_input(minilm: MiniLMTextEncoder, bad) -> None:
    with pytest.raises(StarError):
        minilm.encode(bad)


def test_unknown_text_encoder() -> None:
    with pytest.raises(StarError, match="minilm"):
        build_text_encoder("bert-huge")


def test_hf_text_encoder_tiny_local_model(tmp_path) -> None:
    import transformers as tf

    from star.encoders.text import HFTextEncoder, minilm_path

    tf.AutoTokenizer.from_pretrained(str(minilm_path())).save_pretrained(tmp_path)
    cfg = tf.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    tf.BertModel(cfg).save_pretrained(tmp_path)
    enc = build_text_encoder(f"hf:{tmp_path}")
    assert isinstance(enc, HFTextEncoder) and enc.dim == 32
    tokens, mask = enc.encode(["a dog barking", "rain"])
    assert tokens.shape == (2, 5, 32) and mask.sum(1).tolist() == [5, 3]
    emb = enc.embed(["a dog barking"])
    assert emb.shape == (1, 32) and torch.allclose(emb.norm(dim=-1), torch.ones(1), atol=1e-5)
