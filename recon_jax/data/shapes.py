"""Part grammars: a random ShapeNet-like object per category, built from boxes, cylinders, cones
and ellipsoids (:mod:`recon_jax.data.primitives`).

Each of the 13 categories of 3D-R2N2 has a grammar: a function ``rng -> list[Part]`` that lays out
the parts a person uses to recognise the category (a chair's seat, back and legs; an airplane's
fuselage, wings and tail; ...), draws their proportions from ranges, and switches optional parts
and styles on or off (arms on a chair, engines under a wing, a swivel base, a T-tail, drawers or
doors on a cabinet, a sailboat or a motor vessel...). Colours come from small per-category
palettes with per-object jitter.

Conventions, as ShapeNetCore v1 (which 3D-R2N2 renders): y up, the object's front towards +x,
left/right along z, the ground at y = 0 before normalisation. Parts that touch overlap a little
(legs reach into seats, wings into fuselages), so no face is shared exactly and the surface
between two parts is hidden inside one of them. :func:`make_object` normalises the union as
ShapeNet does: bounding box centred at the origin, diagonal 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from recon_jax.data.layout import SYNSET_TO_NAME, category_synset
from recon_jax.data.primitives import (
    Part,
    Shape,
    box,
    box_between,
    cylinder,
    ellipsoid,
    frustum_between,
    mirror_z,
    rot_x,
    rot_y,
    rot_z,
)

__all__ = ["GRAMMARS", "make_object"]

Color = tuple[float, float, float]

WOODS: tuple[Color, ...] = (
    (0.55, 0.36, 0.2),
    (0.7, 0.5, 0.3),
    (0.38, 0.24, 0.14),
    (0.8, 0.66, 0.46),
)
METALS: tuple[Color, ...] = ((0.55, 0.56, 0.58), (0.3, 0.3, 0.32), (0.75, 0.75, 0.77))
FABRICS: tuple[Color, ...] = (
    (0.6, 0.16, 0.12),
    (0.2, 0.3, 0.55),
    (0.35, 0.5, 0.3),
    (0.55, 0.55, 0.5),
    (0.25, 0.25, 0.28),
    (0.76, 0.68, 0.55),
    (0.45, 0.3, 0.45),
)
PAINTS: tuple[Color, ...] = (
    (0.75, 0.1, 0.1),
    (0.12, 0.25, 0.6),
    (0.88, 0.88, 0.86),
    (0.1, 0.1, 0.11),
    (0.62, 0.63, 0.66),
    (0.9, 0.75, 0.1),
    (0.15, 0.45, 0.25),
    (0.5, 0.12, 0.35),
)
WHITE: Color = (0.88, 0.88, 0.86)
DARK: Color = (0.08, 0.08, 0.09)
GLASS: Color = (0.1, 0.13, 0.19)
SCREEN: Color = (0.05, 0.07, 0.11)


def _jitter(rng: np.random.Generator, rgb: Sequence[float], amount: float = 0.05) -> np.ndarray:
    return np.clip(np.asarray(rgb) + rng.normal(0.0, amount, 3), 0.02, 0.98)


def _pick(rng: np.random.Generator, options: Sequence, p: Sequence[float] | None = None):
    return options[int(rng.choice(len(options), p=p))]


def _coin(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < p)


# --------------------------------------------------------------------------------------------
# Grammars. Each returns the parts of one object in its natural proportions (not normalised).
# --------------------------------------------------------------------------------------------


def _airplane(rng: np.random.Generator) -> list[Part]:
    u = rng.uniform
    body = _jitter(
        rng, _pick(rng, [WHITE, (0.75, 0.76, 0.8), (0.6, 0.62, 0.66), (0.4, 0.45, 0.35)]), 0.04
    )
    accent = _jitter(
        rng,
        _pick(rng, [(0.15, 0.25, 0.55), (0.6, 0.12, 0.1), (0.3, 0.3, 0.33), (0.85, 0.85, 0.85)]),
        0.05,
    )
    r = u(0.04, 0.07)  # fuselage half-width
    ry = r * u(1.0, 1.15)  # fuselage half-height
    x_front, x_back = u(0.2, 0.3), -u(0.18, 0.28)
    parts = [
        frustum_between(
            "fuselage", (x_back, 0, 0), (x_front, 0, 0), ry, body, radius_z=r, x_hint=(0, 1, 0)
        ),
        ellipsoid("nose", (x_front, 0, 0), (u(0.07, 0.16), ry, r), body),
    ]
    tail_len = u(0.18, 0.3)
    x_tail = x_back - tail_len
    parts.append(
        frustum_between(
            "tail_cone",
            (x_back + 0.02, 0, 0),
            (x_tail, ry * u(0.3, 0.7), 0),
            ry,
            body,
            taper=u(0.2, 0.4),
            radius_z=r,
            x_hint=(0, 1, 0),
        )
    )
    # Main wings: flattened tapered frusta from the fuselage axis to the tips.
    span = u(0.75, 1.15)
    chord = u(0.13, 0.24)
    thick = u(0.012, 0.022)
    sweep = math.radians(u(0.0, 35.0))
    dihedral = math.radians(u(-2.0, 7.0))
    wing_y = _pick(rng, [-0.6, 0.0, 0.55]) * ry
    root = np.array([u(-0.08, 0.06), wing_y, 0.0])
    direction = np.array(
        [
            -math.sin(sweep) * math.cos(dihedral),
            math.sin(dihedral),
            math.cos(sweep) * math.cos(dihedral),
        ]
    )
    tip = root + span / 2 * direction
    wing_taper = u(0.3, 0.65)
    wing_color = accent if _coin(rng, 0.3) else body
    wing = frustum_between(
        "wing_right", root, tip, chord / 2, wing_color, taper=wing_taper, radius_z=thick / 2
    )
    parts += [wing, mirror_z(wing, "wing_left")]
    # Engines under the wings (none on most high-wing aircraft).
    if _coin(rng, 0.65 if wing_y <= 0 else 0.25):
        engine_color = _jitter(rng, _pick(rng, METALS), 0.03)
        re = u(0.022, 0.038)
        le = u(0.11, 0.18)
        fractions = [0.35] if _coin(rng, 0.7) else [0.3, 0.62]
        for i, f in enumerate(fractions):
            at = root + f * (tip - root)
            local_chord = chord * (1 - f * (1 - wing_taper))
            front = np.array([at[0] + 0.35 * local_chord + le / 2, at[1] - re * 0.85, at[2]])
            engine = frustum_between(
                f"engine_right_{i}", front, front - (le, 0, 0), re, engine_color, taper=u(0.7, 0.9)
            )
            parts += [engine, mirror_z(engine, f"engine_left_{i}")]
    # Tail: vertical fin and horizontal stabilisers (on the fin's tip for a T-tail).
    fin_h = u(0.11, 0.2)
    fin_chord = chord * u(0.6, 0.95)
    fin_sweep = math.radians(u(20.0, 45.0))
    fin_root = np.array([x_tail + fin_chord * 0.45, 0.0, 0.0])
    fin_tip = fin_root + (-fin_h * math.tan(fin_sweep), fin_h, 0)
    parts.append(
        frustum_between(
            "fin", fin_root, fin_tip, fin_chord / 2, accent, taper=u(0.45, 0.75), radius_z=thick / 2
        )
    )
    t_tail = _coin(rng, 0.25)
    stab_root = fin_tip + (fin_chord * 0.1, -thick, 0) if t_tail else fin_root + (0, ry * 0.3, 0)
    stab_span = span * u(0.28, 0.42)
    stab_sweep = sweep + math.radians(u(0.0, 10.0))
    stab_dir = np.array([-math.sin(stab_sweep), 0.0, math.cos(stab_sweep)])
    stab = frustum_between(
        "stabilizer_right",
        stab_root,
        stab_root + stab_span / 2 * stab_dir,
        fin_chord * u(0.35, 0.5),
        wing_color,
        taper=u(0.4, 0.7),
        radius_z=thick / 2,
    )
    parts += [stab, mirror_z(stab, "stabilizer_left")]
    return parts


def _bench(rng: np.random.Generator) -> list[Part]:
    u = rng.uniform
    width, depth, height = u(1.0, 1.6), u(0.3, 0.45), u(0.38, 0.48)
    ts = u(0.03, 0.06)
    wood = _jitter(rng, _pick(rng, WOODS + ((0.3, 0.32, 0.3),)), 0.04)
    frame = _jitter(rng, _pick(rng, METALS + (DARK,) + WOODS), 0.03)
    parts: list[Part] = []
    slatted = _coin(rng, 0.5)
    if slatted:
        n = int(rng.integers(3, 6))
        pitch = depth / n
        for i in range(n):
            x = -depth / 2 + (i + 0.5) * pitch
            parts.append(
                box(
                    f"seat_slat_{i}",
                    (x, height - ts / 2, 0),
                    (pitch * 0.4, ts / 2, width / 2),
                    wood,
                )
            )
    else:
        parts.append(box("seat", (0, height - ts / 2, 0), (depth / 2, ts / 2, width / 2), wood))
    inset = u(0.03, 0.12)
    legs = _pick(rng, ["four", "panels"], p=[0.6, 0.4])
    z_leg = width / 2 - inset
    leg_top = height - ts * 0.5
    if legs == "four":
        half = u(0.018, 0.03)
        for sx, sz, tag in ((1, 1, "fr"), (1, -1, "fl"), (-1, 1, "br"), (-1, -1, "bl")):
            x = sx * (depth / 2 - half - 0.01)
            parts.append(
                box(f"leg_{tag}", (x, leg_top / 2, sz * z_leg), (half, leg_top / 2, half), frame)
            )
        if _coin(rng, 0.5):
            for sz, tag in ((1, "right"), (-1, "left")):
                parts.append(
                    box(
                        f"stretcher_{tag}",
                        (0, leg_top * u(0.2, 0.35), sz * z_leg),
                        (depth / 2 - half - 0.012, 0.012, half * 0.7),
                        frame,
                    )
                )
    else:
        thick = u(0.025, 0.05)
        for sz, tag in ((1, "right"), (-1, "left")):
            parts.append(
                box(
                    f"side_panel_{tag}",
                    (0, leg_top / 2, sz * z_leg),
                    (depth / 2 * u(0.75, 0.95), leg_top / 2, thick / 2),
                    frame,
                )
            )
    if _coin(rng, 0.55):
        back_h, tilt, gap = u(0.2, 0.35), math.radians(u(5.0, 18.0)), u(0.0, 0.08)
        bt = u(0.02, 0.04)
        origin = np.array([-depth / 2 + bt / 2 + 0.01, height, 0.0])
        up = np.array([-math.sin(tilt), math.cos(tilt), 0.0])
        rot = rot_z(tilt)
        if slatted:
            n = int(rng.integers(2, 4))
            pitch = back_h / n
            for i in range(n):
                centre = origin + up * (gap + (i + 0.5) * pitch)
                parts.append(
                    box(f"back_slat_{i}", centre, (bt / 2, pitch * 0.38, width / 2), wood, rot)
                )
        else:
            parts.append(
                box(
                    "back",
                    origin + up * (gap + back_h / 2),
                    (bt / 2, back_h / 2, width / 2),
                    wood,
                    rot,
                )
            )
        post_len = gap + back_h + ts / 2
        for sz, tag in ((1, "right"), (-1, "left")):
            centre = origin + up * (post_len / 2 - ts / 2) + (-bt, 0, sz * z_leg)
            parts.append(box(f"back_post_{tag}", centre, (0.015, post_len / 2, 0.022), frame, rot))
        if _coin(rng, 0.35):
            arm_y = height + u(0.17, 0.24)
            for sz, tag in ((1, "right"), (-1, "left")):
                z = sz * (width / 2 - 0.026)  # 4 mm proud of the back's sides
                parts.append(box(f"armrest_{tag}", (0, arm_y, z), (depth / 2, 0.018, 0.03), frame))
                parts.append(
                    box(
                        f"arm_post_{tag}",
                        (depth / 2 - 0.04, (height + arm_y) / 2, z),
                        (0.015, (arm_y - height) / 2 + 0.02, 0.015),
                        frame,
                    )
                )
    return parts


def _cabinet(rng: np.random.Generator) -> list[Part]:
    u = rng.uniform
    width, height, depth = u(0.5, 1.2), u(0.5, 1.3), u(0.35, 0.6)
    body_c = _jitter(rng, _pick(rng, WOODS + (WHITE, (0.6, 0.62, 0.6), (0.3, 0.35, 0.45))), 0.04)
    front_c = np.clip(body_c * u(0.85, 1.1), 0, 1)
    handle_c = _jitter(rng, _pick(rng, METALS + (DARK,)), 0.02)
    parts: list[Part] = []
    base = _pick(rng, ["plinth", "legs", "none"], p=[0.4, 0.3, 0.3])
    hp = 0.0
    if base == "plinth":
        hp = u(0.04, 0.09)
        parts.append(
            box(
                "plinth",
                (0.0, hp / 2 + 0.005, 0),
                (depth / 2 - 0.03, hp / 2 + 0.005, width / 2 - 0.03),
                DARK if _coin(rng, 0.5) else body_c,
            )
        )
    elif base == "legs":
        hp = u(0.06, 0.15)
        lr = u(0.015, 0.03)
        for sx, sz, tag in ((1, 1, "fr"), (1, -1, "fl"), (-1, 1, "br"), (-1, -1, "bl")):
            parts.append(
                cylinder(
                    f"leg_{tag}",
                    (sx * (depth / 2 - 0.04), (hp + 0.02) / 2, sz * (width / 2 - 0.04)),
                    lr,
                    (hp + 0.02) / 2,
                    handle_c,
                )
            )
    parts.append(box("body", (0, hp + height / 2, 0), (depth / 2, height / 2, width / 2), body_c))
    if _coin(rng, 0.5):
        over, tt = u(0.01, 0.04), u(0.02, 0.04)
        parts.append(
            box(
                "top",
                (0.0, hp + height + tt / 2 - 0.005, 0),
                (depth / 2 + over, tt / 2, width / 2 + over),
                body_c,
            )
        )
    tf = 0.014
    x_front = depth / 2 + tf / 2 - 0.004
    x_handle = depth / 2 + tf - 0.004 + 0.008
    margin, gap = 0.025, 0.012
    layout = _pick(rng, ["doors", "drawers", "mixed"], p=[0.4, 0.3, 0.3])
    y_lo, y_hi = hp + margin, hp + height - margin
    if layout in ("drawers", "mixed"):
        n = int(rng.integers(2, 6)) if layout == "drawers" else int(rng.integers(1, 3))
        total = (y_hi - y_lo) if layout == "drawers" else (y_hi - y_lo) * u(0.25, 0.4)
        dh = (total - (n - 1) * gap) / n
        knobs = _coin(rng, 0.4)
        for i in range(n):
            y = y_hi - dh / 2 - i * (dh + gap)
            parts.append(
                box(f"drawer_{i}", (x_front, y, 0), (tf / 2, dh / 2, width / 2 - margin), front_c)
            )
            if knobs:
                parts.append(
                    frustum_between(
                        f"drawer_knob_{i}",
                        (x_handle - 0.012, y, 0),
                        (x_handle + 0.012, y, 0),
                        0.018,
                        handle_c,
                    )
                )
            else:
                parts.append(
                    box(
                        f"drawer_handle_{i}",
                        (x_handle, y, 0),
                        (0.012, 0.01, min(0.09, width * 0.15)),
                        handle_c,
                    )
                )
        y_hi = y_hi - total - gap
    if layout in ("doors", "mixed"):
        n = 2 if width > 0.6 or _coin(rng, 0.3) else 1
        dw = (width - 2 * margin - (n - 1) * gap) / n
        hh = min(0.08, (y_hi - y_lo) * 0.2)
        for i in range(n):
            z = -width / 2 + margin + dw / 2 + i * (dw + gap)
            parts.append(
                box(
                    f"door_{i}",
                    (x_front, (y_lo + y_hi) / 2, z),
                    (tf / 2, (y_hi - y_lo) / 2, dw / 2),
                    front_c,
                )
            )
            z_h = z + (dw / 2 - 0.05) * (1 if i == 0 and n == 2 else -1)
            parts.append(
                box(
                    f"door_handle_{i}",
                    (x_handle, (y_lo + y_hi) / 2 + 0.1 * hh, z_h),
                    (0.012, hh, 0.01),
                    handle_c,
                )
            )
    return parts


def _car(rng: np.random.Generator) -> list[Part]:
    u = rng.uniform
    length, width = 1.0, u(0.38, 0.46)
    hb, gc = u(0.13, 0.2), u(0.06, 0.1)
    rw, ww = u(0.085, 0.115), u(0.03, 0.045)
    paint = _jitter(rng, _pick(rng, PAINTS), 0.04)
    y_top = gc + hb
    parts = [box("body", (0, gc + hb / 2, 0), (length / 2, hb / 2, width / 2), paint)]
    lc, xc, hc = u(0.38, 0.55), u(-0.12, 0.03), u(0.1, 0.16)
    wc = width / 2 * u(0.82, 0.94)
    parts.append(box("cabin", (xc, y_top + hc / 2 - 0.01, 0), (lc / 2, hc / 2 + 0.01, wc), paint))
    # Windshield and rear window: thick slanted boxes whose outer face is the glass; the rest of
    # each box is buried in the body and the cabin, so it also fills the wedge under the glass.
    for name, sign, run in (
        ("windshield", 1, hc * u(0.7, 1.3)),
        ("rear_window", -1, hc * u(0.3, 1.0)),
    ):
        top = np.array([xc + sign * lc / 2, y_top + hc, 0.0])
        bottom = np.array([xc + sign * (lc / 2 + run), y_top, 0.0])
        axis = top - bottom
        slant = float(np.linalg.norm(axis))
        outward = np.array([sign * axis[1], -sign * axis[0], 0.0]) / slant
        outward *= 1 if outward[1] > 0 else -1
        thick = min(hc, lc / 2) * 0.8
        centre = (top + bottom) / 2 - outward * (thick / 2 - 0.004)
        rot = np.stack([outward, axis / slant, np.cross(outward, axis / slant)], axis=1)
        parts.append(box(name, centre, (thick / 2, slant / 2, wc * 0.98), GLASS, rot))
    if _coin(rng, 0.8):
        for sz, tag in ((1, "right"), (-1, "left")):
            parts.append(
                box(
                    f"side_window_{tag}",
                    (xc, y_top + hc * 0.55, sz * wc),
                    (lc / 2 * 0.85, hc * 0.3, 0.006),
                    GLASS,
                )
            )
    dx = length / 2 - u(0.15, 0.22)
    zw = width / 2 - ww * 0.4
    hub = _jitter(rng, _pick(rng, METALS), 0.03)
    for sx, sz, tag in ((1, 1, "fr"), (1, -1, "fl"), (-1, 1, "br"), (-1, -1, "bl")):
        parts.append(
            cylinder(f"wheel_{tag}", (sx * dx, rw, sz * zw), rw, ww, DARK, rot_x(math.pi / 2))
        )
        parts.append(
            cylinder(
                f"hubcap_{tag}",
                (sx * dx, rw, sz * (zw + ww)),
                rw * 0.55,
                0.006,
                hub,
                rot_x(math.pi / 2),
            )
        )
    if _coin(rng, 0.7):
        for sz, tag in ((1, "right"), (-1, "left")):
            parts.append(
                ellipsoid(
                    f"headlight_{tag}",
                    (length / 2, y_top - hb * 0.3, sz * width * 0.32),
                    (0.012, hb * 0.15, width * 0.09),
                    (0.95, 0.93, 0.8),
                )
            )
    if _coin(rng, 0.6):
        for sx, tag in ((1, "front"), (-1, "rear")):
            parts.append(
                box(
                    f"bumper_{tag}",
                    (sx * (length / 2 + 0.005), gc + hb * 0.25, 0),
                    (0.015, hb * 0.16, width / 2 + 0.005),
                    DARK,
                )
            )
    if _coin(rng, 0.2):
        parts.append(
            box(
                "spoiler",
                (-length / 2 + 0.05, y_top + 0.05, 0),
                (0.04, 0.008, width / 2 * 0.9),
                paint,
            )
        )
        for sz, tag in ((1, "right"), (-1, "left")):
            parts.append(
                box(
                    f"spoiler_post_{tag}",
                    (-length / 2 + 0.05, y_top + 0.025, sz * width * 0.3),
                    (0.012, 0.03, 0.008),
                    paint,
                )
            )
    return parts


def _chair(rng: np.random.Generator) -> list[Part]:
    u = rng.uniform
    width, depth, height = u(0.42, 0.55), u(0.4, 0.52), u(0.4, 0.48)
    ts = u(0.035, 0.08)
    frame = _jitter(rng, _pick(rng, WOODS + METALS + (DARK,)), 0.04)
    seat_c = _jitter(rng, _pick(rng, FABRICS), 0.05) if _coin(rng, 0.5) else frame
    parts = [box("seat", (0, height - ts / 2, 0), (depth / 2, ts / 2, width / 2), seat_c)]
    # Back.
    back_h, bt, tilt = u(0.35, 0.55), u(0.025, 0.06), math.radians(u(3.0, 15.0))
    base = np.array([-depth / 2 + bt / 2, height - ts / 2, 0.0])
    up = np.array([-math.sin(tilt), math.cos(tilt), 0.0])
    rot = rot_z(tilt)
    style = _pick(rng, ["panel", "slats", "spindles", "cushion"], p=[0.4, 0.2, 0.2, 0.2])
    if style == "panel":
        parts.append(
            box(
                "back",
                base + up * back_h / 2,
                (bt / 2, back_h / 2, width / 2 * u(0.85, 1.0)),
                seat_c,
                rot,
            )
        )
    elif style == "cushion":
        parts.append(
            ellipsoid(
                "back",
                base + up * (back_h / 2 + 0.03),
                (bt * 0.9, back_h / 2, width / 2 * 0.95),
                seat_c,
                rot,
            )
        )
    else:
        pw = u(0.018, 0.03)
        rail_h = u(0.05, 0.1)
        for sz, tag in ((1, "right"), (-1, "left")):
            parts.append(
                box(
                    f"back_post_{tag}",
                    base + up * back_h / 2 + (0, 0, sz * (width / 2 - pw - 0.002)),
                    (bt / 2, back_h / 2, pw),
                    frame,
                    rot,
                )
            )
        parts.append(
            box(
                "back_rail",
                base + up * (back_h - rail_h / 2 - 0.002),
                (bt / 2 * 0.9, rail_h / 2, width / 2 - pw - 0.002),
                frame,
                rot,
            )
        )
        inner = width / 2 - 2 * pw
        if style == "spindles":
            n = int(rng.integers(3, 6))
            for i in range(n):
                z = -inner + (i + 0.5) * 2 * inner / n
                parts.append(
                    frustum_between(
                        f"back_spindle_{i}",
                        base + (0, 0, z),
                        base + up * (back_h - rail_h / 2) + (0, 0, z),
                        bt * 0.3,
                        frame,
                    )
                )
        else:
            n = int(rng.integers(1, 4))
            for i in range(n):
                y = (back_h - rail_h) * (i + 1) / (n + 1)
                parts.append(
                    box(
                        f"back_slat_{i}",
                        base + up * y,
                        (bt / 2 * 0.8, rail_h * 0.35, inner + pw * 0.5),
                        frame,
                        rot,
                    )
                )
    # Legs.
    legs = _pick(rng, ["four", "swivel", "sled"], p=[0.6, 0.28, 0.12])
    seat_bottom = height - ts
    if legs == "swivel":
        caster_r = u(0.022, 0.032)
        hub_y = 2 * caster_r + 0.004
        reach = u(0.24, 0.32)
        for i in range(5):
            phi = 2 * math.pi * i / 5 + math.pi / 2
            direction = np.array([math.cos(phi), 0.0, math.sin(phi)])
            parts.append(
                box(
                    f"star_leg_{i}",
                    direction * reach / 2 + (0, hub_y, 0),
                    (reach / 2, 0.018, 0.016),
                    DARK,
                    rot_y(-phi),
                )
            )
            parts.append(
                ellipsoid(
                    f"caster_{i}",
                    direction * reach + (0, caster_r, 0),
                    (caster_r, caster_r, caster_r),
                    DARK,
                )
            )
        col_r = u(0.022, 0.035)
        parts.append(
            cylinder(
                "column",
                (0, (hub_y + seat_bottom) / 2 + 0.005, 0),
                col_r,
                (seat_bottom - hub_y) / 2 + 0.02,
                _jitter(rng, _pick(rng, METALS), 0.03),
            )
        )
        parts.append(cylinder("hub", (0, hub_y, 0), col_r * 1.6, 0.025, DARK))
    else:
        lr = u(0.014, 0.026)
        inset = u(0.02, 0.05)
        splay = u(0.0, 0.04) if legs == "four" else 0.0
        runner_h = 0.025 if legs == "sled" else 0.0
        round_legs = _coin(rng, 0.5)
        ends = {}
        for sx, sz, tag in ((1, 1, "fr"), (1, -1, "fl"), (-1, 1, "br"), (-1, -1, "bl")):
            top = np.array(
                [sx * (depth / 2 - inset), seat_bottom + ts * 0.5, sz * (width / 2 - inset)]
            )
            foot = np.array(
                [sx * (depth / 2 - inset + splay), runner_h, sz * (width / 2 - inset + splay)]
            )
            ends[tag] = (top, foot)
            if round_legs:
                parts.append(
                    frustum_between(f"leg_{tag}", top, foot, lr, frame, taper=u(0.65, 1.0))
                )
            else:
                parts.append(box_between(f"leg_{tag}", top, foot, lr, lr, frame))
        if legs == "sled":
            for sz, tag in ((1, "right"), (-1, "left")):
                z = sz * (width / 2 - inset)
                parts.append(
                    box(
                        f"runner_{tag}",
                        (0, runner_h / 2 + 0.004, z),
                        (depth / 2 - inset + 0.04, runner_h / 2 + 0.004, lr * 1.1),
                        frame,
                    )
                )
        elif _coin(rng, 0.35):
            y = u(0.1, 0.2)

            def at_height(tag: str) -> np.ndarray:
                top, foot = ends[tag]
                return foot + (top - foot) * (y - foot[1]) / (top[1] - foot[1])

            for side in ("r", "l"):
                parts.append(
                    frustum_between(
                        f"stretcher_{side}",
                        at_height("f" + side),
                        at_height("b" + side),
                        lr * 0.6,
                        frame,
                    )
                )
    # Arms.
    if _coin(rng, 0.35):
        arm_y = height + u(0.17, 0.24)
        aw = u(0.025, 0.045)
        x0, x1 = -depth / 2 + bt, depth / 2 - u(0.0, 0.06)
        for sz, tag in ((1, "right"), (-1, "left")):
            z = sz * (width / 2 - aw / 2 + 0.005)
            parts.append(
                box(
                    f"armrest_{tag}",
                    ((x0 + x1) / 2, arm_y, z),
                    ((x1 - x0) / 2, 0.018, aw / 2),
                    frame,
                )
            )
            for xs, end in ((x1 - 0.03, "front"), (x0 + 0.03, "back")):
                parts.append(
                    box(
                        f"arm_support_{end}_{tag}",
                        (xs, (height + arm_y) / 2 - 0.005, z),
                        (0.014, (arm_y - height) / 2 + 0.012, aw / 2 * 0.7),
                        frame,
                    )
                )
    return parts


def _monitor(rng: np.random.Generator) -> list[Part]:
    u = rng.uniform
    width = u(0.55, 0.8)
    hs = width * u(0.56, 0.78)
    bezel_c = _jitter(
        rng, _pick(rng, [DARK, DARK, (0.25, 0.25, 0.27), (0.7, 0.7, 0.72), WHITE]), 0.03
    )
    style = _pick(rng, ["neck", "arm", "feet", "crt"], p=[0.55, 0.15, 0.12, 0.18])
    ts = u(0.08, 0.12) if style == "crt" else u(0.025, 0.05)
    base_h = u(0.008, 0.016)
    parts: list[Part] = []
    if style == "feet":
        bottom = u(0.03, 0.06)
        for sz, tag in ((1, "right"), (-1, "left")):
            parts.append(
                box(
                    f"foot_{tag}",
                    (0, (bottom + 0.01) / 2, sz * width * 0.35),
                    (u(0.06, 0.1), (bottom + 0.01) / 2, 0.015),
                    bezel_c,
                )
            )
    else:
        bottom = base_h * 2 + (u(0.04, 0.15) if style != "crt" else 0.004)
        base_x = -ts / 2 - (u(0.0, 0.05) if style != "crt" else -ts / 2)
        if _coin(rng, 0.5):
            parts.append(
                box("base", (base_x, base_h, 0), (u(0.09, 0.15), base_h, u(0.12, 0.22)), bezel_c)
            )
        else:
            parts.append(
                cylinder(
                    "base",
                    (base_x, base_h, 0),
                    u(0.09, 0.14),
                    base_h,
                    bezel_c,
                    radius_z=u(0.12, 0.2),
                )
            )
    yc = bottom + hs / 2
    parts.append(box("screen_body", (0, yc, 0), (ts / 2, hs / 2, width / 2), bezel_c))
    bezel = u(0.012, 0.04)
    parts.append(
        box(
            "display",
            (ts / 2, yc + bezel * u(0.0, 0.4), 0),
            (0.003, hs / 2 - bezel, width / 2 - bezel),
            _jitter(rng, SCREEN, 0.015),
        )
    )
    if style == "crt":
        depth = u(0.25, 0.4) * width
        parts.append(
            frustum_between(
                "tube",
                (-ts / 2 + 0.01, yc, 0),
                (-ts / 2 - depth, yc, 0),
                hs / 2 * 0.9,
                bezel_c,
                taper=u(0.4, 0.6),
                radius_z=width / 2 * 0.9,
                x_hint=(0, 1, 0),
            )
        )
    elif style in ("neck", "arm"):
        nt, nw = u(0.015, 0.03), u(0.03, 0.07)
        x_neck = -ts / 2 - nt / 2 + 0.004
        if style == "neck":
            parts.append(
                box(
                    "neck",
                    (x_neck, (2 * base_h + yc) / 2, 0),
                    (nt / 2, (yc - 2 * base_h) / 2 + 0.01, nw / 2),
                    bezel_c,
                )
            )
        else:
            foot = np.array([base_x - u(0.03, 0.07), base_h, 0.0])
            parts.append(
                box_between("neck", foot, (x_neck, yc - hs * 0.15, 0), nt / 2, nw / 2, bezel_c)
            )
        if _coin(rng, 0.5):
            parts.append(
                box(
                    "back_cover",
                    (-ts / 2 - 0.012, yc, 0),
                    (0.014, hs / 2 * u(0.5, 0.75), width / 2 * u(0.5, 0.75)),
                    bezel_c,
                )
            )
    return parts


def _lamp(rng: np.random.Generator) -> list[Part]:
    u = rng.uniform
    metal = _jitter(rng, _pick(rng, METALS + (DARK, (0.7, 0.55, 0.25))), 0.04)
    shade_c = _jitter(
        rng,
        _pick(
            rng,
            [(0.92, 0.88, 0.78), WHITE, (0.85, 0.7, 0.45), (0.3, 0.45, 0.6), (0.6, 0.2, 0.2), DARK],
        ),
        0.04,
    )
    style = _pick(rng, ["table", "floor", "desk"], p=[0.45, 0.3, 0.25])
    parts: list[Part] = []
    if style == "table":
        base_h = u(0.012, 0.03)
        if _coin(rng, 0.3):
            half = u(0.07, 0.12)
            parts.append(box("base", (0, base_h, 0), (half, base_h, half), metal))
        else:
            parts.append(cylinder("base", (0, base_h, 0), u(0.08, 0.14), base_h, metal))
        y = 2 * base_h
        stem_len = u(0.28, 0.48)
        if _coin(rng, 0.45):  # a vase-like body under a shorter stem
            vr, vh = u(0.06, 0.11), u(0.08, 0.16)
            parts.append(
                ellipsoid(
                    "body",
                    (0, y + vh, 0),
                    (vr, vh, vr),
                    _jitter(rng, _pick(rng, FABRICS + (WHITE,)), 0.05),
                )
            )
            y = y + 2 * vh - 0.02
            stem_len = u(0.2, 0.3)
        top = y + stem_len
        parts.append(
            cylinder("stem", (0, (y + top) / 2, 0), u(0.01, 0.02), (top - y) / 2 + 0.01, metal)
        )
        rs, hs = u(0.13, 0.24), u(0.14, 0.26)
        y_shade = top - hs * u(0.3, 0.6)
        parts.append(
            frustum_between(
                "shade", (0, y_shade, 0), (0, y_shade + hs, 0), rs, shade_c, taper=u(0.45, 0.85)
            )
        )
    elif style == "floor":
        base_h = u(0.01, 0.02)
        parts.append(cylinder("base", (0, base_h, 0), u(0.12, 0.2), base_h, metal))
        top = u(1.0, 1.5)
        stem_r = u(0.011, 0.018)
        head = _pick(rng, ["shade", "uplight", "arc"], p=[0.4, 0.3, 0.3])
        if head == "arc":
            arc_r = u(0.3, 0.5)
            parts.append(
                cylinder(
                    "stem",
                    (0, (top - arc_r) / 2 + base_h, 0),
                    stem_r,
                    (top - arc_r) / 2 + 0.01,
                    metal,
                )
            )
            centre = np.array([arc_r, top - arc_r, 0.0])
            n = 4
            points = [
                centre + arc_r * np.array([-math.cos(a), math.sin(a), 0.0])
                for a in np.linspace(0.0, math.pi / 2 * 1.25, n + 1)
            ]
            for i in range(n):
                parts.append(frustum_between(f"arc_{i}", points[i], points[i + 1], stem_r, metal))
                if 0 < i:
                    parts.append(ellipsoid(f"arc_joint_{i}", points[i], (stem_r,) * 3, metal))
            tip = points[-1]
            hs = u(0.12, 0.2)
            parts.append(
                frustum_between(
                    "shade",
                    tip - (0, hs * 0.85, 0),
                    tip + (0, hs * 0.15, 0),
                    u(0.12, 0.2),
                    shade_c,
                    taper=u(0.2, 0.5),
                )
            )
        else:
            parts.append(cylinder("stem", (0, top / 2 + base_h, 0), stem_r, top / 2, metal))
            if head == "shade":
                rs, hs = u(0.15, 0.25), u(0.18, 0.3)
                y_shade = top - hs * 0.5
                parts.append(
                    frustum_between(
                        "shade",
                        (0, y_shade, 0),
                        (0, y_shade + hs, 0),
                        rs,
                        shade_c,
                        taper=u(0.5, 0.85),
                    )
                )
            else:
                hb = u(0.08, 0.14)
                parts.append(
                    frustum_between(
                        "shade",
                        (0, top + hb, 0),
                        (0, top - 0.01, 0),
                        u(0.14, 0.24),
                        shade_c,
                        taper=u(0.15, 0.45),
                    )
                )
    else:  # desk lamp: two arms with joints and a cone head
        base_h = u(0.012, 0.025)
        if _coin(rng, 0.5):
            parts.append(cylinder("base", (0, base_h, 0), u(0.08, 0.12), base_h, metal))
        else:
            parts.append(box("base", (0, base_h, 0), (u(0.07, 0.1), base_h, u(0.06, 0.09)), metal))
        r_arm = u(0.009, 0.015)
        a1 = math.radians(u(10.0, 35.0))
        l1, l2 = u(0.3, 0.45), u(0.28, 0.42)
        p0 = np.array([0.0, 2 * base_h - 0.005, 0.0])
        p1 = p0 + l1 * np.array([-math.sin(a1), math.cos(a1), 0.0])
        a2 = math.radians(u(-25.0, 25.0))
        p2 = p1 + l2 * np.array([math.cos(a2), math.sin(a2), 0.0])
        parts.append(frustum_between("lower_arm", p0, p1, r_arm, metal))
        parts.append(ellipsoid("elbow", p1, (r_arm * 1.8,) * 3, metal))
        parts.append(frustum_between("upper_arm", p1, p2, r_arm, metal))
        parts.append(ellipsoid("head_joint", p2, (r_arm * 2.0,) * 3, metal))
        down = math.radians(u(35.0, 75.0))
        direction = np.array([math.cos(down), -math.sin(down), 0.0])
        hs = u(0.1, 0.16)
        parts.append(
            frustum_between(
                "shade",
                p2 + direction * hs,
                p2 - direction * 0.01,
                u(0.06, 0.1),
                shade_c,
                taper=u(0.2, 0.45),
            )
        )
    return parts


def _speaker(rng: np.random.Generator) -> list[Part]:
    u = rng.uniform
    width, height, depth = u(0.22, 0.42), u(0.35, 0.9), u(0.22, 0.38)
    body_c = _jitter(
        rng, _pick(rng, [DARK, DARK, (0.35, 0.22, 0.12)] + list(WOODS[:2]) + [WHITE]), 0.03
    )
    ring_c = _jitter(rng, _pick(rng, [(0.15, 0.15, 0.16), (0.3, 0.3, 0.32)]), 0.02)
    cone_c = _jitter(
        rng, _pick(rng, [(0.22, 0.22, 0.24), (0.6, 0.6, 0.62), (0.75, 0.6, 0.2)]), 0.03
    )
    parts: list[Part] = []
    feet = _pick(rng, ["none", "feet", "plinth"], p=[0.55, 0.25, 0.2])
    y0 = 0.0
    if feet == "feet":
        y0 = u(0.015, 0.03)
        for sx, sz, tag in ((1, 1, "fr"), (1, -1, "fl"), (-1, 1, "br"), (-1, -1, "bl")):
            parts.append(
                cylinder(
                    f"foot_{tag}",
                    (sx * (depth / 2 - 0.03), (y0 + 0.01) / 2, sz * (width / 2 - 0.03)),
                    0.018,
                    (y0 + 0.01) / 2,
                    DARK,
                )
            )
    elif feet == "plinth":
        y0 = u(0.02, 0.04)
        parts.append(
            box(
                "plinth",
                (0, (y0 + 0.01) / 2, 0),
                (depth / 2 + 0.02, (y0 + 0.01) / 2, width / 2 + 0.02),
                DARK,
            )
        )
    parts.append(
        box("cabinet", (0, y0 + height / 2, 0), (depth / 2, height / 2, width / 2), body_c)
    )
    x_face = depth / 2
    if _coin(rng, 0.2):
        parts.append(
            box(
                "grille",
                (x_face, y0 + height / 2, 0),
                (0.006, height / 2 - 0.015, width / 2 - 0.015),
                _jitter(rng, (0.12, 0.12, 0.13), 0.02),
            )
        )
        return parts
    rw = min(width / 2, height / 4) * u(0.6, 0.85)
    rt = rw * u(0.3, 0.45)
    bottom, gap = u(0.03, 0.06), u(0.02, 0.05)
    two = height >= 0.55 and bottom + 2 * (2 * rw + gap) + 2 * rt + 0.03 <= height
    n_woofers = 2 if two and _coin(rng, 0.5) else 1
    y = y0 + bottom + rw
    for i in range(n_woofers):
        parts.append(
            frustum_between(
                f"woofer_{i}", (x_face - 0.008, y, 0), (x_face + 0.008, y, 0), rw, ring_c
            )
        )
        parts.append(
            ellipsoid(
                f"woofer_cone_{i}",
                (x_face + 0.006, y, 0),
                (rw * 0.25, rw * 0.72, rw * 0.72),
                cone_c,
            )
        )
        y += 2 * rw + gap
    room = y0 + height - 0.02 - (y - rw)  # above the last woofer and its gap
    rt = min(rt, room / 2)
    if rt > 0.01:
        y_t = y - rw + rt
        parts.append(
            frustum_between(
                "tweeter", (x_face - 0.008, y_t, 0), (x_face + 0.007, y_t, 0), rt, ring_c
            )
        )
        parts.append(
            ellipsoid(
                "tweeter_dome", (x_face + 0.005, y_t, 0), (rt * 0.5, rt * 0.6, rt * 0.6), cone_c
            )
        )
    y_p, z_p = y0 + 0.045, width / 2 - 0.045
    if _coin(rng, 0.35) and math.hypot(z_p, y_p - (y0 + bottom + rw)) > rw + 0.03:
        parts.append(
            frustum_between(
                "port", (x_face - 0.008, y_p, z_p), (x_face + 0.006, y_p, z_p), 0.025, DARK
            )
        )
    return parts


def _rifle(rng: np.random.Generator) -> list[Part]:
    u = rng.uniform
    metal = _jitter(rng, _pick(rng, [DARK, (0.2, 0.2, 0.22), (0.35, 0.36, 0.33)]), 0.02)
    furniture = _jitter(rng, _pick(rng, list(WOODS[:3]) + [DARK, (0.35, 0.33, 0.25)]), 0.03)
    xr0, xr1 = -u(0.12, 0.2), u(0.08, 0.18)
    hr, wr = u(0.032, 0.045), u(0.015, 0.022)
    parts = [box("receiver", ((xr0 + xr1) / 2, 0, 0), ((xr1 - xr0) / 2, hr, wr), metal)]
    rb = u(0.011, 0.016)
    parts.append(
        frustum_between("barrel", (xr1 - 0.03, hr * 0.3, 0), (0.5, hr * 0.3, 0), rb, metal)
    )
    if _coin(rng, 0.7):
        hg = u(0.15, 0.3)
        parts.append(
            box(
                "handguard",
                (xr1 + hg / 2 - 0.01, hr * 0.15, 0),
                (hg / 2, u(0.022, 0.032), wr * 0.95),
                furniture,
            )
        )
    drop = math.radians(u(3.0, 12.0))
    start = np.array([xr0 + 0.03, -hr * 0.25, 0.0])
    stock_len = (start[0] + 0.5) / math.cos(drop)
    end = start + stock_len * np.array([-math.cos(drop), -math.sin(drop), 0.0])
    hs = u(0.045, 0.07)
    parts.append(
        box_between("stock", start, end, hs, wr * u(0.9, 1.2), furniture, x_hint=(0, 1, 0))
    )
    if _coin(rng, 0.5):
        parts.append(
            box_between(
                "butt_pad",
                end - (0.012, 0, 0),
                end + (0.006, 0, 0),
                hs * 1.02,
                wr * 1.25,
                DARK,
                x_hint=(0, 1, 0),
            )
        )
    if _coin(rng, 0.85):
        lean = math.radians(u(10.0, 25.0))
        top = np.array([xr0 + u(0.05, 0.1), -hr + 0.012, 0.0])
        length = u(0.08, 0.12)
        parts.append(
            box_between(
                "grip",
                top,
                top + length * np.array([-math.sin(lean), -math.cos(lean), 0]),
                0.018,
                wr * 0.9,
                furniture,
            )
        )
    if _coin(rng, 0.7):
        lean = math.radians(u(-5.0, 20.0))
        top = np.array([xr1 - u(0.04, 0.09), -hr + 0.012, 0.0])
        length = u(0.08, 0.16)
        parts.append(
            box_between(
                "magazine",
                top,
                top + length * np.array([math.sin(lean), -math.cos(lean), 0]),
                u(0.018, 0.028),
                wr * 0.8,
                metal,
            )
        )
    if _coin(rng, 0.5):
        rs = u(0.016, 0.024)
        x0 = xr0 + u(0.02, 0.06)
        x1 = x0 + u(0.16, 0.24)
        ys = hr + rs + u(0.015, 0.03)
        parts.append(frustum_between("scope", (x0, ys, 0), (x1, ys, 0), rs, DARK))
        bell = u(0.03, 0.05)
        parts.append(
            frustum_between(
                "scope_bell",
                (x1 + bell, ys, 0),
                (x1 - 0.01, ys, 0),
                rs * u(1.3, 1.6),
                DARK,
                taper=0.7,
            )
        )
        for i, xm in enumerate((x0 + 0.04, x1 - 0.04)):
            parts.append(
                box(
                    f"scope_mount_{i}",
                    (xm, (hr + ys) / 2, 0),
                    (0.012, (ys - hr) / 2 + 0.005, wr * 0.7),
                    metal,
                )
            )
    if _coin(rng, 0.5):
        parts.append(
            box("front_sight", (0.47, hr * 0.3 + rb + 0.012, 0), (0.008, 0.014, 0.005), metal)
        )
    return parts


def _sofa(rng: np.random.Generator) -> list[Part]:
    u = rng.uniform
    width, depth, seat_h = u(1.2, 2.0), u(0.65, 0.9), u(0.38, 0.46)
    fabric = _jitter(rng, _pick(rng, FABRICS), 0.05)
    cushion_c = np.clip(fabric * u(0.9, 1.12), 0, 1)
    leg_c = _jitter(rng, _pick(rng, WOODS[2:] + (DARK, METALS[0])), 0.03)
    legs = _coin(rng, 0.7)
    leg_h = u(0.04, 0.12) if legs else 0.0
    ct = u(0.08, 0.14)
    ta, arm_h = u(0.08, 0.18), u(0.5, 0.66)
    tb, back_h = u(0.12, 0.22), u(0.72, 0.95)
    base_top = seat_h - ct
    parts = [
        box(
            "base",
            (0, (leg_h + base_top) / 2, 0),
            (depth / 2, (base_top - leg_h) / 2, width / 2),
            fabric,
        )
    ]
    parts.append(
        box(
            "back",
            (-depth / 2 + tb / 2 - 0.004, (leg_h + 0.004 + back_h) / 2, 0),
            (tb / 2, (back_h - leg_h - 0.004) / 2, width / 2),
            fabric,
        )
    )
    front_inset = u(0.0, 0.05)
    roll = _coin(rng, 0.4)
    for sz, tag in ((1, "right"), (-1, "left")):
        # Faces never coincide: the arms stand 4 mm proud of the base and back on the outside
        # and start 4 mm above the base's bottom; the back stands 4 mm proud at the rear.
        z = sz * (width / 2 - ta / 2 + 0.004)
        parts.append(
            box(
                f"arm_{tag}",
                (-front_inset / 2, (leg_h + 0.004 + arm_h) / 2, z),
                ((depth - front_inset) / 2, (arm_h - leg_h - 0.004) / 2, ta / 2),
                fabric,
            )
        )
        if roll:
            parts.append(
                frustum_between(
                    f"arm_roll_{tag}",
                    (depth / 2 - front_inset + 0.006, arm_h, z),
                    (-depth / 2 + tb / 2, arm_h, z),
                    ta / 2 * 1.1,
                    fabric,
                    x_hint=(0, 1, 0),
                )
            )
    n = int(rng.integers(1, 4))
    inner = width / 2 - ta + 0.007  # cushions reach 3 mm into the arms
    gap = 0.01
    cw = (2 * inner - (n - 1) * gap) / n
    x0, x1 = -depth / 2 + tb - 0.02, depth / 2 - 0.01
    back_cushions = _coin(rng, 0.6)
    bct = u(0.1, 0.16)
    for i in range(n):
        z = -inner + cw / 2 + i * (cw + gap)
        parts.append(
            box(
                f"seat_cushion_{i}",
                ((x0 + x1) / 2, seat_h - ct / 2 - 0.005, z),
                ((x1 - x0) / 2, ct / 2 + 0.005, cw / 2),
                cushion_c,
            )
        )
        if back_cushions:
            lean = math.radians(u(5.0, 12.0))
            bottom = np.array([-depth / 2 + tb + bct / 2 - 0.02, seat_h - 0.01, z])
            top = bottom + (back_h * 0.95 - seat_h) * np.array([-math.sin(lean), math.cos(lean), 0])
            parts.append(
                box_between(f"back_cushion_{i}", bottom, top, bct / 2, cw / 2 - 0.002, cushion_c)
            )
    if legs:
        lr = u(0.02, 0.035)
        for sx, sz, tag in ((1, 1, "fr"), (1, -1, "fl"), (-1, 1, "br"), (-1, -1, "bl")):
            parts.append(
                frustum_between(
                    f"leg_{tag}",
                    (sx * (depth / 2 - 0.06), leg_h + 0.01, sz * (width / 2 - 0.06)),
                    (sx * (depth / 2 - 0.06), 0, sz * (width / 2 - 0.06)),
                    lr,
                    leg_c,
                    taper=u(0.6, 1.0),
                )
            )
    if _coin(rng, 0.15):  # chaise longue on the right
        ext = u(0.45, 0.7)
        cw2 = min(cw, u(0.5, 0.7))
        z = inner - cw2 / 2
        parts.append(
            box(
                "chaise_base",
                (depth / 2 + ext / 2 - 0.01, (leg_h + base_top) / 2, z),
                (ext / 2, (base_top - leg_h) / 2 - 0.003, cw2 / 2),
                fabric,
            )
        )
        parts.append(
            box(
                "chaise_cushion",
                (depth / 2 + ext / 2 - 0.014, seat_h - ct / 2 - 0.005, z),
                (ext / 2 - 0.006, ct / 2 + 0.005, cw2 / 2 - 0.005),
                cushion_c,
            )
        )
    return parts


def _table(rng: np.random.Generator) -> list[Part]:
    u = rng.uniform
    wood = _jitter(rng, _pick(rng, WOODS + (WHITE, DARK, (0.55, 0.57, 0.6))), 0.04)
    leg_c = wood if _coin(rng, 0.6) else _jitter(rng, _pick(rng, METALS + (DARK,)), 0.03)
    height, tt = u(0.55, 0.78), u(0.025, 0.06)
    round_top = _coin(rng, 0.3)
    parts: list[Part] = []
    y_top = height - tt / 2
    if round_top:
        radius = u(0.35, 0.6)
        parts.append(cylinder("top", (0, y_top, 0), radius, tt / 2, wood))
        legs = _pick(rng, ["pedestal", "four"], p=[0.6, 0.4])
    else:
        width, depth = u(0.8, 1.8), 0.0
        depth = min(width, u(0.5, 1.0))
        parts.append(box("top", (0, y_top, 0), (depth / 2, tt / 2, width / 2), wood))
        legs = _pick(rng, ["four", "trestle", "pedestal"], p=[0.6, 0.2, 0.2])
    under = height - tt
    if legs == "pedestal":
        col_r = u(0.04, 0.08)
        parts.append(
            cylinder("column", (0, (under + 0.018) / 2, 0), col_r, (under + 0.002) / 2, leg_c)
        )
        foot = (radius if round_top else min(width, depth) / 2) * u(0.5, 0.8)
        if _coin(rng, 0.5):
            parts.append(cylinder("foot", (0, 0.015, 0), foot, 0.015, leg_c))
        else:
            for i in range(4):
                phi = math.pi / 4 + i * math.pi / 2
                d = np.array([math.cos(phi), 0.0, math.sin(phi)])
                parts.append(
                    box(
                        f"foot_{i}",
                        d * (foot / 2 + 0.03) + (0, 0.025, 0),  # inner end inside the column
                        (foot / 2, 0.025, 0.025),
                        leg_c,
                        rot_y(-phi),
                    )
                )
    elif legs == "trestle":
        inset, pt = u(0.05, 0.15), u(0.025, 0.04)
        for sz, tag in ((1, "right"), (-1, "left")):
            z = sz * (width / 2 - inset)
            parts.append(
                box(
                    f"end_panel_{tag}",
                    (0, (under + 0.02) / 2, z),
                    (depth / 2 * u(0.2, 0.6), under / 2, pt / 2),
                    leg_c,
                )
            )
            parts.append(
                box(f"end_foot_{tag}", (0, 0.02, z), (depth / 2 * 0.85, 0.02, pt / 2 * 1.3), leg_c)
            )
        parts.append(
            box("stretcher", (0, under * u(0.3, 0.6), 0), (0.02, 0.03, width / 2 - inset), leg_c)
        )
    else:
        lr = u(0.018, 0.035)
        round_legs = _coin(rng, 0.5)
        if round_top:
            n = int(rng.integers(3, 5))
            spots = [
                radius * 0.7 * np.array([math.cos(a), 0, math.sin(a)])
                for a in np.arange(n) * 2 * math.pi / n
            ]
        else:
            inset = u(0.03, 0.1)
            spots = [
                np.array([sx * (depth / 2 - inset - lr), 0, sz * (width / 2 - inset - lr)])
                for sx, sz in ((1, 1), (1, -1), (-1, 1), (-1, -1))
            ]
        for i, s in enumerate(spots):
            top, bottom = s + (0, under + 0.01, 0), s
            if round_legs:
                parts.append(frustum_between(f"leg_{i}", top, bottom, lr, leg_c, taper=u(0.6, 1.0)))
            else:
                parts.append(box_between(f"leg_{i}", top, bottom, lr, lr, leg_c))
        if not round_top and _coin(rng, 0.5):
            ah = u(0.05, 0.1)
            xs, zs = spots[0][0], spots[0][2]
            y = under - ah / 2 + 0.005
            parts.append(box("apron_front", (xs, y, 0), (0.01, ah / 2, zs), leg_c))
            parts.append(box("apron_back", (-xs, y, 0), (0.01, ah / 2, zs), leg_c))
            parts.append(box("apron_right", (0, y, zs), (xs, ah / 2, 0.01), leg_c))
            parts.append(box("apron_left", (0, y, -zs), (xs, ah / 2, 0.01), leg_c))
        if not round_top and _coin(rng, 0.2):
            xs, zs = spots[0][0], spots[0][2]
            parts.append(
                box("shelf", (0, u(0.12, 0.25), 0), (xs + lr * 0.5, 0.012, zs + lr * 0.5), wood)
            )
    return parts


def _telephone(rng: np.random.Generator) -> list[Part]:
    u = rng.uniform
    body_c = _jitter(
        rng,
        _pick(rng, [DARK, DARK, (0.8, 0.8, 0.82), (0.7, 0.6, 0.5), WHITE, (0.2, 0.25, 0.4)]),
        0.03,
    )
    parts: list[Part] = []
    if _coin(rng, 0.65):  # smartphone, upright, screen towards +x
        h = 1.0
        w = h * u(0.45, 0.56)
        t = h * u(0.045, 0.09)
        parts.append(box("body", (0, h / 2, 0), (t / 2, h / 2, w / 2), body_c))
        side, top_m, bottom_m = u(0.02, 0.045), u(0.06, 0.12), u(0.06, 0.14)
        y0, y1 = bottom_m, h - top_m
        parts.append(
            box(
                "screen",
                (t / 2, (y0 + y1) / 2, 0),
                (0.004, (y1 - y0) / 2, w / 2 - side),
                _jitter(rng, SCREEN, 0.015),
            )
        )
        if _coin(rng, 0.5):
            parts.append(
                frustum_between(
                    "home_button",
                    (t / 2 - 0.004, bottom_m / 2, 0),
                    (t / 2 + 0.004, bottom_m / 2, 0),
                    min(0.04, bottom_m * 0.35),
                    _jitter(rng, (0.3, 0.3, 0.32), 0.03),
                )
            )
        parts.append(box("earpiece", (t / 2, h - top_m / 2, 0), (0.004, 0.01, w * 0.12), DARK))
        if _coin(rng, 0.8):
            parts.append(
                frustum_between(
                    "camera",
                    (-t / 2 + 0.004, h - 0.08, w / 2 - 0.09),
                    (-t / 2 - 0.008, h - 0.08, w / 2 - 0.09),
                    0.035,
                    DARK,
                )
            )
        if _coin(rng, 0.6):
            parts.append(box("side_button", (0, h * 0.7, w / 2), (t * 0.25, 0.06, 0.006), body_c))
    else:  # desk telephone: base, keypad, handset across the top
        d, hb, w = u(0.36, 0.5), u(0.08, 0.14), u(0.4, 0.6)
        parts.append(box("base", (0, hb / 2, 0), (d / 2, hb / 2, w / 2), body_c))
        key_c = _jitter(rng, _pick(rng, [WHITE, (0.5, 0.5, 0.52), DARK]), 0.03)
        pitch_x, pitch_z = d * 0.5 / 4, w * 0.4 / 3
        for row in range(4):
            for col in range(3):
                x = d / 2 - 0.04 - (row + 0.5) * pitch_x
                z = (col - 1) * pitch_z - w * 0.15
                parts.append(
                    box(
                        f"key_{row}_{col}",
                        (x, hb + 0.006, z),
                        (pitch_x * 0.35, 0.01, pitch_z * 0.35),
                        key_c,
                    )
                )
        hy = hb + u(0.04, 0.06)
        hx = -d / 2 + u(0.08, 0.12)
        hl = w * u(0.38, 0.46)
        parts.append(box("handset", (hx, hy, 0), (0.04, 0.025, hl), body_c))
        for sz, tag in ((1, "ear"), (-1, "mouth")):
            parts.append(
                ellipsoid(f"handset_{tag}", (hx, hy - 0.01, sz * hl), (0.065, 0.04, 0.07), body_c)
            )
            parts.append(
                box(
                    f"cradle_{tag}",
                    (hx, (hb + hy) / 2, sz * hl * 0.9),
                    (0.035, (hy - hb) / 2 + 0.005, 0.03),
                    body_c,
                )
            )
        if _coin(rng, 0.5):
            parts.append(
                box(
                    "display",
                    (d / 2 - 0.04 - 4.3 * pitch_x, hb + 0.004, w * 0.2),
                    (pitch_x * 0.5, 0.008, w * 0.12),
                    SCREEN,
                )
            )
    return parts


def _vessel(rng: np.random.Generator) -> list[Part]:
    u = rng.uniform
    style = _pick(rng, ["motor", "sail", "speedboat"], p=[0.5, 0.3, 0.2])
    hull_c = _jitter(
        rng, _pick(rng, [WHITE, (0.1, 0.15, 0.35), (0.6, 0.1, 0.1), DARK, (0.3, 0.32, 0.35)]), 0.04
    )
    deck_c = _jitter(rng, _pick(rng, [WOODS[1], WHITE, (0.55, 0.55, 0.55)]), 0.04)
    super_c = _jitter(rng, _pick(rng, [WHITE, (0.85, 0.85, 0.8), (0.6, 0.6, 0.62)]), 0.03)
    width = u(0.3, 0.4) if style == "speedboat" else u(0.16, 0.28)
    hh = u(0.08, 0.14)
    lb = u(0.16, 0.3)
    x_bow = 0.5 - lb
    parts = [
        box("hull", ((-0.5 + x_bow) / 2, hh / 2, 0), ((0.5 + x_bow) / 2, hh / 2, width / 2), hull_c)
    ]
    if _coin(rng, 0.5):
        parts.append(ellipsoid("bow", (x_bow, hh / 2, 0), (lb, hh / 2, width / 2), hull_c))
    else:
        parts.append(
            frustum_between(
                "bow",
                (x_bow - 0.01, hh / 2, 0),
                (0.5, hh * u(0.55, 0.8), 0),
                hh / 2,
                hull_c,
                taper=u(0.05, 0.2),
                radius_z=width / 2,
                x_hint=(0, 1, 0),
            )
        )
    deck_t = 0.012
    parts.append(
        box(
            "deck",
            ((-0.49 + x_bow - 0.002) / 2, hh + deck_t / 2 - 0.004, 0),
            ((x_bow - 0.002 + 0.49) / 2, deck_t / 2, width / 2 - 0.006),
            deck_c,
        )
    )
    y = hh + deck_t - 0.004
    if style == "motor":
        n = int(rng.integers(1, 4))
        x_c = u(-0.2, 0.05)
        length, cw = u(0.25, 0.45), width / 2 * u(0.6, 0.85)
        for i in range(n):
            ch = u(0.05, 0.09)
            parts.append(
                box(f"cabin_{i}", (x_c, y + ch / 2 - 0.003, 0), (length / 2, ch / 2, cw), super_c)
            )
            if _coin(rng, 0.7):
                for sz, tag in ((1, "right"), (-1, "left")):
                    parts.append(
                        box(
                            f"windows_{i}_{tag}",
                            (x_c, y + ch * 0.55, sz * cw),
                            (length / 2 * 0.8, ch * 0.18, 0.005),
                            GLASS,
                        )
                    )
            y += ch - 0.003
            length *= u(0.6, 0.85)
            cw *= u(0.75, 0.95)
            x_c += u(-0.03, 0.04)
        if _coin(rng, 0.5):
            fr = u(0.025, 0.04)
            parts.append(
                cylinder(
                    "funnel",
                    (x_c - length * 0.3, y + 0.04, 0),
                    fr,
                    0.05,
                    _jitter(rng, _pick(rng, [(0.7, 0.1, 0.1), DARK, (0.9, 0.7, 0.1)]), 0.03),
                    radius_z=fr * 0.8,
                )
            )
        if _coin(rng, 0.7):
            mh = u(0.1, 0.25)
            parts.append(
                cylinder("mast", (x_c, y + mh / 2 - 0.005, 0), u(0.006, 0.01), mh / 2, super_c)
            )
    elif style == "sail":
        if _coin(rng, 0.7):
            parts.append(
                box(
                    "cabin",
                    (u(-0.15, 0.0), y + 0.02, 0),
                    (u(0.1, 0.15), 0.025, width / 2 * 0.6),
                    super_c,
                )
            )
        x_m = u(0.0, 0.15)
        mh = u(0.6, 0.9)
        parts.append(
            cylinder("mast", (x_m, y + mh / 2 - 0.005, 0), u(0.007, 0.011), mh / 2, super_c)
        )
        sail_c = _jitter(rng, (0.93, 0.93, 0.9), 0.02)
        chord = u(0.3, 0.45)
        boom_y = y + u(0.04, 0.08)
        x_b = x_m - chord * 0.45
        parts.append(
            frustum_between(
                "mainsail",
                (x_b, boom_y, 0),
                (x_b, y + mh * 0.97, 0),
                chord / 2,
                sail_c,
                taper=0.0,
                radius_z=0.004,
            )
        )
        if _coin(rng, 0.7):
            parts.append(
                frustum_between(
                    "boom", (x_m + 0.01, boom_y, 0), (x_b - chord / 2, boom_y, 0), 0.008, super_c
                )
            )
        if _coin(rng, 0.6):
            jc = (0.5 - x_m) * u(0.6, 0.8)
            parts.append(
                frustum_between(
                    "jib",
                    (x_m + jc / 2, boom_y, 0),
                    (x_m + jc / 2, y + mh * 0.75, 0),
                    jc / 2,
                    sail_c,
                    taper=0.0,
                    radius_z=0.004,
                )
            )
    else:  # speedboat
        wx = u(0.0, 0.15)
        ws = box_between(
            "windshield",
            (wx + 0.05, y - 0.005, 0),
            (wx, y + u(0.06, 0.1), 0),
            0.005,
            width / 2 * 0.85,
            GLASS,
        )
        parts.append(ws)
        for sz, tag in ((1, "right"), (-1, "left")):
            parts.append(
                box(
                    f"seat_{tag}",
                    (wx - 0.12, y + 0.025, sz * width * 0.2),
                    (0.05, 0.03, width * 0.14),
                    deck_c,
                )
            )
        if _coin(rng, 0.7):
            parts.append(box("outboard", (-0.5 - 0.03, hh + 0.04, 0), (0.035, 0.06, 0.04), DARK))
            parts.append(
                box("outboard_leg", (-0.5 - 0.03, hh - 0.04, 0), (0.015, 0.06, 0.012), DARK)
            )
    return parts


GRAMMARS: dict[str, Callable[[np.random.Generator], list[Part]]] = {
    "airplane": _airplane,
    "bench": _bench,
    "cabinet": _cabinet,
    "car": _car,
    "chair": _chair,
    "monitor": _monitor,
    "lamp": _lamp,
    "speaker": _speaker,
    "rifle": _rifle,
    "sofa": _sofa,
    "table": _table,
    "telephone": _telephone,
    "vessel": _vessel,
}


def make_object(category: str, rng: np.random.Generator) -> Shape:
    """A random object of ``category`` (name or synset), normalised like ShapeNet.

    Returns:
        A :class:`~recon_jax.data.primitives.Shape` whose bounding box is centred at the origin
        with diagonal 1 (y up, front +x).
    """
    synset = category_synset(category)
    parts = GRAMMARS[SYNSET_TO_NAME[synset]](rng)
    return Shape(synset, tuple(parts)).normalized()
