"""Procedural scenes: shapes of named colours, sizes and patterns on varied backgrounds.

A scene is a graph of objects drawn in order (later ones in front), so objects may occlude one
another. Rendering is anti-aliased: each object's coverage comes from 4x4 supersampling of its
outline, and objects are alpha-composited onto the background. Because composition is
deterministic, every pixel an object does not touch keeps exactly the background's value; the
*visible footprint* of an object (pixels its coverage touches and no object in front fully
covers) is exact, which makes the pipeline's own accuracy measurable (DESIGN.md).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from PIL import Image, ImageDraw

#: Named object colours (10), far enough apart in hue or value to be told apart in words.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (235, 205, 25),
    "lime": (150, 205, 40),
    "green": (30, 140, 60),
    "cyan": (30, 185, 205),
    "blue": (40, 75, 215),
    "purple": (135, 55, 195),
    "pink": (235, 95, 175),
    "brown": (130, 75, 35),
}
#: Background base colours: light, so every object colour stands out.
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (248, 248, 246),
    "light grey": (214, 214, 214),
    "beige": (238, 228, 200),
    "pale blue": (205, 224, 244),
    "mint": (212, 238, 220),
}
BACKGROUND_KINDS = ("solid", "gradient", "texture")
SHAPES = ("circle", "square", "triangle", "diamond", "star", "hexagon", "pentagon", "cross", "heart")
PATTERNS = ("solid", "striped", "dotted")
#: size word -> bounding-circle radius as a fraction of the image side
SIZES: dict[str, float] = {"small": 0.055, "medium": 0.08, "large": 0.105}
#: gap kept between objects that must not touch, as a fraction of the image side
GAP = 0.02
#: supersampling factor per axis for anti-aliased coverage
SUPERSAMPLE = 4
#: a pattern's second colour is the object colour mixed with white by this much
TINT = 0.6


def tint_of(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """The light second colour of a striped or dotted object."""
    return tuple(int(round(c + (255 - c) * TINT)) for c in rgb)


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One shape: class, colour name (or explicit RGB after a colour-off edit), pattern, place."""

    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    r: float  # bounding-circle radius in pixels
    pattern: str = "solid"
    rgb: tuple[int, int, int] | None = None  # overrides COLOURS[colour] when set

    @property
    def fill(self) -> tuple[int, int, int]:
        return self.rgb if self.rgb is not None else COLOURS[self.colour]


@dataclasses.dataclass
class Scene:
    """A scene graph: image side, background and objects (drawn in order, last in front)."""

    size: int
    background: str
    background_kind: str
    background_seed: int
    objects: list[SceneObject]

    def copy(self) -> Scene:
        return dataclasses.replace(self, objects=list(self.objects))


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Vertices of ``shape`` inscribed in the circle (cx, cy, r)."""

    def ring(n: int, start: float, radii: list[float]) -> list[tuple[float, float]]:
        pts = []
        for i in range(n):
            a = math.radians(start + 360.0 * i / n)
            rr = radii[i % len(radii)]
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts

    if shape == "square":
        return ring(4, 45, [r])
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.7 * r, cy), (cx, cy + r), (cx - 0.7 * r, cy)]
    if shape == "triangle":
        return ring(3, -90, [r])
    if shape == "hexagon":
        return ring(6, 0, [r])
    if shape == "pentagon":
        return ring(5, -90, [r])
    if shape == "star":
        return ring(10, -90, [r, 0.45 * r])
    if shape == "cross":
        w = 0.36 * r
        h = 0.95 * r
        return [
            (cx - w, cy - h),
            (cx + w, cy - h),
            (cx + w, cy - w),
            (cx + h, cy - w),
            (cx + h, cy + w),
            (cx + w, cy + w),
            (cx + w, cy + h),
            (cx - w, cy + h),
            (cx - w, cy + w),
            (cx - h, cy + w),
            (cx - h, cy - w),
            (cx - w, cy - w),
        ]
    if shape == "heart":
        pts = []
        for i in range(48):
            t = 2 * math.pi * i / 48
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((cx + r * x / 17.0, cy - r * (y + 2.5) / 17.0))
        return pts
    raise ValueError(f"unknown shape {shape!r}; allowed: {SHAPES}")


def coverage(obj: SceneObject, size: int) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Anti-aliased coverage of ``obj``: its pixel box (x0, y0, x1, y1) on the canvas and a
    read-only ``float32`` array of that box's shape with values in [0, 1]. Cached by geometry
    (shape, centre, radius): the source, the target and each single-edit scene share most
    objects, and a recoloured or re-patterned object keeps its outline."""
    return _coverage(obj.shape, obj.cx, obj.cy, obj.r, size)


