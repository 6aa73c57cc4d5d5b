"""Training the embedded model from scratch on the synthetic world, reproducibly, on a CPU.

Plain end-to-end training sits at the answer prior for a long time on a CPU budget, so besides the answer loss:
  * batches are rendered on the fly by the vectorised renderer, at random frame sizes and aspect ratios, then resized
    and normalised the way the processor does;
  * every pooled visual token is grounded: its colour and shape, scored against the language model's own (tied) word
    embeddings, and on a middle layer of the language model the motion of its object and the objects seen so far;
  * one head of that middle layer is told where the asked-about object is (attention supervision);
  * every video carries several question/answer turns, so one vision pass teaches several answers; with branch_turns
    every question that applies, each in its own branch that sees the video and itself only (as at inference);
  * optionally (stage 2) the video run is pruned at random, objects' tokens first, so pruning does not break it;
  * optionally (stage 0, --vision-steps) the vision tower first learns colour and shape per cell on its own: a
    from-scratch SigLIP sits at chance on shape for ~700 steps, a plateau that is cheap to leave without the LM;
  * every visual token learns its row and column (PositionHead): nothing else tells the language model where in the
    frame a token is, and motion is a change of place;
  * optionally (--track-weight) one head learns to look back at the same object in earlier frames (motion);
  * optionally (--centre-weight) every visual token of an object tells where that object's centre is, and
    (--centroid-weight) the two endpoint heads of --endpoint-weight read where the object began and ended, and the
    answer position holds the difference (direction);
  * optionally (--option-weight, --readout-weight) multiple choice is taught as a circuit: the answer position first
    holds the answer's word, each option's word holds its letter, and one last-layer head looks from the answer at
    the option whose word matches (--mc-share raises the share of multiple-choice questions).
All extra heads are training-only. The model is a LLaVA-OneVision (SigLIP + Qwen2) saved with save_pretrained: the
same class and code path as the real checkpoints."""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .world import COLORS, LETTERS, MOVES, SHAPES, every_question, questions, render, sample_scene
from .tiny_models import build_llava_onevision


@dataclass
class TrainConfig:
    steps: int = 3000
    batch: int = 16
    lr: float = 2e-3
    warmup: int = 150
    weight_decay: float = 0.01
    frames: int = 8
    image_size: int = 96
    patch_size: int = 8
    vision_width: int = 64
    vision_layers: int = 2
    text_width: int = 128
    text_layers: int = 4
    max_turns: int = 6
    aux_weight: float = 1.0
    focus_weight: float = 1.0
    seed: int = 0
    eval_every: int = 250
    log_every: int = 25
    eval_videos: int = 96
    threads: int = 2
    keep_choices: tuple[float, ...] = (1.0,)  # visual tokens kept per batch, drawn at random (pruning robustness)
    init_from: str | None = None  # continue from this checkpoint instead of a random initialisation
    vision_steps: int = 0  # stage 0: the vision tower alone learns colour and shape per cell before the LM trains
    vision_batch: int = 8
    vision_lr: float = 1e-3
    vision_lr_scale: float = 1.0  # the vision tower's learning rate relative to lr in the main stage
    vision_frames: int = 0  # frames per video in stage 0 (0: frames); fewer frames, more videos for the same price
    vision_place_from: int = 1  # stage-0 step from which the place losses are on (shape first, then place)
    vision_cosine: bool = False  # stage 0's learning rate decays to zero (cosine) instead of staying constant
    track_weight: float = 0.0  # attention supervision: object tokens look back at the same object (motion)
    option_weight: float = 0.0  # attention supervision: a multiple-choice answer looks at the correct option's word
    position_weight: float = 1.0  # every visual token tells its row and column in the frame (motion needs it)
    readout_weight: float = 0.0  # below the last layer: the answer's content word, and each option word's letter
    coordinate_weight: float = 0.0  # every visual token also tells its place as two numbers (linear in space)
    endpoint_weight: float = 0.0  # attention supervision: an answer looks at its object's first and last sighting
    centroid_weight: float = 0.0  # what those heads read is where the object began and ended; their difference
    centre_weight: float = 0.0  # every visual token of an object tells where that object's centre is (two numbers)
    identity_weight: float = 0.0  # what the focus head reads at an answer tells its object's colour and shape
    mc_share: float = 0.3  # how often templates 2-4 take their multiple-choice form in training questions
    branch_turns: int = 0  # >0: each video is asked up to this many of every question that applies, each one seeing
    # the video alone (a branch after the shared video prefix, at the positions of a first question), not the
    # earlier turns; 0: 1..max_turns turns of one conversation


def load_model(path: Path):
    from transformers import AutoProcessor, LlavaOnevisionForConditionalGeneration

    return LlavaOnevisionForConditionalGeneration.from_pretrained(path), AutoProcessor.from_pretrained(path)


