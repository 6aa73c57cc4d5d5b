"""Visual-token pruners: pure functions of `VisualTokens` and a keep fraction, and the SToP wrapper.

    from stopcli.pruners import get_pruner, VisualTokens
    pruned = get_pruner("holitom", stop=True)(VisualTokens(features, attention, grid=(14, 14)), keep=0.1)
    pruned.features  # [N, D], pruned.positions  # [N, 2] (frame, spatial index)

Importing this package imports no torch: the names below are resolved on first use, so that the command line can
check a pruner's name (and print its help) without loading the tensor libraries.
"""

from __future__ import annotations

import importlib

# Pruner name -> "module:class". NAMES is what the CLI and the presets validate against.
_REGISTRY = {
    "none": "basic:NoPruning",
    "uniform": "basic:Uniform",
    "visionzip": "visionzip:VisionZip",
    "fastvid": "fastvid:FastVID",
    "holitom": "holitom:HoliTom",
    "prunevid": "prunevid:PruneVid",
    "flashvid": "flashvid:FlashVid",
}
NAMES: tuple[str, ...] = tuple(_REGISTRY)
# The pruners whose decisions SToP steers (none and uniform have nothing to steer).
WRAPPABLE: tuple[str, ...] = tuple(n for n in NAMES if n not in ("none", "uniform"))
# SToP's sink scores (stop.py): the authors' min-max; robust = non-zero only at positions that are sinks; gated =
# min-max on videos that have a sink, zero on those that do not.
SINK_SCORES: tuple[str, ...] = ("minmax", "robust", "gated")

# Public name -> module that defines it (loaded lazily by __getattr__).
_LAZY = {
    "SToP": "stop", "sink_score": "stop", "robust_sink_score": "stop", "gated_sink_score": "stop",
    "sink_positions": "stop", "sink_persistence": "stop",
    "Pruner": "types", "PrunedTokens": "types", "SinkHooks": "types", "VisualTokens": "types",
    **{spec.split(":")[1]: spec.split(":")[0] for spec in _REGISTRY.values()},
}


def _load(module: str, attr: str):
    return getattr(importlib.import_module(f".{module}", __name__), attr)


def __getattr__(name: str):
    if name == "PRUNERS":
        return {key: _load(*spec.split(":")) for key, spec in _REGISTRY.items()}
    if name in _LAZY:
        return _load(_LAZY[name], name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_name(name: str) -> str:
    """The registry key for a pruner name (case-insensitive); KeyError naming the choices otherwise."""
    key = name.lower()
    if key not in _REGISTRY:
        raise KeyError(f"unknown pruner {name!r}; choose from {', '.join(NAMES)}")
    return key


def get_pruner(name: str, stop: bool = False, mu_s: float | None = None, mu_t: float | None = None,
               gamma: float = 1.1, authors_baseline: bool = False, sink_score: str = "minmax", **options):
    """A pruner by name; stop=True wraps it in SToP (mu None = the authors' default for that base; sink_score one
    of SINK_SCORES). Extra keyword options set the base pruner's hyper-parameters (e.g. tau=0.65 for HoliTom)."""
    base = _load(*_REGISTRY[check_name(name)].split(":"))(**options)
    if stop or authors_baseline:
        SToP = _load("stop", "SToP")
        return SToP(base, mu_s=mu_s if stop else 0.0, mu_t=mu_t if stop else 0.0, gamma=gamma,
                    authors_baseline=authors_baseline, score=sink_score)
    return base


__all__ = ["NAMES", "WRAPPABLE", "PRUNERS", "SINK_SCORES", "check_name", "get_pruner", *_LAZY]
