"""Synthetic Visual Wake Words: cluttered scenes, articulated people, the same area rule as the real data.

No real images can be downloaded where this project is built and tested, so the embedded default data set
is drawn here. The calibration (README.md "Data", bench/calibrate_synth.py) aims at an MLPerf-Tiny-like
MobileNetV1 between 75% and 92% after a few epochs on 10,000 images, and a 1k-parameter CNN clearly worse.
With 10 epochs (1,250 steps) MobileNetV1 reaches 80.9% and the small CNN 72.9%, 8 points apart; at 5
epochs MobileNetV1 has not yet picked up the cues that need capacity (README.md).

- Backgrounds: a two-colour gradient, low-frequency texture, pixel noise, and random rectangles, ellipses
  and polygons (about a quarter in skin tones, an eighth near-black).
- Colours: clothing hues and the hues of every object lie in alternate sectors of the colour wheel
  (``HUE_SECTORS``), so telling clothes from things by colour needs many colour detectors (capacity),
  not one; skin tones and near-black are shared by people and objects.
- Distractors drawn with the same strokes, colours and colour junctions as people, in the same appearance
  modes: four-legged animals, poles and trees, jointed stick clutter (sometimes with a skin-coloured end),
  balls on thick sticks, chairs and tables, garments on hangers, plants, balls beside wide mounds (a
  close-up's shapes, not a head on shoulders), and head-sized skin-coloured discs without a body.
- People: a jointed figure (head, torso, two-segment arms and legs) with one body plan (upright, head on
  the neck, arms at the shoulders, legs at the hips) in a few poses (walking, standing, arms up, waving),
  mostly inside the frame; or, for most large people (``PORTRAITS``), a head-and-shoulders close-up
  filling much of the frame, as in many VWW photos. Appearance modes (``STYLES``) for people and
  distractors alike: clothed in colours, a one-colour silhouette, or a striped shirt. Large people are
  30-85% of the image high (visible area well over the 0.5% threshold), small ones 5-10% (well under it),
  so few labels sit on the threshold where the image cannot show the answer. Some are partly hidden by
  an occluder drawn in front.
- Matched amounts (``MATCHED``): in part of the scenes without a large person, one or two person-sized
  distractors stand where a person would, so "how much person-like stuff is in the image" (the cue a
  bag of local detectors reads) no longer separates the classes there.
- Label: 1 iff some person's *visible* pixel area is strictly greater than ``area_threshold`` of the image,
  the rule of the real data (DESIGN.md section 5) applied to the drawn mask, as COCO's areas are
  segmentation areas. Figures under the threshold stay in the image with label 0, exactly as in VWW.

Each image is a pure function of ``(seed, index)`` (its own ``numpy`` generator), so any subset can be
drawn in any order or process (plain Python or Beam) and the result is the same.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

from edgenas_keras.data.images import encode_jpeg
from edgenas_keras.data.records import VWW_CLASSES, Record, assign_split, vww_record, write_dataset
from edgenas_keras.errors import UserError

SUPERSAMPLE = 2  # draw at twice the resolution, then box-filter down: anti-aliased strokes

# Figure heights as fractions of the image side (log-uniform): a person's visible area is about 0.2 h^2, so
# BIG people are at least about twice the 0.5% threshold and SMALL ones about half of it at most; few labels
# sit on the threshold, where the image cannot show which side a figure is on.
BIG = (0.3, 0.85)
SMALL = (0.05, 0.10)
EMPTY_SCENES = 0.5  # share of scenes with no large figure at all
SKIN_CLUTTER = 0.35  # share of shapes and distractors in skin tones
LOOSE_HEADS = 3  # up to this many head-sized skin discs per scene
# Share of the other scenes whose large figures include a person (the rest hold scrambled figures only).
# Calibrated to 1.0: scenes of scrambled figures alone (0.6 and 0.85 tried) slowed MobileNet's learning
# more than the small CNN's within the budget (README.md, "Data").
PERSON_SCENES = 1.0

# Appearance modes (share of colour-clothed, one-colour silhouette; the rest striped shirts), the same for
# people and for distractors; and the share of large people drawn as head-and-shoulders close-ups.
STYLES = (0.55, 0.25)
PORTRAITS = 0.7
# Share of scenes without a large person that hold one or two person-sized distractors. Calibrated: 1.0
# left both nets near 60% (neither learns the body plan in a few epochs), 0.5 took MobileNetV1 under 75%.
MATCHED = 0.35
HUE_SECTORS = 4  # clothing hues and object hues alternate in 2 * 4 sectors of the colour wheel

SKIN = [(255, 224, 189), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 60, 40)]


@dataclass(frozen=True)
class SynthSpec:
    """Everything that determines a synthetic data set; ``record(i)`` draws image ``i``."""

    n: int
    seed: int = 0
    resolution: int = 96
    grayscale: bool = False
    eval_fraction: float = 0.1
    area_threshold: float = 0.005
    num_classes: int = 0  # 0: the VWW person scenes (2 classes); N >= 2: N shape classes (draw_shapes)

    def __post_init__(self):
        if self.num_classes and not 2 <= self.num_classes <= MAX_SHAPE_CLASSES:
            raise UserError(
                f"synthetic num_classes {self.num_classes} is out of range; use 2..{MAX_SHAPE_CLASSES} shape "
                "classes (or 0 for the VWW person scenes)"
            )

    def record(self, index: int) -> Record:
        """Image ``index`` of this data set (a function of the seed and the index only) as a record to write."""
        if self.num_classes:
            image, label = draw_shapes(self.seed, index, self.resolution, self.num_classes)
        else:
            image, label, _ = draw_scene(self.seed, index, self.resolution, self.area_threshold)
        if self.grayscale:
            image = image.convert("L")
        key = self.key(index)
        return vww_record(
            key,
            assign_split(key, self.eval_fraction),
            label,
            encode_jpeg(image),
            self.resolution,
            f"synth_{self.seed}_{index:08d}.jpg",
            key,
        )

    def key(self, index: int) -> str:
        """The stable source key of image ``index`` (``synth/<seed>/<index>``), which the split hash reads."""
        return f"synth/{self.seed}/{index:08d}"

    def options(self) -> dict:
        """The generator's options as recorded in ``stats.json`` (what makes two synthetic data sets equal)."""
        opts = {"source": "synth", **asdict(self)}
        if not self.num_classes:
            del opts["num_classes"]  # the VWW default records exactly the options it always did
        return opts

    def class_names(self) -> list[str]:
        """Label ``i``'s name: VWW's ``no_person``, ``person``, or ``shape_class_names(num_classes)``."""
        return shape_class_names(self.num_classes) if self.num_classes else list(VWW_CLASSES)


