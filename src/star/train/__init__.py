"""One small trainer shared by every stage (bridge, generator, vocoder)."""

from star.train.trainer import TrainConfig, Trainer

__all__ = ["TrainConfig", "Trainer"]
