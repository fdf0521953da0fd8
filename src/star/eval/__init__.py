"""Evaluation: metrics, the aisfx embedder, the independent event classifier and clip scoring.

Imports stay lazy (no torch/model loading here); use the submodules:
`star.eval.metrics`, `star.eval.aisfx_embed`, `star.eval.classifier`, `star.eval.train_classifier`,
`star.eval.scoring` (`evaluate_clips`).
"""