def _hue_colour(rng: np.random.Generator, person: bool) -> tuple[int, int, int]:
    """A saturated colour whose hue lies in one of the person (clothing) or the object sectors of the wheel.

    The wheel is cut into ``2 * HUE_SECTORS`` equal sectors, alternately for clothes and for everything else,
    so "how much clothing-coloured stuff" is a cue only a network with enough colour detectors can read.
    Saturation is at least 0.65: with 0.45 (pale colours, less clear hues) MobileNetV1 got less out of the
    cue within 10 epochs, 76.9% instead of 80.9% (README.md, "Data", v8 and v11).
    """
    sector = 2 * int(rng.integers(HUE_SECTORS)) + (0 if person else 1)
    hue = (sector + rng.uniform(0.15, 0.85)) / (2 * HUE_SECTORS)
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.65, 1.0), rng.uniform(0.35, 1.0))
    return tuple(int(255 * c) for c in rgb)


def _clutter_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """Colours of shapes and distractors: often skin tones, so a skin-coloured patch is no person cue."""
    if rng.random() < SKIN_CLUTTER:
        tone = np.array(SKIN[int(rng.integers(len(SKIN)))]) + rng.normal(0, 8, 3)
        return tuple(int(c) for c in np.clip(tone, 0, 255))
    return _hue_colour(rng, False)


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """Gradient + low-frequency texture + noise, as a uint8 RGB image."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size] / size
    t = np.cos(angle) * xx + np.sin(angle) * yy
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    img = c0 + (c1 - c0) * t[..., None]
    cells = int(rng.integers(3, 12))
    texture = Image.fromarray(rng.uniform(0, 255, (cells, cells, 3)).astype(np.uint8)).resize(
        (size, size), Image.BICUBIC
    )
    img = img * (1 - (a := rng.uniform(0.1, 0.4))) + np.asarray(texture, np.float32) * a
    img += rng.normal(0, rng.uniform(2, 5), (size, size, 1))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _shapes(rng: np.random.Generator, draw: ImageDraw.ImageDraw, size: int, count: int) -> None:
    for _ in range(count):
        kind = rng.integers(0, 3)
        x0, y0 = rng.uniform(-0.1, 1.0, 2) * size
        w, h = rng.uniform(0.05, 0.5, 2) * size
        fill = _mono_colour(rng) if rng.random() < 0.25 else _clutter_colour(rng)
        if kind == 0:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=fill)
        elif kind == 1:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=fill)
        else:
            pts = [(x0 + rng.uniform(0, w), y0 + rng.uniform(0, h)) for _ in range(int(rng.integers(3, 7)))]
            draw.polygon(pts, fill=fill)


def _segment(draw, p, q, width, fill):
    draw.line([p, q], fill=fill, width=max(1, int(round(width))))
    r = width / 2
    for x, y in (p, q):  # round joints, like limbs
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)


def _at(origin, length, angle):
    return origin[0] + length * math.sin(angle), origin[1] + length * math.cos(angle)


def _limb(draw, origin, a1, a2, l1, l2, width, fills):
    mid = _at(origin, l1, a1)
    end = _at(mid, l2, a2)
    _segment(draw, origin, mid, width, fills[0])
    _segment(draw, mid, end, width * 0.85, fills[1])
    return end


def _style(rng: np.random.Generator) -> str:
    """Appearance mode of a figure: colour-clothed, a one-colour silhouette, or a striped shirt."""
    u = rng.random()
    return "colour" if u < STYLES[0] else "mono" if u < STYLES[0] + STYLES[1] else "striped"


def _mono_colour(rng: np.random.Generator, person: bool = False) -> tuple[int, int, int]:
    """A silhouette's colour: dark (backlit) half the time, else any colour."""
    return _hue_colour(rng, person) if rng.random() < 0.5 else tuple(int(c) for c in rng.integers(0, 70, 3))


