"""A corpus of real sound clips: a folder with a meta.csv (one row per clip) and the audio files.

The layout of ESC-10/ESC-50 is the default (`filename,fold,category,license,author,...`, audio in
`audio/`), but every column name and the split rule live in `CorpusConfig`, so a user can point the
pipeline at their own folder; a `corpus.json` beside meta.csv is picked up automatically.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from star.config import JsonConfig
from star.errors import StarError

SPLITS = ("train", "validation")
CONFIG_NAME = "corpus.json"


@dataclass
class CorpusConfig(JsonConfig):
    meta: str = "meta.csv"
    # Folders (relative to the corpus root) searched in order for each filename.
    audio_dirs: list[str] = field(default_factory=lambda: ["audio", "."])
    filename_column: str = "filename"
    category_column: str = "category"
    fold_column: str = "fold"
    license_column: str = "license"
    author_column: str = "author"
    # Split by fold: folds listed in validation_folds are validation; train_folds None = every other fold.
    validation_folds: list[str] = field(default_factory=lambda: ["4"])
    train_folds: list[str] | None = None
    # Without a fold column, a stable hash of the clip id sends this share of clips to validation.
    validation_fraction: float = 0.2


@dataclass(frozen=True)
class Clip:
    id: str
    path: Path
    category: str
    fold: str
    license: str = ""
    author: str = ""


@dataclass
class Corpus:
    root: Path
    clips: list[Clip]
    config: CorpusConfig

    @property
    def vocab(self) -> list[str]:
        """Event vocabulary: the sorted category names."""
        return sorted({c.category for c in self.clips})

    def split_of(self, clip: Clip) -> str | None:
        """'train', 'validation' or None (a fold in neither list, e.g. a reserved test fold)."""
        cfg = self.config
        if not clip.fold:
            digest = int(hashlib.sha1(clip.id.encode()).hexdigest()[:8], 16)
            return "validation" if digest / 0xFFFFFFFF < cfg.validation_fraction else "train"
        if clip.fold in {str(f) for f in cfg.validation_folds}:
            return "validation"
        if cfg.train_folds is None or clip.fold in {str(f) for f in cfg.train_folds}:
            return "train"
        return None

    def split(self, name: str) -> list[Clip]:
        return [c for c in self.clips if self.split_of(c) == name]


def load_corpus(root: str | Path, config: CorpusConfig | None = None) -> Corpus:
    """Read `root/meta.csv` into Clips; raises StarError for a missing folder, meta, column or file."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise StarError(f"corpus folder not found: {root}")
    if config is None:
        config = CorpusConfig.load(root / CONFIG_NAME) if (root / CONFIG_NAME).is_file() else CorpusConfig()
    meta = root / config.meta
    if not meta.is_file():
        raise StarError(f"{root}: no {config.meta} (expected one row per clip: filename, category, ...)")
    with meta.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        rows = list(reader)
    for col in (config.filename_column, config.category_column):
        if col not in columns:
            raise StarError(f"{meta}: missing column '{col}' (columns: {', '.join(columns) or 'none'})")
    if not rows:
        raise StarError(f"{meta}: no clips listed")

    clips, missing = [], []
    seen: set[str] = set()
    for row in rows:
        name = row[config.filename_column].strip()
        category = row[config.category_column].strip()
        if not name or not category:
            raise StarError(f"{meta}: a row has an empty filename or category: {row}")
        path = _find_audio(root, config.audio_dirs, name)
        if path is None:
            missing.append(name)
            continue
        clip_id = Path(name).stem
        if clip_id in seen:
            raise StarError(f"{meta}: clip id '{clip_id}' appears twice")
        seen.add(clip_id)
        clips.append(
            Clip(
                id=clip_id,
                path=path.resolve(),
                category=category,
                fold=row.get(config.fold_column, "").strip(),
                license=row.get(config.license_column, "").strip(),
                author=row.get(config.author_column, "").strip(),
            )
        )
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        dirs = " or ".join(f"{root / d}" for d in config.audio_dirs)
        raise StarError(f"{meta}: {len(missing)} listed file(s) not found in {dirs}: {shown}")
    return Corpus(root=root.resolve(), clips=clips, config=config)


def _find_audio(root: Path, dirs: list[str], name: str) -> Path | None:
    for d in dirs:
        p = root / d / name
        if p.is_file():
            return p
    return None
