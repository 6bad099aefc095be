"""A synthetic panoptic dataset, drawn on the fly: the built-in demo data.

No download. Example ``i`` of a split is a pure function of ``(seed, split,
i)`` (its own ``numpy`` generator seeded from the three), so any position can
be read in any order: an input pipeline can shuffle, shard by host and resume
anywhere. Drawing is vectorised numpy, fast enough to feed training from
the trainer's own threads.

A scene (sizes are for 128 x 128 and scale with ``min(H, W) / 128``):

- Stuff: the background is split into 1-3 regions (a Voronoi partition with
  wavy borders), each one textured stuff class: ``grass`` (green noise),
  ``stripes`` (brown bands at a random angle and period), ``checker``
  (grey squares, rotated). One segment per stuff class and image, as in COCO.
- Void: in about half the images with several regions, a thin strip along
  the region borders is unlabelled (painted dark); sometimes a small
  unlabelled grey blob.
- Crowd: in about a third of the images, a cluster of 8-20 small objects of
  one thing class, labelled as one ``iscrowd=1`` segment.
- Things: 2-9 instances of ``disc``, ``square``, ``triangle`` and ``ring``,
  solid saturated colours with per-instance jitter and a dark outline,
  diameters 8-40 px (log-uniform), rotated. About a third are placed against
  an earlier instance so they touch or overlap; later ones occlude earlier
  ones. A placement that would leave an earlier instance (or the crowd) with
  less than ``min_visible_fraction`` of its area is redrawn elsewhere (up to
  a few tries, then skipped); with ``min_visible_fraction=0`` instances may be
  occluded entirely and are then dropped.
- Finally a global brightness jitter (x0.85-1.15) and per-pixel uniform
  noise (std 5).

Categories (COCO style; ids are deliberately not contiguous). Train ids are
things first, then stuff, each by id (:class:`pcv.data.LabelSpace`):

    train id  category id  name      isthing
    0         1            disc      1
    1         2            square    1
    2         4            triangle  1
    3         7            ring      1
    4         11           grass     0
    5         12           stripes   0
    6         14           checker   0

Usage::

    ds = SyntheticPanoptic("val", size=(128, 128), num_examples=128, seed=0)
    ex = ds[3]        # {"image", "segment_ids", "segments_info", "image_id"}
    ds.label_space    # train ids; ds.thing_mask; ds.categories
"""

from __future__ import annotations

import dataclasses
import math
import zlib

import numpy as np

from pcv.data.panoptic import LabelSpace, PanopticSource

CATEGORIES: tuple[dict, ...] = (
    {"id": 1, "name": "disc", "isthing": 1, "color": [225, 45, 45], "supercategory": "shape"},
    {"id": 2, "name": "square", "isthing": 1, "color": [240, 200, 30], "supercategory": "shape"},
    {"id": 4, "name": "triangle", "isthing": 1, "color": [30, 115, 235], "supercategory": "shape"},
    {"id": 7, "name": "ring", "isthing": 1, "color": [200, 50, 215], "supercategory": "shape"},
    {"id": 11, "name": "grass", "isthing": 0, "color": [70, 135, 60], "supercategory": "texture"},
    {"id": 12, "name": "stripes", "isthing": 0, "color": [170, 135, 95], "supercategory": "texture"},
    {"id": 14, "name": "checker", "isthing": 0, "color": [150, 150, 160], "supercategory": "texture"},
)
LABEL_SPACE = LabelSpace(CATEGORIES)

_COLOR = {c["id"]: np.array(c["color"], np.float32) for c in CATEGORIES}
_THING_IDS = tuple(c["id"] for c in CATEGORIES if c["isthing"])
_STUFF_IDS = tuple(c["id"] for c in CATEGORIES if not c["isthing"])
_SHAPE = {1: "disc", 2: "square", 4: "triangle", 7: "ring"}
# Crowds are many tiny objects; rings and triangles are not legible that small.
_CROWD_IDS = (1, 2)

