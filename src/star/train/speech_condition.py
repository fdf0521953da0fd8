"""Stage 2(b): fine-tune the text-to-audio generator on speech, as STAR does.

Each training clip is conditioned on one of its *spoken* prompts, run through the frozen speech encoder
(features from the shared FeatureCache) and the frozen stage-1 bridge, instead of its caption's text
tokens. A fraction `p_text` of items keeps the text condition so the same weights still serve text
prompts. The bridge is frozen, so its tokens are computed once per prompt and cached; with
`train_projection` only the bridge's body is frozen: its hidden states are cached and the output
projection trains with the generator (STAR's "unfreeze the projection" variant), and each exported
checkpoint then holds the tuned bridge (`bridge.*`) beside the generator.

    b batch, q bridge queries, n text tokens, c condition width (384)
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from star.bridge.model import StageOneConfig, StageOneModel, load_stage_one, save_stage_one
from star.config import JsonConfig
from star.data.manifest import read_manifest
from star.errors import StarError
from star.generator import FlowMatching, save_generator
from star.generator.dit import repeat_for_slots
from star.train.bridge_task import row_categories
from star.train.generator_task import GeneratorTask, GeneratorTaskConfig, build_task
from star.train.trainer import TrainConfig, Trainer


@dataclass
class SpeechFinetuneConfig(JsonConfig):
    generator: str = "configs/generator_text.json"  # GeneratorTaskConfig: sounds manifest, batching
    init_from: str = ""  # stage-2(a) folder holding generator.safetensors/json
    prompts: str = ""  # prompts.jsonl; each line's sound_id names a line of the sounds manifest
    bridge: str = ""  # stage-1 folder holding bridge.safetensors/json
    feature_cache: str = "runs/cache/features"  # shared with stage-1 training, so nothing is re-encoded
    p_text: float = 0.3
    # Spoken single-event prompts with no clip of their own (`star.bridge.expand --phrasings`): a
    # single-event clip is conditioned on one of its category's with probability p_extra, so the generator
    # meets more ways of asking for each sound than the corpus' own phrasings.
    extra_prompts: list[str] = field(default_factory=list)
    p_extra: float = 0.0
    train_projection: bool = False  # also fine-tune the bridge's output projection (the rest stays frozen)
    # > 0: the generator reads the bridge's tokens as time slots (GeneratorConfig.time_slots; a slots bridge)
    time_slots: int = 0
    out_dir: str = "runs/generator_speech"
    train: TrainConfig = field(default_factory=TrainConfig)


@torch.no_grad()
def bridge_tokens(prompts: list[dict], bridge_folder: str | Path, cache_root: str | Path,
                  batch: int = 32, hidden: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Spoken prompts -> frozen bridge tokens [p, q, c] (float16) and masks [p, q].

    `hidden`: the states before the bridge's output projection instead of the tokens.
    """
    from star.encoders import build_speech_encoder
    from star.encoders.cache import FeatureCache

    stage_one = load_stage_one(bridge_folder)
    encoder = build_speech_encoder(stage_one.cfg.speech_encoder)
    feats = FeatureCache(cache_root, encoder.name).get_or_encode([p["speech"] for p in prompts], encoder)
    tokens, masks = [], []
    for i in tqdm(range(0, len(feats), batch), desc="bridge tokens", leave=False):
        chunk = [torch.from_numpy(np.asarray(f, dtype=np.float32)) for f in feats[i : i + batch]]
        t = max(f.shape[0] for f in chunk)
        frames = torch.zeros(len(chunk), t, chunk[0].shape[1])  # [b, t, d]
        mask = torch.zeros(len(chunk), t, dtype=torch.bool)
        for j, f in enumerate(chunk):
            frames[j, : f.shape[0]], mask[j, : f.shape[0]] = f, True
        states = stage_one.bridge.hidden(frames, mask)
        tok, tok_mask = stage_one.bridge.project(states)
        tokens.append((states if hidden else tok).half())
        masks.append(tok_mask)
    return torch.cat(tokens), torch.cat(masks)


def single_category(row: dict) -> str | None:
    """The one event category of a clip or prompt row, or None for scenes and unlabelled rows."""
    cats = row_categories(row)
    return cats[0] if len(cats) == 1 else None


