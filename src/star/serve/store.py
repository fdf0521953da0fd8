"""Generated clips kept for download: a private temp folder, server-made ids, least recently used evicted.

A client names a clip only by an id the server gave it; an id is looked up in memory before any path
is built, so nothing a client sends becomes a file name. The folder is removed on shutdown.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import uuid
from collections import OrderedDict
from pathlib import Path

ID_PATTERN = re.compile(r"[0-9a-f]{32}")


class AudioStore:
    """`add(wav_bytes) -> id`; `path(id, "wav"|"png")`; at most `max_items` clips on disk."""

    def __init__(self, max_items: int = 64):
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self.max_items = max_items
        self.folder = Path(tempfile.mkdtemp(prefix="star-serve-"))
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, wav_bytes: bytes) -> str:
        clip_id = uuid.uuid4().hex
        (self.folder / f"{clip_id}.wav").write_bytes(wav_bytes)
        with self._lock:
            self._ids[clip_id] = None
            while len(self._ids) > self.max_items:
                old, _ = self._ids.popitem(last=False)
                for suffix in ("wav", "png"):
                    (self.folder / f"{old}.{suffix}").unlink(missing_ok=True)
        return clip_id

    def path(self, clip_id: str, suffix: str = "wav") -> Path | None:
        """The file of a known clip (marked as recently used), or None for anything else."""
        if suffix not in ("wav", "png") or not ID_PATTERN.fullmatch(clip_id):
            return None
        with self._lock:
            if clip_id not in self._ids:
                return None
            self._ids.move_to_end(clip_id)
        return self.folder / f"{clip_id}.{suffix}"

    def __len__(self) -> int:
        return len(self._ids)

    def close(self) -> None:
        with self._lock:
            self._ids.clear()
        shutil.rmtree(self.folder, ignore_errors=True)
