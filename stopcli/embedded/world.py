"""The synthetic world the embedded model understands: coloured shapes moving over a plain background.

Contract (other people's videos that follow it must work): RGB frames of any size >= 64 px; a uniform gray or beige
background (value 40-220, optional mild noise); in about a third of the videos a static distractor that carries no
answer (a light-gray "logo" rectangle in a corner, or black letterbox bars); 1-3 filled objects, shape in
{circle, square, triangle}, colour in {red, green, blue, yellow} (pure RGB +- 30 per channel), size 10-25% of the
frame width, no two with the same colour and shape, moving left/right/up/down at constant speed or standing still,
inside the frame; an object may be visible only in the first or only in the second half of the video.

One vectorised torch renderer serves the mp4 files (`stop synth`) and the training batches, so both see the same
world. Questions follow the six templates (plus multiple-choice forms of 2-4) and have one-word answers."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

SHAPES = ("circle", "square", "triangle")
COLORS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}
MOVES = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}
NUMBERS = {1: "one", 2: "two", 3: "three"}
LETTERS = "abcd"


@dataclass
class Obj:
    shape: str
    color: str
    rgb: tuple[int, int, int]
    size: float  # diameter as a fraction of the frame width
    x0: float  # centre at the first frame, fractions of width / height
    y0: float
    x1: float  # centre at the last frame
    y1: float
    move: str
    visible: str = "all"  # all | first | second

    def visible_at(self, f: float) -> bool:
        return self.visible == "all" or (self.visible == "first") == (f < 0.5)


@dataclass
class Scene:
    height: int
    width: int
    background: tuple[int, int, int]
    noise: float
    distractor: str  # none | logo | letterbox
    corner: int = 0
    objects: list[Obj] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def sample_scene(rng: random.Random, height: int | None = None, width: int | None = None) -> Scene:
    h = height or rng.choice([64, 96, 128, 160])
    w = width or rng.choice([h, h, int(h * 4 / 3) // 2 * 2])
    v = rng.randint(40, 220)
    bg = (v, v, v) if rng.random() < 0.5 else (v, int(v * 0.93), int(v * 0.8))
    distractor = rng.choices(["none", "logo", "letterbox"], [4, 1, 1])[0]
    scene = Scene(h, w, bg, rng.choice([0.0, 0.0, 2.0, 4.0]), distractor, corner=rng.randrange(4))
    pairs = [(s, c) for s in SHAPES for c in COLORS]
    rng.shuffle(pairs)
    n = rng.randint(1, 3)
    pairs = pairs[:n] * 8  # retries for objects that would overlap
    top = 0.14 if distractor == "letterbox" else 0.0  # objects stay out of the bars
    for shape, color in pairs:
        if len(scene.objects) == n or any(o.shape == shape and o.color == color for o in scene.objects):
            continue
        size = rng.uniform(0.10, 0.25)
        rx, ry = size / 2, size / 2 * w / h
        lo_x, hi_x, lo_y, hi_y = rx + 0.02, 1 - rx - 0.02, top + ry + 0.02, 1 - top - ry - 0.02
        move = rng.choice(list(MOVES))
        dx, dy = MOVES[move]
        travel = rng.uniform(0.3, 0.6)
        span_x, span_y = (hi_x - lo_x), (hi_y - lo_y)
        tx, ty = min(travel, span_x) * dx, min(travel, span_y) * dy
        x0 = rng.uniform(lo_x + max(0, -tx), hi_x - max(0, tx))
        y0 = rng.uniform(lo_y + max(0, -ty), hi_y - max(0, ty))
        rgb = tuple(int(np.clip(c + rng.randint(-30, 30), 0, 255)) for c in COLORS[color])
        visible = rng.choices(["all", "first", "second"], [2, 1, 1])[0]
        ob = Obj(shape, color, rgb, size, x0, y0, x0 + tx, y0 + ty, move, visible)
        if any(_collide(ob, other, w / h) for other in scene.objects):
            continue  # objects never overlap, so none is hidden and every answer is visible
        scene.objects.append(ob)
    return scene


def _collide(a: Obj, b: Obj, aspect: float) -> bool:
    for f in np.linspace(0, 1, 9):
        if not (a.visible_at(f) and b.visible_at(f)):
            continue
        ax, ay = a.x0 + (a.x1 - a.x0) * f, (a.y0 + (a.y1 - a.y0) * f) / aspect
        bx, by = b.x0 + (b.x1 - b.x0) * f, (b.y0 + (b.y1 - b.y0) * f) / aspect
        if ((ax - bx) ** 2 + (ay - by) ** 2) ** 0.5 < (a.size + b.size) / 2 + 0.03:
            return True
    return False


def render(scenes: list[Scene], frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scenes of one size -> video [B, T, H, W, 3] uint8, object masks [B, O, T, H, W] bool (O = 3, padded),
    and per-object (colour, shape) class ids [B, O, 2] (-1 for padding). Vectorised over scenes and frames."""
    b, h, w = len(scenes), scenes[0].height, scenes[0].width
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, frames)  # [T] time fraction
    ys = (torch.arange(h) + 0.5)[:, None] / h  # [H, 1]
    xs = (torch.arange(w) + 0.5)[None, :] / w  # [1, W]
    o = 3
    par = torch.zeros(b, o, 6)  # x0, y0, x1, y1, radius (fraction of width), shape id
    vis = torch.zeros(b, o, frames, dtype=torch.bool)
    rgb = torch.zeros(b, o, 3)
    cls = torch.full((b, o, 2), -1, dtype=torch.long)
    for i, sc in enumerate(scenes):  # parameters only: a few numbers per object
        for j, ob in enumerate(sc.objects):
            par[i, j] = torch.tensor([ob.x0, ob.y0, ob.x1, ob.y1, ob.size / 2, SHAPES.index(ob.shape)])
            vis[i, j] = torch.tensor([ob.visible_at(float(f)) for f in t])
            rgb[i, j] = torch.tensor(ob.rgb, dtype=torch.float32)
            cls[i, j] = torch.tensor([list(COLORS).index(ob.color), SHAPES.index(ob.shape)])
    cx = par[..., 0, None] + (par[..., 2, None] - par[..., 0, None]) * t  # [B, O, T]
    cy = par[..., 1, None] + (par[..., 3, None] - par[..., 1, None]) * t
    r = par[..., 4, None, None, None]  # [B, O, 1, 1, 1] in width units
    dx = (xs - cx[..., None, None]) * w / w  # [B, O, T, H, W] in width units
    dy = (ys - cy[..., None, None]) * h / w
    shape = par[..., 5, None, None, None]
    circle = dx ** 2 + dy ** 2 <= r ** 2
    square = (dx.abs() <= r * 0.9) & (dy.abs() <= r * 0.9)
    triangle = (dy <= r) & (dy >= -r) & (dx.abs() <= (dy + r) / 2)
    masks = torch.where(shape == 0, circle, torch.where(shape == 1, square, triangle))
    masks &= vis[..., None, None] & (cls[..., 0] >= 0)[..., None, None, None]

    bg = torch.tensor([sc.background for sc in scenes], dtype=torch.float32)  # [B, 3]
    video = bg[:, None, None, None, :].expand(b, frames, h, w, 3).clone()
    for i, sc in enumerate(scenes):
        if sc.distractor == "logo":
            lh, lw = max(3, int(0.08 * h)), max(5, int(0.16 * w))
            y = 3 if sc.corner < 2 else h - 3 - lh
            x = 3 if sc.corner % 2 == 0 else w - 3 - lw
            video[i, :, y:y + lh, x:x + lw] = 215.0
        elif sc.distractor == "letterbox":
            bar = int(0.12 * h)
            video[i, :, :bar] = 0.0
            video[i, :, h - bar:] = 0.0
    for j in range(o):  # paint objects in order (later ones on top)
        video = torch.where(masks[:, j, ..., None], rgb[:, j, None, None, None, :], video)
    noise = torch.tensor([sc.noise for sc in scenes])[:, None, None, None, None]
    video = video + noise * torch.randn(video.shape, generator=g)
    return video.clamp(0, 255).round().to(torch.uint8), masks, cls


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    type: str
    options: tuple[str, ...] | None = None
    target: int | None = None  # the object the answer is about (index in scene.objects), -1: all of them