def _stripes(draw, p, q, width, fill, rng) -> None:
    """Stripes across the stroke from ``p`` to ``q`` of ``width`` (a striped shirt or a striped body)."""
    n = int(rng.integers(3, 7))
    length = math.hypot(q[0] - p[0], q[1] - p[1])
    ux, uy = (q[0] - p[0]) / max(length, 1e-6), (q[1] - p[1]) / max(length, 1e-6)
    half = 0.45 * width
    for k in range(n):
        t = (k + 0.5) / n * length
        mx, my = p[0] + ux * t, p[1] + uy * t
        a, b = (mx - uy * half, my + ux * half), (mx + uy * half, my - ux * half)
        draw.line([a, b], fill=fill, width=max(1, int(round(length / (2 * n)))))


def _person(
    rng: np.random.Generator,
    draws: list,
    height: float,
    cx: float,
    cy: float,
    scrambled: bool,
    style: str = "colour",
) -> None:
    """A jointed figure of ``height`` pixels with its hips at (cx, cy), drawn on every ``draws`` target.

    ``draws`` are (ImageDraw, colour or None) pairs: the scene gets the figure's colours, the mask 255.
    Angles are measured from straight down; the whole figure is tilted by ``lean``. People share one body
    plan (head on the neck, arms at the shoulders, legs at the hips, upright) in a few natural poses, so
    the plan is learnable from a few thousand images. A ``scrambled`` figure has the same parts, sizes,
    colours and upright torso, with the head and limbs attached in the wrong places: it is not a person,
    and locally (a joint, a stroke, a skin-coloured disc) it looks like one, so telling the two apart needs
    a receptive field that sees the whole figure.
    """
    hat = _hue_colour(rng, True)
    head_colour = SKIN[int(rng.integers(len(SKIN)))] if rng.random() < 0.8 else hat  # else hat/hair
    skin, shirt, trousers = SKIN[int(rng.integers(len(SKIN)))], _hue_colour(rng, True), _hue_colour(rng, True)
    stripe = _hue_colour(rng, True)
    if style == "mono":
        head_colour = skin = shirt = trousers = _mono_colour(rng, True)
    h = height
    lean = rng.normal(0, 0.08)
    torso_len, head_r = 0.30 * h, rng.uniform(0.07, 0.09) * h
    upper_leg, lower_leg = 0.24 * h, 0.23 * h
    upper_arm, lower_arm = 0.17 * h, 0.16 * h
    limb_w, torso_w = rng.uniform(0.07, 0.10) * h, rng.uniform(0.15, 0.22) * h
    pose = rng.integers(0, 4)  # 0 walking, 1 arms up, 2 standing, 3 waving
    if pose == 0:
        s = rng.uniform(0.15, 0.5)
        legs = [(s, s * 0.5), (-s, -s * 0.2)]
        arms = [(-s, -s * 0.3 - 0.3), (s, s + 0.2)]
    elif pose == 1:
        legs = [(0.15, 0.1), (-0.15, -0.1)]
        arms = [(math.pi - 0.6, math.pi - 0.3), (math.pi + 0.6, math.pi + 0.3)]
    elif pose == 2:
        s = rng.uniform(0.08, 0.25)
        legs = [(s, s * 0.6), (-s, -s * 0.6)]
        arms = [(s + 0.2, s), (-s - 0.2, -s)]
    else:
        s = rng.uniform(0.08, 0.25)
        legs = [(s, s * 0.6), (-s, -s * 0.6)]
        arms = [(s + 0.2, s), (-math.pi / 2 - rng.uniform(0, 0.6), math.pi + rng.uniform(-0.4, 0.4))]
    hips = (cx, cy)
    neck = _at(hips, torso_len, lean + math.pi)
    head = _at(neck, head_r * 1.2, lean + math.pi)
    leg_roots, arm_roots = [hips, hips], [neck, neck]
    if scrambled:

        def on_torso():
            return _at(hips, torso_len * rng.uniform(0, 1), lean + math.pi)

        if rng.random() < 0.5:  # head under the hips
            head = _at(hips, head_r * 1.2, lean)
        else:  # head beside the torso
            root, dist = on_torso(), rng.uniform(0.15, 0.35) * h
            head = _at(root, dist, lean + rng.choice([-1, 1]) * rng.uniform(1.2, 2.2))
        leg_roots, arm_roots = [on_torso(), on_torso()], [on_torso(), on_torso()]
        legs = [tuple(rng.uniform(-math.pi, math.pi, 2)) for _ in range(2)]
        arms = [tuple(rng.uniform(-math.pi, math.pi, 2)) for _ in range(2)]
    for draw, colour in draws:
        trousers_c, shirt_c, skin_c, head_c = (
            (trousers, shirt, skin, head_colour) if colour is None else (colour,) * 4
        )
        for root, (a1, a2) in zip(leg_roots, legs):
            _limb(draw, root, lean + a1, lean + a2, upper_leg, lower_leg, limb_w, (trousers_c, trousers_c))
        _segment(draw, hips, neck, torso_w, shirt_c)
        if style == "striped" and colour is None:
            _stripes(draw, hips, neck, torso_w, stripe, rng)
        for root, (a1, a2) in zip(arm_roots, arms):
            _limb(draw, root, lean + a1, lean + a2, upper_arm, lower_arm, limb_w * 0.8, (shirt_c, skin_c))
        draw.ellipse([head[0] - head_r, head[1] - head_r, head[0] + head_r, head[1] + head_r], fill=head_c)


