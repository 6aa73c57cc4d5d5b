"""Qwen3-VL (dense and MoE) and Qwen3.5 (dense and MoE) through transformers' own classes.

The vision tower is Qwen2-VL's layout without windows: 2x2-merged patches, one token "frame" per temporal patch
(2 video frames), every block full attention within its temporal patch. What changes against Qwen2.5-VL:

- Prompt: each temporal patch is written as `<t seconds><|vision_start|>` + its S placeholders + `<|vision_end|>`,
  so the placeholders are T runs split by text. The pruned prompt keeps every text token and, of the placeholders,
  those of the kept tokens, in prompt order: each kept token sits in its own temporal patch's run, after its own
  timestamp. A temporal patch whose tokens are all pruned keeps its timestamp and an empty
  `<|vision_start|><|vision_end|>` pair: the timeline the model reads stays complete (answers that name a time
  still have every time to name), the text after the video keeps its unpruned positions either way, and it costs
  a handful of text tokens per emptied patch.
- Positions: interleaved M-RoPE; every token kept (visual or text) keeps the 3-D position it has in the unpruned
  prompt, as for Qwen2.5-VL (see qwen_vl.py for why), with a contiguous row 0.
- DeepStack (Qwen3-VL only; Qwen3.5 has none): the vision tower also hands feature levels from intermediate blocks
  to the first language-model layers, added at the visual positions. Each level must describe the tokens that are
  there, so it is pruned with the features, by `carry`, which never looks inside a pruner: it reads the pruner's
  own selection and merge weights off forward-mode autodiff (decisions are piecewise constant in the features,
  merges are weighted sums) and applies them to every level. A pruner whose output those weights do not reproduce
  is refused, never silently mis-merged.
- Attention: read in the same encoder pass from the last block (the one the merger reads; DeepStack levels come
  from earlier blocks), averaged over each 2x2 merge unit, on the common 729-patch scale.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from ..errors import StopError
from ..pruners import PrunedTokens, VisualTokens
from .base import Encoded, Generation, kept_columns, timed_generate
from .qwen_vl import QwenVLBackbone


@dataclass(frozen=True)
class CarriedTokens(PrunedTokens):
    """PrunedTokens plus per-token tensors pruned with the same selection and merges.

    riders: [L, N, D'] row n of each level belongs to output token n."""

    riders: Tensor | None = None


def carry(pruner, tokens: VisualTokens, keep: float, riders: Tensor, method: str = "auto") -> CarriedTokens:
    """Prune `tokens` and carry riders [L, T, S, D] through the same selection and merges.

    method "codes" (tried first by "auto"): one plain run gives each output's source group; one run under forward-mode
    autodiff with a one-hot code per token as the tangent reads off every output's weight on each member of its group
    (members get distinct code channels); the weights must reproduce the plain run's features, else "auto" falls
    back. Cost: two pruner runs for any number of levels. Needs source groups no larger than D and outputs that mix
    only their own group: where a token also feeds an output other than the one its `source` names (FastVID's
    `source` names only the nearest anchor's), the weights miss it, the check fails and "auto" falls back.
    method "tangents": one run per level with the level as the tangent, plus one with the features as their own
    tangent to check that the weights do not depend on the feature values. Any pruner; L + 1 runs."""
    if method not in ("auto", "codes", "tangents"):
        raise ValueError(f"unknown carry method {method!r}")
    if method != "tangents":
        carried = _carry_by_codes(pruner, tokens, keep, riders)
        if carried is not None or method == "codes":
            return carried
    return _carry_by_tangents(pruner, tokens, keep, riders)


def _name(pruner) -> str:
    return repr(getattr(pruner, "name", pruner))


def _tolerance(features: Tensor) -> tuple[float, float]:
    """(rtol, atol) for comparing two computations of the same pruned features."""
    tol = 1e-4 if features.dtype == torch.float32 else 2e-2
    return tol, tol * (float(features.abs().max()) if features.numel() else 0.0)


def _carry_by_codes(pruner, tokens: VisualTokens, keep: float, riders: Tensor) -> CarriedTokens | None:
    import torch.autograd.forward_ad as fwAD

    x = tokens.features
    t, s, d = x.shape
    out = pruner(tokens, keep)
    group = out.source.reshape(-1).to(x.device)  # [T*S] output each input token went into, -1 dropped
    member = group >= 0
    # rank of each token inside its group: its code channel
    key = torch.where(member, group, len(out))
    order = torch.argsort(key, stable=True)
    ranked = key[order]
    rank = torch.empty_like(order)
    rank[order] = torch.arange(t * s, device=x.device) - torch.searchsorted(ranked, ranked)
    if member.any() and int(rank[member].max()) >= d:
        return None
    codes = torch.zeros(t * s, d, dtype=x.dtype, device=x.device)
    codes[member.nonzero().flatten(), rank[member]] = 1  # dropped tokens get no code: any use of them shows below
    try:
        with fwAD.dual_level():
            again = pruner(replace(tokens, features=fwAD.make_dual(x, codes.reshape(t, s, d))), keep)
            tangent = fwAD.unpack_dual(again.features).tangent  # [N, D]: output n's weight on its rank-c member at c
    except (RuntimeError, NotImplementedError):  # an operation without a forward-mode formula: the fallback says so
        return None
    if tangent is None or not torch.equal(again.positions, out.positions):
        return None
    src = group[member]  # [M]
    weight = tangent[src, rank[member]].float()  # [M] the weight each member has in its output
    # [N, T*S] the pruner's mixing matrix, one entry per member (a sparse product beats index_add_ several-fold)
    mixing = torch.sparse_coo_tensor(torch.stack([src, member.nonzero().flatten()]), weight, (len(out), t * s),
                                     check_invariants=True).coalesce()

    def mix(values: Tensor) -> Tensor:  # [T*S, D'] -> [N, D'] with the pruner's own weights
        return torch.sparse.mm(mixing, values.float())

    rtol, atol = _tolerance(out.features)
    if not torch.allclose(mix(x.reshape(t * s, d)), out.features.float(), rtol=rtol, atol=atol):
        return None  # outputs mix tokens outside their group, or weights that depend on the features
    levels = torch.stack([mix(level.reshape(t * s, -1)) for level in riders]) if len(riders) else None
    return CarriedTokens(features=out.features, positions=out.positions, counts=out.counts, source=out.source,
                         riders=None if levels is None else levels.to(riders.dtype))


def _carry_by_tangents(pruner, tokens: VisualTokens, keep: float, riders: Tensor) -> CarriedTokens:
    import torch.autograd.forward_ad as fwAD

    x = tokens.features

    def dual_run(tangent: Tensor) -> tuple[PrunedTokens, Tensor, Tensor | None]:
        try:
            with fwAD.dual_level():
                result = pruner(replace(tokens, features=fwAD.make_dual(x, tangent)), keep)
                primal, out_tangent = fwAD.unpack_dual(result.features)
        except (RuntimeError, NotImplementedError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StopError(f"pruner {_name(pruner)} cannot run under forward-mode autodiff, which carries this "
                            f"backbone's DeepStack levels through it: {reason}") from None
        return result, primal, out_tangent

    out, features, echo = dual_run(x)
    if echo is None:
        raise StopError(f"pruner {_name(pruner)} computes its output outside torch (no tangent reaches it), so this "
                        "backbone's DeepStack levels cannot follow its merges")
    rtol, atol = _tolerance(features)
    if not torch.allclose(echo.float(), features.float(), rtol=rtol, atol=atol):
        raise StopError(f"pruner {_name(pruner)} mixes tokens with weights that depend on the feature values; its "
                        "merges cannot be applied to this backbone's DeepStack levels")
    levels = []
    for level in riders:  # [T, S, D]
        again, _, tangent = dual_run(level.to(x.dtype))
        if not torch.equal(again.positions, out.positions):
            raise StopError(f"pruner {_name(pruner)} is not deterministic: two runs on the same tokens kept "
                            "different tokens")
        levels.append(torch.zeros_like(features) if tangent is None else tangent)
    return CarriedTokens(features=features, positions=out.positions, counts=out.counts, source=out.source,
                         riders=torch.stack(levels) if levels else None)


class Qwen3VLBackbone(QwenVLBackbone):
    family = "qwen3-vl"

    def __init__(self, model, processor, name: str) -> None:
        super().__init__(model, processor, name)
        visual = model.model.visual
        self.deepstack = len(getattr(visual, "deepstack_merger_list", None) or [])  # 0 on Qwen3.5
        self.vision_start_id = model.config.vision_start_token_id
        self.vision_end_id = model.config.vision_end_token_id

    def prepare(self, frames: np.ndarray, question: str, system: str | None = None, prefix: str | None = None,
                fps: float | None = None, indices: np.ndarray | None = None) -> dict:
        """As HFBackbone.prepare, with the frames' own timing for the timestamps. The frames are used as given (no
        resampling by the processor); one frame is doubled, as the processor's temporal padding would do, because
        its resizer needs two. Without timing, frame i is taken at i / 24 s (transformers' own default)."""
        from transformers.video_utils import VideoMetadata

        idx = np.arange(len(frames)) if indices is None else np.asarray(indices).astype(int)
        if len(idx) != len(frames):
            raise StopError(f"{len(idx)} frame indices for {len(frames)} frames")
        if len(frames) == 1:
            frames, idx = np.concatenate([frames, frames]), np.concatenate([idx, idx])
        metadata = VideoMetadata(total_num_frames=int(idx.max()) + 1, fps=float(fps or 24.0),
                                 frames_indices=idx.tolist())
        prompt = self.chat_text(question, system, prefix)
        # cap_pixels_per_frame: the per-frame pixel budget of the Qwen team's reference preprocessing
        inputs = self.processor(text=prompt, videos=[frames], video_metadata=[metadata], do_sample_frames=False,
                                cap_pixels_per_frame=True, return_tensors="pt")
        out = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        out["pixel_values_videos"] = out["pixel_values_videos"].to(self.dtype)
        return out

    @torch.no_grad()
    def encode(self, inputs: dict) -> Encoded:
        enc, out = self._encode(inputs)
        if self.deepstack:
            t, s, _ = enc.tokens.features.shape
            levels = torch.stack([level[0] for level in out.deepstack_features])  # [L, T*S, D]
            enc.extra["deepstack"] = levels.reshape(len(levels), t, s, -1)  # [L, T, S, D]
        return enc

    def prune(self, pruner, encoded: Encoded, keep: float) -> PrunedTokens:
        levels = encoded.extra.get("deepstack")
        if levels is None:
            return pruner(encoded.tokens, keep)
        return carry(pruner, encoded.tokens, keep, levels)

    def pruned_prompt(self, inputs: dict, pruned: PrunedTokens, s: int) -> tuple[dict, Tensor]:
        """The pruned prompt (every text token, the kept placeholders) with its unpruned M-RoPE positions, and the
        order [N] that puts the pruned tokens into that prompt's placeholder order."""
        ids = inputs["input_ids"][0]
        cols, order = kept_columns(ids, self.video_token_id, pruned, s)
        mrope = self.positions(inputs)[:, :, cols]  # [3, 1, L']
        new_ids = ids[cols][None]
        row0 = torch.arange(new_ids.shape[1], device=ids.device)[None, None]
        return dict(input_ids=new_ids, attention_mask=torch.ones_like(new_ids),
                    mm_token_type_ids=inputs["mm_token_type_ids"][:, cols],
                    position_ids=torch.cat([row0, mrope.to(row0)], dim=0)), order

    @torch.no_grad()
    def generate(self, inputs: dict, encoded: Encoded, pruned: PrunedTokens, max_new_tokens: int,
                 keep_logits: bool = False, min_new_tokens: int = 0) -> Generation:
        new, order = self.pruned_prompt(inputs, pruned, encoded.tokens.tokens_per_frame)
        features = pruned.features[order]
        if self.deepstack:
            riders = getattr(pruned, "riders", None)
            if riders is None:
                raise StopError("Qwen3-VL's DeepStack levels follow the pruner only through "
                                "backbone.prune(pruner, encoded, keep)")
            from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

            features = BaseModelOutputWithDeepstackFeatures(
                pooler_output=(features,), deepstack_features=[(level[order],) for level in riders])
        else:
            features = (features,)
        return timed_generate(self.model, self.processor.tokenizer, self.device, new, features, max_new_tokens,
                              keep_logits, min_new_tokens, visual_tokens=len(pruned))