def _mc(rng: random.Random, q: str, answer: str, pool: list[str], kind: str, target: int | None = None) -> QA:
    wrong = [p for p in pool if p != answer]
    rng.shuffle(wrong)
    opts = wrong[:3] + [answer]
    rng.shuffle(opts)
    listed = " ".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(opts))
    return QA(f"{q} options: {listed}. answer with the letter.", LETTERS[opts.index(answer)], kind + "_mc",
              tuple(opts), target)


def _template(kind: str, o: Obj) -> tuple[str, str, list[str]]:
    """Template 2, 3 or 4 (kind color, shape or direction) about object o: question, answer, multiple-choice pool."""
    return {"color": (f"what color is the {o.shape}?", o.color, list(COLORS)),
            "shape": (f"what shape is the {o.color} object?", o.shape, list(SHAPES) + ["star"]),
            "direction": (f"which direction does the {o.color} {o.shape} move?", o.move, list(MOVES))}[kind]


def _ask(rng: random.Random, kind: str, o: Obj, target: int, mc: float) -> QA:
    """Template `kind` about object o (index target), in its multiple-choice form with probability mc."""
    q, answer, pool = _template(kind, o)
    return _mc(rng, q, answer, pool, kind, target) if rng.random() < mc else QA(q, answer, kind, target=target)


