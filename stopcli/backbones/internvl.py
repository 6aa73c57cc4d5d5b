"""InternVL 2.5 / 3 / 3.5 in transformers' HF format (`InternVLForConditionalGeneration`, the `-HF` checkpoints).

Video layout: the processor feeds each frame as an image with its own text, `FrameN: <img>` + S placeholders +
`</img>`, frames joined by newlines. Per frame InternViT sees a CLS token and P patches (1024 at 448 px); the
`vision_feature_layer` output without CLS is pixel-shuffled (each 2x2 block of patches concatenated into one token,
P / 4 = 256 tokens) and projected.

Tokens: the pixel-shuffled tokens, grid (side / 2, side / 2) in raster order, one token frame per video frame.
Attention: received per patch in the `vision_feature_layer` block (mean over heads and queries, every query
including CLS), CLS itself excluded, not renormalised: the patches' values sum to 1 minus what CLS receives. Each
token gets the mean over the patches pixel shuffle puts into it (the grouping is read from the model's own
`pixel_shuffle` applied to patch indices), times P / 729: the common scale, where a frame's tokens average 1/729
when CLS receives nothing. Keys: mean over heads, then over the same groups.
Prompt: every text token is kept, each kept token goes into its own frame's `<img>...</img>` run, in raster order;
a frame whose tokens are all pruned keeps `FrameN: <img></img>`. Positions: the language model's 1-D RoPE over the
pruned prompt, renumbered contiguously, as on LLaVA-OneVision (and as the published pruners run on 1-D RoPE)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import StopError
from ..pruners import PrunedTokens, VisualTokens
from .base import (REFERENCE_PATCHES, AttentionProbe, Encoded, Generation, HFBackbone, kept_columns, load_hf,
                   timed_generate)


def internvl_qk(module: nn.Module, args: tuple, kwargs: dict, num_heads: int) -> tuple[Tensor, Tensor, float]:
    """InternViT attention: [B, N, C] input, q/k projections with optional q/k RMSNorm over all heads."""
    hidden = args[0] if args else kwargs["hidden_states"]
    b, n, _ = hidden.shape
    q = module.q_norm(module.q_proj(hidden)).reshape(b, n, num_heads, -1).transpose(1, 2)
    k = module.k_norm(module.k_proj(hidden)).reshape(b, n, num_heads, -1).transpose(1, 2)
    return q, k, module.scale


class InternVLBackbone(HFBackbone):
    family = "internvl"

    def __init__(self, model, processor, name: str) -> None:
        super().__init__(model, processor, name)
        cfg = model.config
        if cfg.vision_feature_select_strategy != "default":
            raise StopError("InternVL checkpoints that feed the CLS token to the language model are not supported")
        layer = cfg.vision_feature_layer
        if not isinstance(layer, int):
            raise StopError("InternVL checkpoints with several vision feature layers are not supported")
        layers = model.model.vision_tower.encoder.layer
        index = layer % (len(layers) + 1)  # hidden_states[k] is the output of encoder layer k - 1
        if index == 0:
            raise StopError("vision_feature_layer selects the patch embeddings; no attention layer to read")
        self.attn_module = layers[index - 1].attention
        self.num_heads = cfg.vision_config.num_attention_heads
        self.image_token_id = cfg.image_token_id

    @classmethod
    def from_pretrained(cls, source: str, device: torch.device, dtype: torch.dtype,
                        trust_remote_code: bool = False) -> InternVLBackbone:
        from transformers import AutoModelForImageTextToText

        return cls(*load_hf(AutoModelForImageTextToText, source, device, dtype, trust_remote_code), name=str(source))

    def prepare(self, frames: np.ndarray, question: str, system: str | None = None, prefix: str | None = None,
                fps: float | None = None, indices: np.ndarray | None = None) -> dict:
        prompt = self.chat_text(question, system, prefix)
        inputs = self.processor(text=prompt, videos=[frames], return_tensors="pt")
        out = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        out["pixel_values"] = out["pixel_values"].to(self.dtype)  # [T, 3, H, W]: the frames, as images
        return out

    def shuffle_groups(self, patches: int) -> Tensor:
        """[S, 4] the patch indices pixel shuffle concatenates into each token, in token raster order."""
        side = int(round(patches ** 0.5))
        index = torch.arange(patches, dtype=torch.float32, device=self.device).reshape(1, side, side, 1)
        shuffled = self.model.model.pixel_shuffle(index, scale_factor=self.model.config.downsample_ratio)
        return shuffled.reshape(-1, shuffled.shape[-1]).long()

    @torch.no_grad()
    def encode(self, inputs: dict) -> Encoded:
        cfg = self.model.config
        pixels = inputs["pixel_values"]
        with AttentionProbe(self.attn_module, self.num_heads, qk=internvl_qk) as probe:
            out = self.model.model.get_image_features(pixels, vision_feature_layer=cfg.vision_feature_layer,
                                                      vision_feature_select_strategy=cfg.vision_feature_select_strategy)
        features = out.pooler_output  # [T, S, D]
        t, s, _ = features.shape
        received, keys = probe.received[:, 1:], probe.keys[:, 1:]  # [T, P], [T, P, hd]: CLS excluded
        patches = received.shape[1]
        groups = self.shuffle_groups(patches)  # [S, 4]
        if groups.shape[0] != s:
            raise StopError(f"pixel shuffle of {patches} patches gives {groups.shape[0]} tokens, the model {s}")
        attention = received[:, groups].mean(-1) * (patches / REFERENCE_PATCHES)  # [T, S], common scale
        side = int(round(s ** 0.5))
        # attention and keys stay float32, as on Qwen: ~1/729 values would tie in bfloat16 and move top-k rankings
        tokens = VisualTokens(features=features, attention=attention, grid=(side, s // side),
                              keys=keys[:, groups].mean(2))
        return Encoded(tokens=tokens, extra={})

    @torch.no_grad()
    def generate(self, inputs: dict, encoded: Encoded, pruned: PrunedTokens, max_new_tokens: int,
                 keep_logits: bool = False, min_new_tokens: int = 0) -> Generation:
        ids = inputs["input_ids"][0]
        cols, order = kept_columns(ids, self.image_token_id, pruned, encoded.tokens.tokens_per_frame)
        new_ids = ids[cols][None]
        return timed_generate(self.model, self.processor.tokenizer, self.device,
                              dict(input_ids=new_ids, attention_mask=torch.ones_like(new_ids)),
                              pruned.features[order][None], max_new_tokens, keep_logits, min_new_tokens,
                              visual_tokens=len(pruned), modality="image")