@functools.lru_cache(maxsize=512)
def _coverage(
    shape: str, ocx: float, ocy: float, orr: float, size: int
) -> tuple[tuple[int, int, int, int], np.ndarray]:
    x0 = max(int(math.floor(ocx - orr)) - 1, 0)
    y0 = max(int(math.floor(ocy - orr)) - 1, 0)
    x1 = min(int(math.ceil(ocx + orr)) + 2, size)
    y1 = min(int(math.ceil(ocy + orr)) + 2, size)
    s = SUPERSAMPLE
    img = Image.new("L", ((x1 - x0) * s, (y1 - y0) * s), 0)
    draw = ImageDraw.Draw(img)
    # pixel (i, j) covers [i, i+1) x [j, j+1); supersample centres sit at (k + 0.5) / s
    cx, cy, r = (ocx - x0) * s - 0.5, (ocy - y0) * s - 0.5, orr * s
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    else:
        draw.polygon(_polygon(shape, cx, cy, r), fill=255)
    a = _box_mean(np.asarray(img)) / 255.0
    a.setflags(write=False)
    return (x0, y0, x1, y1), a


def _box_mean(img: np.ndarray) -> np.ndarray:
    """Mean of each SUPERSAMPLE x SUPERSAMPLE block of a ``uint8`` image, as ``float32``.

    Summed as integers (exact: 16 x 255 fits ``uint16``), by strided adds instead of a float
    mean over two axes: ~9x faster, and the same bits, since a float32 sum of small integers is
    exact in any order and dividing by 16 is exact too."""
    s = SUPERSAMPLE
    u = img.astype(np.uint16)
    rows = u[0::s].copy()
    for k in range(1, s):
        rows += u[k::s]
    out = rows[:, 0::s].copy()
    for k in range(1, s):
        out += rows[:, k::s]
    return out.astype(np.float32) / np.float32(s * s)


def _fill(obj: SceneObject, box: tuple[int, int, int, int]) -> np.ndarray:
    """The object's colours over its box, (h, w, 3) float32: solid, stripes or dots anchored to
    its centre (so a moved object keeps its pattern)."""
    x0, y0, x1, y1 = box
    base = np.asarray(obj.fill, dtype=np.float32)
    out = np.empty((y1 - y0, x1 - x0, 3), dtype=np.float32)
    out[:] = base
    if obj.pattern == "solid":
        return out
    # open grids: the same values as a full mgrid, element by element, without its arrays
    yy, xx = (g.astype(np.float32) for g in np.ogrid[y0:y1, x0:x1])
    dx, dy = xx + 0.5 - obj.cx, yy + 0.5 - obj.cy
    if obj.pattern == "striped":
        period = max(4.0, obj.r / 2.5)
        second = np.floor((dx + dy) / period) % 2 == 1  # diagonal bands, half of them tinted
    elif obj.pattern == "dotted":
        step = max(5.0, obj.r / 2.0)
        gx = dx - step * np.round(dx / step)
        gy = dy - step * np.round(dy / step)
        second = gx * gx + gy * gy <= (0.25 * step) ** 2  # ~20% of the area
    else:
        raise ValueError(f"unknown pattern {obj.pattern!r}; allowed: {PATTERNS}")
    out[second] = np.asarray(tint_of(obj.fill), dtype=np.float32)
    return out


