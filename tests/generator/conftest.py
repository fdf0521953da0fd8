import pytest
from generator_helpers import tiny_config

from star.generator import GeneratorConfig


@pytest.fixture
def cfg() -> GeneratorConfig:
    return tiny_config()
