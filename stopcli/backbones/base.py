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


class AttentionProbe:
    """Reads the attention one encoder layer pays, without switching the encoder to eager attention.

    A forward pre-hook on that layer's attention module recomputes softmax(q k^T * scale) from the module's own
    input, query chunk by query chunk (memory B * H * chunk * N instead of B * H * N * N), and keeps
      received: [B, N] attention each key receives, mean over heads and queries;
      keys:     [B, N, head_dim] the keys, mean over heads.
    Every layer keeps its own attention implementation (SDPA/flash); this layer's q/k projections run twice."""

    def __init__(self, attention: nn.Module, num_heads: int, max_elements: int = 1 << 26) -> None:
        self.attention = attention
        self.num_heads = num_heads
        self.max_elements = max_elements
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
        hidden = args[0] if args else kwargs["hidden_states"]  # [B, N, C]
        b, n, _ = hidden.shape
        h = self.num_heads
        q = module.q_proj(hidden).view(b, n, h, -1).transpose(1, 2).float()  # [B, H, N, hd]
        k = module.k_proj(hidden).view(b, n, h, -1).transpose(1, 2).float()
        scale = getattr(module, "scale", q.shape[-1] ** -0.5)
        chunk = max(1, self.max_elements // (b * h * n))
        received = torch.zeros(b, n, device=hidden.device)
        for start in range(0, n, chunk):  # bounded memory; a handful of chunks at real sizes
            probs = torch.softmax(torch.matmul(q[:, :, start:start + chunk], k.transpose(-1, -2)) * scale, dim=-1)
            received += probs.sum(dim=(1, 2))
        self.received = received / (h * n)
        self.keys = k.mean(1)  # [B, N, hd]