def questions(scene: Scene, rng: random.Random, mc: float = 0.3) -> list[QA]:
    """Every template that applies to the scene, one instance each (random choices inside a template); templates 2-4
    take their multiple-choice form with probability `mc`."""
    objs = scene.objects
    out = []
    i = rng.randrange(len(objs))
    if rng.random() < 0.5:
        out.append(QA(f"is there a {objs[i].color} {objs[i].shape} in the video?", "yes", "exist", target=i))
    else:
        present = {(o.color, o.shape) for o in objs}
        absent = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in present]
        near = [(c, s) for c, s in absent if any(c == o.color or s == o.shape for o in objs)]
        c, s = rng.choice(near if near and rng.random() < 0.5 else absent)
        out.append(QA(f"is there a {c} {s} in the video?", "no", "exist"))
    shapes = [o.shape for o in objs]
    colors = [o.color for o in objs]
    unique_shape = [j for j, o in enumerate(objs) if shapes.count(o.shape) == 1]
    unique_color = [j for j, o in enumerate(objs) if colors.count(o.color) == 1]
    if unique_shape:
        j = rng.choice(unique_shape)
        out.append(_ask(rng, "color", objs[j], j, mc))
    if unique_color:
        j = rng.choice(unique_color)
        out.append(_ask(rng, "shape", objs[j], j, mc))
    j = rng.randrange(len(objs))
    out.append(_ask(rng, "direction", objs[j], j, mc))
    out.append(QA("how many objects are there?", NUMBERS[len(objs)], "count", target=-1))
    j = rng.randrange(len(objs))
    out.append(QA(f"is the {objs[j].color} {objs[j].shape} visible at the end of the video?",
                  "yes" if objs[j].visible_at(1.0) else "no", "visible_end", target=j))
    return out


def every_question(scene: Scene, rng: random.Random, mc: float = 0.3) -> list[QA]:
    """Every instance of every template that applies to the scene: existence of each object and of as many absent
    colour-shape pairs (half of them sharing a colour or a shape with an object), the colour of each object whose
    shape is unique, the shape of each whose colour is unique, each object's direction and end visibility, and the
    count. Training asks a video many questions at once; templates 2-4 take their multiple-choice form with
    probability `mc`."""
    objs = scene.objects
    out = [QA(f"is there a {o.color} {o.shape} in the video?", "yes", "exist", target=j) for j, o in enumerate(objs)]
    present = {(o.color, o.shape) for o in objs}
    absent = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in present]
    near = [(c, s) for c, s in absent if any(c == o.color or s == o.shape for o in objs)]
    far = [pair for pair in absent if pair not in near]
    rng.shuffle(near)
    rng.shuffle(far)
    n_near = sum(rng.random() < 0.5 for _ in objs)
    picked = near[:n_near] + far[:len(objs) - n_near]
    picked += [pair for pair in near + far if pair not in picked][:len(objs) - len(picked)]
    out += [QA(f"is there a {c} {s} in the video?", "no", "exist") for c, s in picked]
    shapes = [o.shape for o in objs]
    colors = [o.color for o in objs]
    for j, o in enumerate(objs):
        if shapes.count(o.shape) == 1:
            out.append(_ask(rng, "color", o, j, mc))
        if colors.count(o.color) == 1:
            out.append(_ask(rng, "shape", o, j, mc))
        out.append(_ask(rng, "direction", o, j, mc))
        out.append(QA(f"is the {o.color} {o.shape} visible at the end of the video?",
                      "yes" if o.visible_at(1.0) else "no", "visible_end", target=j))
    out.append(QA("how many objects are there?", NUMBERS[len(objs)], "count", target=-1))
    return out


