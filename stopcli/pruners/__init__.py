"""Visual-token pruners: pure functions of `VisualTokens` and a keep fraction, and the SToP wrapper.

    from stopcli.pruners import get_pruner, VisualTokens
    pruned = get_pruner("holitom", stop=True)(VisualTokens(features, attention, grid=(14, 14)), keep=0.1)
    pruned.features  # [N, D], pruned.positions  # [N, 2] (frame, spatial index)
"""

from __future__ import annotations

from .basic import NoPruning, Uniform
from .fastvid import FastVID
from .holitom import HoliTom
from .stop import SToP, sink_score
from .types import Pruner, PrunedTokens, SinkHooks, VisualTokens
from .visionzip import VisionZip

PRUNERS: dict[str, type] = {
    "none": NoPruning,
    "uniform": Uniform,
    "visionzip": VisionZip,
    "fastvid": FastVID,
    "holitom": HoliTom,
}


def get_pruner(name: str, stop: bool = False, mu_s: float | None = None, mu_t: float | None = None,
               gamma: float = 1.1, authors_baseline: bool = False, **options) -> Pruner:
    """A pruner by name; stop=True wraps it in SToP (mu None = the authors' default for that base).
    Extra keyword options set the base pruner's hyper-parameters (e.g. tau=0.65 for HoliTom)."""
    key = name.lower()
    if key not in PRUNERS:
        raise KeyError(f"unknown pruner {name!r}; choose from {', '.join(PRUNERS)}")
    base = PRUNERS[key](**options)
    if stop or authors_baseline:
        return SToP(base, mu_s=mu_s if stop else 0.0, mu_t=mu_t if stop else 0.0, gamma=gamma,
                    authors_baseline=authors_baseline)
    return base


__all__ = ["PRUNERS", "get_pruner", "SToP", "sink_score", "VisualTokens", "PrunedTokens", "SinkHooks", "Pruner",
           "NoPruning", "Uniform", "VisionZip", "FastVID", "HoliTom"]
