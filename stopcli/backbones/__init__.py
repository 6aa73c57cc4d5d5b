"""Backbone adapters: one per model family, chosen from the checkpoint's config."""

from __future__ import annotations

import torch

from ..errors import StopError
from .base import Backbone, Encoded, Generation
from .internvl import InternVLBackbone
from .llava_onevision import LlavaOnevisionBackbone
from .qwen3_vl import Qwen3VLBackbone
from .qwen_vl import QwenVLBackbone

ADAPTERS = {"llava_onevision": LlavaOnevisionBackbone, "qwen2_vl": QwenVLBackbone, "qwen2_5_vl": QwenVLBackbone,
            "qwen3_vl": Qwen3VLBackbone, "qwen3_vl_moe": Qwen3VLBackbone, "qwen3_5": Qwen3VLBackbone,
            "qwen3_5_moe": Qwen3VLBackbone, "internvl": InternVLBackbone}


def load_backbone(source: str, device: torch.device, dtype: torch.dtype, trust_remote_code: bool = False) -> Backbone:
    """A hub id or a local folder -> the adapter for its model family. Same code path for every checkpoint."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as exc:  # OSError for missing folders/ids, ValueError for remote code without the flag
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StopError(f"cannot load model {source!r}: {reason}") from None
    adapter = ADAPTERS.get(config.model_type)
    if adapter is None:
        raise StopError(f"model type {config.model_type!r} of {source!r} is not supported "
                        f"(supported: {', '.join(ADAPTERS)})")
    try:
        return adapter.from_pretrained(source, device, dtype, trust_remote_code=trust_remote_code)
    except StopError:
        raise
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StopError(f"cannot load model {source!r}: {reason}") from None


__all__ = ["ADAPTERS", "load_backbone", "Backbone", "Encoded", "Generation"]
