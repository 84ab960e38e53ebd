import numpy as np

from mcie.transforms.synthetic.planner import (
    PlanConfig,
    ScenePlanner,
    compose_instruction,
    hue_shift,
    referring_expression,
)
from mcie.transforms.synthetic.scene import COLOURS, Scene, SceneObject, footprint, random_scene, render


def test_render_is_exact_and_objects_do_not_overlap():
    rng = np.random.default_rng([1, 2])
    scene = random_scene(rng, 128, 4, 6)
    img, masks = render(scene)
    assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    total = np.zeros((128, 128), dtype=int)
    for obj, m in zip(scene.objects, masks, strict=True):
        total += m
        # every footprint pixel has exactly the object's colour (aliased rendering)
        assert (img[m] == np.array(obj.fill, dtype=np.uint8)).all()
    assert total.max() == 1
    # everything else is the plain background
    bg = img[total == 0]
    assert (bg == bg[0]).all()


def test_footprint_matches_shape_area():
    circle = footprint(SceneObject("circle", "red", "large", 32, 32, 10), 64)
    square = footprint(SceneObject("square", "red", "large", 32, 32, 10), 64)
    # PIL fills boundaries inclusively, so a radius-10 shape is ~1 px wider than ideal
    assert np.pi * 100 <= circle.sum() <= np.pi * 11**2
    assert 200 <= square.sum() <= 16**2  # side r*sqrt(2) = 14.1
    ys, xs = np.nonzero(circle)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (22, 42, 22, 42)


def test_scenes_are_deterministic_per_seed():
    a = random_scene(np.random.default_rng([7, 3]), 96, 3, 6)
    b = random_scene(np.random.default_rng([7, 3]), 96, 3, 6)
    c = random_scene(np.random.default_rng([7, 4]), 96, 3, 6)
    assert a == b
    assert a != c


def _obj(shape, colour, size, cx, cy):
    return SceneObject(shape, colour, size, cx, cy, 8)


def test_referring_expressions_single_out_their_object():
    objs = [
        _obj("circle", "red", "small", 20, 50),
        _obj("circle", "red", "large", 80, 50),
        _obj("square", "blue", "small", 50, 20),
        _obj("triangle", "red", "small", 50, 90),
        _obj("triangle", "green", "small", 90, 90),
    ]
    assert referring_expression(objs, 2, 128) == "the square"
    assert referring_expression(objs, 3, 128) == "the red triangle"
    assert referring_expression(objs, 0, 128) == "the small red circle"
    same = [_obj("star", "pink", "small", 20, 60), _obj("star", "pink", "small", 100, 62)]
    assert referring_expression(same, 0, 128) == "the leftmost pink star"
    assert referring_expression(same, 1, 128) == "the rightmost pink star"
    tied = [_obj("star", "pink", "small", 60, 60), _obj("star", "pink", "small", 61, 61)]
    assert referring_expression(tied, 0, 128) is None


def test_planner_makes_two_to_five_sub_edits_with_worded_instruction():
    planner = ScenePlanner(PlanConfig())
    counts, types = set(), set()
    for i in range(60):
        rng = np.random.default_rng([3, i])
        scene = random_scene(rng, 128, 3, 6)
        edits, text = planner.plan(scene, rng)
        counts.add(len(edits))
        types |= {e.edit_type for e in edits}
        targets = [e.target for e in edits if e.target is not None]
        assert len(targets) == len(set(targets))  # one sub-edit per object
        for e in edits:
            assert e.instruction in text[0].lower() + text[1:]  # every sub-instruction is stated
        assert text[0].isupper() and text.endswith(".")
    assert counts == {2, 3, 4, 5}
    assert {"recolour", "remove", "add", "move", "resize"} <= types


def test_compose_and_hue_shift():
    rng = np.random.default_rng(0)
    text = compose_instruction(["remove the star", "make the circle blue"], rng)
    assert "remove the star" in text.lower() and "make the circle blue" in text
    red = COLOURS["red"]
    shifted = hue_shift(red, 30)
    assert shifted != red and max(abs(a - b) for a, b in zip(red, shifted, strict=True)) >= 60
    assert hue_shift(red, 360) == red


def test_scene_copy_is_independent():
    s = Scene(64, "white", [_obj("circle", "red", "small", 20, 20)])
    c = s.copy()
    c.objects.append(_obj("square", "blue", "small", 40, 40))
    assert len(s.objects) == 1
