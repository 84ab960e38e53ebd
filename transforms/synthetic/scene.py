"""Procedural scenes: flat shapes of named colours on a plain background, with a scene graph.

Objects never overlap (their bounding circles keep a gap), so every object's footprint is exact
and a removed object reveals plain background. Rendering is aliased on purpose: footprints are
exact pixel sets, which makes the pipeline's own accuracy measurable (DESIGN.md).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image, ImageDraw

#: Saturated object colours, well apart in hue (so a 20-45 degree "colour off" is visible).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (235, 205, 25),
    "green": (40, 165, 60),
    "cyan": (30, 185, 205),
    "blue": (40, 80, 220),
    "purple": (140, 60, 200),
    "pink": (235, 95, 175),
}
#: Plain, light backgrounds, far from every object colour.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (250, 250, 250),
    "light grey": (212, 212, 212),
    "beige": (240, 230, 200),
    "pale blue": (205, 225, 245),
}
SHAPES = ("circle", "square", "triangle", "diamond", "star", "hexagon")
#: size word -> bounding-circle radius as a fraction of the image side
SIZES: dict[str, float] = {"small": 0.055, "medium": 0.08, "large": 0.11}
#: gap between bounding circles, as a fraction of the image side
GAP = 0.025


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One flat shape: class, colour name (or explicit RGB after a colour-off edit), place."""

    shape: str
    colour: str
    size: str
    cx: float
    cy: float
    r: float  # bounding-circle radius in pixels
    rgb: tuple[int, int, int] | None = None  # overrides COLOURS[colour] when set

    @property
    def fill(self) -> tuple[int, int, int]:
        return self.rgb if self.rgb is not None else COLOURS[self.colour]


@dataclasses.dataclass
class Scene:
    """A scene graph: image side, background colour name and objects (drawn in order)."""

    size: int
    background: str
    objects: list[SceneObject]

    def copy(self) -> Scene:
        return Scene(self.size, self.background, list(self.objects))


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Vertices of ``shape`` inscribed in the circle (cx, cy, r)."""
    if shape == "square":
        h = r / math.sqrt(2)
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.75 * r, cy), (cx, cy + r), (cx - 0.75 * r, cy)]
    if shape == "triangle":
        angles = [-90, 30, 150]
        return [(cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a))) for a in angles]
    if shape == "hexagon":
        return [
            (cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a)))
            for a in range(0, 360, 60)
        ]
    if shape == "star":
        pts = []
        for i in range(10):
            rr = r if i % 2 == 0 else 0.45 * r
            a = math.radians(-90 + 36 * i)
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts
    raise ValueError(f"unknown shape {shape!r}; allowed: {SHAPES}")


def footprint(obj: SceneObject, size: int) -> np.ndarray:
    """The exact pixel footprint of ``obj`` on a ``size``x``size`` canvas, ``bool`` (H, W)."""
    # Draw only the object's bounding square, then place it: ~10x faster than a full canvas.
    x0 = max(int(math.floor(obj.cx - obj.r)) - 1, 0)
    y0 = max(int(math.floor(obj.cy - obj.r)) - 1, 0)
    x1 = min(int(math.ceil(obj.cx + obj.r)) + 2, size)
    y1 = min(int(math.ceil(obj.cy + obj.r)) + 2, size)
    img = Image.new("L", (x1 - x0, y1 - y0), 0)
    draw = ImageDraw.Draw(img)
    cx, cy = obj.cx - x0, obj.cy - y0
    if obj.shape == "circle":
        draw.ellipse((cx - obj.r, cy - obj.r, cx + obj.r, cy + obj.r), fill=255)
    else:
        draw.polygon(_polygon(obj.shape, cx, cy, obj.r), fill=255)
    out = np.zeros((size, size), dtype=bool)
    out[y0:y1, x0:x1] = np.asarray(img) > 0
    return out


def render(scene: Scene) -> tuple[np.ndarray, list[np.ndarray]]:
    """Render ``scene``: the RGB image (H, W, 3) ``uint8`` and each object's footprint."""
    img = np.empty((scene.size, scene.size, 3), dtype=np.uint8)
    img[:] = BACKGROUNDS[scene.background]
    masks = []
    for obj in scene.objects:
        m = footprint(obj, scene.size)
        img[m] = obj.fill
        masks.append(m)
    return img, masks


def fits(cx: float, cy: float, r: float, size: int, occupied: list[tuple[float, float, float]]) -> bool:
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
    """A random centre for a circle of radius ``r`` in free space (optionally inside
    ``region`` = (x0, y0, x1, y1) for the centre), or None when none is found."""
    x0, y0, x1, y1 = region if region is not None else (0, 0, size, size)
    for _ in range(tries):
        cx = float(rng.uniform(x0, x1))
        cy = float(rng.uniform(y0, y1))
        if fits(cx, cy, r, size, occupied):
            return round(cx, 1), round(cy, 1)
    return None


def random_scene(rng: np.random.Generator, size: int, min_objects: int, max_objects: int) -> Scene:
    """A scene of ``min_objects``..``max_objects`` non-overlapping shapes (fewer if space runs
    out), drawn from :data:`SHAPES`, :data:`COLOURS`, :data:`SIZES`."""
    background = str(rng.choice(list(BACKGROUNDS)))
    n = int(rng.integers(min_objects, max_objects + 1))
    objects: list[SceneObject] = []
    occupied: list[tuple[float, float, float]] = []
    # Repeat some (shape, colour) pairs on purpose so referring expressions need size or place.
    for _ in range(n):
        if objects and rng.random() < 0.25:
            twin = objects[int(rng.integers(len(objects)))]
            shape, colour = twin.shape, twin.colour
        else:
            shape, colour = str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS)))
        size_word = str(rng.choice(list(SIZES)))
        r = SIZES[size_word] * size
        spot = find_free_spot(rng, r, size, occupied)
        if spot is None:
            continue
        objects.append(SceneObject(shape, colour, size_word, spot[0], spot[1], r))
        occupied.append((spot[0], spot[1], r))
    return Scene(size, background, objects)