class SpeechCondition:
    """Items -> bridge tokens of one of their spoken prompts (or, with probability p_text, text tokens).

    Prompts without a `sound_id` are category-level extras: a single-event item draws one of its
    category's with probability `p_extra` (after the text draw).

    With `hidden` (cached pre-projection states instead of tokens) a speech row's tokens are left as
    zeros and the states go to the model as `cond_inputs` {"hidden", "is_speech"}: `ProjectionTuned`
    projects them itself, so the projection gets gradients.

    For a time-slot generator (`slots` > 0) a text row is repeated into every slot: words are not time slots.
    """

    def __init__(self, prompts: list[dict], tokens: torch.Tensor, masks: torch.Tensor, text: Any, p_text: float,
                 hidden: bool = False, p_extra: float = 0.0, slots: int = 0):
        self.by_sound: dict[str, list[int]] = {}
        self.by_category: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            if p.get("sound_id"):
                self.by_sound.setdefault(p["sound_id"], []).append(i)
            elif category := single_category(p):
                self.by_category.setdefault(category, []).append(i)
        self.tokens, self.masks, self.text, self.p_text, self.hidden = tokens, masks, text, p_text, hidden
        self.p_extra, self.slots = p_extra, slots

    def __call__(self, items: list[dict], rng: np.random.Generator | None = None):
        rows: list[tuple[torch.Tensor, torch.Tensor]] = []
        picks: list[int] = []  # per row: its prompt's index, -1 for a text row
        for it in items:
            choices = self.by_sound.get(it["id"])
            use_text = not choices or (rng is not None and rng.random() < self.p_text)
            extras = self.by_category.get(single_category(it) or "")
            if not use_text and extras and rng is not None and rng.random() < self.p_extra:
                choices = extras
            if use_text:
                tok, mask = self.text([it], rng)
                if self.slots:
                    tok, mask = repeat_for_slots(tok, mask, self.slots)
                rows.append((tok[0], mask[0]))
                picks.append(-1)
            else:
                k = choices[0] if rng is None else choices[int(rng.integers(len(choices)))]
                rows.append((torch.zeros(0, 0) if self.hidden else self.tokens[k].float(), self.masks[k]))
                picks.append(k)
        width = max(t.shape[1] for t, _ in rows)  # hidden speech rows are placeholders of width 0
        n = max(m.shape[0] for _, m in rows)
        if self.hidden:  # room for the projected tokens even when every row of the batch is text
            n = max(n, self.masks.shape[1])
        tokens = torch.zeros(len(rows), n, width)  # [b, n, c]
        mask = torch.zeros(len(rows), n, dtype=torch.bool)  # [b, n]
        for i, (t, m) in enumerate(rows):
            tokens[i, : t.shape[0], : t.shape[1]], mask[i, : m.shape[0]] = t, m
        if not self.hidden:
            return tokens, mask
        is_speech = torch.tensor([k >= 0 for k in picks])  # [b]
        states = torch.zeros(len(rows), *self.tokens.shape[1:])  # [b, ...]; zeros for text rows
        for i, k in enumerate(picks):
            if k >= 0:
                states[i] = self.tokens[k].float()
        return tokens, mask, {"hidden": states, "is_speech": is_speech}