#: Split lengths by name. Train is effectively unbounded (every index is a
#: new scene), so a trainer can read example ``step * B + i`` for any step.
UNBOUNDED = 2**31 - 1
DEFAULT_NUM_EXAMPLES = {"train": UNBOUNDED, "val": 128, "test": 128}


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the scene generator (sizes in pixels at 128 x 128).

    Attributes:
      num_things: inclusive range of thing instances attempted per image.
      thing_diameter: range of thing diameters (log-uniform).
      touch_prob: chance that an instance is placed against an earlier one.
      crowd_prob: chance of one crowd region per image.
      crowd_count: inclusive range of objects in a crowd.
      crowd_diameter: range of their diameters.
      void_strip_prob: chance of unlabelled strips along stuff borders (when
        there are several stuff regions).
      void_blob_prob: chance of a small unlabelled blob.
      min_visible_fraction: an instance (or the crowd) must keep at least this
        fraction of its area when later ones are drawn over it; 0 allows full
        occlusion (the instance is then dropped).
      color_jitter: per-instance / per-texture uniform jitter of each channel.
      noise_std: per-pixel Gaussian noise.
    """

    num_things: tuple[int, int] = (2, 9)
    thing_diameter: tuple[float, float] = (8.0, 40.0)
    touch_prob: float = 0.35
    crowd_prob: float = 0.35
    crowd_count: tuple[int, int] = (8, 20)
    crowd_diameter: tuple[float, float] = (4.0, 7.0)
    void_strip_prob: float = 0.5
    void_blob_prob: float = 0.3
    min_visible_fraction: float = 0.35
    color_jitter: float = 25.0
    noise_std: float = 5.0


def example_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator that draws example ``index`` of ``split``: a function of the three only."""
    # crc32, not hash(): stable across processes and Python runs.
    return np.random.default_rng([int(seed), zlib.crc32(split.encode("utf-8")), int(index)])


class SyntheticPanoptic(PanopticSource):
    """Random-access synthetic panoptic split (grain ``RandomAccessDataSource``).

    Args:
      split: any name; "train" (unbounded), "val" and "test" (128) have
        default lengths (``DEFAULT_NUM_EXAMPLES``). Different names give
        different images.
      size: ``(H, W)`` of the images.
      num_examples: length of the split; default by split name. Any index
        below it can be read; nothing is stored.
      seed: non-negative int; different seeds give different datasets.
      config: generator settings (:class:`SyntheticConfig`).

    ``ds[i]`` returns ``{"image": uint8 [H, W, 3], "segment_ids": int32 [H, W]
    (0 = void), "segments_info": [{"id", "category_id", "iscrowd", "area",
    "bbox"}], "image_id": i}``.
    """

    def __init__(
        self,
        split: str = "train",
        size: tuple[int, int] = (128, 128),
        num_examples: int | None = None,
        seed: int = 0,
        config: SyntheticConfig = SyntheticConfig(),
    ):
        if num_examples is None:
            if split not in DEFAULT_NUM_EXAMPLES:
                raise ValueError(f"split {split!r} has no default length; pass num_examples")
            num_examples = DEFAULT_NUM_EXAMPLES[split]
        size = tuple(int(s) for s in size)
        if len(size) != 2 or min(size) < 16:
            raise ValueError(f"size must be (H, W) with both at least 16, got {size}")
        if num_examples < 0:
            raise ValueError(f"num_examples must be >= 0, got {num_examples}")
        if int(seed) < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed}")
        self.split = split
        self.size = size
        self.num_examples = int(num_examples)
        self.seed = int(seed)
        self.config = config

    # The label space is the same for every split and size.
    label_space = LABEL_SPACE

    @property
    def categories(self) -> list[dict]:
        """COCO ``categories`` (id, name, isthing, color, supercategory), in train-id order."""
        return [dict(c) for c in LABEL_SPACE.categories]

    @property
    def train_id_of_category(self) -> dict[int, int]:
        return dict(LABEL_SPACE.train_id_of_category)

    def __len__(self) -> int:
        return self.num_examples

    def __getitem__(self, index: int) -> dict:
        index = self._position(index)
        rng = example_rng(self.seed, self.split, index)
        image, segment_ids, segments_info = draw_scene(rng, self.size, self.config)
        return {"image": image, "segment_ids": segment_ids, "segments_info": segments_info, "image_id": index}

    def __repr__(self) -> str:
        return (
            f"SyntheticPanoptic(split={self.split!r}, size={self.size}, "
            f"num_examples={self.num_examples}, seed={self.seed})"
        )


# ----------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------


