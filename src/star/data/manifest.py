"""JSONL manifests: one JSON object per line; paths inside are relative to the manifest's folder.

`sounds.jsonl` (one real clip or scene per line) and `prompts.jsonl` (one spoken prompt per line) are
written by `star.data.build`; training and evaluation read them with `read_manifest`, which resolves
the path fields to absolute paths.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from star.errors import StarError

PATH_FIELDS = ("audio", "speech")


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows as JSONL atomically (a reader never sees half a manifest)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def read_manifest(path: str | Path, *, resolve: bool = True) -> list[dict[str, Any]]:
    """Read a JSONL manifest; with `resolve`, relative `audio`/`speech` paths become absolute strings."""
    path = Path(path)
    if not path.is_file():
        raise StarError(f"manifest not found: {path}")
    rows = []
    base = path.parent.resolve()
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise StarError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise StarError(f"{path}:{n}: each line must be a JSON object")
            if resolve:
                for key in PATH_FIELDS:
                    value = row.get(key)
                    if isinstance(value, str) and value and not Path(value).is_absolute():
                        row[key] = str(base / value)
            rows.append(row)
    return rows
