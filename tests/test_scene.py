import numpy as np
import pytest

from mcie.transforms.synthetic.planner import (
    DEFAULT_EDIT_WEIGHTS,
    EDIT_TYPES,
    PlanConfig,
    ScenePlanner,
    compose_instruction,
    hue_shift,
    referring_expression,
    split_instruction,
    template_count,
)
from mcie.transforms.synthetic.scene import (
    COLOURS,
    PATTERNS,
    SHAPES,
    Scene,
    SceneObject,
    coverage,
    fill_fraction,
    footprints,
    random_scene,
    render,
    tint_of,
)


def test_domain_size():
    assert len(SHAPES) >= 8 and len(COLOURS) >= 10 and len(PATTERNS) == 3
    assert len(EDIT_TYPES) >= 7 and template_count() >= 30


def test_render_is_anti_aliased_and_footprints_are_exact():
    obj = SceneObject("circle", "red", "large", 40.3, 30.7, 12.0)
    scene = Scene(80, "white", "solid", 0, [obj])
    img = render(scene)
    (fp,) = footprints(scene)
    bg = np.array([248, 248, 246])
    # outside the footprint the background is untouched, to the level
    assert (img[~fp] == bg).all()
    # inside, full-coverage pixels have the exact colour and the rim blends
    (x0, y0, x1, y1), a = coverage(obj, 80)
    full = np.zeros_like(fp)
    full[y0:y1, x0:x1] = a >= 1.0
    assert (img[full] == COLOURS["red"]).all()
    rim = fp & ~full
    assert rim.sum() > 0 and not (img[rim] == COLOURS["red"]).all(axis=-1).any()
    assert abs(fp.sum() - np.pi * 144) / (np.pi * 144) < 0.12


def test_occlusion_hides_the_object_behind():
    back = SceneObject("square", "blue", "large", 30, 30, 14)
    front = SceneObject("circle", "red", "large", 44, 30, 14)
    scene = Scene(80, "white", "solid", 0, [back, front])
    img = render(scene)
    fb, ff = footprints(scene)
    assert not (fb & ff & (img == COLOURS["red"]).all(axis=-1)).any()  # fully covered pixels are not back's
    alone = footprints(Scene(80, "white", "solid", 0, [back]))[0]
    assert fb.sum() < alone.sum()  # part of the square is hidden
    assert (img[ff & ~fb] != np.array([248, 248, 246])).any(axis=-1).all()


@pytest.mark.parametrize("kind", ["solid", "gradient", "texture"])
def test_background_kinds(kind):
    img = render(Scene(64, "beige", kind, 7, []))
    spread = int(img.max(axis=(0, 1)).max()) - int(img.min(axis=(0, 1)).min())
    lo, hi = {"solid": (0, 0), "gradient": (4, 40), "texture": (4, 40)}[kind]
    per_channel = (img.reshape(-1, 3).max(0).astype(int) - img.reshape(-1, 3).min(0)).max()
    assert lo <= per_channel <= hi and spread >= 0


@pytest.mark.parametrize("pattern", ["striped", "dotted"])
def test_patterns_use_the_tint(pattern):
    obj = SceneObject("square", "blue", "large", 32, 32, 20, pattern)
    img = render(Scene(64, "white", "solid", 0, [obj]))
    tint = (img == tint_of(COLOURS["blue"])).all(axis=-1).sum()
    base = (img == COLOURS["blue"]).all(axis=-1).sum()
    share = tint / (tint + base)
    assert (0.4 < share < 0.6) if pattern == "striped" else (0.12 < share < 0.3)


def test_fill_fractions_are_sane():
    assert fill_fraction("circle") == pytest.approx(np.pi / 4, abs=0.01)
    assert fill_fraction("square") == pytest.approx(0.5, abs=0.01)
    assert all(0.25 < fill_fraction(s) < 0.8 for s in SHAPES)


def test_scenes_are_deterministic_per_seed():
    a = random_scene(np.random.default_rng([7, 3]), 96, 3, 6)
    b = random_scene(np.random.default_rng([7, 3]), 96, 3, 6)
    c = random_scene(np.random.default_rng([7, 4]), 96, 3, 6)
    assert a == b and a != c
    assert (render(a) == render(b)).all()


def _obj(shape, colour, size, cx, cy, pattern="solid"):
    return SceneObject(shape, colour, size, cx, cy, 8, pattern)


def test_referring_expressions_use_only_what_the_scene_needs():
    objs = [
        _obj("circle", "red", "small", 20, 50),
        _obj("circle", "red", "large", 80, 50),
        _obj("square", "blue", "small", 50, 20),
        _obj("triangle", "red", "small", 50, 90),
        _obj("triangle", "green", "small", 90, 90),
        _obj("star", "pink", "small", 20, 100, "striped"),
        _obj("star", "pink", "small", 100, 100),
    ]
    assert referring_expression(objs, 2, 128) == "the square"
    assert referring_expression(objs, 3, 128) == "the red triangle"
    assert referring_expression(objs, 0, 128) == "the small circle"  # size alone suffices
    assert referring_expression(objs, 5, 128) == "the striped star"
    assert referring_expression(objs, 6, 128) == "the plain star"


def test_relational_expressions():
    objs = [
        _obj("star", "blue", "small", 20, 60),
        _obj("star", "blue", "small", 100, 62),
        _obj("square", "red", "small", 60, 60),
    ]
    assert referring_expression(objs, 0, 128) == "the blue star left of the square"
    assert referring_expression(objs, 1, 128) == "the blue star right of the square"
    tied = [_obj("star", "pink", "small", 60, 60), _obj("star", "pink", "small", 61, 61)]
    assert referring_expression(tied, 0, 128) is None


def test_planner_plans_every_edit_type_without_conflicts():
    planner = ScenePlanner(PlanConfig())
    counts, types = set(), set()
    for i in range(120):
        rng = np.random.default_rng([3, i])
        scene = random_scene(rng, 128, 3, 7)
        try:
            edits, text = planner.plan(scene, rng)
        except ValueError:
            continue
        counts.add(len(edits))
        types |= {e.edit_type for e in edits}
        targets = [scene.objects[e.target] for e in edits if e.target is not None]
        assert len(targets) == len({id(t) for t in targets})  # one sub-edit per object
        for a in targets:
            for b in targets:
                assert a is b or np.hypot(a.cx - b.cx, a.cy - b.cy) > a.r + b.r  # targets never overlap
        assert split_instruction(text) == [e.instruction for e in edits]
        assert text[0].isupper() and text.endswith(".")
    assert counts == {2, 3, 4, 5}
    assert types == set(DEFAULT_EDIT_WEIGHTS)  # the default mix, every type drawn


def test_compose_and_split_are_inverse():
    rng = np.random.default_rng(0)
    parts = ["remove the star", "make the circle blue", "add a small red square at the top"]
    for _ in range(20):
        assert split_instruction(compose_instruction(parts, rng)) == parts
        assert split_instruction(compose_instruction(parts[:2], rng)) == parts[:2]


def test_hue_shift():
    red = COLOURS["red"]
    shifted = hue_shift(red, 30)
    assert max(abs(a - b) for a, b in zip(red, shifted, strict=True)) >= 60
    assert hue_shift(red, 360) == red


def test_visible_footprint_matches_footprints():
    from mcie.transforms.synthetic.scene import visible_footprint

    for i in range(5):
        scene = random_scene(np.random.default_rng([9, i]), 96, 4, 7, overlap_rate=0.9)
        all_fp = footprints(scene)
        for j in range(len(scene.objects)):
            assert (visible_footprint(scene, j) == all_fp[j]).all()
