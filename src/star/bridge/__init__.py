"""The bridge: speech-encoder frames -> semantic condition tokens (Q-Former, or the MLP ablation),
its stage-1 pre-training model (event head + alignment to caption text embeddings), and `listen`."""

from star.bridge.base import Bridge, BridgeConfig
from star.bridge.builders import build_bridge
from star.bridge.listen import NO_REQUEST, Listener, ListenResult
from star.bridge.model import (
    ListenThresholds,
    StageOneConfig,
    StageOneModel,
    load_bridge,
    load_stage_one,
    save_stage_one,
)

__all__ = [
    "NO_REQUEST",
    "Bridge",
    "BridgeConfig",
    "ListenResult",
    "ListenThresholds",
    "Listener",
    "StageOneConfig",
    "StageOneModel",
    "build_bridge",
    "load_bridge",
    "load_stage_one",
    "save_stage_one",
]