def draw_scene(
    rng: np.random.Generator,
    size: tuple[int, int],
    config: SyntheticConfig = SyntheticConfig(),
    stats: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """One random scene: ``(image uint8 [H, W, 3], segment_ids int32 [H, W], segments_info)``.

    If ``stats`` is a dict, it receives counts of what happened while drawing
    (for tests and curiosity): ``things_drawn``, ``things_skipped`` (no room
    found), ``things_occluded`` (lost pixels to later ones), ``things_dropped``
    (occluded entirely), ``touching_placements``.
    """
    h, w = size
    scale = min(h, w) / 128.0
    yy = np.arange(h, dtype=np.float32)[:, None]  # [H, 1]
    xx = np.arange(w, dtype=np.float32)[None, :]  # [1, W]
    canvas = np.empty((h, w, 3), np.float32)
    # Draft labels: 0 = void, else an index into `entities` (category_id, iscrowd).
    label = np.zeros((h, w), np.int32)
    entities: list[tuple[int, int]] = [(0, 0)]

    # --- Stuff: a wavy Voronoi partition, one texture per region. -----------
    k = int(rng.choice([1, 2, 3], p=[0.15, 0.45, 0.40]))
    classes = rng.choice(_STUFF_IDS, size=k, replace=False)
    seeds = rng.uniform((0, 0), (h, w), size=(k, 2)).astype(np.float32)
    # Python floats throughout: a numpy float64 scalar would promote the
    # float32 maps to float64 (NEP 50) and double the drawing time.
    amp = float(rng.uniform(2.0, 7.0)) * scale
    fy, fx = (2 * math.pi / (float(p) * scale) for p in rng.uniform(25.0, 60.0, size=2))
    py, px = (float(p) for p in rng.uniform(0, 2 * math.pi, size=2))
    wy = yy + amp * np.sin(xx * fy + py)  # [H, W]
    wx = xx + amp * np.sin(yy * fx + px)  # [H, W]
    dist = np.sqrt((wy[None] - seeds[:, 0, None, None]) ** 2 + (wx[None] - seeds[:, 1, None, None]) ** 2)  # [k, H, W]
    # Region = nearest seed (argmin over k <= 3, by comparisons: faster).
    region = np.zeros((h, w), np.int32)
    nearest = dist[0]
    for j in range(1, k):
        closer = dist[j] < nearest
        region[closer] = j
        nearest = np.minimum(nearest, dist[j])
    for j, category_id in enumerate(classes):
        texture = _texture(rng, int(category_id), yy, xx, scale)  # [H, W, 3]
        if j == 0:
            canvas[...] = texture
        else:
            mask = region == j
            # A blend with a 0/1 mask: much faster than a masked copy.
            canvas += mask[..., None] * (texture - canvas)
        entities.append((int(category_id), 0))
    label[...] = region + 1  # stuff entities are 1..k in region order
    if k > 1 and rng.random() < config.void_strip_prob:
        second = dist.max(0) if k == 2 else dist.sum(0) - dist.max(0) - nearest
        strip = (second - nearest) < rng.uniform(1.0, 2.5) * scale
        label[strip] = 0
        canvas[strip] = rng.uniform(20, 50)
    if rng.random() < config.void_blob_prob:
        cy, cx = (float(v) for v in rng.uniform((0, 0), (h, w)))
        ry, rx = (float(v) * scale for v in rng.uniform(3.0, 8.0, size=2))
        blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        label[blob] = 0
        canvas[blob] = rng.uniform(90, 170) + rng.normal(0, 20, size=(int(blob.sum()), 1))

    # --- Things and the crowd, drawn in order (later occludes earlier). -----
    # Visible pixels of each entity, and its area when drawn; tracked for
    # things and the crowd only (entities from `occludable_from` on).
    visible = [0] * len(entities)
    original = [0] * len(entities)
    occludable_from = len(entities)

    def paint(shape_mask, window, color, entity) -> None:
        (y0, y1), (x0, x1) = window
        win_label = label[y0:y1, x0:x1]
        win_canvas = canvas[y0:y1, x0:x1]
        counts = np.bincount(win_label[shape_mask], minlength=len(visible))
        for e in range(occludable_from, len(visible)):
            visible[e] -= int(counts[e]) if e != entity else 0
        win_canvas[shape_mask] = color
        win_canvas[shape_mask & ~_erode(shape_mask)] *= 0.55  # outline
        win_label[shape_mask] = entity

    def fits(shape_mask, window, entity) -> bool:
        """Would drawing here leave every earlier thing / crowd enough of itself?"""
        (y0, y1), (x0, x1) = window
        counts = np.bincount(label[y0:y1, x0:x1][shape_mask], minlength=len(visible))
        for e in range(occludable_from, len(visible)):
            if e != entity and visible[e] - counts[e] < config.min_visible_fraction * original[e]:
                return False
        return True

    if rng.random() < config.crowd_prob:
        category_id = int(rng.choice(_CROWD_IDS))
        entities.append((category_id, 1))
        visible.append(0)
        original.append(0)
        crowd = len(entities) - 1
        color = _COLOR[category_id] + rng.uniform(-config.color_jitter, config.color_jitter, 3)
        center = rng.uniform((0.15 * h, 0.15 * w), (0.85 * h, 0.85 * w))
        spread = rng.uniform(10.0, 18.0) * scale
        n = int(rng.integers(config.crowd_count[0], config.crowd_count[1] + 1))
        for _ in range(n):
            a, rad = rng.uniform(0, 2 * np.pi), spread * np.sqrt(rng.random())
            cy, cx = center[0] + rad * np.sin(a), center[1] + rad * np.cos(a)
            r = rng.uniform(*config.crowd_diameter) * scale / 2
            mask, window = _shape(_SHAPE[category_id], cy, cx, r, rng.uniform(0, np.pi), 0.0, h, w)
            if mask is not None:
                paint(mask, window, color, crowd)
        visible[crowd] = original[crowd] = int((label == crowd).sum())

    placed: list[tuple[float, float, float]] = []  # (cy, cx, r) of instances
    first_thing = len(entities)
    skipped = touching = 0
    n = int(rng.integers(config.num_things[0], config.num_things[1] + 1))
    lo, hi = (math.log(d * scale) for d in config.thing_diameter)
    for _ in range(n):
        category_id = int(rng.choice(_THING_IDS))
        r = math.exp(rng.uniform(lo, hi)) / 2
        theta = rng.uniform(0, 2 * np.pi)
        inner = rng.uniform(0.4, 0.6)
        touch = bool(placed) and rng.random() < config.touch_prob
        for _try in range(4):
            if touch:
                oy, ox, other_r = placed[int(rng.integers(len(placed)))]
                a = rng.uniform(0, 2 * np.pi)
                dist_c = (other_r + r) * rng.uniform(0.7, 1.0)
                cy, cx = oy + dist_c * np.sin(a), ox + dist_c * np.cos(a)
            else:
                cy, cx = rng.uniform((0, 0), (h, w))
            mask, window = _shape(_SHAPE[category_id], cy, cx, r, theta, inner, h, w)
            if mask is None or mask.sum() < 0.5 * _area(_SHAPE[category_id], r, inner):
                continue  # mostly outside the image
            if fits(mask, window, len(entities)):
                break
        else:
            skipped += 1
            continue
        touching += touch
        color = _COLOR[category_id] + rng.uniform(-config.color_jitter, config.color_jitter, 3)
        entities.append((category_id, 0))
        visible.append(0)
        original.append(0)
        paint(mask, window, color, len(entities) - 1)
        visible[-1] = original[-1] = int(mask.sum())
        placed.append((cy, cx, r))

    if stats is not None:
        things = range(first_thing, len(entities))
        stats["things_drawn"] = len(things)
        stats["things_skipped"] = skipped
        stats["things_occluded"] = sum(visible[e] < original[e] for e in things)
        stats["things_dropped"] = sum(visible[e] == 0 for e in things)
        stats["touching_placements"] = touching

    # --- Photometrics. --------------------------------------------------------
    canvas *= rng.uniform(0.85, 1.15)
    # Uniform noise of std noise_std (cheaper to draw than Gaussian).
    canvas += np.float32(config.noise_std * math.sqrt(12)) * (rng.random((h, w, 3), dtype=np.float32) - 0.5)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)

    # --- Labels: drop entities occluded to nothing, number the rest 1..N. ----
    areas = np.bincount(label.ravel(), minlength=len(entities))
    lut = np.zeros(len(entities), np.int32)
    keep = [e for e in range(1, len(entities)) if areas[e] > 0]
    lut[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
    segment_ids = lut[label]
    segments_info = []
    for e in keep:
        mask = label == e
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        segments_info.append(
            {
                "id": int(lut[e]),
                "category_id": entities[e][0],
                "iscrowd": entities[e][1],
                "area": int(areas[e]),
                "bbox": [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)],
            }
        )
    return image, segment_ids, segments_info


