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


class HFBackbone:
    """What every transformers-backed adapter holds, and the prompt preparation they share."""

    family = "hf"

    def __init__(self, model, processor, name: str) -> None:
        self.model = model.eval()
        self.processor = processor
        self.name = name
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.video_token_id = getattr(model.config, "video_token_id", None)  # InternVL feeds frames as images

    def chat_text(self, question: str, system: str | None = None, prefix: str | None = None) -> str:
        """The prompt exactly as the model reads it, through the model's own chat template: an optional system turn,
        the user turn (video, then the question), the generation prompt, then `prefix` as the start of the
        assistant's reply (an answer prefix such as "Best option:(" that the model continues)."""
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
        if system is not None:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": system}]})
        return self.processor.apply_chat_template(messages, add_generation_prompt=True) + (prefix or "")

    def prepare(self, frames: np.ndarray, question: str, system: str | None = None, prefix: str | None = None,
                fps: float | None = None, indices: np.ndarray | None = None) -> dict:
        """[T, H, W, 3] uint8 frames + question -> the processor's tensors (chat template included) on the device.
        fps / indices (frame numbers in the file) matter only to backbones that write timestamps into the prompt."""
        prompt = self.chat_text(question, system, prefix)
        inputs = self.processor(text=prompt, videos=[frames], return_tensors="pt")
        out = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        out["pixel_values_videos"] = out["pixel_values_videos"].to(self.dtype)
        return out

    def prune(self, pruner, encoded: Encoded, keep: float) -> PrunedTokens:
        """Run a pruner on the encoded tokens. Adapters whose language model takes more per-token inputs than the
        features (Qwen3-VL's DeepStack levels) override this so those inputs follow the same selection and merges."""
        return pruner(encoded.tokens, keep)


class Backbone(Protocol):
    family: str
    name: str
    device: torch.device
    dtype: torch.dtype

    def chat_text(self, question: str, system: str | None = None, prefix: str | None = None) -> str: ...

    def prepare(self, frames: np.ndarray, question: str, system: str | None = None, prefix: str | None = None,
                fps: float | None = None, indices: np.ndarray | None = None) -> dict: ...

    def encode(self, inputs: dict) -> Encoded: ...

    def prune(self, pruner, encoded: Encoded, keep: float) -> PrunedTokens: ...

    def generate(self, inputs: dict, encoded: Encoded, pruned: PrunedTokens, max_new_tokens: int,
                 keep_logits: bool = False) -> Generation: ...


# Attention is reported on one scale for every backbone: received attention per token as if each frame had SigLIP-384's
# 729 patches (mean 1/729 per token). The authors tuned mu_s on that scale (LLaVA-OneVision at 384 px, where this is
# the identity), so one set of mu defaults serves every backbone and resolution. Sink scores and top-k rankings do not
# depend on the scale; only STSP's a - mu_s * s does.
REFERENCE_PATCHES = 729


def load_hf(model_cls, source: str, device: torch.device, dtype: torch.dtype, trust_remote_code: bool):
    """Model and processor through from_pretrained (safetensors only); the processor must handle video."""
    from transformers import AutoProcessor

    from ..errors import StopError

    model = model_cls.from_pretrained(source, dtype=dtype, use_safetensors=True,
                                      trust_remote_code=trust_remote_code).to(device)
    processor = AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)
    if getattr(processor, "video_processor", None) is None or not hasattr(processor, "tokenizer"):
        raise StopError(f"{source} has no video processor (processor_config.json / video_preprocessor_config.json)")
    return model, processor


@torch.no_grad()
def timed_generate(model, tokenizer, device: torch.device, inputs: dict, features, max_new_tokens: int,
                   keep_logits: bool, min_new_tokens: int, visual_tokens: int, modality: str = "video") -> Generation:
    """Greedy generate with precomputed `modality` features (`mm_encoder_outputs`), timing the first token.
    `features` is the encoder output's pooler_output, or a whole encoder output when the model reads more fields."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling
    from transformers.utils import ModelOutput

    encoder_output = features if isinstance(features, ModelOutput) else BaseModelOutputWithPooling(
        pooler_output=features)
    clock = FirstTokenClock(device)
    sync(device)
    start = time.perf_counter()
    out = model.generate(**inputs, mm_encoder_outputs={modality: encoder_output},
                         max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, do_sample=False, num_beams=1,
                         streamer=clock, return_dict_in_generate=True, output_logits=keep_logits)
    sync(device)
    end = time.perf_counter()
    prompt = inputs["input_ids"].shape[1]
    new = out.sequences[0, prompt:].tolist()
    return Generation(text=tokenizer.decode(new, skip_special_tokens=True).strip(), new_ids=new, prompt_tokens=prompt,
                      visual_tokens=visual_tokens, prefill_ms=((clock.first or end) - start) * 1000,
                      generate_ms=(end - start) * 1000, first_logits=out.logits[0][0] if keep_logits else None)


def kept_columns(ids: Tensor, token_id: int, pruned: PrunedTokens, s: int) -> tuple[Tensor, Tensor]:
    """Which columns of the unpruned prompt `ids` [L] the pruned prompt keeps, for prompts whose visual placeholders
    (`token_id`, T*S of them in (frame, spatial) order) may be split by text (timestamps, frame labels).
    Returns cols [L'] ascending: every other token plus the placeholder of each kept token, so each kept token stays
    inside its own frame's text; and order [N]: pruned token order[i] fills the i-th kept placeholder."""
    from ..errors import StopError

    slots = (ids == token_id).nonzero().flatten()  # [T*S]
    flat = (pruned.positions[:, 0] * s + pruned.positions[:, 1]).to(ids.device)  # [N]
    if len(pruned) and (int(flat.min()) < 0 or int(flat.max()) >= slots.numel()):
        raise StopError("a pruned token's position lies outside the prompt's visual placeholders")
    kept = slots[flat]
    keep = ids != token_id
    keep[kept] = True
    if int(keep.sum()) != ids.numel() - slots.numel() + len(pruned):
        raise StopError("two pruned tokens claim the same position")
    return keep.nonzero().flatten(), torch.argsort(kept)


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