class Batcher:
    """Renders training batches and turns question/answer turns into token ids and labels."""

    def __init__(self, processor, model_config, cfg: TrainConfig, seed: int) -> None:
        self.tok = processor.tokenizer
        vp = processor.video_processor
        self.mean = torch.tensor(vp.image_mean).view(1, 3, 1, 1)
        self.std = torch.tensor(vp.image_std).view(1, 3, 1, 1)
        self.cfg = cfg
        self.rng = random.Random(seed)
        self.video_id = model_config.video_token_id
        grid = cfg.image_size // cfg.patch_size
        self.pooled = math.ceil(grid / 2)
        self._cache: dict[str, list[int]] = {}

    def ids(self, text: str) -> list[int]:
        if text not in self._cache:
            self._cache[text] = self.tok(text, add_special_tokens=False)["input_ids"]
        return self._cache[text]

    def pixels(self, video: torch.Tensor) -> torch.Tensor:
        """[B, T, H, W, 3] uint8 -> [B, T, 3, S, S] as the processor makes it (bicubic resize, uint8 round, normalise)."""
        b, t, h, w, _ = video.shape
        x = video.reshape(b * t, h, w, 3).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(self.cfg.image_size,) * 2, mode="bicubic", antialias=True, align_corners=False)
        x = x.round().clamp(0, 255) / 255.0
        x = (x - self.mean) / self.std
        return x.reshape(b, t, 3, self.cfg.image_size, self.cfg.image_size)

    def coverage(self, masks: torch.Tensor) -> torch.Tensor:
        """masks [B, O, T, H, W] -> [B, O, T, P * P]: the share of each pooled cell that each object covers."""
        b, o, t, h, w = masks.shape
        return F.adaptive_avg_pool2d(masks.float().reshape(b * o * t, 1, h, w), self.pooled).reshape(b, o, t, -1)

    def cell_labels(self, masks: torch.Tensor, cover: torch.Tensor, cls: torch.Tensor,
                    moves: torch.Tensor) -> torch.Tensor:
        """Per pooled token [B, T * P * P, 4] long: colour, shape and motion of the object covering most of its cell
        (none = 4, 3, 5; motion -100 where the object shows for the first time: nothing earlier to compare with),
        and how many distinct objects have been visible up to its frame (0-3).
        masks [B, O, T, H, W], cover [B, O, T, P * P] (coverage), cls [B, O, 2], moves [B, O] (MOVES index)."""
        b, _, t = cover.shape[:3]
        best, which = cover.max(1)  # [B, T, P*P]
        attrs = torch.cat([cls, moves[..., None]], dim=-1)  # [B, O, 3]
        lab = torch.gather(attrs, 1, which.flatten(1)[..., None].expand(-1, -1, 3)).reshape(b, t, -1, 3)
        none = best < 0.2
        for i, n_cls in enumerate((len(COLORS), len(SHAPES), len(MOVES))):
            lab[..., i] = torch.where(none, torch.full_like(lab[..., i], n_cls), lab[..., i])
        visible = masks.flatten(3).any(-1)  # [B, O, T]
        # Causal attention cannot tell the motion of an object from its first sighting: no label there (-100).
        seen_before = (visible.long().cumsum(2) - visible.long()) > 0  # [B, O, T] visible in an earlier frame
        before = torch.gather(seen_before.transpose(1, 2), 2, which)  # [B, T, P*P] for the cell's object
        lab[..., 2] = torch.where(~none & ~before, torch.full_like(lab[..., 2], -100), lab[..., 2])
        seen = visible.long().cummax(2).values.sum(1)  # [B, T] objects visible so far
        count = seen[:, :, None].expand(b, t, lab.shape[2])
        return torch.cat([lab, count[..., None]], dim=-1).reshape(b, -1, 4)

    @staticmethod
    def centroids(masks: torch.Tensor) -> torch.Tensor:
        """masks [B, O, T, H, W] -> [B, O, T, 2]: each object's centre in each frame, column and row, from -1 at the
        frame's first pixel to 1 at its last (any frame size: the processor squeezes frames to a square); 0 where
        the object is not visible."""
        h, w = masks.shape[-2:]
        m = masks.float()
        area = m.sum((-2, -1)).clamp_min(1.0)  # [B, O, T]
        xs = torch.linspace(-1, 1, w)
        ys = torch.linspace(-1, 1, h)
        return torch.stack([(m.sum(-2) * xs).sum(-1) / area, (m.sum(-1) * ys).sum(-1) / area], -1)

    @staticmethod
    def cell_centres(coverage: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
        """coverage [B, O, T, P * P], centroids [B, O, T, 2] -> [B, T * P * P, 2]: for every pooled cell, the centre
        of the object that covers most of it in its frame (meaningful where cell_labels finds an object)."""
        owner = coverage.argmax(1)  # [B, T, P*P]
        return torch.gather(centroids.transpose(1, 2), 2, owner[..., None].expand(-1, -1, -1, 2)).flatten(1, 2)

    def peak_cells(self, cover: torch.Tensor) -> torch.Tensor:
        """[B, T * P * P] bool: pooled cells that hold an object for sure, i.e. where an object's coverage peaks in its
        frame or is at least half the cell (a small object straddling cells labels only its best cell).
        cover [B, O, T, P * P] (coverage)."""
        top = cover.amax(-1, keepdim=True)
        return (((cover == top) & (top > 0.05)) | (cover >= 0.5)).any(1).flatten(1)

    def turns(self, qas, single: bool, n_video: int, branch: bool = False):
        """Token ids, labels, and per turn: (position that predicts the answer, object it is about), (that position,
        id of the answer's content word: the correct option's word for multiple choice), and for multiple choice
        (that position, position of the correct option's word) and (each option word's position, its letter's);
        then every token's position id and segment (branch: 0 for the shared prefix up to the video's end, i + 1 for
        the tokens of question i, which see the prefix and their own segment only; otherwise one segment, 0)."""
        k = len(qas) if branch else 1 if single else self.rng.randint(1, min(self.cfg.max_turns, len(qas)))
        ids, labels, focus, content, options, letters, positions, segments = [], [], [], [], [], [], [], []
        for i, qa in enumerate(qas[:k]):
            first = i == 0 or branch
            head = f"<|im_start|>user\n{'<video>' + chr(10) if first else ''}{qa.question}<|im_end|>\n" \
                   f"<|im_start|>assistant\n"
            prompt = self.ids(head)
            if first:
                at = prompt.index(self.video_id)
                prompt = prompt[:at] + [self.video_id] * n_video + prompt[at + 1:]
            if branch:
                shared = at + n_video + len(self.ids("\n"))  # the prefix every question shares: up to the video's end
                if i == 0:
                    positions += list(range(shared))
                    segments += [0] * shared
                    ids += prompt[:shared]
                    labels += [-100] * shared
                prompt = prompt[shared:]
                begin = shared
            else:
                begin = len(ids)
            answer = self.ids(f"{qa.answer}<|im_end|>\n")
            if qa.target is not None:
                focus.append((len(ids) + len(prompt) - 1, qa.target))
            word = qa.answer if qa.options is None else qa.options[LETTERS.index(qa.answer)]
            content.append((len(ids) + len(prompt) - 1, self.ids(word)[0]))
            if qa.options is not None:  # the correct option's word, right after "( letter )"
                at = self._option_word(prompt, qa.answer)
                if at is not None:
                    options.append((len(ids) + len(prompt) - 1, len(ids) + at))
                for letter in LETTERS[:len(qa.options)]:  # every option's word, and its letter two tokens back
                    at = self._option_word(prompt, letter)
                    if at is not None:
                        letters.append((len(ids) + at, len(ids) + at - 2))
            ids += prompt + answer
            labels += [-100] * len(prompt) + answer
            positions += list(range(begin, begin + len(prompt) + len(answer)))
            segments += [i + 1 if branch else 0] * (len(prompt) + len(answer))
        return ids, labels, focus, content, options, letters, positions, segments

    def _option_word(self, prompt: list[int], letter: str) -> int | None:
        """Index in `prompt` of the word that follows "( letter )"."""
        pattern = self.ids("(") + self.ids(letter) + self.ids(")")
        for k in range(len(prompt) - 3):
            if prompt[k:k + 3] == pattern:
                return k + 3
        return None

    def batch(self, n: int, single: bool = False, seed: int | None = None, frames: int | None = None):
        rng = self.rng if seed is None else random.Random(seed)
        frames = frames or self.cfg.frames
        h = rng.choice([64, 96, 128, 160])
        w = rng.choice([h, h, int(h * 4 / 3) // 2 * 2])
        scenes = [sample_scene(rng, h, w) for _ in range(n)]
        video, masks, cls = render(scenes, frames, seed=rng.randrange(1 << 30))
        moves = torch.tensor([[list(MOVES).index(o.move) for o in sc.objects] + [0] * (3 - len(sc.objects))
                              for sc in scenes])
        n_all = frames * self.pooled ** 2
        keep = 1.0 if single else rng.choice(self.cfg.keep_choices)
        n_keep = max(1, round(keep * n_all))
        branch = self.cfg.branch_turns > 0 and not single
        rows, qa_lists = [], []
        for sc in scenes:
            qas = (every_question if branch else questions)(sc, rng, mc=self.cfg.mc_share)
            rng.shuffle(qas)
            qas = qas[:self.cfg.branch_turns] if branch else qas
            qa_lists.append(qas)
            rows.append(self.turns(qas, single, n_keep + 1, branch))
        length = max(len(r[0]) for r in rows)
        pad = self.tok.pad_token_id
        ids = torch.tensor([r[0] + [pad] * (length - len(r[0])) for r in rows])
        labels = torch.tensor([r[1] + [-100] * (length - len(r[1])) for r in rows])
        mask = torch.tensor([[1] * len(r[0]) + [0] * (length - len(r[0])) for r in rows])
        extra = {}
        if branch:  # position ids [B, L] and segments [B, L] (padding: -1)
            extra["positions"] = torch.tensor([r[6] + [0] * (length - len(r[6])) for r in rows])
            extra["segments"] = torch.tensor([r[7] + [-1] * (length - len(r[7])) for r in rows])
        # [K, 3] (row, query position, target object or position) for the focus, option and letter supervision
        focus, content, options, letters = (torch.tensor([[b_, p, o] for b_, r in enumerate(rows) for p, o in r[i]],
                                                         dtype=torch.long).reshape(-1, 3) for i in (2, 3, 4, 5))
        coverage = self.coverage(masks)  # [B, O, T, P*P]
        centroids = self.centroids(masks)  # [B, O, T, 2]
        cover = coverage.flatten(2) > 0.2  # [B, O, N] cells each object covers
        cells = self.cell_labels(masks, coverage, cls, moves)  # [B, N, 4]
        sure = self.peak_cells(coverage) & (cells[..., 0] < len(COLORS))  # [B, N] cells surely holding an object
        # Pruning as a good pruner would do it: the objects' tokens first, then random background, in order.
        g = torch.Generator().manual_seed(rng.randrange(1 << 30))
        score = cover.any(1).float() + 0.9 * torch.rand(cover.shape[0], n_all, generator=g)
        kept = torch.topk(score, n_keep, dim=1).indices.sort(dim=1).values  # [B, n_keep]
        return dict(pixels=self.pixels(video), ids=ids, labels=labels, mask=mask, cells=cells, sure=sure, qas=qa_lists,
                    objects=cls,
                    focus=focus, content=content, options=options, letters=letters, kept=kept, centroids=centroids,
                    centres=self.cell_centres(coverage, centroids),
                    cover=torch.gather(cover, 2, kept[:, None].expand(-1, cover.shape[1], -1)),
                    cells_kept=torch.gather(cells, 1, kept[..., None].expand(-1, -1, cells.shape[-1])), **extra)


class GroundingHeads(nn.Module):
    """Training-only heads (not saved with the model). Every head scores against the language model's own word
    embeddings (which, tied, are also its output layer), plus a learned 'none' where a cell may hold nothing:

    * on the projector output (what the language model receives), the colour and shape of the object in each cell:
      a visual token of a red circle is pulled towards the words "red" and "circle", so the question's words and the
      matching visual tokens share one space, which is what attention has to match;
    * on a middle layer of the language model, the motion of the object in each cell and how many objects have been
      seen so far (causal attention over earlier frames can compute both);
    * on the projector output, each token's row and column (PositionHead: there are no words for places).
    An answer then only has to be looked up at the object's tokens and copied out."""

    def __init__(self, model, tokenizer, dim: int) -> None:
        super().__init__()
        self.embed = model.get_input_embeddings()
        words = lambda ws: torch.tensor(tokenizer.convert_tokens_to_ids(list(ws)))  # noqa: E731
        self.ids = {"color": words(COLORS), "shape": words(SHAPES), "motion": words(MOVES),
                    "count": words(["zero", "one", "two", "three"])}
        self.none = nn.ParameterDict({k: nn.Parameter(torch.zeros(1, dim)) for k in ("color", "shape", "motion")})
        self.scale = nn.Parameter(torch.tensor(1.0))

    def logits(self, kind: str, x: torch.Tensor) -> torch.Tensor:
        classes = self.embed.weight[self.ids[kind]]
        if kind in self.none:
            classes = torch.cat([classes, self.none[kind]])
        return self.scale * x @ classes.T


class PositionHead(nn.Module):
    """Training-only: every visual token [B, T * P * P, D] (frame by frame, row-major cells) tells its row and column.
    A token's place in the frame is otherwise invisible to the language model (RoPE counts sequence positions, not
    rows and columns), and a motion is a change of place."""

    def __init__(self, dim: int, grid: int) -> None:
        super().__init__()
        self.grid = grid
        self.linear = nn.Linear(dim, 2 * grid)
        self.coords = nn.Linear(dim, 2)
        self.centre = nn.Linear(dim, 2)

    def centre_loss(self, visual: torch.Tensor, centres: torch.Tensor, holds: torch.Tensor) -> torch.Tensor:
        """Every visual token of an object tells where that object's centre is in its frame, as two numbers
        (mean squared error). A cell's own place moves in steps of a sixth of the frame, an object about a
        twentieth per frame: the centre, which the vision tower sees across the object's patches, moves smoothly.
        visual [B, N, D], centres [B, N, 2], holds [B, N] bool (the cell holds an object)."""
        if not bool(holds.any()):
            return visual.sum() * 0.0
        return F.mse_loss(self.centre(visual[holds]), centres[holds])

    def coordinate_loss(self, visual: torch.Tensor) -> torch.Tensor:
        """The same place as two numbers, column and row scaled to [-1, 1] (mean squared error): a linear code in
        which the mean of an object's tokens is its centre, and a motion the difference of two centres."""
        p = self.grid
        cell = torch.arange(visual.shape[1]) % (p * p)  # [N]
        target = torch.stack([cell % p, cell // p], -1).float() / (p - 1) * 2 - 1  # [N, 2]
        return F.mse_loss(self.coords(visual), target.expand(visual.shape[0], -1, -1))

    def loss(self, visual: torch.Tensor) -> torch.Tensor:
        p = self.grid
        cell = (torch.arange(visual.shape[1]) % (p * p)).expand(visual.shape[0], -1)  # [B, N]
        logits = self.linear(visual)  # [B, N, 2P]: row logits, then column logits
        return (F.cross_entropy(logits[..., :p].flatten(0, 1), (cell // p).flatten())
                + F.cross_entropy(logits[..., p:].flatten(0, 1), (cell % p).flatten()))


def place_losses(place: PositionHead, visual: torch.Tensor, cfg: TrainConfig, b: dict) -> dict:
    """The place losses that are on, by log name: (weight, value) over the visual tokens [B, N, D] of batch b."""
    out = {}
    if cfg.position_weight:
        out["position_loss"] = (cfg.position_weight, place.loss(visual))
    if cfg.coordinate_weight:
        out["coordinate_loss"] = (cfg.coordinate_weight, place.coordinate_loss(visual))
    if cfg.centre_weight:
        out["centre_loss"] = (cfg.centre_weight,
                              place.centre_loss(visual, b["centres"], b["cells"][..., 0] < len(COLORS)))
    return out


def visual_tokens(model, pixels: torch.Tensor) -> torch.Tensor:
    """[B, T, 3, S, S] -> [B, T * P * P, D]: the projected, pooled visual tokens, without the trailing newline."""
    return model.model.get_video_features(pixels, vision_feature_layer=model.config.vision_feature_layer,
                                          vision_feature_select_strategy="full").pooler_output[:, :-1]


def _write_row(row: dict, log: Callable[[str], None], log_file) -> None:
    """One training-log row: a JSON line in training_log.jsonl and a readable line for `log`."""
    log_file.write(json.dumps(row) + "\n")
    log_file.flush()
    log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
                 if k != "accuracy") + (f" acc={row['accuracy']}" if "accuracy" in row else ""))


@dataclass
class Attention:
    """One language-model layer's attention probabilities, recomputed row by row where a loss needs them.

    Either from the layer's queries and keys, q [B, H, L, hd] and k [B, Hkv, L, hd] after RoPE (what _forward
    captures while every layer runs SDPA: eager attention would build all B * H * L * L probabilities of every layer,
    half of a training step's time), or given outright as probs [B, H, L, L] (hand-checked tests). Causal: a query
    sees the keys up to itself; padding only ever follows the real tokens, so no real query sees it."""
    probs: torch.Tensor | None = None
    q: torch.Tensor | None = None
    k: torch.Tensor | None = None
    scaling: float = 1.0
    segments: torch.Tensor | None = None  # [B, L] branch training (Batcher.turns): a query sees segment 0 and its own

    def rows(self, head: int, batch: torch.Tensor, query: torch.Tensor, keys: slice = slice(None)) -> torch.Tensor:
        """[K, keys]: what query position query[i] of row batch[i] pays to each key in `keys`, in head `head`."""
        if self.probs is not None:
            return self.probs[batch, head, query][:, keys]
        scores = torch.einsum("kd,kld->kl", self.q[batch, head, query], self._keys(head)[batch])  # [K, L]
        if self.segments is not None:  # keys of the other questions' branches are hidden
            seg = self.segments[batch]  # [K, L]
            scores = scores.masked_fill((seg != 0) & (seg != seg.gather(1, query[:, None])), float("-inf"))
        return self._softmax(scores, query)[:, keys]

    def among(self, head: int, keys: slice) -> torch.Tensor:
        """[B, n, n]: what each position in `keys` pays to each other one there, in head `head`."""
        if self.probs is not None:
            return self.probs[:, head, keys, keys]
        scores = self.q[:, head, keys] @ self._keys(head).transpose(1, 2)  # [B, n, L]
        return self._softmax(scores, torch.arange(self.k.shape[2])[keys])[..., keys]

    def _keys(self, head: int) -> torch.Tensor:
        """[B, L, hd]: the keys query head `head` reads (grouped-query attention shares a key head)."""
        return self.k[:, head // (self.q.shape[1] // self.k.shape[1])]

    def _softmax(self, scores: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Scaled, causal softmax of raw scores [..., Q, L] whose queries sit at sequence positions query [Q]."""
        later = torch.arange(scores.shape[-1]) > query[:, None]  # [Q, L] keys after each query
        return torch.softmax((scores * self.scaling).masked_fill(later, float("-inf")), -1)


@dataclass
class Taps:
    """What one training forward pass exposes. logits [B, L, V]; feats: projected visual features [B, N+1, D]; with a
    tapped layer m (the middle one): hidden [B, n, D] its input at the n visual tokens fed, attention: the
    Attention of layers 0, m - 1, m and the last, states: every layer's input (HF hidden_states), visual: the slice
    of the sequence that holds the n visual tokens fed, context: [B, L, H * head_dim] layer m's heads' outputs,
    before o_proj."""
    logits: torch.Tensor
    feats: torch.Tensor
    hidden: torch.Tensor | None = None
    attention: dict[int, Attention] | None = None
    states: tuple[torch.Tensor, ...] | None = None
    visual: slice | None = None
    context: torch.Tensor | None = None


def _capture_qk(store: dict, index: int, module: nn.Module, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook on a Qwen2 attention module: its queries and keys after RoPE, as the module computes them,
    with their graph (the attention losses train q_proj and k_proj through them)."""
    from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb

    hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]  # [B, L, D]
    shape = (*hidden.shape[:-1], -1, module.head_dim)
    q = module.q_proj(hidden).view(shape).transpose(1, 2)  # [B, H, L, hd]
    k = module.k_proj(hidden).view(shape).transpose(1, 2)  # [B, Hkv, L, hd]
    cos, sin = kwargs["position_embeddings"]
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    store[index] = Attention(q=q, k=k, scaling=module.scaling)


def branch_mask(segments: torch.Tensor) -> torch.Tensor:
    """segments [B, L] (0: the shared prefix, i > 0: question i's branch, -1: padding) -> [B, 1, L, L] bool, True
    where a query may attend to a key: earlier or itself, and in the prefix or its own branch. Padding sees only
    itself (a row with no key at all would be NaN)."""
    n = segments.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool).tril()  # [L, L]
    query, key = segments[:, :, None], segments[:, None, :]  # [B, L, 1], [B, 1, L]
    allowed = causal & (((key == 0) & (query >= 0)) | (key == query))
    return allowed[:, None]


def _forward(model, b: dict, layer: int | None = None) -> Taps:
    """The model on a batch, feeding the language model only the batch's kept visual tokens; `layer` taps it.
    The language model keeps its SDPA attention; the attention that losses supervise is recomputed (Attention)."""
    from functools import partial

    from transformers.modeling_outputs import BaseModelOutputWithPooling

    feats = model.model.get_video_features(b["pixels"], vision_feature_layer=model.config.vision_feature_layer,
                                           vision_feature_select_strategy="full").pooler_output  # [B, N+1, D]
    kept = b["kept"]  # [B, n] visual tokens the language model gets this batch
    fed = torch.cat([torch.gather(feats[:, :-1], 1, kept[..., None].expand(-1, -1, feats.shape[-1])),
                     feats[:, -1:]], dim=1)
    context, attention, hooks = {}, {}, []
    if layer is not None:
        layers = model.model.language_model.layers
        hooks.append(layers[layer].self_attn.o_proj.register_forward_pre_hook(
            lambda module, args: context.update(x=args[0])))
        for i in sorted({0, layer - 1, layer, len(layers) - 1}):
            hooks.append(layers[i].self_attn.register_forward_pre_hook(partial(_capture_qk, attention, i),
                                                                       with_kwargs=True))
    mask, positions = b["mask"], None
    if "segments" in b:  # branch training: each question sees the shared prefix and itself
        mask, positions = branch_mask(b["segments"]), b["positions"]
    try:
        out = model(input_ids=b["ids"], attention_mask=mask, position_ids=positions,
                    output_hidden_states=layer is not None,
                    mm_encoder_outputs={"video": BaseModelOutputWithPooling(pooler_output=fed)})
    finally:
        for hook in hooks:
            hook.remove()
    for att in attention.values():
        att.segments = b.get("segments")
    if layer is None:
        return Taps(out.logits, feats)
    first = int((b["ids"][0] == model.config.video_token_id).nonzero()[0])
    n = kept.shape[1]
    visual = slice(first, first + n)
    return Taps(out.logits, feats, hidden=out.hidden_states[layer][:, visual], attention=attention,
                states=out.hidden_states, visual=visual, context=context["x"])


def readout_loss(model, states: tuple[torch.Tensor, ...], b: dict) -> torch.Tensor:
    """Read through the model's own output layer (final norm + tied word embeddings) at the input of its last layer:
    the position that predicts an answer should already hold the answer's content word (for multiple choice, the
    correct option's word), and every option's word its letter. The last layer then only has to find the option
    whose word matches and copy its letter (option_loss supervises that attention)."""
    lm = model.model.language_model
    h = states[-2]  # [B, L, D] input to the last layer
    parts = []
    for key, target in (("content", lambda t: t[:, 2]), ("letters", lambda t: b["ids"][t[:, 0], t[:, 2]])):
        t = b[key]
        if t.numel():
            parts.append(F.cross_entropy(model.lm_head(lm.norm(h[t[:, 0], t[:, 1]])), target(t)))
    return sum(parts) if parts else h.sum() * 0.0


def _missed_mass(mass: torch.Tensor) -> torch.Tensor:
    """-log of the attention mass [K] that landed on the target, averaged: the attention supervisions' loss."""
    return -torch.log(mass.clamp_min(1e-6)).mean()


def option_loss(attn: Attention, b: dict, key: str = "options") -> torch.Tensor:
    """Head 1 of the last layer, at the position that predicts a multiple-choice answer, should attend to the word of
    the correct option (key "options"); head 1 of the first layer, at every option's word, to its letter two tokens
    back (key "letters"), so the word carries the letter the answer has to copy. -log of the mass on the target."""
    o = b[key]  # [K, 3] (row, query position, target position)
    rows = attn.rows(1, o[:, 0], o[:, 1])  # [K, L]
    if o.numel() == 0:
        return rows.sum() * 0.0
    return _missed_mass(rows.gather(1, o[:, 2:]).squeeze(1))


def track_loss(att: Attention, b: dict, per_frame: int, visual: slice = slice(None)) -> torch.Tensor:
    """Head 1 of the layer below the middle one, at every visual token of an object, should attend to the same
    object's tokens in earlier frames: the middle layer can then tell the object's motion from where it was and
    where it is (causal attention only looks back). visual: where the kept visual tokens sit in the sequence."""
    attn = att.among(1, visual)  # [B, n, n] among the kept visual tokens
    cover = b["cover"]  # [B, O, n]
    frame = b["kept"] // per_frame  # [B, n]
    owner, has = cover.float().argmax(1), cover.any(1)  # [B, n]
    target = ((owner[:, :, None] == owner[:, None, :]) & has[:, :, None] & has[:, None, :]
              & (frame[:, None, :] < frame[:, :, None]))  # [B, n query, n key]
    rows = target.any(-1)  # [B, n]
    if not bool(rows.any()):
        return attn.sum() * 0.0
    mass = (attn * target).sum(-1)[rows]
    return _missed_mass(mass)


def _sightings(b: dict, per_frame: int):
    """For every answer about one object whose tokens survived pruning: f [K, 3] (row, answer position, object),
    obj [K, n] its kept tokens, frame [K, n] each kept token's frame, and the first and last frame it is seen in
    among them, [K, 1] each."""
    f = b["focus"][b["focus"][:, 2] >= 0]  # [K, 3] (row, answer position, object)
    obj = b["cover"][f[:, 0], f[:, 2]]  # [K, n] that object's tokens
    has = obj.any(-1)  # pruning may have dropped them all
    f, obj = f[has], obj[has]
    frame = (b["kept"] // per_frame)[f[:, 0]]  # [K, n]
    first = torch.where(obj, frame, 1 << 30).amin(-1, keepdim=True)
    last = torch.where(obj, frame, -1).amax(-1, keepdim=True)
    return f, obj, frame, first, last


def endpoint_loss(attn: Attention, b: dict, per_frame: int, visual: slice = slice(None)) -> torch.Tensor:
    """Heads 2 and 3 of the middle layer, at the position that predicts an answer about one object, should attend to
    that object's tokens in the first and in the last frame it is seen in: the answer position then holds where the
    object began and where it ended, and a motion is their difference. visual: where the kept visual tokens sit."""
    f, obj, frame, first, last = _sightings(b, per_frame)
    loss = 0.0
    for head, target in ((2, obj & (frame == first)), (3, obj & (frame == last))):
        rows = attn.rows(head, f[:, 0], f[:, 1], visual)  # [K, n]
        loss = loss + (_missed_mass((rows * target).sum(-1)) if f.numel() else rows.sum() * 0.0)
    return loss


class CentroidHead(nn.Module):
    """Training-only: from what heads 2 and 3 of the middle layer read at an answer position, where the object was
    at its first and at its last sighting (two numbers each); from the layer's output there, the difference."""

    def __init__(self, head_dim: int, dim: int) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.first = nn.Linear(head_dim, 2)
        self.last = nn.Linear(head_dim, 2)
        self.shift = nn.Linear(dim, 2)

    def loss(self, context: torch.Tensor, output: torch.Tensor, b: dict, per_frame: int) -> torch.Tensor:
        """Mean squared error of the three. context [B, L, H * head_dim] (heads' outputs before o_proj),
        output [B, L, D] the layer's output, b["centroids"] [B, O, T, 2]."""
        f, _, _, first, last = _sightings(b, per_frame)
        if f.numel() == 0:
            return output.sum() * 0.0
        at = context[f[:, 0], f[:, 1]]  # [K, H * head_dim]
        d = self.head_dim
        start = b["centroids"][f[:, 0], f[:, 2], first[:, 0]]  # [K, 2]
        end = b["centroids"][f[:, 0], f[:, 2], last[:, 0]]
        return (F.mse_loss(self.first(at[:, 2 * d:3 * d]), start) + F.mse_loss(self.last(at[:, 3 * d:4 * d]), end)
                + F.mse_loss(self.shift(output[f[:, 0], f[:, 1]]), end - start))


class IdentityHead(nn.Module):
    """Training-only: what head 0 of the middle layer (the focus head) reads at the position that predicts an answer
    about one object tells that object's colour and shape, scored against the word embeddings as the grounding heads
    score visual tokens. The focus loss says where to look, the grounding losses what a token holds, the read-out
    loss what the answer position must hold; this supervises the link between them, the copy of the object's colour
    and shape into the answer position, as the centroid loss does for its place."""

    def __init__(self, head_dim: int, dim: int) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.linear = nn.Linear(head_dim, dim)

    def loss(self, context: torch.Tensor, heads: GroundingHeads, b: dict) -> torch.Tensor:
        """Cross-entropy of colour plus shape. context [B, L, H * head_dim] (the heads' outputs before o_proj),
        b["objects"] [B, O, 2] each object's colour and shape index."""
        f = b["focus"][b["focus"][:, 2] >= 0]  # [K, 3] (row, answer position, object)
        f = f[b["cover"][f[:, 0], f[:, 2]].any(-1)]  # its tokens survived pruning
        x = self.linear(context[f[:, 0], f[:, 1], :self.head_dim])  # [K, D] what head 0 read
        if f.numel() == 0:
            return x.sum() * 0.0
        target = b["objects"][f[:, 0], f[:, 2]]  # [K, 2]
        return (F.cross_entropy(heads.logits("color", x), target[:, 0])
                + F.cross_entropy(heads.logits("shape", x), target[:, 1]))


def focus_loss(attn: Attention, b: dict, visual: slice = slice(None)) -> torch.Tensor:
    """Head 0 of the middle layer, at the position that predicts an answer, should put its attention on the visual
    tokens of the object the question is about (any object for 'how many'): -log of the mass it puts there.
    visual: where the kept visual tokens sit in the sequence."""
    f = b["focus"]  # [K, 3] (row, answer position, object or -1)
    rows = attn.rows(0, f[:, 0], f[:, 1], visual)  # [K, n]
    if f.numel() == 0:
        return rows.sum() * 0.0
    cover = b["cover"]  # [B, O, N]
    target = torch.where((f[:, 2] >= 0)[:, None], cover[f[:, 0], f[:, 2].clamp_min(0)], cover[f[:, 0]].any(1))
    mass = (rows * target).sum(-1)
    return _missed_mass(mass)


def _losses(taps: Taps, heads: GroundingHeads, b: dict) -> tuple[torch.Tensor, torch.Tensor]:
    logits, visual, hidden = taps.logits, taps.feats[:, :-1], taps.hidden
    answer = F.cross_entropy(logits[:, :-1].flatten(0, 1), b["labels"][:, 1:].flatten(), ignore_index=-100)
    grounding = sum(F.cross_entropy(heads.logits(kind, x).flatten(0, 1), cells[..., i].flatten())
                    for i, (kind, x, cells) in enumerate((("color", visual, b["cells"]), ("shape", visual, b["cells"]),
                                                          ("motion", hidden, b["cells_kept"]),
                                                          ("count", hidden, b["cells_kept"]))))
    return answer, grounding


@torch.no_grad()
def quick_eval(model, batcher: Batcher, n: int, seed: int) -> dict[str, float]:
    """Accuracy of the first answer token on single-question batches (teacher-forced), by question type."""
    model.eval()
    hits: dict[str, list[int]] = {}
    for i in range(0, n, 16):
        b = batcher.batch(min(16, n - i), single=True, seed=seed + i)
        logits = _forward(model, b).logits
        for row in range(b["ids"].shape[0]):
            pos = int((b["labels"][row] != -100).nonzero()[0])
            pred = int(logits[row, pos - 1].argmax())
            qa = b["qas"][row][0]
            hits.setdefault(qa.type, []).append(int(pred == b["labels"][row, pos]))
    model.train()
    acc = {k: sum(v) / len(v) for k, v in sorted(hits.items())}
    acc["all"] = sum(sum(v) for v in hits.values()) / sum(len(v) for v in hits.values())
    return acc


def pretrain_vision(model, batcher: Batcher, cfg: TrainConfig, log: Callable[[str], None], log_file) -> None:
    """Stage 0: the vision tower and projector learn, alone, the colour and the shape of the object in every pooled
    cell that surely holds one (Batcher.peak_cells), with a training-only linear head, and (position_weight > 0)
    every cell's row and column, from step vision_place_from on. A from-scratch SigLIP learns
    colour at once but sits at chance on shape for ~700 steps before it starts to learn (bench/vision_probe.py), and
    with the language model attached that plateau is paid at the full step price; here a step costs the vision
    side only. Adam without clipping, at a constant rate or (vision_cosine) decaying to zero; the log's
    held-out shape accuracy is on fixed videos the run never trains on."""
    dim = model.config.text_config.hidden_size
    head = nn.Linear(dim, len(COLORS) + len(SHAPES))
    place = PositionHead(dim, batcher.pooled)
    params = list(model.model.vision_tower.parameters()) + list(model.model.multi_modal_projector.parameters())
    opt = torch.optim.Adam(params + list(head.parameters()) + list(place.parameters()), lr=cfg.vision_lr)
    decay = (lambda s: 0.5 * (1 + math.cos(math.pi * s / cfg.vision_steps))) if cfg.vision_cosine else (lambda s: 1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, decay)
    frames = cfg.vision_frames or cfg.frames
    start = time.perf_counter()
    for step in range(1, cfg.vision_steps + 1):
        b = batcher.batch(cfg.vision_batch, single=True, frames=frames)
        sure = b["sure"]  # [B, N]
        visual = visual_tokens(model, b["pixels"])  # [B, N, D]
        logits = head(visual[sure])  # [K, colours + shapes]
        colour, shape = b["cells"][sure][:, 0], b["cells"][sure][:, 1]
        attributes = (F.cross_entropy(logits[:, :len(COLORS)], colour)
                      + F.cross_entropy(logits[:, len(COLORS):], shape))
        places = place_losses(place, visual, cfg, b) if step >= cfg.vision_place_from else {}
        loss = attributes + sum(weight * value for weight, value in places.values())
        lr = sched.get_last_lr()[0]  # the rate of this step
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % cfg.log_every == 0 or step in (1, cfg.vision_steps):
            acc = (logits[:, len(COLORS):].argmax(-1) == shape).float().mean().item()
            row = dict(stage="vision", step=step, minutes=round((time.perf_counter() - start) / 60, 2),
                       vision_loss=attributes.item(), shape_accuracy=acc, lr=lr)
            row.update({name: value.item() for name, (_, value) in places.items()})
            if step % (2 * cfg.eval_every) == 0 or step == cfg.vision_steps:
                row["held_out_shape"] = _held_out_shape(model, head, batcher, frames)
            _write_row(row, log, log_file)


@torch.no_grad()
def _held_out_shape(model, head: nn.Module, batcher: Batcher, frames: int, videos: int = 64) -> float:
    """Stage 0's shape accuracy over the cells that surely hold an object, on `videos` fixed held-out videos."""
    hits = total = 0
    for i in range(0, videos, 8):
        b = batcher.batch(8, single=True, seed=20_000_003 + i, frames=frames)
        sure = b["sure"]
        pred = head(visual_tokens(model, b["pixels"])[sure])[:, len(COLORS):].argmax(-1)
        hits += int((pred == b["cells"][sure][:, 1]).sum())
        total += int(sure.sum())
    return hits / max(total, 1)


def train(out_dir: str | Path, cfg: TrainConfig, log: Callable[[str], None] = print) -> Path:
    """Train from scratch and save the model (safetensors), tokenizer and processor to out_dir, after stage 0 and at
    every evaluation as well as at the end (a stopped run keeps its last checkpoint; a new run can start from it with
    init_from, into another folder: this one's log would be rewritten).
    Writes training_log.jsonl (loss and quick accuracy against wall-clock time) beside them."""
    out = Path(out_dir)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    if cfg.init_from:
        model, processor = load_model(Path(cfg.init_from))
        out.mkdir(parents=True, exist_ok=True)
        processor.save_pretrained(out)
    else:
        build_llava_onevision(out, image_size=cfg.image_size, patch_size=cfg.patch_size,
                              vision_width=cfg.vision_width, vision_layers=cfg.vision_layers,
                              text_width=cfg.text_width, text_layers=cfg.text_layers, seed=cfg.seed,
                              tie_embeddings=True)
        model, processor = load_model(out)
    model.train()
    batcher = Batcher(processor, model.config, cfg, seed=cfg.seed)
    heads = GroundingHeads(model, processor.tokenizer, model.config.text_config.hidden_size)
    place = PositionHead(model.config.text_config.hidden_size, batcher.pooled)
    text = model.config.text_config
    centroid = CentroidHead(text.hidden_size // text.num_attention_heads, text.hidden_size)
    identity = IdentityHead(text.hidden_size // text.num_attention_heads, text.hidden_size)
    vision = {id(p) for p in model.model.vision_tower.parameters()}
    params = (list(model.parameters()) + [p for n, p in heads.named_parameters() if not n.startswith("embed.")]
              + list(place.parameters()) + list(centroid.parameters()) + list(identity.parameters()))
    layer = max(1, cfg.text_layers // 2)
    last = len(model.model.language_model.layers) - 1
    groups = [dict(params=[p for p in params if id(p) not in vision]),
              dict(params=[p for p in params if id(p) in vision], lr=cfg.lr * cfg.vision_lr_scale)]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / cfg.steps))))
    log_path = out / "training_log.jsonl"
    log_file = log_path.open("w")
    if cfg.vision_steps:
        pretrain_vision(model, batcher, cfg, log, log_file)
        save(model, out, cfg)
    start = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        b = batcher.batch(cfg.batch)
        taps = _forward(model, b, layer)
        answer, grounding = _losses(taps, heads, b)
        att, visual = taps.attention, taps.visual
        focus = focus_loss(att[layer], b, visual)
        loss = answer + cfg.aux_weight * grounding + cfg.focus_weight * focus
        extra = place_losses(place, taps.feats[:, :-1], cfg, b)  # the optional losses, by name, for the log
        if cfg.track_weight:
            extra["track_loss"] = (cfg.track_weight, track_loss(att[layer - 1], b, batcher.pooled ** 2,
                                                                   visual))
        if cfg.endpoint_weight:
            extra["endpoint_loss"] = (cfg.endpoint_weight, endpoint_loss(att[layer], b, batcher.pooled ** 2,
                                                                         visual))
        if cfg.centroid_weight:
            extra["centroid_loss"] = (cfg.centroid_weight, centroid.loss(taps.context, taps.states[layer + 1], b,
                                                                         batcher.pooled ** 2))
        if cfg.identity_weight:
            extra["identity_loss"] = (cfg.identity_weight, identity.loss(taps.context, heads, b))
        if cfg.option_weight:
            extra["option_loss"] = (cfg.option_weight,
                                    option_loss(att[last], b) + option_loss(att[0], b, "letters"))
        if cfg.readout_weight:
            extra["readout_loss"] = (cfg.readout_weight, readout_loss(model, taps.states, b))
        for weight, value in extra.values():
            loss = loss + weight * value
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % cfg.log_every == 0 or step in (1, cfg.steps):
            row = dict(step=step, minutes=round((time.perf_counter() - start) / 60, 2), answer_loss=answer.item(),
                       grounding_loss=grounding.item(), focus_loss=focus.item(), lr=sched.get_last_lr()[0])
            row.update({name: value.item() for name, (_, value) in extra.items()})
            if step % cfg.eval_every == 0 or step == cfg.steps:
                row["accuracy"] = quick_eval(model, batcher, cfg.eval_videos, seed=10_000_019)
            _write_row(row, log, log_file)
        if step % cfg.eval_every == 0 and step < cfg.steps:
            save(model, out, cfg)
    log_file.close()
    save(model, out, cfg)
    return out


def save(model, out: Path, cfg: TrainConfig) -> None:
    """Write the model as it stands (safetensors) and the run's config into out; training goes on after it (train
    mode). Called at every evaluation, so a stopped run keeps its progress."""
    was_training = model.training
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    (out / "training_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    model.train(was_training)
