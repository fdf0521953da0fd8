"""Stage 2(b)'s condition source: bridge tokens of a clip's spoken prompts, or its text tokens."""

import numpy as np
import pytest
import torch

from star.bridge import BridgeConfig, StageOneConfig
from star.bridge.model import StageOneModel, load_stage_one
from star.errors import StarError
from star.generator import GeneratorConfig, build_generator, load_generator
from star.train.speech_condition import (
    ProjectionTuned,
    ProjectionTunedTask,
    SpeechCondition,
    check_prompt_sounds,
    file_digest,
)


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


def test_time_slot_generators_get_text_in_every_slot():
    prompts = [{"sound_id": "a"}]
    tokens = torch.arange(4, dtype=torch.float16)[None, :, None].expand(1, 4, 4).clone()  # 4 bridge tokens
    source = SpeechCondition(prompts, tokens, torch.ones(1, 4, dtype=torch.bool), TextTokens(), 0.5, slots=2)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(40):
        cond, mask = source([{"id": "a"}, {"id": "b"}], rng)  # b has no spoken prompt: always text
        assert mask[1].tolist() == [True, True, True, True]  # 2 text tokens, once per half of the clip
        assert cond[1, :, 0].tolist() == [-1.0] * 4
        seen.add(tuple(cond[0, :, 0].tolist()))
    assert seen == {(0.0, 1.0, 2.0, 3.0), (-1.0, -1.0, -1.0, -1.0)}  # speech tokens are left as they are


def test_category_extras_reach_single_event_clips_of_their_category_only():
    dog = [{"category": "dog", "onset": 0.0, "offset": 1.0}]
    rain = [{"category": "rain", "onset": 0.0, "offset": 1.0}]
    prompts = [{"sound_id": "a", "events": dog}, {"sound_id": "s", "events": dog + rain},
               {"sound_id": None, "events": dog}, {"sound_id": None, "events": rain}]
    tokens = torch.arange(4, dtype=torch.float16)[:, None, None].expand(4, 2, 4).clone()
    source = SpeechCondition(prompts, tokens, torch.ones(4, 2, dtype=torch.bool), TextTokens(), 0.0, p_extra=0.5)
    rng = np.random.default_rng(0)
    single = [float(source([{"id": "a", "events": dog}], rng)[0][0, 0, 0]) for _ in range(400)]
    assert set(single) == {0.0, 2.0}  # its own prompt or the dog extra, never the rain one
    assert 0.4 < single.count(2.0) / len(single) < 0.6
    scene = {float(source([{"id": "s", "events": dog + rain}], rng)[0][0, 0, 0]) for _ in range(50)}
    assert scene == {1.0}  # scenes keep their own prompts
    assert float(source([{"id": "a", "events": dog}], rng=None)[0][0, 0, 0]) == 0.0  # evaluation: no draw


def test_training_prompts_must_name_sounds_the_generator_trains_on():
    items = [{"id": "a"}, {"id": "b"}]
    ok = [{"id": "p0", "sound_id": "a"}, {"id": "p1", "sound_id": None}, {"id": "v0", "sound_id": "val", "split": "validation"}]
    check_prompt_sounds(ok, items, "p.jsonl", "s.jsonl")  # extras and validation prompts are not checked
    check_prompt_sounds([{"id": "p2", "sound_id": "gone"}], [], "p.jsonl", "s.jsonl")  # streamed: nothing to check
    with pytest.raises(StarError, match="1 training prompts of p.jsonl name sounds that are not in .* s.jsonl"):
        check_prompt_sounds(ok + [{"id": "p2", "sound_id": "gone"}], items, "p.jsonl", "s.jsonl")


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


# ---- unfreezing the bridge's output projection ------------------------------------------------
def _tiny_stage_one(kind: str = "qformer") -> StageOneModel:
    bridge = BridgeConfig(kind=kind, in_dim=8, out_dim=4, width=6, queries=3, layers=1, heads=2, ffn_mult=2,
                          mlp_tokens=3, dropout=0.0)
    torch.manual_seed(0)
    return StageOneModel(StageOneConfig(bridge=bridge, vocab=["a", "b"], text_dim=4, captions=["x"]))


