"""Does a model's vision side see what the questions ask about? Two measurements on freshly rendered synthetic videos.

1. Probe: a linear classifier fitted on half of the visual tokens the language model receives (projected and pooled)
   and tested on the other half, for the colour and the shape of the object in each cell that surely holds one.
   A language model cannot answer "what shape is the red object?" from tokens in which shape is not decodable.
   The same at the input of every language-model layer for the token's row and column in the frame and its object's
   motion: "which direction does it move?" needs places, and a layer that compares them across frames.
   And for direction questions: is the direction decodable at the position that predicts the answer (per layer input),
   and how much do the middle layer's heads 2 / 3 look at the object's first / last sighting (--endpoint-weight).
2. Learnability (--learn-steps K): the same per-cell shape labels learned from scratch, for K steps, by the model's own
   vision architecture (SigLIP tower + projector + pooling, fresh weights) and by a small CNN of four 3x3 stages,
   with the same data, batch, optimiser and learning rate. Tells whether a low probe score is the recipe's fault or
   the architecture's.

    python bench/vision_probe.py [--model stopcli/assets/stop-tiny-ov] [--videos 192] [--learn-steps 0]

Prints tables and writes bench/results/vision_probe.json."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from stopcli.embedded.world import COLORS, MOVES, SHAPES  # noqa: E402
from stopcli.embedded.tiny_models import build_llava_onevision  # noqa: E402
from stopcli.embedded.train import Batcher, TrainConfig, _forward, _sightings, load_model, visual_tokens  # noqa: E402


def batcher_for(model, processor, seed: int) -> Batcher:
    v = model.config.vision_config
    cfg = TrainConfig(image_size=v.image_size, patch_size=v.patch_size, frames=8)
    return Batcher(processor, model.config, cfg, seed=seed)


def linear_probe(x: torch.Tensor, y: torch.Tensor, classes: int, steps: int = 600) -> float:
    """Test accuracy of a softmax regression fitted on the first half of (x, y)."""
    n = len(x) // 2
    mu, sd = x[:n].mean(0), x[:n].std(0) + 1e-5
    x = (x - mu) / sd
    w = torch.zeros(x.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.Adam([w, bias], lr=1e-2)
    for _ in range(steps):
        loss = F.cross_entropy(x[:n] @ w + bias, y[:n]) + 1e-4 * w.square().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(((x[n:] @ w + bias).argmax(1) == y[n:]).float().mean())


def majority(y: torch.Tensor, classes: int) -> float:
    """Share of the held-out half taken by its most frequent class: what a probe scores by guessing."""
    test = y[len(y) // 2:]
    return float(torch.bincount(test, minlength=classes).max()) / len(test)


@torch.no_grad()
def probe(model, batcher: Batcher, videos: int, seed: int) -> dict:
    """Colour and shape on the visual tokens; row, column and motion at the input of every language-model layer
    (layer 0 = the visual tokens), on cells that surely hold an object (motion: where the object was seen before)."""
    model.eval()
    xs, ys, places = [], [], []
    layers: list[list[torch.Tensor]] = []
    grid = batcher.pooled
    for i in range(0, videos, 16):
        b = batcher.batch(16, single=True, seed=seed + i)
        taps = _forward(model, b, layer=1)  # single questions keep every visual token
        first, n = taps.visual.start, taps.feats.shape[1] - 1
        sure = b["sure"]  # [B, N]
        xs.append(taps.feats[:, :-1][sure])
        ys.append(b["cells"][sure][:, :3])
        places.append((torch.arange(n) % grid ** 2).expand(sure.shape[0], -1)[sure])
        layers.append([h[:, first:first + n][sure] for h in taps.states[:-1]])  # inputs of every layer
    x, y, place = torch.cat(xs), torch.cat(ys), torch.cat(places)
    with torch.enable_grad():
        out = {"cells": len(x)}
        for i, (name, classes) in enumerate((("colour", len(COLORS)), ("shape", len(SHAPES)))):
            out[name] = dict(probe_accuracy=linear_probe(x, y[:, i], classes), majority_class=majority(y[:, i], classes))
        moved = y[:, 2] >= 0  # the object was seen in an earlier frame
        out["layers"] = []
        for k in range(len(layers[0])):
            h = torch.cat([per_batch[k] for per_batch in layers])
            out["layers"].append(dict(layer=k, row=linear_probe(h, place // grid, grid),
                                      column=linear_probe(h, place % grid, grid),
                                      motion=linear_probe(h[moved], y[moved, 2], len(MOVES))))
        out["chance"] = dict(row=majority(place // grid, grid), column=majority(place % grid, grid),
                             motion=majority(y[moved, 2], len(MOVES)))
    return out


def ridge_r2(x: torch.Tensor, y: torch.Tensor, lam: float = 1.0) -> float:
    """R^2 on the second half of a ridge regression of y [N, K] on x [N, D] fitted on the first half, averaged over
    the K columns."""
    n = len(x) // 2
    x = torch.cat([x, torch.ones(len(x), 1)], 1)
    w = torch.linalg.solve(x[:n].T @ x[:n] + lam * torch.eye(x.shape[1]), x[:n].T @ y[:n])
    err = ((x[n:] @ w - y[n:]) ** 2).sum(0)
    return float((1 - err / ((y[n:] - y[n:].mean(0)) ** 2).sum(0)).mean())


@torch.no_grad()
def direction_probe(model, batcher: Batcher, videos: int, seed: int) -> dict:
    """For "which direction does the X move?" (open form, every such question of each video, unpruned): is the
    answer's direction decodable at the position that predicts the answer, at the input of each language-model layer,
    and is the object's displacement (last minus first centre, regression R^2); how much attention heads 2 and 3 of
    the middle layer put on the object's first and last sighting (--endpoint-weight), and how well their outputs
    tell where the object was then (R^2, --centroid-weight)."""
    model.eval()
    batcher.cfg.mc_share = 0.0
    batcher.cfg.max_turns = 8
    per_frame = batcher.pooled ** 2
    moves = {batcher.ids(m)[0]: k for k, m in enumerate(MOVES)}  # answer token id -> MOVES index
    states, labels, mass, heads, places = [], [], [], [], []
    layer = max(1, model.config.text_config.num_hidden_layers // 2)
    for i in range(0, videos, 16):
        b = batcher.batch(16, seed=seed + i)  # unpruned: batcher_for keeps every visual token
        taps = _forward(model, b, layer=layer)
        f, obj, frame, first, last = _sightings(b, per_frame)
        for k, (row, at, o) in enumerate(f.tolist()):
            answer = int(b["labels"][row, at + 1])
            if answer not in moves:
                continue
            ends = (obj[k] & (frame[k] == first[k, 0]), obj[k] & (frame[k] == last[k, 0]))
            states.append(torch.stack([h[row, at] for h in taps.states[:-1]]))  # [layers, D]
            labels.append(moves[answer])
            mass.append([float((taps.attention[layer].rows(head, torch.tensor([row]), torch.tensor([at]), taps.visual)[0]
                                * end).sum()) for head, end in zip((2, 3), ends)])
            heads.append(taps.context[row, at].view(model.config.text_config.num_attention_heads, -1)[2:4])
            c = b["centroids"][row, o]
            places.append(torch.stack([c[first[k, 0]], c[last[k, 0]]]))  # [2, 2] first / last centre
    x, y, heads, places = torch.stack(states), torch.tensor(labels), torch.stack(heads), torch.stack(places)
    shift = places[:, 1] - places[:, 0]
    with torch.enable_grad():
        layers = [linear_probe(x[:, k], y, len(MOVES)) for k in range(x.shape[1])]
        truth = linear_probe(torch.cat([shift, shift.abs()], 1), y, len(MOVES))
    return dict(questions=len(y), by_layer=layers, majority_class=majority(y, len(MOVES)),
                from_true_displacement=truth,
                displacement_r2_by_layer=[ridge_r2(x[:, k], shift) for k in range(x.shape[1])],
                endpoint_attention=torch.tensor(mass).mean(0).tolist(),
                endpoint_place_r2=[ridge_r2(heads[:, h], places[:, h]) for h in range(2)])


class SmallCNN(torch.nn.Module):
    """Four 3x3 conv stages with 2x max-pooling, then adaptive pooling to the visual-token grid."""

    def __init__(self, grid: int, classes: int) -> None:
        super().__init__()
        layers, width = [], 3
        for out in (32, 64, 64, 64):
            layers += [torch.nn.Conv2d(width, out, 3, padding=1), torch.nn.GELU(), torch.nn.MaxPool2d(2)]
            width = out
        self.body = torch.nn.Sequential(*layers)
        self.head = torch.nn.Conv2d(width, classes, 1)
        self.grid = grid

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:  # [B, T, 3, S, S] -> [B, T * P * P, classes]
        b = pixels.shape[0]
        x = F.adaptive_avg_pool2d(self.head(self.body(pixels.flatten(0, 1))), self.grid)
        return x.flatten(2).transpose(1, 2).reshape(b, -1, x.shape[1])


def learnability(model, processor, steps: int, seed: int, lr: float = 1e-3, batch: int = 8) -> list[dict]:
    """Per-cell shape accuracy on held-out batches while training, from scratch, the model's vision architecture and
    a small CNN on the same batches."""
    v, t = model.config.vision_config, model.config.text_config
    with tempfile.TemporaryDirectory() as tmp:
        build_llava_onevision(tmp, image_size=v.image_size, patch_size=v.patch_size, vision_width=v.hidden_size,
                              vision_layers=v.num_hidden_layers, vision_heads=v.num_attention_heads,
                              text_width=t.hidden_size, text_layers=1, seed=seed)
        fresh, proc = load_model(Path(tmp))
    batcher = batcher_for(fresh, proc, seed)
    vit_head = torch.nn.Linear(t.hidden_size, len(SHAPES))
    cnn = SmallCNN(batcher.pooled, len(SHAPES))
    nets = {
        "vision tower (fresh)": (lambda px: vit_head(visual_tokens(fresh, px)),
                                 list(fresh.model.vision_tower.parameters())
                                 + list(fresh.model.multi_modal_projector.parameters()) + list(vit_head.parameters())),
        "small CNN": (cnn, list(cnn.parameters())),
    }
    opts = {k: torch.optim.Adam(p, lr=lr) for k, (_, p) in nets.items()}
    held = [batcher.batch(16, single=True, seed=seed + 10_000 + i) for i in range(2)]
    curve, start = [], {k: 0.0 for k in nets}
    fresh.train()
    for step in range(1, steps + 1):
        b = batcher.batch(batch, single=True)
        for k, (net, params) in nets.items():
            t0 = time.perf_counter()
            loss = F.cross_entropy(net(b["pixels"])[b["sure"]], b["cells"][b["sure"]][:, 1])
            opts[k].zero_grad()
            loss.backward()
            opts[k].step()
            start[k] += time.perf_counter() - t0
        if step % max(1, steps // 10) == 0 or step == steps:
            row = {"step": step}
            with torch.no_grad():
                for k, (net, _) in nets.items():
                    hits = [net(h["pixels"])[h["sure"]].argmax(-1) == h["cells"][h["sure"]][:, 1] for h in held]
                    row[k] = float(torch.cat(hits).float().mean())
                    row[k + " seconds"] = round(start[k], 1)
            curve.append(row)
            print(row, flush=True)
    return curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "stopcli/assets/stop-tiny-ov"))
    ap.add_argument("--videos", type=int, default=192)
    ap.add_argument("--seed", type=int, default=2000)
    ap.add_argument("--learn-steps", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench/results/vision_probe.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(args.seed)
    model, processor = load_model(Path(args.model))
    console = Console()
    result = {"model": args.model, "probe": probe(model, batcher_for(model, processor, args.seed), args.videos,
                                                  args.seed)}
    table = Table(title=f"Linear probe on the visual tokens ({result['probe']['cells']} object cells, half held out)")
    for col in ("attribute", "probe accuracy", "majority class"):
        table.add_column(col)
    for name in ("colour", "shape"):
        r = result["probe"][name]
        table.add_row(name, f"{r['probe_accuracy']:.3f}", f"{r['majority_class']:.3f}")
    console.print(table)
    table = Table(title="Linear probe at the input of each language-model layer (0 = the visual tokens): does a "
                        "token know its place, and (later frames) its object's motion?")
    for col in ("layer", "row", "column", "motion"):
        table.add_column(col)
    for r in result["probe"]["layers"]:
        table.add_row(str(r["layer"]), *(f"{r[k]:.3f}" for k in ("row", "column", "motion")))
    chance = result["probe"]["chance"]
    table.add_row("majority class", *(f"{chance[k]:.3f}" for k in ("row", "column", "motion")))
    console.print(table)
    d = result["direction"] = direction_probe(model, batcher_for(model, processor, args.seed), args.videos * 2,
                                              args.seed + 1)
    table = Table(title=f"Direction questions ({d['questions']}, half held out): at the position that predicts the "
                        f"answer, per layer input")
    for col in ("layer", "direction probe", "displacement R²"):
        table.add_column(col)
    for k, (acc, r2) in enumerate(zip(d["by_layer"], d["displacement_r2_by_layer"])):
        table.add_row(str(k), f"{acc:.3f}", f"{r2:.2f}")
    table.add_row("majority class", f"{d['majority_class']:.3f}", "")
    table.add_row("from the true displacement", f"{d['from_true_displacement']:.3f}", "1.00")
    console.print(table)
    console.print("middle-layer heads 2 / 3: attention on the object's first / last sighting "
                  + " / ".join(f"{v:.2f}" for v in d["endpoint_attention"]) + "; R² of that sighting's centre from "
                  "their outputs " + " / ".join(f"{v:.2f}" for v in d["endpoint_place_r2"]), highlight=False)
    if args.learn_steps:
        curve = learnability(model, processor, args.learn_steps, args.seed)
        result["learnability"] = curve
        table = Table(title="Per-cell shape accuracy when learned from scratch (held-out cells)")
        for col in curve[0]:
            table.add_column(col)
        for row in curve:
            table.add_row(*(f"{v:.3f}" if not k.endswith("seconds") and isinstance(v, float) else str(v)
                            for k, v in row.items()))
        console.print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
