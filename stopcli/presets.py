"""Presets: YAML files naming a model and the pruning settings to run it with, validated on load."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import UsageError
from .pruners import NAMES as PRUNER_NAMES
from .pruners import SINK_SCORES

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"
ASSET_DIR = Path(__file__).resolve().parent / "assets"
DEFAULT_PRESET = "default"


@dataclass(frozen=True)
class Preset:
    """model: a hub id, a local folder (relative paths are taken from the preset's folder), or `stopcli:NAME`
    for a checkpoint shipped inside the package. ratio: fraction of visual tokens dropped."""

    name: str
    model: str
    frames: int = 32
    pruner: str = "holitom"
    ratio: float = 0.9
    stop: bool = True
    mu_s: float | None = None
    mu_t: float | None = None
    sink_score: str = "minmax"  # SToP's sink score: minmax (the authors'), robust or gated
    max_new_tokens: int = 64
    description: str = ""

    def resolved_model(self, origin: Path | None = None) -> str:
        if self.model.startswith("stopcli:"):
            return str(ASSET_DIR / self.model.split(":", 1)[1])
        if self.model.startswith(("./", "../")) and origin is not None:
            return str((origin.parent / self.model).resolve())
        return self.model


_TYPES = {"name": str, "model": str, "frames": int, "pruner": str, "ratio": float, "stop": bool,
          "mu_s": float, "mu_t": float, "sink_score": str, "max_new_tokens": int, "description": str}
_OPTIONAL = {"mu_s", "mu_t"}


def validate_ratio(ratio: float) -> float:
    if not 0.0 <= ratio < 1.0:
        raise UsageError(f"--ratio is the fraction of visual tokens dropped and must be in [0, 1), got {ratio}")
    return float(ratio)


def validate_pruner(name: str) -> str:
    if name.lower() not in PRUNER_NAMES:
        raise UsageError(f"unknown pruner {name!r}; choose from {', '.join(PRUNER_NAMES)}")
    return name.lower()


def validate_sink_score(name: str) -> str:
    if name.lower() not in SINK_SCORES:
        raise UsageError(f"unknown sink score {name!r}; choose from {', '.join(SINK_SCORES)}")
    return name.lower()


def parse_preset(data: object, where: str) -> Preset:
    if not isinstance(data, dict):
        raise UsageError(f"preset {where}: expected a mapping of settings, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_TYPES))
    if unknown:
        raise UsageError(f"preset {where}: unknown key {unknown[0]!r} (allowed: {', '.join(_TYPES)})")
    for key in ("name", "model"):
        if key not in data:
            raise UsageError(f"preset {where}: missing required key {key!r}")
    values = {}
    for key, value in data.items():
        want = _TYPES[key]
        if value is None and key in _OPTIONAL:
            values[key] = None
            continue
        ok = isinstance(value, want) and not (want is not bool and isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            ok, value = True, float(value)
        if not ok:
            raise UsageError(f"preset {where}: {key!r} must be {want.__name__}, got {value!r}")
        values[key] = value
    preset = Preset(**values)
    validate_pruner(preset.pruner)
    validate_sink_score(preset.sink_score)
    validate_ratio(preset.ratio)
    if preset.frames < 1 or preset.max_new_tokens < 1:
        raise UsageError(f"preset {where}: frames and max_new_tokens must be at least 1")
    return dataclasses.replace(preset, pruner=preset.pruner.lower(), sink_score=preset.sink_score.lower())


def preset_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UsageError(f"preset file not found: {path}")
        return path
    candidate = PRESET_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        known = ", ".join(p.stem for p in list_preset_paths()) or "none"
        raise UsageError(f"unknown preset {name_or_path!r} (known: {known})")
    return candidate


def load_preset(name_or_path: str) -> tuple[Preset, Path]:
    path = preset_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(f"preset {path}: not valid YAML{line}") from None
    return parse_preset(data, str(path)), path


def list_preset_paths() -> list[Path]:
    return sorted(PRESET_DIR.glob("*.yaml")) if PRESET_DIR.is_dir() else []