@pytest.mark.parametrize("kind", ["qformer", "mlp"])
def test_bridge_is_its_projection_of_its_hidden_states(kind):
    bridge = _tiny_stage_one(kind).bridge.eval()
    frames, mask = torch.randn(2, 10, 8), torch.ones(2, 10, dtype=torch.bool)
    tokens, _ = bridge(frames, mask)
    again, _ = bridge.project(bridge.hidden(frames, mask))
    assert torch.equal(tokens, again) and tokens.shape == (2, 3, 4)


def test_hidden_mode_leaves_speech_rows_to_the_model():
    prompts = [{"sound_id": "a"}, {"sound_id": "b"}]
    states = torch.stack([torch.full((3, 6), 1.0), torch.full((3, 6), 2.0)]).half()  # [p, q, w]
    source = SpeechCondition(prompts, states, torch.ones(2, 3, dtype=torch.bool), TextTokens(), 0.0, hidden=True)
    cond, mask, inputs = source([{"id": "b"}, {"id": "text-only"}], rng=None)
    assert cond.shape == (2, 3, 4) and (cond[0] == 0).all() and (cond[1, :2] == -1).all()
    assert mask.tolist() == [[True] * 3, [True, True, False]]
    assert inputs["is_speech"].tolist() == [True, False]
    assert (inputs["hidden"][0] == 2).all() and (inputs["hidden"][1] == 0).all()
    cond, mask, inputs = source([{"id": "text-only"}], rng=None)  # text rows only: still room for 3 tokens
    assert cond.shape == (1, 3, 4) and mask.tolist() == [[True, True, False]]


def test_projection_tuned_trains_only_the_projection_and_exports_the_bridge(tmp_path):
    stage_one = _tiny_stage_one()
    body_before = {k: v.clone() for k, v in stage_one.state_dict().items() if not k.startswith("bridge.out_proj")}
    proj_before = stage_one.bridge.out_proj.weight.detach().clone()
    generator = build_generator(GeneratorConfig(patch=4, dim=16, depth=2, heads=2, mlp_ratio=2.0, cond_dim=4,
                                                n_mels=8, mel_mean=[0.0] * 8, mel_std=[1.0] * 8))
    with torch.no_grad():  # an untrained DiT's zero-initialised output would pass no gradient back
        for p in generator.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    model = ProjectionTuned(generator, stage_one)
    prompts = [{"sound_id": "a"}]
    states = torch.randn(1, 3, 6).half()
    source = SpeechCondition(prompts, states, torch.ones(1, 3, dtype=torch.bool), TextTokens(), 0.5, hidden=True)
    rng = np.random.default_rng(0)
    cond, mask, inputs = source([{"id": "a"}] * 4, rng)
    assert 0 < int(inputs["is_speech"].sum()) < 4  # a mixed batch: text rows and speech rows
    mel = torch.randn(4, 8, 16)
    loss = model(mel, cond, mask, None, drop=False, **inputs)
    loss.backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert {"stage_one.bridge.out_proj.weight", "stage_one.bridge.out_proj.bias"} <= grads
    assert not any(n.startswith("stage_one.") and "out_proj" not in n for n in grads)

    # The speech rows see exactly the projection of their hidden states.
    t, noise = torch.full((4,), 0.5), torch.randn(4, 8, 16)
    manual = cond.clone()
    manual[inputs["is_speech"]] = stage_one.bridge.project(inputs["hidden"])[0][inputs["is_speech"]].detach()
    with torch.no_grad():
        assert torch.allclose(model(mel, cond, mask, None, t=t, noise=noise, drop=False, **inputs),
                              generator(mel, manual, mask, None, t=t, noise=noise, drop=False))
        stage_one.bridge.out_proj.weight.add_(0.5)
        stage_one.bridge.out_proj.weight.add_(0.5)
    ProjectionTunedTask.export(None, model, tmp_path)
    tuned = load_stage_one(tmp_path)
    assert not torch.allclose(tuned.bridge.out_proj.weight, proj_before)
    for k, v in tuned.state_dict().items():
        if k in body_before:
            assert torch.equal(v, body_before[k]), k
    assert load_generator(tmp_path).cfg.cond_dim == 4