def _part_colour(rng: np.random.Generator, base, mono: bool):
    """Another part of a multi-coloured object: a new colour (as a person's clothes), or ``base`` again."""
    return base if mono or rng.random() < 0.35 else _clutter_colour(rng)


def _portrait(rng: np.random.Generator, draws: list, size: int, style: str) -> None:
    """A close-up of head and shoulders filling much of the frame (as many VWW photos): always over the area."""
    r = size * rng.uniform(0.09, 0.18)
    cx, cy = rng.uniform(0.25, 0.75) * size, rng.uniform(0.25, 0.6) * size
    skin, shirt, hair = SKIN[int(rng.integers(len(SKIN)))], _hue_colour(rng, True), _hue_colour(rng, True)
    if rng.random() < 0.6:
        hair = tuple(int(c) for c in rng.integers(0, 90, 3))
    stripe, mono = _hue_colour(rng, True), style == "mono"
    if mono:
        skin = shirt = hair = _mono_colour(rng, True)
    tilt = rng.normal(0, 0.1) * r
    for draw, colour in draws:
        skin_c, shirt_c, hair_c = (skin, shirt, hair) if colour is None else (colour,) * 3
        top = cy + 1.3 * r
        draw.ellipse([cx - 2.4 * r, top, cx + 2.4 * r, top + 4 * r], fill=shirt_c)
        if style == "striped" and colour is None:
            _stripes(draw, (cx, top + 0.5 * r), (cx, top + 3 * r), 3.8 * r, stripe, rng)
        draw.rectangle([cx - 0.4 * r, cy + 0.5 * r, cx + 0.4 * r, top + 0.4 * r], fill=skin_c)
        draw.ellipse([cx + tilt - r, cy - 1.18 * r, cx + tilt + r, cy + 0.3 * r], fill=hair_c)
        draw.ellipse([cx - 0.85 * r, cy - r, cx + 0.85 * r, cy + r], fill=skin_c)
        if colour is None and not mono:
            e = 0.1 * r
            for ex in (cx - 0.33 * r, cx + 0.33 * r):
                draw.ellipse([ex - e, cy - 0.15 * r - e, ex + e, cy - 0.15 * r + e], fill=(30, 20, 20))
            draw.line(
                [(cx - 0.25 * r, cy + 0.45 * r), (cx + 0.25 * r, cy + 0.45 * r)],
                fill=(120, 40, 40),
                width=max(1, int(0.08 * r)),
            )