class ProjectionTuned(nn.Module):
    """The generator plus the stage-1 model whose bridge projection trains with it (the rest frozen).

    Speech rows of a batch arrive as cached hidden states and are projected here, inside the forward
    pass, so DDP and EMA treat the projection like any other parameter.
    """

    def __init__(self, generator: FlowMatching, stage_one: StageOneModel):
        super().__init__()
        self.generator, self.stage_one = generator, stage_one
        stage_one.requires_grad_(False)
        stage_one.bridge.projection().requires_grad_(True)
        self.cfg = generator.cfg

    def forward(self, mel: torch.Tensor, cond: torch.Tensor, cond_mask: torch.Tensor,
                mel_mask: torch.Tensor | None = None, hidden: torch.Tensor | None = None,
                is_speech: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if hidden is not None and is_speech is not None:
            tokens, _ = self.stage_one.bridge.project(hidden)  # [b, q, c]
            q = tokens.shape[1]
            if q > cond.shape[1] or tokens.shape[2] != self.cfg.cond_dim:
                raise StarError(f"bridge tokens {tuple(tokens.shape[1:])} do not fit the condition {tuple(cond.shape[1:])}")
            if cond.shape[2] == 0:  # a batch of speech rows only
                cond = torch.zeros(*cond.shape[:2], tokens.shape[2])
            projected = torch.cat([tokens, cond[:, q:]], dim=1)  # [b, n, c]
            cond = torch.where(is_speech[:, None, None], projected, cond)
        return self.generator(mel, cond, cond_mask, mel_mask, **kwargs)


class ProjectionTunedTask(GeneratorTask):
    """Stage 2(b) with a trainable bridge projection: checkpoints hold the generator and the tuned bridge."""

    def export(self, model: ProjectionTuned, folder: str | Path) -> None:
        save_generator(model.generator, folder)
        save_stage_one(model.stage_one, folder)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (a few MB for a bridge)."""
    if not path.is_file():
        raise StarError(f"bridge weights not found: {path}")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_prompt_sounds(prompts: list[dict], train_items: list[dict], prompts_path: str, manifest: str) -> None:
    """Training prompts must name sounds of the generator's own manifest: one that does not would never be
    drawn (items pick their prompts by sound id), and the run would silently train without it."""
    if not train_items:  # streamed shards hold no list of items to check against
        return
    known = {it["id"] for it in train_items}
    orphans = [p["id"] for p in prompts
               if p.get("sound_id") and p.get("split", "train") == "train" and p["sound_id"] not in known]
    if orphans:
        raise StarError(
            f"{len(orphans)} training prompts of {prompts_path} name sounds that are not in the generator's "
            f"manifest {manifest} (e.g. {orphans[0]}): point the generator config's manifest at the sounds "
            "these prompts were built with"
        )


def finetune_speech(config_path: str | Path) -> dict[str, Any]:
    """Stage 2(b): start from the stage-2(a) weights and train on spoken-prompt conditions (resumable)."""
    cfg = SpeechFinetuneConfig.load(config_path)
    task_cfg = GeneratorTaskConfig.load(cfg.generator)
    if not cfg.init_from:
        raise StarError("stage 2(b) needs init_from: a stage-2(a) generator folder (train stage 2a first)")
    task_cfg.init_from = cfg.init_from  # stage 2a's weights, shape and data statistics
    # Stage 2a's overrides were applied when it started (its saved config holds them); time slots are 2b's own.
    task_cfg.init_overrides = {"time_slots": cfg.time_slots} if cfg.time_slots else {}
    if cfg.time_slots and not StageOneConfig.load(Path(cfg.bridge) / "bridge.json").order_slots:
        raise StarError(f"time_slots needs a slots bridge (order_slots); {cfg.bridge} has none")
    task_cfg.train = cfg.train
    torch.set_num_threads(cfg.train.threads)
    out = Path(cfg.out_dir)
    task = build_task(task_cfg, out, ProjectionTunedTask if cfg.train_projection else GeneratorTask)

    prompts = read_manifest(cfg.prompts)  # speech paths resolved against the manifest's folder
    for extra in cfg.extra_prompts:
        rows = [r for r in read_manifest(extra) if single_category(r) and r.get("split", "train") == "train"]
        prompts += [{**r, "sound_id": None} for r in rows]
    check_prompt_sounds(prompts, task.train_items, cfg.prompts, task_cfg.manifest)
    # The cache is only valid for this bridge's weights and these prompts: a retrained bridge re-encodes.
    key = {"bridge": file_digest(Path(cfg.bridge) / "bridge.safetensors"), "prompts": [p["id"] for p in prompts],
           "hidden": cfg.train_projection}
    cache = out / "cache" / "bridge_tokens.pt"
    stored = torch.load(cache, weights_only=True) if cache.is_file() else {}
    if stored.get("key") == key:
        tokens, masks = stored["tokens"], stored["masks"]
    else:
        tokens, masks = bridge_tokens(prompts, cfg.bridge, cfg.feature_cache, hidden=cfg.train_projection)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"key": key, "tokens": tokens, "masks": masks}, cache)
    task.condition = SpeechCondition(prompts, tokens, masks, task.condition, cfg.p_text, hidden=cfg.train_projection,
                                     p_extra=cfg.p_extra, slots=cfg.time_slots)
    if cfg.train_projection:
        task.model = ProjectionTuned(task.model, load_stage_one(cfg.bridge).train())
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "finetune_config.json")
    return Trainer(task, cfg.train, out).fit()


def train_any_generator(config_path: str | Path) -> dict[str, Any]:
    """`star train generator`: a stage-2(b) config (it names a `bridge`) fine-tunes on speech; else stage 2(a)."""
    from star.train.generator_task import train_generator

    data = json.loads(Path(config_path).read_text())
    return finetune_speech(config_path) if "bridge" in data else train_generator(config_path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Stage 2(b): fine-tune the generator on spoken prompts.")
    parser.add_argument("config", help="SpeechFinetuneConfig JSON (e.g. configs/generator_speech.json)")
    args = parser.parse_args(argv)
    print(json.dumps(finetune_speech(args.config)))


if __name__ == "__main__":
    main()
