"""Qwen2-VL and Qwen2.5-VL through transformers' own classes, with real attention and exact 3-D positions.

Tokens: the language model receives 2x2-merged patches; a token "frame" is a temporal patch (2 video frames).
Attention: read in the same encoder pass from the last full-attention block (Qwen2.5-VL uses windowed attention
elsewhere; every Qwen2-VL block is full), which attends within one temporal patch; the window permutation of
Qwen2.5-VL is undone and the 4 patches of each merge unit are averaged.

Positions: the kept tokens keep the 3-D (t, h, w) M-RoPE positions they have in the unpruned prompt, and the text
after the video keeps its unpruned positions too. Why: M-RoPE positions are coordinates, not counters; a kept token
at (t, h, w) should look to the language model exactly as it does in the full video, and the question must sit at
the same distance from the video as in training. Renumbering would shift every token and the text after them onto
positions the model never saw for that content. The pruned sequence therefore gets the unpruned position columns of
what it keeps, and a contiguous row 0 (transformers reads a gapped row 0 as packed sequences). With nothing pruned
this is exactly stock generation."""

from __future__ import annotations

import sys

import torch
from torch import Tensor, nn

from ..errors import StopError
from ..pruners import PrunedTokens, VisualTokens
from .base import (REFERENCE_PATCHES, AttentionProbe, Encoded, Generation, HFBackbone, load_hf,
                   timed_generate)


def qwen_qk(module: nn.Module, args: tuple, kwargs: dict, num_heads: int) -> tuple[Tensor, Tensor, float]:
    """Qwen vision attention: packed [N, C] input, fused qkv, 2-D rotary, one attention group per cu_seqlens span.
    Returns q, k [G, H, L, hd] (G groups of equal length L: one video's temporal patches) and the scale."""
    hidden = args[0] if args else kwargs["hidden_states"]
    n = hidden.shape[0]
    q, k, _ = module.qkv(hidden).reshape(n, 3, num_heads, -1).permute(1, 0, 2, 3).unbind(0)  # [N, H, hd]
    cos, sin = kwargs["position_embeddings"]
    rotary = sys.modules[type(module).__module__].apply_rotary_pos_emb_vision
    q, k = rotary(q, k, cos, sin)
    lengths = (kwargs["cu_seqlens"][1:] - kwargs["cu_seqlens"][:-1]).tolist()
    if len(set(lengths)) != 1:
        raise StopError("the vision encoder's attention groups differ in length (several videos in one pass?)")
    g, length = len(lengths), lengths[0]
    q = q.reshape(g, length, num_heads, -1).transpose(1, 2)
    k = k.reshape(g, length, num_heads, -1).transpose(1, 2)
    return q, k, module.scaling


class QwenVLBackbone(HFBackbone):
    family = "qwen-vl"

    def __init__(self, model, processor, name: str) -> None:
        super().__init__(model, processor, name)
        visual = model.model.visual
        vcfg = visual.config
        self.merge = vcfg.spatial_merge_size
        full = list(getattr(vcfg, "fullatt_block_indexes", None) or [])
        self.windowed = bool(full)  # Qwen2.5-VL: windowed blocks, with full attention at these indexes
        self.block = visual.blocks[full[-1] if full else len(visual.blocks) - 1]
        self.num_heads = vcfg.num_heads

    @classmethod
    def from_pretrained(cls, source: str, device: torch.device, dtype: torch.dtype,
                        trust_remote_code: bool = False) -> QwenVLBackbone:
        from transformers import AutoModelForImageTextToText

        return cls(*load_hf(AutoModelForImageTextToText, source, device, dtype, trust_remote_code), name=str(source))

    def _merge_order(self, grid_thw: Tensor) -> Tensor:
        """Index that puts the attention block's merge units back in (t, h/2, w/2) raster order."""
        if not self.windowed:
            return torch.arange(int(grid_thw.prod()) // self.merge ** 2, device=self.device)
        from transformers.vision_utils import get_vision_window_index

        vcfg = self.model.model.visual.config
        window_index, _ = get_vision_window_index(grid_thw, spatial_merge_size=self.merge,
                                                  window_size=vcfg.window_size, patch_size=vcfg.patch_size)
        return torch.argsort(window_index.to(self.device))

    @torch.no_grad()
    def encode(self, inputs: dict) -> Encoded:
        return self._encode(inputs)[0]

    def _encode(self, inputs: dict):
        """-> (Encoded, the vision tower's own output), for adapters that read more of it."""
        grid = inputs["video_grid_thw"]  # [1, 3] (t, h, w) in patches
        t, h, w = (int(v) for v in grid[0])
        hm, wm = h // self.merge, w // self.merge
        with AttentionProbe(self.block.attn, self.num_heads, qk=qwen_qk) as probe:
            out = self.model.model.get_video_features(inputs["pixel_values_videos"], grid)
        feats = out.pooler_output[0]  # [t * hm * wm, D] in (t, h/2, w/2) raster order
        unit = self.merge ** 2
        order = self._merge_order(grid)
        received = probe.received.reshape(-1, unit)[order].mean(-1)  # [t * hm * wm] per merged token
        received = received * (probe.received.shape[1] / REFERENCE_PATCHES)  # the common scale (REFERENCE_PATCHES)
        keys = probe.keys.reshape(-1, unit, probe.keys.shape[-1])[order].mean(1)  # [t * hm * wm, hd]
        tokens = VisualTokens(features=feats.reshape(t, hm * wm, -1), attention=received.reshape(t, hm * wm),
                              grid=(hm, wm), keys=keys.reshape(t, hm * wm, -1))
        return Encoded(tokens=tokens, extra={}), out

    def positions(self, inputs: dict) -> Tensor:
        """[3, 1, L] M-RoPE positions of the unpruned prompt, as transformers computes them."""
        kwargs = {k: inputs[k] for k in ("video_grid_thw", "second_per_grid_ts") if k in inputs}
        pos, _ = self.model.model.get_rope_index(inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"],
                                                 attention_mask=inputs.get("attention_mask"), **kwargs)
        return pos

    def pruned_inputs(self, inputs: dict, pruned: PrunedTokens, s: int) -> dict:
        ids = inputs["input_ids"][0]
        where = (ids == self.video_token_id).nonzero().flatten()
        first, last = int(where[0]), int(where[-1])
        if last - first + 1 != where.numel():
            raise StopError("the prompt's video placeholders are not one contiguous run")
        kept = first + (pruned.positions[:, 0] * s + pruned.positions[:, 1]).to(ids.device)  # [N] columns kept
        cols = torch.cat([torch.arange(first, device=ids.device), kept,
                          torch.arange(last + 1, ids.shape[0], device=ids.device)])
        mrope = self.positions(inputs)[:, :, cols]  # [3, 1, L']
        new_ids = ids[cols][None]
        row0 = torch.arange(new_ids.shape[1], device=ids.device)[None, None]
        return dict(input_ids=new_ids, attention_mask=torch.ones_like(new_ids),
                    mm_token_type_ids=inputs["mm_token_type_ids"][:, cols],
                    position_ids=torch.cat([row0, mrope.to(row0)], dim=0))

    @torch.no_grad()
    def generate(self, inputs: dict, encoded: Encoded, pruned: PrunedTokens, max_new_tokens: int,
                 keep_logits: bool = False, min_new_tokens: int = 0) -> Generation:
        s = encoded.tokens.tokens_per_frame
        new = self.pruned_inputs(inputs, pruned, s)
        return timed_generate(self.model, self.processor.tokenizer, self.device, new, (pruned.features,),
                              max_new_tokens, keep_logits, min_new_tokens, visual_tokens=len(pruned))
