"""The one place that turns a BridgeConfig into a Bridge module."""

from __future__ import annotations

from star.bridge.base import Bridge, BridgeConfig


def build_bridge(cfg: BridgeConfig) -> Bridge:
    cfg.validate()
    if cfg.kind == "qformer":
        from star.bridge.qformer import QFormerBridge

        return QFormerBridge(cfg)
    from star.bridge.mlp import MLPBridge

    return MLPBridge(cfg)