def _distractor(rng: np.random.Generator, draw: ImageDraw.ImageDraw, size: int, scale: float = 0.0) -> None:
    """Objects built from the same strokes, colours and colour junctions as people, in the same styles.

    A person is several colours meeting at joints (skin at the end of a sleeve, a shirt on top of trousers, a
    skin disc on a thick stroke); these objects have such junctions too, and come as one-colour silhouettes
    and with striped bodies as often as people do, so no local patch of colours gives the label away.
    """
    kind = rng.integers(0, 8)
    s = scale or size * math.exp(rng.uniform(math.log(0.08), math.log(0.7)))
    x, y = rng.uniform(0.25, 0.75, 2) * size if scale else rng.uniform(0, 1, 2) * size
    style = _style(rng)
    mono = style == "mono"
    fill = _mono_colour(rng) if mono else _clutter_colour(rng)
    width = rng.uniform(0.05, 0.09) * s
    if kind == 0:  # four-legged animal: horizontal body, legs, neck and head
        body, legs_c, head_c = s * 0.5, _part_colour(rng, fill, mono), _part_colour(rng, fill, mono)
        _segment(draw, (x - body / 2, y), (x + body / 2, y), width * 2.2, fill)
        if style == "striped":
            _stripes(draw, (x - body / 2, y), (x + body / 2, y), width * 2.2, _hue_colour(rng, False), rng)
        for dx in (-body / 2, -body / 3, body / 3, body / 2):
            a1, a2 = rng.uniform(-0.4, 0.4), rng.uniform(-0.3, 0.3)
            _limb(draw, (x + dx, y), a1, a2, s * 0.18, s * 0.16, width, (legs_c, legs_c))
        neck = _at((x + body / 2, y), s * 0.2, math.pi - rng.uniform(0.3, 1.2))
        _segment(draw, (x + body / 2, y), neck, width, fill)
        r = s * 0.07
        draw.ellipse([neck[0] - r * 1.4, neck[1] - r, neck[0] + r * 1.4, neck[1] + r], fill=head_c)
    elif kind == 1:  # pole or tree
        top = (x + rng.normal(0, 0.05) * s, y - s)
        _segment(draw, (x, y), top, width * rng.uniform(0.6, 3.0), fill)
        if rng.random() < 0.6:
            r = s * rng.uniform(0.07, 0.3)
            draw.ellipse([top[0] - r, top[1] - r, top[0] + r, top[1] + r], fill=_part_colour(rng, fill, mono))
    elif kind == 2:  # jointed stick clutter, a colour per segment, sometimes a skin-coloured end
        p, c = (x, y), fill
        n = int(rng.integers(2, 6))
        for k in range(n):
            q = _at(p, s * rng.uniform(0.1, 0.3), rng.uniform(0, 2 * math.pi))
            if k == n - 1 and not mono and rng.random() < 0.4:
                c = SKIN[int(rng.integers(len(SKIN)))]
            _segment(draw, p, q, width * (1.0 if k else rng.uniform(1, 2.5)), c)
            p, c = q, _part_colour(rng, c, mono)
    elif kind == 3:  # ball on a thick stick: a head on a torso-like stroke without the rest of the body plan
        top = _at((x, y), s * 0.4, math.pi + rng.normal(0, 0.4))
        _segment(draw, (x, y), top, width * rng.uniform(1.5, 3.5), fill)
        if style == "striped":
            _stripes(draw, (x, y), top, width * 2.5, _hue_colour(rng, False), rng)
        r = s * rng.uniform(0.05, 0.09)
        ball = fill if mono else SKIN[int(rng.integers(len(SKIN)))]
        draw.ellipse([top[0] - r, top[1] - r, top[0] + r, top[1] + r], fill=ball)
    elif kind == 4:  # chair or table: a thick seat on legs, maybe a back, two colours
        seat, legs_c = s * 0.4, _part_colour(rng, fill, mono)
        for dx in (-seat / 2, seat / 2):
            _segment(draw, (x + dx, y), (x + dx, y + s * 0.3), width, legs_c)
        _segment(draw, (x - seat / 2, y), (x + seat / 2, y), width * 1.8, fill)
        if rng.random() < 0.6:
            bx = x + rng.choice([-1, 1]) * seat / 2
            _segment(draw, (bx, y), (bx, y - s * 0.35), width * 1.5, _part_colour(rng, fill, mono))
    elif kind == 5:  # garment on a hanger: a shirt-coloured thick stroke with sleeves, no head or legs
        top, bottom = (x, y - s * 0.25), (x, y + s * 0.1)
        _segment(draw, top, bottom, width * rng.uniform(2.0, 3.0), fill)
        if style == "striped":
            _stripes(draw, top, bottom, width * 2.0, _hue_colour(rng, False), rng)
        end_c = _part_colour(rng, fill, mono)
        for side in (-1, 1):
            _limb(
                draw, top, side * rng.uniform(0.2, 1.2), side * 0.2, s * 0.17, s * 0.15, width, (fill, end_c)
            )
        draw.line(
            [(x, top[1] - s * 0.08), top], fill=_part_colour(rng, fill, mono), width=max(1, int(width / 2))
        )
    elif kind == 6:  # plant: a stem with leaves and a flower of another colour
        top = _at((x, y), s * 0.5, math.pi + rng.normal(0, 0.3))
        _segment(draw, (x, y), top, width, fill)
        for _ in range(int(rng.integers(1, 4))):
            root = _at((x, y), s * rng.uniform(0.1, 0.4), math.pi)
            _segment(
                draw, root, _at(root, s * 0.18, rng.uniform(1.5, 2.6) * rng.choice([-1, 1])), width, fill
            )
        r = s * rng.uniform(0.06, 0.12)
        draw.ellipse([top[0] - r, top[1] - r, top[0] + r, top[1] + r], fill=_part_colour(rng, fill, mono))
    else:  # a ball and a wide mound of a close-up's sizes and colours, not a head on shoulders
        r = size * rng.uniform(0.09, 0.18)
        block = _part_colour(rng, fill, mono)
        draw.ellipse([x - 2.4 * r, y + 1.3 * r, x + 2.4 * r, y + 5.3 * r], fill=block)
        ball = fill if mono or rng.random() < 0.5 else SKIN[int(rng.integers(len(SKIN)))]
        angle = rng.choice([-1, 1]) * rng.uniform(0.5, 1.0) * math.pi  # beside or under the mound, not on it
        bx, by = _at((x, y + 2.5 * r), rng.uniform(2.6, 3.6) * r, angle)
        draw.ellipse([bx - 0.85 * r, by - r, bx + 0.85 * r, by + r], fill=ball)