def generate(out_dir: str | Path, n: int, seed: int = 0, frames: int = 16, fps: int = 8) -> Path:
    """Write n videos and one question per video (types cycled so every type is covered) to out_dir, with
    annotations.jsonl in the bench format and scenes.jsonl describing each video. Returns the annotations path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    kinds = ["exist", "color", "shape", "direction", "count", "visible_end", "color_mc", "shape_mc", "direction_mc"]
    records, scenes = [], []
    i = 0
    while len(records) < n:
        scene = sample_scene(rng)
        qa = [q for q in questions(scene, rng) if q.type == kinds[len(records) % len(kinds)]]
        if not qa and kinds[len(records) % len(kinds)].endswith("_mc"):
            base = kinds[len(records) % len(kinds)][:-3]
            qa = [q for q in _forced_mc(scene, rng) if q.type.startswith(base)]
        if not qa:
            continue
        video, _, _ = render([scene], frames, seed=seed * 100003 + i)
        name = f"synth_{seed}_{i:05d}.mp4"
        write_video(out / name, video[0].numpy(), fps=fps)
        q = qa[0]
        records.append(dict(video=name, question=q.question, answer=q.answer, type=q.type,
                            **({"options": list(q.options)} if q.options else {})))
        scenes.append(dict(video=name, **scene.to_json()))
        i += 1
    (out / "annotations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (out / "scenes.jsonl").write_text("".join(json.dumps(s) + "\n" for s in scenes))
    return out / "annotations.jsonl"


def _forced_mc(scene: Scene, rng: random.Random) -> list[QA]:
    """Multiple-choice forms of templates 2-4 whenever they apply."""
    objs = scene.objects
    out = []
    shapes, colors = [o.shape for o in objs], [o.color for o in objs]
    us = [j for j, o in enumerate(objs) if shapes.count(o.shape) == 1]
    uc = [j for j, o in enumerate(objs) if colors.count(o.color) == 1]
    if us:
        j = rng.choice(us)
        out.append(_mc(rng, *_template("color", objs[j]), "color", j))
    if uc:
        j = rng.choice(uc)
        out.append(_mc(rng, *_template("shape", objs[j]), "shape", j))
    j = rng.randrange(len(objs))
    out.append(_mc(rng, *_template("direction", objs[j]), "direction", j))
    return out


def moving_shape_frames(shape: str = "circle", color: str = "red", move: str = "right", frames: int = 16,
                        size: int = 128, background: int = 128, logo: bool = False) -> np.ndarray:
    """[frames, size, size, 3] uint8: one shape crossing the frame (a fixed scene, for samples and tests)."""
    dx, dy = MOVES[move]
    ob = Obj(shape, color, COLORS[color], 0.18, 0.5 - 0.25 * dx, 0.5 - 0.25 * dy, 0.5 + 0.25 * dx, 0.5 + 0.25 * dy,
             move)
    scene = Scene(size, size, (background,) * 3, 0.0, "logo" if logo else "none", corner=1, objects=[ob])
    return render([scene], frames)[0][0].numpy()


def write_video(path: str | Path, frames: np.ndarray, fps: int = 8, crf: int = 18) -> Path:
    """Encode [T, H, W, 3] uint8 RGB frames as H.264 mp4 (even sizes required by yuv420p)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


__all__ = ["Scene", "Obj", "QA", "sample_scene", "render", "questions", "generate", "moving_shape_frames",
           "write_video"]
