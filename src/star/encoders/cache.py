"""On-disk cache of frozen speech-encoder outputs, so training never re-encodes a prompt.

One float16 `.npy` of shape [t, d] per speech file, under `<root>/<encoder name>/<ab>/<key>.npy`. The key
hashes the file's absolute path, mtime, size and the encoder name: editing or replacing a file, or
switching encoder, misses the cache instead of returning stale features. Writes are atomic (temp file +
rename), so parallel workers can share one cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from star.audio import load_audio
from star.encoders.speech import SpeechEncoder
from star.errors import StarError

DEFAULT_BATCH_SIZE = 16


class FeatureCache:
    """Cache of `encoder_name` features for speech files under `root`."""

    def __init__(self, root: str | Path, encoder_name: str) -> None:
        self.root = Path(root)
        self.encoder_name = encoder_name
        # Encoder names like "hf:facebook/hubert-base" must become one safe folder name.
        self.dir = self.root / re.sub(r"[^A-Za-z0-9._-]+", "_", encoder_name)

    def key(self, path: str | Path) -> str:
        """Hash of (absolute path, mtime, size, encoder name); raises StarError for a missing file."""
        p = Path(path).resolve()
        try:
            st = p.stat()
        except OSError:
            raise StarError(f"{path}: no such speech file") from None
        ident = f"{p}\n{st.st_mtime_ns}\n{st.st_size}\n{self.encoder_name}"
        return hashlib.sha1(ident.encode("utf-8")).hexdigest()

    def file_for(self, path: str | Path) -> Path:
        """Where the features of speech file `path` are (or would be) stored."""
        k = self.key(path)
        return self.dir / k[:2] / f"{k}.npy"

    def get(self, path: str | Path) -> np.ndarray | None:
        """Cached features [t, d] float16, or None on a miss."""
        f = self.file_for(path)
        return np.load(f) if f.is_file() else None

    def put(self, path: str | Path, features: np.ndarray) -> Path:
        """Store features [t, d] (saved as float16) for speech file `path`; returns the .npy file."""
        features = np.asarray(features)
        if features.ndim != 2:
            raise ValueError(f"features must be [t, d], got shape {features.shape}")
        f = self.file_for(path)
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_name(f"{f.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, features.astype(np.float16))
        os.replace(tmp, f)
        return f

    def ensure(
        self,
        paths: Sequence[str | Path],
        encoder: SpeechEncoder,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool = True,
    ) -> list[Path]:
        """Encode every file not yet cached (in batches, with a progress bar); return the .npy files in order."""
        if encoder.name != self.encoder_name:
            raise StarError(f"feature cache is for {self.encoder_name!r} but the encoder is {encoder.name!r}")
        files = [self.file_for(p) for p in paths]
        # Keyed by cache file: the same speech file named two ways is encoded once.
        todo = [
            (p, f) for f, p in {f: p for p, f in zip(paths, files, strict=True) if not f.is_file()}.items()
        ]
        bar = tqdm(
            total=len(todo),
            desc=f"encoding speech ({encoder.name})",
            unit="file",
            disable=not progress or not todo,
        )
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            wavs = [load_audio(p) for p, _ in chunk]
            frames, mask = encoder.encode(wavs)  # [b, t, d], [b, t]
            for i, (p, _) in enumerate(chunk):
                self.put(p, frames[i, mask[i]].numpy())
            bar.update(len(chunk))
        bar.close()
        return files

    def get_or_encode(
        self,
        paths: Sequence[str | Path],
        encoder: SpeechEncoder,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool = True,
    ) -> list[np.ndarray]:
        """Features [t_i, d] float16 for each path, encoding only the files not cached yet."""
        return [np.load(f) for f in self.ensure(paths, encoder, batch_size=batch_size, progress=progress)]


def encode_manifest(
    manifest_path: str | Path,
    encoder: SpeechEncoder,
    cache_root: str | Path,
    *,
    field: str = "speech",
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = True,
) -> dict[str, Path]:
    """Cache the features of every `field` entry of a JSONL manifest (paths relative to its folder).

    Returns {value as written in the manifest: .npy file}; `np.load(file)` gives [t, d] float16 (use
    `mmap_mode="r"` to keep a large corpus off the heap). Lines without `field` are skipped.
    """
    manifest_path = Path(manifest_path)
    if not manifest_path.is_file():
        raise StarError(f"{manifest_path}: no such manifest")
    base = manifest_path.resolve().parent
    entries: list[str] = []
    with manifest_path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise StarError(f"{manifest_path}:{lineno}: not valid JSON ({exc.msg})") from None
            if isinstance(row, dict) and row.get(field):
                entries.append(str(row[field]))
    unique = list(dict.fromkeys(entries))
    cache = FeatureCache(cache_root, encoder.name)
    files = cache.ensure([base / e for e in unique], encoder, batch_size=batch_size, progress=progress)
    return dict(zip(unique, files, strict=True))
