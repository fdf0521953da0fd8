"""Dataclass configs that round-trip through JSON (release weights keep their config beside them)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Self

from star.errors import StarError


@dataclasses.dataclass
class JsonConfig:
    """Base for every config: `to_dict`/`from_dict`, `save`/`load`; unknown keys are an error."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(fields)
        if unknown:
            raise StarError(f"{cls.__name__}: unknown config keys {sorted(unknown)}")
        kwargs = {}
        for name, value in data.items():
            ftype = fields[name].type
            sub = _nested_config_type(ftype)
            kwargs[name] = sub.from_dict(value) if sub is not None and isinstance(value, dict) else value
        return cls(**kwargs)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Self:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _nested_config_type(ftype: Any) -> type[JsonConfig] | None:
    # Field types are strings under `from __future__ import annotations`; resolve only JsonConfig subclasses.
    if isinstance(ftype, type) and issubclass(ftype, JsonConfig):
        return ftype
    if isinstance(ftype, str):
        for sub in _all_subclasses(JsonConfig):
            if sub.__name__ == ftype:
                return sub
    return None


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def check_part(k: int, n: int) -> None:
    """Part K of work split over N processes needs 0 <= K < N."""
    if not 0 <= k < n:
        raise StarError(f"part {k}/{n}: need 0 <= K < N")


def parse_part(text: str) -> tuple[int, int]:
    """Parse "K/N" (a command's share of work split over N processes) into (K, N), with 0 <= K < N."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise StarError(f"expected K/N for a part, got {text!r}") from None
    check_part(k, n)
    return k, n
