"""STAR: end-to-end speech-to-audio generation.

    from star import Pipeline
    pipe = Pipeline.from_pretrained()
    wav, sr = pipe.generate(speech="prompt.wav")
"""

from star.errors import StarError

__all__ = ["Pipeline", "StarError"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Imported lazily so `import star` stays cheap (no torch import for `star --help`).
    if name == "Pipeline":
        from star.pipeline import Pipeline

        return Pipeline
    raise AttributeError(name)
