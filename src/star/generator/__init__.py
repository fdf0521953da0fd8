"""The flow-matching generator: DiT backbone over log-mel patches + rectified-flow objective and sampler."""

from star.generator.dit import DiT, GeneratorConfig
from star.generator.flow import FlowMatching, build_generator, load_generator, save_generator

__all__ = ["DiT", "FlowMatching", "GeneratorConfig", "build_generator", "load_generator", "save_generator"]
