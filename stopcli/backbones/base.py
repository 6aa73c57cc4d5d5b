"""What every backbone adapter hands the pipeline, and the attention probe they share."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from ..pruners import PrunedTokens, VisualTokens


@dataclass
class Encoded:
    """One vision-encoder pass: the tokens to prune, plus whatever the adapter needs to rebuild the prompt."""

    tokens: VisualTokens
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Generation:
    text: str
    new_ids: list[int]
    prompt_tokens: int  # what the language model's prefill sees, visual tokens included
    visual_tokens: int  # visual placeholders in that prompt
    prefill_ms: float  # time to first token
    generate_ms: float  # the whole generate call
    first_logits: Tensor | None = None  # [V] logits of the first generated token, when asked for


class Backbone(Protocol):
    family: str
    name: str
    device: torch.device
    dtype: torch.dtype

    def prepare(self, frames: np.ndarray, question: str) -> dict: ...

    def encode(self, inputs: dict) -> Encoded: ...

    def generate(self, inputs: dict, encoded: Encoded, pruned: PrunedTokens, max_new_tokens: int,
                 keep_logits: bool = False) -> Generation: ...


# Attention is reported on one scale for every backbone: received attention per token as if each frame had SigLIP-384's
# 729 patches (mean 1/729 per token). The authors tuned mu_s on that scale (LLaVA-OneVision at 384 px, where this is
# the identity), so one set of mu defaults serves every backbone and resolution. Sink scores and top-k rankings do not
# depend on the scale; only STSP's a - mu_s * s does.
REFERENCE_PATCHES = 729


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class FirstTokenClock:
    """A generate() streamer that notes when the first new token arrives (its first put() is the prompt)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.calls = 0
        self.first: float | None = None

    def put(self, value) -> None:
        self.calls += 1
        if self.calls == 2:
            sync(self.device)
            self.first = time.perf_counter()

    def end(self) -> None:
        if self.first is None:
            sync(self.device)
            self.first = time.perf_counter()


def siglip_qk(module: nn.Module, args: tuple, kwargs: dict, num_heads: int) -> tuple[Tensor, Tensor, float]:
    """SigLIP/CLIP-style attention (q_proj, k_proj): [B, N, C] input -> q, k [B, H, N, hd] and the scale."""
    hidden = args[0] if args else kwargs["hidden_states"]
    b, n, _ = hidden.shape
    q = module.q_proj(hidden).view(b, n, num_heads, -1).transpose(1, 2)
    k = module.k_proj(hidden).view(b, n, num_heads, -1).transpose(1, 2)
    return q, k, getattr(module, "scale", q.shape[-1] ** -0.5)


class AttentionProbe:
    """Reads the attention one encoder layer pays, without switching the encoder to eager attention.

    A forward pre-hook on that layer's attention module recomputes softmax(q k^T * scale) from the module's own
    input (`qk` turns the hook's arguments into q, k [B, H, N, hd]: B independent attention groups, e.g. frames),
    query chunk by query chunk (memory B * H * chunk * N instead of B * H * N * N), and keeps
      received: [B, N] attention each key receives, mean over heads and queries;
      keys:     [B, N, head_dim] the keys, mean over heads.
    Every layer keeps its own attention implementation (SDPA/flash); this layer's q/k projections run twice."""

    def __init__(self, attention: nn.Module, num_heads: int, max_elements: int = 1 << 26, qk=siglip_qk) -> None:
        self.attention = attention
        self.num_heads = num_heads
        self.max_elements = max_elements
        self.qk = qk
        self.received: Tensor | None = None
        self.keys: Tensor | None = None
        self._handle = None

    def __enter__(self) -> AttentionProbe:
        self._handle = self.attention.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()

    @torch.no_grad()
    def _hook(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        q, k, scale = self.qk(module, args, kwargs, self.num_heads)
        q, k = q.float(), k.float()
        b, h, n, _ = q.shape
        chunk = max(1, self.max_elements // (b * h * n))
        received = torch.zeros(b, n, device=q.device)
        for start in range(0, n, chunk):  # bounded memory; a handful of chunks at real sizes
            probs = torch.softmax(torch.matmul(q[:, :, start:start + chunk], k.transpose(-1, -2)) * scale, dim=-1)
            received += probs.sum(dim=(1, 2))
        self.received = received / (h * n)
        self.keys = k.mean(1)  # [B, N, hd]