def _texture(rng: np.random.Generator, category_id: int, yy, xx, scale: float) -> np.ndarray:
    """A full-image ``[H, W, 3]`` float32 texture of one stuff class."""
    h, w = yy.shape[0], xx.shape[1]
    base = _COLOR[category_id] + rng.uniform(-15, 15, 3).astype(np.float32)
    if category_id == 11:  # grass: blotchy green noise, greener than it is red or blue
        cell = max(2, round(6 * scale))
        coarse = rng.standard_normal((h // cell + 1, w // cell + 1), dtype=np.float32)
        coarse = np.repeat(np.repeat(coarse, cell, 0), cell, 1)[:h, :w]
        fine = rng.random((h, w), dtype=np.float32) - 0.5  # uniform, std 0.29
        value = 12 * coarse + 60 * fine  # [H, W]
        return base + value[..., None] * np.array([0.5, 1.0, 0.4], np.float32)
    theta = float(rng.uniform(0, math.pi))
    c, s = math.cos(theta), math.sin(theta)
    # Positive coordinates (+ offset), so int truncation is floor.
    u = yy * c + xx * s + 4 * (yy.shape[0] + xx.shape[1])  # [H, W]
    if category_id == 12:  # stripes: two-tone bands
        period = float(rng.uniform(6.0, 12.0)) * scale
        dark = (u * (2 / period) + 2 * float(rng.random())).astype(np.int32) & 1  # [H, W]
        return base * (1 - 0.35 * dark[..., None].astype(np.float32))
    if category_id == 14:  # checker: two-tone squares
        cell = float(rng.uniform(5.0, 10.0)) * scale
        v = xx * c - yy * s + 4 * (yy.shape[0] + xx.shape[1])  # [H, W]
        dark = ((u * (1 / cell)).astype(np.int32) + (v * (1 / cell)).astype(np.int32)) & 1  # [H, W]
        return base * (1 - 0.4 * dark[..., None].astype(np.float32))
    raise ValueError(f"no texture for category {category_id}")


def _shape(kind: str, cy: float, cx: float, r: float, theta: float, inner: float, h: int, w: int):
    """Boolean mask of one shape in its window of the image, or ``(None, None)`` if off-image.

    ``r`` is the radius (disc, ring outer edge), the half-side divided by 0.8
    (square) or the circumradius divided by 1.15 (triangle), so all kinds of
    one ``r`` look about the same size. ``inner`` is the ring's hole radius
    as a fraction of ``r``.
    """
    ext = 1.2 * r + 1
    y0, y1 = max(0, math.floor(cy - ext)), min(h, math.ceil(cy + ext) + 1)
    x0, x1 = max(0, math.floor(cx - ext)), min(w, math.ceil(cx + ext) + 1)
    if y0 >= y1 or x0 >= x1:
        return None, None
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
    if kind == "disc":
        mask = dy * dy + dx * dx <= r * r
    elif kind == "ring":
        d2 = dy * dy + dx * dx
        mask = (d2 <= r * r) & (d2 >= (inner * r) ** 2)
    elif kind == "square":
        c, s, half = math.cos(theta), math.sin(theta), 0.8 * r
        mask = (np.abs(c * dx + s * dy) <= half) & (np.abs(c * dy - s * dx) <= half)
    elif kind == "triangle":
        # Equilateral: inside all three edges, each at the inradius R / 2.
        big = 1.15 * r
        mask = np.ones((y1 - y0, x1 - x0), bool)
        for k in range(3):
            a = theta + 2 * math.pi * k / 3
            mask &= dy * math.sin(a) + dx * math.cos(a) <= big / 2
    else:
        raise ValueError(f"unknown shape {kind!r}")
    if not mask.any():
        return None, None
    return mask, ((y0, y1), (x0, x1))


def _area(kind: str, r: float, inner: float) -> float:
    """Area of an unclipped shape (see :func:`_shape` for ``r``)."""
    if kind == "disc":
        return math.pi * r * r
    if kind == "ring":
        return math.pi * r * r * (1 - inner * inner)
    if kind == "square":
        return (1.6 * r) ** 2
    return 3 * math.sqrt(3) / 4 * (1.15 * r) ** 2  # triangle of circumradius 1.15 r


def _erode(mask: np.ndarray) -> np.ndarray:
    """4-neighbour erosion; pixels at the window edge count as outside."""
    m = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), bool)
    m[1:-1, 1:-1] = mask
    return m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
