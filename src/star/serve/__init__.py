"""HTTP API and web page for STAR (`star serve`): thin callers of `star.pipeline.Pipeline`."""

from star.serve.app import ServeSettings, create_app, serve

__all__ = ["ServeSettings", "create_app", "serve"]