def _occluder(rng: np.random.Generator, mask: Image.Image) -> list[float] | None:
    """A box in front of part of the figure in ``mask``: it covers 20-70% of the figure's extent from one side."""
    bbox = mask.getbbox()
    if bbox is None:
        return None
    x0, y0, x1, y1 = bbox
    w, h, cover = x1 - x0, y1 - y0, rng.uniform(0.2, 0.7)
    pad = rng.uniform(0.1, 0.6) * max(w, h)
    side = rng.integers(0, 4)
    if side == 0:  # from below, like a wall or a table
        return [x0 - pad, y1 - cover * h, x1 + pad, y1 + pad]
    if side == 1:
        return [x0 - pad, y0 - pad, x1 + pad, y0 + cover * h]
    if side == 2:
        return [x0 - pad, y0 - pad, x0 + cover * w, y1 + pad]
    return [x1 - cover * w, y0 - pad, x1 + pad, y1 + pad]


def _photometric(rng: np.random.Generator, img: Image.Image) -> Image.Image:
    """Global contrast and brightness jitter: lighting differs from photo to photo."""
    arr = np.asarray(img, np.float32)
    arr = (arr - 128) * rng.uniform(0.6, 1.2) + 128 + rng.uniform(-40, 40)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def draw_scene(seed: int, index: int, resolution: int, area_threshold: float = 0.005):
    """Image ``index`` of data set ``seed``: (RGB PIL image, label, visible area fraction of each person)."""
    rng = np.random.default_rng([seed, index])
    size = resolution * SUPERSAMPLE
    img = _background(rng, size)
    draw = ImageDraw.Draw(img)
    _shapes(rng, draw, size, int(rng.integers(1, 5)))
    for _ in range(int(rng.integers(1, 5))):
        _distractor(rng, draw, size)
    for _ in range(int(rng.integers(0, LOOSE_HEADS + 1))):  # head-sized skin discs without a body
        r = size * rng.uniform(BIG[0], BIG[1]) * rng.uniform(0.07, 0.09)
        x, y = rng.uniform(0, 1, 2) * size
        fill = _clutter_colour(rng) if rng.random() < 0.2 else SKIN[int(rng.integers(len(SKIN)))]
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
    # Large figures: a person, or (PERSON_SCENES < 1) scrambled ones only; small people stay well under the
    # threshold and appear in both kinds of scene.
    big = 0 if rng.random() < EMPTY_SCENES else int(rng.integers(1, 3))
    if not big and rng.random() < MATCHED:  # a scene without a person holds as much person-sized stuff
        for _ in range(int(rng.integers(1, 3))):
            _distractor(rng, draw, size, size * math.exp(rng.uniform(math.log(BIG[0]), math.log(BIG[1]))))
    people = int(rng.integers(1, big + 1)) if big and rng.random() < PERSON_SCENES else 0
    kinds = [(False, True)] * people + [(True, True)] * (big - people)
    kinds += [(False, False)] * (int(rng.integers(1, 3)) if rng.random() < 0.4 else 0)
    rng.shuffle(kinds)  # figures and scrambled figures in random depth order
    masks: list[Image.Image] = []  # visible pixels of each person drawn so far
    for is_scrambled, is_big in kinds:
        lo, hi = BIG if is_big else SMALL
        height = size * math.exp(rng.uniform(math.log(lo), math.log(hi)))
        # hips placed so that the figure (from 0.5 h above the hips to 0.47 h below) is mostly in the frame
        cx = rng.uniform(0.2 * height, size - 0.2 * height)
        cy = rng.uniform(0.45 * height, max(0.45 * height, size - 0.4 * height))
        mask = Image.new("L", (size, size), 0)
        style, targets = _style(rng), [(draw, None), (ImageDraw.Draw(mask), 255)]
        if is_big and not is_scrambled and rng.random() < PORTRAITS:
            _portrait(rng, targets, size, style)
        else:
            _person(rng, targets, height, cx, cy, is_scrambled, style)
        for earlier in masks:  # whatever is drawn later stands in front of the people drawn earlier
            earlier.paste(0, mask=mask)
        if not is_scrambled:
            masks.append(mask)
        box = _occluder(rng, mask) if rng.random() < 0.15 else None
        if box is not None:
            shape = "rectangle" if rng.random() < 0.5 else "ellipse"
            getattr(draw, shape)(box, fill=_hue_colour(rng, False))
            for m in masks:
                getattr(ImageDraw.Draw(m), shape)(box, fill=0)
    fractions = [float(np.count_nonzero(np.asarray(m))) / (size * size) for m in masks]
    label = int(any(f > area_threshold for f in fractions))
    img = _photometric(rng, img).resize((resolution, resolution), Image.BOX)
    return img, label, fractions


