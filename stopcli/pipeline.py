"""The steps of one question about one video, shared by `ask`, `compare` and `bench`:
load -> decode -> encode once -> (prune -> generate) per setting."""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass, field

import torch

from .backbones import load_backbone
from .backbones.base import Backbone, Encoded, sync
from .errors import StopError
from .pruners import WRAPPABLE, PrunedTokens, get_pruner
from .video import Clip, read_video

__all__ = ["PruneSettings", "Answer", "load_backbone", "read_video", "encode", "answer", "auto_device"]


@dataclass(frozen=True)
class PruneSettings:
    pruner: str = "holitom"
    ratio: float = 0.9  # fraction of visual tokens dropped
    stop: bool = True
    mu_s: float | None = None
    mu_t: float | None = None
    sink_score: str = "minmax"  # SToP's sink score: one of stopcli.pruners.SINK_SCORES

    @property
    def keep(self) -> float:
        return 1.0 - self.ratio

    def build(self):
        return get_pruner(self.pruner, stop=self.stop and self.pruner in WRAPPABLE,
                          mu_s=self.mu_s, mu_t=self.mu_t, sink_score=self.sink_score)


@dataclass
class Answer:
    answer: str
    model: str
    pruner: str
    stop: bool
    ratio: float
    mu: dict
    frames: int  # token frames: video frames for LLaVA, temporal patches (2 frames) for Qwen
    video_frames: int
    visual_tokens: dict
    prompt_tokens: int
    new_tokens: int
    timings_ms: dict
    tokens_per_s: float | None
    peak_memory_mb: float
    notes: list[str] = field(default_factory=list)
    sink_score: str | None = None  # SToP's sink score; None without SToP
    pruned: PrunedTokens | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        out = asdict(self)
        out.pop("pruned")
        return out


def auto_device(device: str | None, dtype: str | None) -> tuple[torch.device, torch.dtype]:
    """CUDA + bfloat16 when there is a GPU, else CPU + float32; either can be forced."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise StopError("--device cuda asked for, but no CUDA device is available")
    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype is not None and dtype not in names:
        raise StopError(f"unknown --dtype {dtype!r}; choose from float32, bfloat16, float16")
    return dev, names[dtype] if dtype else (torch.bfloat16 if dev.type == "cuda" else torch.float32)


@dataclass
class EncodedVideo:
    clip: Clip
    inputs: dict
    encoded: Encoded
    decode_ms: float
    vision_ms: float


def encode(backbone: Backbone, clip: Clip, question: str, decode_ms: float = 0.0, system: str | None = None,
           prefix: str | None = None) -> EncodedVideo:
    """Processor + one vision-encoder pass, reused by every pruning setting of the same question. `system` is a
    system turn and `prefix` the start of the answer, both sent through the model's chat template; the clip's fps
    and frame numbers go along for the backbones that write timestamps."""
    sync(backbone.device)
    start = time.perf_counter()
    inputs = backbone.prepare(clip.frames, question, system, prefix, fps=clip.fps, indices=clip.indices)
    encoded = backbone.encode(inputs)
    sync(backbone.device)
    return EncodedVideo(clip, inputs, encoded, decode_ms, (time.perf_counter() - start) * 1000)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux reports KiB)


def answer(backbone: Backbone, video: EncodedVideo, settings: PruneSettings, max_new_tokens: int) -> Answer:
    """Prune the encoded video with `settings` and generate an answer; timings cover this setting alone plus the
    shared decode/vision time."""
    if backbone.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(backbone.device)
    tokens = video.encoded.tokens
    pruner = settings.build()
    sync(backbone.device)
    start = time.perf_counter()
    pruned = (backbone.prune(pruner, video.encoded, settings.keep) if settings.ratio > 0
              else backbone.prune(get_pruner("none"), video.encoded, 1.0))
    sync(backbone.device)
    prune_ms = (time.perf_counter() - start) * 1000
    gen = backbone.generate(video.inputs, video.encoded, pruned, max_new_tokens)
    decode_ms = gen.generate_ms - gen.prefill_ms
    n_new = len(gen.new_ids)
    timings = dict(decode_video=video.decode_ms, vision=video.vision_ms, prune=prune_ms, prefill=gen.prefill_ms,
                   decode=decode_ms, generate=gen.generate_ms,
                   total=video.decode_ms + video.vision_ms + prune_ms + gen.generate_ms)
    mu = getattr(pruner, "mu", (0.0, 0.0))
    return Answer(
        answer=gen.text, model=backbone.name, pruner=settings.pruner,
        stop=hasattr(pruner, "mu"), ratio=settings.ratio, mu={"s": mu[0], "t": mu[1]},
        frames=tokens.num_frames, video_frames=video.clip.num_frames, visual_tokens={"before": tokens.num_tokens, "after": len(pruned)},
        prompt_tokens=gen.prompt_tokens, new_tokens=n_new,
        timings_ms={k: round(v, 2) for k, v in timings.items()},
        tokens_per_s=round((n_new - 1) / (decode_ms / 1000), 2) if n_new > 1 and decode_ms > 0 else None,
        peak_memory_mb=round(_peak_memory_mb(backbone.device), 1), notes=list(video.clip.notes),
        sink_score=getattr(pruner, "score", None), pruned=pruned)