def background(scene: Scene) -> np.ndarray:
    """The background as float32 (H, W, 3): a solid colour, a gentle linear gradient, or a
    smooth value-noise texture (both within about +/-14 levels of the base colour)."""
    n = scene.size
    base = np.asarray(BACKGROUND_COLOURS[scene.background], dtype=np.float32)
    img = np.empty((n, n, 3), dtype=np.float32)
    img[:] = base
    if scene.background_kind == "solid":
        return img
    rng = np.random.default_rng(scene.background_seed)
    if scene.background_kind == "gradient":
        a = rng.uniform(0, 2 * np.pi)
        yy, xx = (g.astype(np.float32) / n - 0.5 for g in np.ogrid[0:n, 0:n])
        ramp = (np.cos(a) * xx + np.sin(a) * yy) * 28.0  # about +/-14 levels corner to corner
        img += ramp[..., None]
    elif scene.background_kind == "texture":
        grid = rng.uniform(-14, 14, size=(9, 9)).astype(np.float32)
        small = Image.fromarray(grid, mode="F").resize((n, n), Image.BILINEAR)
        img += np.asarray(small, dtype=np.float32)[..., None]
    else:
        raise ValueError(f"unknown background kind {scene.background_kind!r}; allowed: {BACKGROUND_KINDS}")
    return np.clip(img, 0, 255, out=img)


@functools.lru_cache(maxsize=8)
def _background_cached(size: int, name: str, kind: str, seed: int) -> np.ndarray:
    bg = background(Scene(size, name, kind, seed, []))
    bg.setflags(write=False)
    return bg


def render(scene: Scene) -> np.ndarray:
    """Render ``scene`` to an RGB image (H, W, 3) ``uint8``."""
    n = scene.size
    img = _background_cached(n, scene.background, scene.background_kind, scene.background_seed).copy()
    for obj in scene.objects:
        box, a = coverage(obj, n)
        x0, y0, x1, y1 = box
        region = img[y0:y1, x0:x1]
        a3 = a[..., None]
        region *= 1.0 - a3
        region += _fill(obj, box) * a3
    return np.rint(img, out=img).astype(np.uint8)  # in place: one full-size array less


def visible_footprint(scene: Scene, i: int) -> np.ndarray:
    """The visible footprint of ``scene.objects[i]`` alone (same as ``footprints(scene)[i]``,
    without computing the others')."""
    n = scene.size
    (x0, y0, x1, y1), a = coverage(scene.objects[i], n)
    m = np.zeros((n, n), dtype=bool)
    m[y0:y1, x0:x1] = a > 0
    for obj in scene.objects[i + 1 :]:
        (u0, v0, u1, v1), b = coverage(obj, n)
        m[v0:v1, u0:u1] &= ~(b >= 1.0)
    return m


def footprints(scene: Scene) -> list[np.ndarray]:
    """Each object's visible footprint, ``bool`` (H, W): its coverage touches the pixel and no
    object in front covers the pixel fully."""
    n = scene.size
    out = []
    full_in_front = np.zeros((n, n), dtype=bool)
    for obj in reversed(scene.objects):
        (x0, y0, x1, y1), a = coverage(obj, n)
        m = np.zeros((n, n), dtype=bool)
        m[y0:y1, x0:x1] = a > 0
        m &= ~full_in_front
        full_in_front[y0:y1, x0:x1] |= a >= 1.0
        out.append(m)
    return out[::-1]


@functools.cache
def fill_fraction(shape: str) -> float:
    """Share of its bounding square (2r x 2r) that ``shape`` covers (measured once, large)."""
    box, a = coverage(SceneObject(shape, "red", "large", 200.0, 200.0, 100.0), 400)
    return float(a.sum() / (200.0 * 200.0))


@functools.cache
def shape_centroid(shape: str) -> tuple[float, float]:
    """Centroid of ``shape``'s area relative to its centre, in units of its radius."""
    (x0, y0, _, _), a = coverage(SceneObject(shape, "red", "large", 200.0, 200.0, 100.0), 400)
    ys, xs = np.mgrid[0 : a.shape[0], 0 : a.shape[1]]
    total = a.sum()
    return (
        float(((xs + x0 + 0.5) * a).sum() / total - 200.0) / 100.0,
        float(((ys + y0 + 0.5) * a).sum() / total - 200.0) / 100.0,
    )


