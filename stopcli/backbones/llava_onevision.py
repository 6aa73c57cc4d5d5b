"""LLaVA-OneVision / LLaVA-Video (HF format) through transformers' own classes: one vision pass yields features,
attention and keys; pruned features go back in through `mm_encoder_outputs` with a shortened placeholder run."""

from __future__ import annotations

import torch

from ..errors import StopError
from ..pruners import PrunedTokens, VisualTokens
from .base import (REFERENCE_PATCHES, AttentionProbe, Encoded, Generation, HFBackbone, load_hf,
                   timed_generate)


class LlavaOnevisionBackbone(HFBackbone):
    """Video layout (transformers 5.x): per frame the `vision_feature_layer` output -> projector -> bilinear pooling
    to ceil(h/2) x ceil(w/2), frames concatenated, then one `image_newline` for the whole video."""

    family = "llava-onevision"

    def __init__(self, model, processor, name: str) -> None:
        super().__init__(model, processor, name)
        cfg = model.config
        vcfg = cfg.vision_config
        layer = cfg.vision_feature_layer
        if not isinstance(layer, int):
            raise StopError("LLaVA-OneVision checkpoints with several vision feature layers are not supported")
        n_layers = vcfg.num_hidden_layers
        index = layer % (n_layers + 1)  # hidden_states[k] is the output of encoder layer k - 1
        if index == 0:
            raise StopError("vision_feature_layer selects the patch embeddings; no attention layer to read")
        self.attn_module = self._encoder_layers()[index - 1].self_attn
        self.num_heads = vcfg.num_attention_heads

    @classmethod
    def from_pretrained(cls, source: str, device: torch.device, dtype: torch.dtype,
                        trust_remote_code: bool = False) -> LlavaOnevisionBackbone:
        from transformers import LlavaOnevisionForConditionalGeneration

        return cls(*load_hf(LlavaOnevisionForConditionalGeneration, source, device, dtype, trust_remote_code),
                   name=str(source))

    def _encoder_layers(self):
        tower = self.model.model.vision_tower
        encoder = tower.vision_model.encoder if hasattr(tower, "vision_model") else tower.encoder
        return encoder.layers

    @torch.no_grad()
    def encode(self, inputs: dict) -> Encoded:
        mm = self.model.model
        pixels = inputs["pixel_values_videos"]  # [1, T, 3, H, W]
        t = pixels.shape[1]
        with AttentionProbe(self.attn_module, self.num_heads) as probe:
            out = mm.get_video_features(pixels, vision_feature_layer=self.model.config.vision_feature_layer,
                                        vision_feature_select_strategy=self.model.config.vision_feature_select_strategy)
        pooled = out.pooler_output  # [1, T*S + 1, D]; last = image_newline
        features = pooled[0, :-1]
        s = features.shape[0] // t
        side = int(round(s ** 0.5))
        received, keys = probe.received, probe.keys  # [T, N], [T, N, hd]
        if self.model.config.vision_feature_select_strategy == "default":  # CLIP-style towers drop CLS
            received, keys = received[:, 1:], keys[:, 1:]
        # The same bilinear pooling the features get keeps attention and keys aligned with them.
        attention = mm.apply_pooling(received[..., None].to(pooled.dtype))[..., 0]  # [T, S]
        attention = attention * (received.shape[1] / REFERENCE_PATCHES)  # the common scale (see REFERENCE_PATCHES)
        keys = mm.apply_pooling(keys.to(pooled.dtype))  # [T, S, hd]
        selected = out.hidden_states[self.model.config.vision_feature_layer]  # [T, N, C] pre-projector
        tokens = VisualTokens(features=features.reshape(t, s, -1), attention=attention, grid=(side, s // side),
                              keys=keys, frame_features=selected.float().mean(1))
        return Encoded(tokens=tokens, extra={"newline": pooled[0, -1]})

    def _pruned_inputs(self, inputs: dict, kept: int) -> tuple[torch.Tensor, torch.Tensor]:
        """input_ids with the video placeholder run shortened to kept + 1 (the newline)."""
        ids = inputs["input_ids"][0]
        where = (ids == self.video_token_id).nonzero().flatten()
        first, last = int(where[0]), int(where[-1])
        if last - first + 1 != where.numel():
            raise StopError("the prompt's video placeholders are not one contiguous run")
        run = torch.full((kept + 1,), self.video_token_id, dtype=ids.dtype, device=ids.device)
        new_ids = torch.cat([ids[:first], run, ids[last + 1:]])[None]
        return new_ids, torch.ones_like(new_ids)

    @torch.no_grad()
    def generate(self, inputs: dict, encoded: Encoded, pruned: PrunedTokens, max_new_tokens: int,
                 keep_logits: bool = False, min_new_tokens: int = 0) -> Generation:
        ids, mask = self._pruned_inputs(inputs, len(pruned))
        feats = torch.cat([pruned.features, encoded.extra["newline"][None].to(pruned.features)])[None]
        return timed_generate(self.model, self.processor.tokenizer, self.device,
                              dict(input_ids=ids, attention_mask=mask), feats, max_new_tokens, keep_logits,
                              min_new_tokens, visual_tokens=len(pruned) + 1)
