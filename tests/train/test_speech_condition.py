"""Stage 2(b)'s condition source: bridge tokens of a clip's spoken prompts, or its text tokens."""

import numpy as np
import torch

from star.train.speech_condition import SpeechCondition, file_digest


class TextTokens:
    """Text condition stand-in: 2 tokens of value -1 per item."""

    def __call__(self, items, rng=None):
        return torch.full((len(items), 2, 4), -1.0), torch.ones(len(items), 2, dtype=torch.bool)


def _condition(p_text: float) -> SpeechCondition:
    prompts = [{"sound_id": "a"}, {"sound_id": "a"}, {"sound_id": "b"}]
    tokens = torch.arange(3, dtype=torch.float16)[:, None, None].expand(3, 3, 4).clone()  # prompt k -> value k
    masks = torch.tensor([[True, True, True], [True, True, False], [True, False, False]])
    return SpeechCondition(prompts, tokens, masks, TextTokens(), p_text)


def test_items_take_their_own_prompts_tokens_and_masks():
    cond, mask = _condition(p_text=0.0)([{"id": "b"}, {"id": "a"}], rng=None)
    assert cond.shape == (2, 3, 4) and mask.dtype == torch.bool
    assert cond[0, 0, 0] == 2 and mask[0].tolist() == [True, False, False]
    assert cond[1, 0, 0] == 0 and mask[1].all()  # deterministic: the first prompt of the clip


def test_random_prompts_and_text_share():
    source = _condition(p_text=0.3)
    rng = np.random.default_rng(0)
    values = [float(source([{"id": "a"}], rng)[0][0, 0, 0]) for _ in range(400)]
    text = values.count(-1.0) / len(values)
    assert 0.22 < text < 0.38  # about p_text of the items keep the text condition
    assert {0.0, 1.0} <= set(values)  # both of clip a's spoken prompts are drawn


def test_clip_without_spoken_prompt_falls_back_to_text_padded_to_the_batch():
    cond, mask = _condition(p_text=0.0)([{"id": "a"}, {"id": "no-speech"}], rng=None)
    assert cond.shape == (2, 3, 4)
    assert (cond[1, :2] == -1).all() and mask[1].tolist() == [True, True, False]


def test_token_cache_key_follows_the_bridge_weights(tmp_path):
    weights = tmp_path / "bridge.safetensors"
    weights.write_bytes(b"one")
    first = file_digest(weights)
    weights.write_bytes(b"two")
    assert file_digest(weights) != first