def synth_records(spec: SynthSpec, progress: Callable[[int], None] | None = None) -> Iterator[Record]:
    """Every record of ``spec`` in index order; ``progress(i)`` is called after each."""
    for i in range(spec.n):
        yield spec.record(i)
        if progress is not None:
            progress(i + 1)


def write_synth(out_dir, spec: SynthSpec, progress: Callable[[int], None] | None = None) -> dict:
    """Draw ``spec`` and write it in the Examples layout (same writer as ingest); return ``stats.json``."""
    return write_dataset(
        out_dir, synth_records(spec, progress), spec.options(), spec.class_names(), spec.num_classes > 0
    )


# ---- N-class shapes --------------------------------------------------------------------------------------

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "crescent", "hexagon")
TEXTURES = ("solid", "striped", "dotted")  # classes beyond len(SHAPES) repeat the shapes with a texture
MAX_SHAPE_CLASSES = len(SHAPES) * len(TEXTURES)


def shape_class_names(num_classes: int) -> list[str]:
    """Names of the ``num_classes`` shape classes in label order: ``circle``, ``square``, ... then the
    same shapes ``_striped`` and ``_dotted`` (label ``c`` is shape ``c % 8`` in texture ``c // 8``)."""
    return [
        SHAPES[c % len(SHAPES)] + ("" if c < len(SHAPES) else "_" + TEXTURES[c // len(SHAPES)])
        for c in range(num_classes)
    ]


def _shape_mask(rng: np.random.Generator, shape: str, size: int) -> Image.Image:
    """A white ``shape`` on black (``L``, ``size`` square): random centre, radius 15-35% of the side,
    rotation and a 0.8-1.25 aspect stretch, so neither position, scale nor orientation tells the class."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    r = size * rng.uniform(0.15, 0.35)
    cx, cy = rng.uniform(r * 0.8, size - r * 0.8, 2)
    rot, stretch = rng.uniform(0, 2 * math.pi), rng.uniform(0.8, 1.25)

    def poly(radii_angles):
        pts = []
        for rad, ang in radii_angles:
            x, y = rad * math.cos(ang) * stretch, rad * math.sin(ang) / stretch
            pts.append((cx + x * math.cos(rot) - y * math.sin(rot), cy + x * math.sin(rot) + y * math.cos(rot)))
        return pts

    def regular(k, radii=(1.0,)):
        m = len(radii)
        return poly((r * radii[j % m], 2 * math.pi * j / (k * m)) for j in range(k * m))

    if shape in ("circle", "ring", "crescent"):
        box = [cx - r * stretch, cy - r / stretch, cx + r * stretch, cy + r / stretch]
        draw.ellipse(box, fill=255)
        if shape == "ring":
            t = rng.uniform(0.45, 0.65)
            draw.ellipse([cx - t * r * stretch, cy - t * r / stretch, cx + t * r * stretch, cy + t * r / stretch], fill=0)
        elif shape == "crescent":
            dx, dy = 0.55 * r * math.cos(rot), 0.55 * r * math.sin(rot)
            draw.ellipse([b + d for b, d in zip(box, (dx, dy, dx, dy))], fill=0)
    elif shape == "square":
        draw.polygon(regular(4), fill=255)
    elif shape == "triangle":
        draw.polygon(regular(3), fill=255)
    elif shape == "hexagon":
        draw.polygon(regular(6), fill=255)
    elif shape == "star":
        draw.polygon(regular(5, (1.0, 0.42)), fill=255)
    else:  # cross: a plus sign with arms a third of the radius wide
        w = 0.32
        corners = [(1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w), (-w, -1), (w, -1), (w, -w), (1, -w)]
        draw.polygon(poly((r * math.hypot(x, y), math.atan2(y, x)) for x, y in corners), fill=255)
    return mask


def _texture(rng: np.random.Generator, kind: str, size: int) -> Image.Image:
    """The fill of a shape: one colour, or stripes / dots of two colours at a random angle and pitch."""
    v0 = rng.uniform(0.4, 1.0)
    c0 = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.4, 1.0), v0)) * 255
    if kind == "solid":
        return Image.new("RGB", (size, size), tuple(int(c) for c in c0))
    v1 = rng.uniform(0.0, 0.3) if v0 > 0.7 else rng.uniform(0.8, 1.0)  # the pattern always shows
    c1 = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 1.0), v1)) * 255
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    pitch, ang = size * rng.uniform(0.06, 0.12), rng.uniform(0, math.pi)
    u = (xx * math.cos(ang) + yy * math.sin(ang)) / pitch
    if kind == "striped":
        on = (u % 1.0) < 0.5
    else:
        v = (-xx * math.sin(ang) + yy * math.cos(ang)) / pitch
        on = ((u % 1.0 - 0.5) ** 2 + (v % 1.0 - 0.5) ** 2) < 0.09
    return Image.fromarray(np.where(on[..., None], c1, c0).astype(np.uint8))


def draw_shapes(seed: int, index: int, resolution: int, num_classes: int) -> tuple[Image.Image, int]:
    """Image ``index`` of the ``num_classes``-class shape data set ``seed``: (RGB PIL image, label).

    Label ``index % num_classes`` (classes exactly balanced), drawn as ``shape_class_names`` says: one
    shape of a random colour (texture classes: two colours), size, place, rotation and stretch, over the
    VWW scenes' cluttered background with small blobs and thin strokes, some strokes crossing the shape,
    then global lighting jitter. Only the outline (and the texture) tells the class, so a network has to
    read shape, not colour or amount of stuff. A pure function of its arguments.
    """
    rng = np.random.default_rng([seed, index, 1000 + num_classes])
    label = index % num_classes
    size = resolution * SUPERSAMPLE
    img = _background(rng, size)
    draw = ImageDraw.Draw(img)

    def strokes(count):
        for _ in range(count):
            p, q = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
            draw.line([tuple(p), tuple(q)], fill=_clutter_colour(rng), width=int(rng.integers(1, 1 + size // 24)))

    for _ in range(int(rng.integers(2, 6))):  # small blobs, under a third of the shape's size
        x, y = rng.uniform(0, size, 2)
        w, h = rng.uniform(0.03, 0.1, 2) * size
        draw.ellipse([x, y, x + w, y + h], fill=_clutter_colour(rng))
    strokes(int(rng.integers(1, 4)))
    shape = SHAPES[label % len(SHAPES)]
    texture = TEXTURES[label // len(SHAPES)]
    img.paste(_texture(rng, texture, size), mask=_shape_mask(rng, shape, size))
    strokes(int(rng.integers(0, 3)))
    return _photometric(rng, img).resize((resolution, resolution), Image.BOX), label
