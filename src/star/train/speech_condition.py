"""Stage 2(b): fine-tune the text-to-audio generator on speech, as STAR does.

Each training clip is conditioned on one of its *spoken* prompts, run through the frozen speech encoder
(features from the shared FeatureCache) and the frozen stage-1 bridge, instead of its caption's text
tokens. A fraction `p_text` of items keeps the text condition so the same weights still serve text
prompts. The bridge is frozen, so its tokens are computed once per prompt and cached.

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
from tqdm import tqdm

from star.config import JsonConfig
from star.data.manifest import read_manifest
from star.errors import StarError
from star.generator import GeneratorConfig
from star.train.generator_task import GeneratorTask, GeneratorTaskConfig
from star.train.trainer import TrainConfig, Trainer
from star.weights import load_weights


@dataclass
class SpeechFinetuneConfig(JsonConfig):
    generator: str = "configs/generator_text.json"  # GeneratorTaskConfig: sounds manifest, batching
    init_from: str = ""  # stage-2(a) folder holding generator.safetensors/json
    prompts: str = ""  # prompts.jsonl; each line's sound_id names a line of the sounds manifest
    bridge: str = ""  # stage-1 folder holding bridge.safetensors/json
    feature_cache: str = "runs/cache/features"  # shared with stage-1 training, so nothing is re-encoded
    p_text: float = 0.3
    out_dir: str = "runs/generator_speech"
    train: TrainConfig = field(default_factory=TrainConfig)


@torch.no_grad()
def bridge_tokens(prompts: list[dict], bridge_folder: str | Path, cache_root: str | Path,
                  batch: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Spoken prompts -> frozen bridge tokens [p, q, c] (float16) and masks [p, q]."""
    from star.bridge.model import load_stage_one
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
        tok, tok_mask = stage_one.bridge(frames, mask)
        tokens.append(tok.half())
        masks.append(tok_mask)
    return torch.cat(tokens), torch.cat(masks)


class SpeechCondition:
    """Items -> bridge tokens of one of their spoken prompts (or, with probability p_text, text tokens)."""

    def __init__(self, prompts: list[dict], tokens: torch.Tensor, masks: torch.Tensor, text: Any, p_text: float):
        self.by_sound: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            self.by_sound.setdefault(p["sound_id"], []).append(i)
        self.tokens, self.masks, self.text, self.p_text = tokens, masks, text, p_text

    def __call__(self, items: list[dict], rng: np.random.Generator | None = None):
        rows: list[tuple[torch.Tensor, torch.Tensor]] = []
        for it in items:
            choices = self.by_sound.get(it["id"])
            use_text = not choices or (rng is not None and rng.random() < self.p_text)
            if use_text:
                tok, mask = self.text([it], rng)
                rows.append((tok[0], mask[0]))
            else:
                k = choices[0] if rng is None else choices[int(rng.integers(len(choices)))]
                rows.append((self.tokens[k].float(), self.masks[k]))
        n = max(t.shape[0] for t, _ in rows)
        tokens = torch.zeros(len(rows), n, rows[0][0].shape[1])  # [b, n, c]
        mask = torch.zeros(len(rows), n, dtype=torch.bool)  # [b, n]
        for i, (t, m) in enumerate(rows):
            tokens[i, : t.shape[0]], mask[i, : m.shape[0]] = t, m
        return tokens, mask


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (a few MB for a bridge)."""
    if not path.is_file():
        raise StarError(f"bridge weights not found: {path}")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def finetune_speech(config_path: str | Path) -> dict[str, Any]:
    """Stage 2(b): start from the stage-2(a) weights and train on spoken-prompt conditions (resumable)."""
    cfg = SpeechFinetuneConfig.load(config_path)
    task_cfg = GeneratorTaskConfig.load(cfg.generator)
    init = Path(cfg.init_from)
    if not (init / "generator.json").is_file():
        raise StarError(f"init_from {init} holds no generator.json (train stage 2a first)")
    task_cfg.model = GeneratorConfig.load(init / "generator.json")  # same data statistics as stage 2a
    task_cfg.train = cfg.train
    torch.set_num_threads(cfg.train.threads)
    out = Path(cfg.out_dir)
    task = GeneratorTask(task_cfg, out_dir=out)
    load_weights(task.model, init, "generator")

    prompts = read_manifest(cfg.prompts)  # speech paths resolved against the manifest's folder
    # The cache is only valid for this bridge's weights and these prompts: a retrained bridge re-encodes.
    key = {"bridge": file_digest(Path(cfg.bridge) / "bridge.safetensors"), "prompts": [p["id"] for p in prompts]}
    cache = out / "cache" / "bridge_tokens.pt"
    stored = torch.load(cache, weights_only=True) if cache.is_file() else {}
    if stored.get("key") == key:
        tokens, masks = stored["tokens"], stored["masks"]
    else:
        tokens, masks = bridge_tokens(prompts, cfg.bridge, cfg.feature_cache)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"key": key, "tokens": tokens, "masks": masks}, cache)
    task.condition = SpeechCondition(prompts, tokens, masks, task.condition, cfg.p_text)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "finetune_config.json")
    return Trainer(task, cfg.train, out).fit()


def train_any_generator(config_path: str | Path) -> dict[str, Any]:
    """`star train generator`: a stage-2(b) config (it names `init_from`) fine-tunes on speech; else stage 2(a)."""
    from star.train.generator_task import train_generator

    data = json.loads(Path(config_path).read_text())
    return finetune_speech(config_path) if "init_from" in data else train_generator(config_path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Stage 2(b): fine-tune the generator on spoken prompts.")
    parser.add_argument("config", help="SpeechFinetuneConfig JSON (e.g. configs/generator_speech.json)")
    args = parser.parse_args(argv)
    print(json.dumps(finetune_speech(args.config)))


if __name__ == "__main__":
    main()