@functools.cache
def shape_iou(a: str, b: str) -> float:
    """IoU of two shapes drawn at the same centre and radius (how alike they look)."""
    _, ca = coverage(SceneObject(a, "red", "large", 60.0, 60.0, 50.0), 120)
    _, cb = coverage(SceneObject(b, "red", "large", 60.0, 60.0, 50.0), 120)
    ma, mb = ca >= 0.5, cb >= 0.5
    return float((ma & mb).sum() / max((ma | mb).sum(), 1))


def clear_of(cx: float, cy: float, r: float, size: int, occupied: list[tuple[float, float, float]]) -> bool:
    """True when circle (cx, cy, r) lies inside the canvas and keeps the gap to ``occupied``."""
    gap = GAP * size
    if cx - r < gap or cy - r < gap or cx + r > size - gap or cy + r > size - gap:
        return False
    return all(math.hypot(cx - ox, cy - oy) >= r + orr + gap for ox, oy, orr in occupied)


def find_free_spot(
    rng: np.random.Generator,
    r: float,
    size: int,
    occupied: list[tuple[float, float, float]],
    region: tuple[float, float, float, float] | None = None,
    tries: int = 60,
) -> tuple[float, float] | None:
    """A random centre for a circle of radius ``r`` clear of ``occupied`` (optionally with its
    centre inside ``region`` = (x0, y0, x1, y1)), or None when none is found."""
    x0, y0, x1, y1 = region if region is not None else (0, 0, size, size)
    for _ in range(tries):
        cx = round(float(rng.uniform(x0, x1)), 1)
        cy = round(float(rng.uniform(y0, y1)), 1)
        if clear_of(cx, cy, r, size, occupied):
            return cx, cy
    return None


def random_scene(
    rng: np.random.Generator,
    size: int,
    min_objects: int,
    max_objects: int,
    overlap_rate: float = 0.25,
    object_scale: float = 1.0,
    pattern_rate: float = 0.4,
) -> Scene:
    """A scene of ``min_objects``..``max_objects`` shapes (fewer if space runs out). With
    probability ``overlap_rate`` an object is placed partly over an earlier one (occlusion).
    ``object_scale`` multiplies every size word's radius (small models' presets draw few, large
    objects); ``pattern_rate`` is the share of striped or dotted objects."""
    scene = Scene(
        size=size,
        background=str(rng.choice(list(BACKGROUND_COLOURS))),
        background_kind=str(rng.choice(BACKGROUND_KINDS)),
        background_seed=int(rng.integers(2**31)),
        objects=[],
    )
    n = int(rng.integers(min_objects, max_objects + 1))
    occupied: list[tuple[float, float, float]] = []
    for _ in range(n):
        objs = scene.objects
        if objs and rng.random() < 0.3:  # repeat a kind on purpose: wording must disambiguate
            twin = objs[int(rng.integers(len(objs)))]
            shape, colour = twin.shape, twin.colour
        else:
            shape, colour = str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS)))
        size_word = str(rng.choice(list(SIZES)))
        pattern = str(rng.choice(PATTERNS, p=[1 - pattern_rate, pattern_rate / 2, pattern_rate / 2]))
        r = SIZES[size_word] * size * object_scale
        spot = None
        if objs and rng.random() < overlap_rate:
            # overlap an earlier object by a third to two thirds of the smaller radius
            below = objs[int(rng.integers(len(objs)))]
            for _ in range(10):
                a = rng.uniform(0, 2 * np.pi)
                d = below.r + r - rng.uniform(0.33, 0.66) * min(r, below.r)
                cx, cy = round(below.cx + d * np.cos(a), 1), round(below.cy + d * np.sin(a), 1)
                others = [c for c in occupied if c != (below.cx, below.cy, below.r)]
                if clear_of(cx, cy, r, size, others):
                    spot = (cx, cy)
                    break
        if spot is None:
            spot = find_free_spot(rng, r, size, occupied)
        if spot is None:
            continue
        objs.append(SceneObject(shape, colour, size_word, spot[0], spot[1], r, pattern))
        occupied.append((spot[0], spot[1], r))
    return scene
