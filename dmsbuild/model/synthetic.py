"""Procedurally generated driver-camera images with DMS labels.

Why: the reference model needs a trained checkpoint so that accuracy and
agreement checks of quantized artifacts mean something (a random-init model
agrees with itself suspiciously well), and the repository may not download
data sets. Everything here is numpy + Pillow and deterministic from a seed:
sample ``i`` of seed ``s`` is always the same image, on any machine.

Labels (the model's heads, see dms_net.py):

- ``eye_state``: 0 = open, 1 = closed
- ``yawn``: 0 = no, 1 = yes (mouth wide open)
- ``activity``: the index into :data:`ACTIVITIES`
- ``head_pose``: yaw, pitch, roll, each in [-1, 1] (1 = 45 deg yaw, 30 deg pitch, 30 deg roll)

The scene: a cabin (roof liner, side window, B-pillar, seat headrest, random
clutter such as a rear-view mirror or a sun visor), a driver's head with hair,
eyes, nose, mouth and ears, posed by yaw / pitch / roll, lit from a random side,
in colour or as a grey near-IR frame, with blur and sensor noise.

Run ``python -m dmsbuild.model.synthetic --out data/ --calibration 64 --validation 128``
to regenerate the committed calibration and validation sets bit for bit.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ACTIVITIES = ["attentive", "phone", "drinking", "looking_away", "eyes_off_road"]

# Seeds of the committed sets; training uses TRAIN_SEED (different on purpose).
TRAIN_SEED = 20240
CALIBRATION_SEED = 7001
VALIDATION_SEED = 9001
DEFAULT_SIZE = 128

_SS = 2  # supersampling factor: draw at 2x, downsample, for anti-aliased edges


@dataclass(frozen=True)
class Sample:
    """One rendered frame and its labels."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    eye_state: int
    yawn: int
    activity: int
    head_pose: tuple[float, float, float]

    def labels(self) -> dict:
        return {
            "eye_state": self.eye_state,
            "yawn": self.yawn,
            "activity": self.activity,
            "head_pose": [round(float(v), 4) for v in self.head_pose],
        }


def _rng_for(seed: int, index: int) -> np.random.Generator:
    # SeedSequence mixing: sample i of seed s never depends on how many samples came before.
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def _col(rgb: np.ndarray | tuple, scale: float = 1.0) -> tuple[int, int, int]:
    a = np.clip(np.asarray(rgb, dtype=np.float64) * scale, 0, 255)
    return int(a[0]), int(a[1]), int(a[2])


def _draw_cabin(rng: np.random.Generator, s: int) -> Image.Image:
    """Background: interior panels, a side window, pillar, headrest and clutter."""
    base = rng.uniform(25, 110, 3)
    img = Image.new("RGB", (s, s), _col(base))
    d = ImageDraw.Draw(img)
    # roof liner band
    roof_h = rng.uniform(0.05, 0.2) * s
    d.rectangle([0, 0, s, roof_h], fill=_col(base, rng.uniform(1.1, 1.6)))
    # side window (bright), left or right
    win_w = rng.uniform(0.2, 0.4) * s
    left = rng.random() < 0.5
    x0 = 0 if left else s - win_w
    top = roof_h + rng.uniform(0, 0.1) * s
    bottom = rng.uniform(0.45, 0.7) * s
    sky = rng.uniform(120, 250, 3)
    d.polygon([(x0, top), (x0 + win_w, top + rng.uniform(-0.05, 0.1) * s), (x0 + win_w, bottom), (x0, bottom)],
              fill=_col(sky))
    # trees/buildings outside the window
    for _ in range(rng.integers(0, 4)):
        bx = x0 + rng.uniform(0, win_w)
        by = rng.uniform(top, bottom)
        r = rng.uniform(0.02, 0.08) * s
        d.ellipse([bx - r, by - r, bx + r, by + r], fill=_col(rng.uniform(30, 180, 3)))
    # B-pillar
    px = rng.uniform(0.1, 0.9) * s
    pw = rng.uniform(0.03, 0.08) * s
    d.polygon([(px, 0), (px + pw, 0), (px + pw + rng.uniform(-0.1, 0.1) * s, s), (px + rng.uniform(-0.1, 0.1) * s, s)],
              fill=_col(base, rng.uniform(0.5, 0.9)))
    # seat back and headrest behind the driver
    seat = _col(rng.uniform(15, 90, 3))
    cx = s * (0.5 + rng.uniform(-0.08, 0.08))
    d.rounded_rectangle([cx - 0.36 * s, 0.55 * s, cx + 0.36 * s, 1.1 * s], radius=int(0.1 * s), fill=seat)
    d.rounded_rectangle([cx - 0.2 * s, 0.08 * s, cx + 0.2 * s, 0.42 * s], radius=int(0.08 * s), fill=seat)
    # clutter: rear-view mirror, visor, seat-belt line, dark rectangles that are not phones
    for _ in range(rng.integers(0, 3)):
        kind = rng.integers(0, 3)
        c = _col(rng.uniform(10, 200, 3))
        if kind == 0:
            x, y = rng.uniform(0, s), rng.uniform(0, 0.35 * s)
            d.rounded_rectangle([x, y, x + rng.uniform(0.1, 0.3) * s, y + rng.uniform(0.04, 0.1) * s],
                                radius=int(0.02 * s), fill=c)
        elif kind == 1:
            x = rng.uniform(0, s)
            d.line([(x, 0.5 * s), (x + rng.uniform(-0.5, 0.5) * s, s)], fill=c, width=int(rng.uniform(0.02, 0.05) * s))
        else:
            x, y = rng.uniform(0, s), rng.uniform(0.6 * s, s)
            d.rectangle([x, y, x + rng.uniform(0.05, 0.15) * s, y + rng.uniform(0.05, 0.2) * s], fill=c)
    return img


def _draw_hand_object(d: ImageDraw.ImageDraw, rng: np.random.Generator, kind: str, anchor: tuple[float, float],
                      side: int, unit: float, skin: tuple[int, int, int]) -> None:
    """A phone held to the ear or a cup held at the mouth, with the hand around it."""
    ax, ay = anchor
    if kind == "phone":
        w, h = unit * rng.uniform(0.22, 0.3), unit * rng.uniform(0.45, 0.6)
        tilt = rng.uniform(-0.3, 0.3)
        cx, cy = ax + side * w * 0.3, ay + h * 0.1
        pts = []
        for dx, dy in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)):
            pts.append((cx + dx * math.cos(tilt) - dy * math.sin(tilt), cy + dx * math.sin(tilt) + dy * math.cos(tilt)))
        d.polygon(pts, fill=_col(rng.uniform(5, 70, 3)))
        # screen glow edge
        if rng.random() < 0.5:
            d.line(pts[:2], fill=_col(rng.uniform(120, 230, 3)), width=max(1, int(unit * 0.03)))
        hx, hy = cx + side * w * 0.2, cy + h * 0.35
        r = unit * rng.uniform(0.16, 0.22)
        d.ellipse([hx - r, hy - r * 0.8, hx + r, hy + r * 1.2], fill=skin)
        # forearm going down out of frame
        d.line([(hx, hy), (hx + side * unit * 0.4, hy + unit * 1.6)], fill=skin, width=int(unit * 0.28))
    else:  # cup
        w, h = unit * rng.uniform(0.3, 0.42), unit * rng.uniform(0.45, 0.65)
        cx, cy = ax + side * unit * rng.uniform(0.0, 0.15), ay + h * 0.3
        cup = _col(rng.uniform(60, 255, 3))
        d.polygon([(cx - w / 2, cy - h / 2), (cx + w / 2, cy - h / 2), (cx + w * 0.38, cy + h / 2),
                   (cx - w * 0.38, cy + h / 2)], fill=cup)
        d.ellipse([cx - w / 2, cy - h / 2 - w * 0.12, cx + w / 2, cy - h / 2 + w * 0.12], fill=_col(cup, 0.7))
        hx, hy = cx + side * w * 0.45, cy + h * 0.1
        r = unit * rng.uniform(0.15, 0.2)
        d.ellipse([hx - r, hy - r, hx + r, hy + r], fill=skin)
        d.line([(hx, hy), (hx + side * unit * 0.3, hy + unit * 1.6)], fill=skin, width=int(unit * 0.28))


def _draw_head(rng: np.random.Generator, s: int, yaw: float, pitch: float, roll: float, eyes_closed: bool,
               yawning: bool, activity: str) -> tuple[Image.Image, Image.Image]:
    """The head on its own RGBA layer (rotated by roll by the caller) plus an overlay layer for hands."""
    layer = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    over = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    od = ImageDraw.Draw(over)

    unit = s * rng.uniform(0.27, 0.33)  # half face height
    cx = s * 0.5 + yaw * unit * 0.25
    cy = s * 0.5 + pitch * unit * 0.15
    fw = unit * rng.uniform(0.72, 0.85) * (1 - 0.18 * abs(yaw))  # half width; narrower when turned
    fh = unit * (1 - 0.08 * abs(pitch))
    tone = rng.uniform(0, 1)
    skin = _col(np.array([70, 45, 30]) + tone * np.array([180, 165, 150]) + rng.uniform(-15, 15, 3))
    hair = _col(rng.uniform(5, 120, 3))

    # neck and shoulders
    d.rectangle([cx - fw * 0.45, cy + fh * 0.6, cx + fw * 0.45, cy + fh * 1.8], fill=_col(skin, 0.85))
    shirt = _col(rng.uniform(10, 220, 3))
    d.ellipse([cx - fw * 2.6, cy + fh * 1.45, cx + fw * 2.6, cy + fh * 3.6], fill=shirt)
    # hair back
    d.ellipse([cx - fw * 1.1, cy - fh * 1.2, cx + fw * 1.1, cy + fh * 0.5], fill=hair)
    # ears: the far ear hides when the head turns
    for side in (-1, 1):
        if side * yaw < 0.6:
            ex = cx + side * fw * (0.98 - 0.2 * side * yaw)
            d.ellipse([ex - fw * 0.14, cy - fh * 0.2, ex + fw * 0.14, cy + fh * 0.2], fill=_col(skin, 0.9))
    # face
    d.ellipse([cx - fw, cy - fh, cx + fw, cy + fh], fill=skin)
    # fringe
    fringe = rng.uniform(0.45, 0.75)
    d.chord([cx - fw * 1.02, cy - fh * 1.15, cx + fw * 1.02, cy + fh * (1.6 * fringe - 0.9)], 180, 360, fill=hair)

    # facial features move with yaw / pitch (a rotating sphere seen from the front)
    fx = cx + yaw * fw * 0.55
    fy = cy + pitch * fh * 0.35
    eye_dx = fw * 0.42 * (1 - 0.25 * abs(yaw))
    eye_y = fy - fh * 0.12
    eye_w = fw * rng.uniform(0.2, 0.26)
    eye_h = eye_w * rng.uniform(0.5, 0.75)
    dark = _col(rng.uniform(0, 50, 3))
    brow = _col(hair, 0.8)
    gaze_down = activity == "eyes_off_road"
    gx = rng.uniform(-0.3, 0.3) + yaw * 0.3
    gy = rng.uniform(0.55, 0.85) if gaze_down else rng.uniform(-0.3, 0.25)
    for side in (-1, 1):
        ex = fx + side * eye_dx
        scale = 1 - 0.35 * max(0.0, -side * yaw)  # the far eye looks smaller
        w = eye_w * scale
        by = eye_y - eye_h * rng.uniform(1.1, 1.6)
        d.line([(ex - w * 1.1, by), (ex + w * 1.1, by - eye_h * rng.uniform(-0.3, 0.3))], fill=brow,
               width=max(1, int(eye_h * 0.4)))
        if eyes_closed:
            d.arc([ex - w, eye_y - eye_h * 0.5, ex + w, eye_y + eye_h * 0.5], 10, 170, fill=dark,
                  width=max(2, int(eye_h * 0.3)))
        else:
            # half-closed under gaze-down, but the iris stays visible
            h = eye_h * (0.6 if gaze_down else rng.uniform(0.8, 1.1))
            d.ellipse([ex - w, eye_y - h, ex + w, eye_y + h], fill=_col(rng.uniform(170, 255, 3)))
            ir = min(w, h) * rng.uniform(0.6, 0.85)
            ix, iy = ex + gx * (w - ir), eye_y + gy * (h - ir * 0.7)
            d.ellipse([ix - ir, iy - ir, ix + ir, iy + ir], fill=_col(rng.uniform(20, 120, 3)))
            pr = ir * 0.45
            d.ellipse([ix - pr, iy - pr, ix + pr, iy + pr], fill=dark)
            if gaze_down:  # heavy upper lid
                d.chord([ex - w, eye_y - h * 1.1, ex + w, eye_y + h * 0.5], 180, 360, fill=_col(skin, 0.8))
    # nose points where the head points
    nx, ny = fx + yaw * fw * 0.15, fy + fh * 0.2 + pitch * fh * 0.08
    d.polygon([(fx, fy - fh * 0.05), (nx + yaw * fw * 0.12, ny), (nx - fw * 0.12, ny + fh * 0.05),
               (nx + fw * 0.12, ny + fh * 0.05)], fill=_col(skin, 0.75))
    # mouth
    mx, my = fx + yaw * fw * 0.1, fy + fh * 0.52
    mw = fw * rng.uniform(0.28, 0.4) * (1 - 0.2 * abs(yaw))
    lip = _col(rng.uniform([100, 30, 30], [200, 100, 100]))
    if yawning:
        mh = fh * rng.uniform(0.22, 0.32)
        d.ellipse([mx - mw * 0.8, my - mh * 0.5, mx + mw * 0.8, my + mh], fill=lip)
        d.ellipse([mx - mw * 0.65, my - mh * 0.35, mx + mw * 0.65, my + mh * 0.85], fill=_col(rng.uniform(10, 60, 3)))
    else:
        mh = fh * rng.uniform(0.0, 0.07)  # closed or talking
        d.ellipse([mx - mw, my - mh - fh * 0.03, mx + mw, my + mh + fh * 0.03], fill=lip)
        if mh > fh * 0.03:
            d.ellipse([mx - mw * 0.7, my - mh * 0.6, mx + mw * 0.7, my + mh * 0.6], fill=_col(rng.uniform(10, 60, 3)))
    # beard / glasses frames as nuisance
    if rng.random() < 0.2:
        d.chord([cx - fw, cy - fh * 0.1, cx + fw, cy + fh * 1.02], 20, 160, fill=_col(hair, 1.1))
        d.ellipse([mx - mw, my - fh * 0.05, mx + mw, my + fh * 0.07], fill=lip)
    if rng.random() < 0.25 and not eyes_closed:
        fr = _col(rng.uniform(0, 80, 3))
        for side in (-1, 1):
            ex = fx + side * eye_dx
            d.rectangle([ex - eye_w * 1.4, eye_y - eye_w, ex + eye_w * 1.4, eye_y + eye_w], outline=fr,
                        width=max(1, int(s * 0.006)))

    side = 1 if rng.random() < 0.5 else -1
    if activity == "phone":
        _draw_hand_object(od, rng, "phone", (cx + side * fw * 1.0, cy - fh * 0.05), side, unit, _col(skin, 0.95))
    elif activity == "drinking":
        _draw_hand_object(od, rng, "drinking", (mx, my), side, unit, _col(skin, 0.95))
    elif rng.random() < 0.15:  # a hand on the chin: not phone, not drinking
        od.ellipse([cx - fw * 0.35, cy + fh * 0.85, cx + fw * 0.35, cy + fh * 1.4], fill=_col(skin, 0.95))
    return layer, over


def _draw_labels(rng: np.random.Generator) -> tuple[int, int, int, tuple[float, float, float]]:
    activity = int(rng.integers(0, len(ACTIVITIES)))
    name = ACTIVITIES[activity]
    # positive pitch = head down. Looking away is a large yaw; eyes off road (looking at the lap or
    # the centre console) lowers head and gaze; the other activities keep the head near the road.
    if name == "looking_away":
        yaw = float(rng.uniform(0.6, 1.0) * rng.choice([-1, 1]))
        pitch = float(rng.uniform(-0.5, 0.3))
    elif name == "eyes_off_road":
        yaw = float(rng.uniform(-0.35, 0.35))
        pitch = float(rng.uniform(0.45, 0.9))
    else:
        yaw = float(rng.uniform(-0.35, 0.35))
        pitch = float(rng.uniform(-0.5, 0.3))
    roll = float(rng.uniform(-0.6, 0.6))
    eyes_closed = int(rng.random() < 0.4) if name != "eyes_off_road" else 0
    yawn = int(rng.random() < 0.3) if name != "drinking" else 0
    return eyes_closed, yawn, activity, (yaw, pitch, roll)


def render(seed: int, index: int, size: int = DEFAULT_SIZE) -> Sample:
    """Render sample ``index`` of the stream ``seed`` at ``size`` x ``size`` RGB."""
    rng = _rng_for(seed, index)
    eye_state, yawn, activity, pose = _draw_labels(rng)
    s = size * _SS
    img = _draw_cabin(rng, s)
    head, over = _draw_head(rng, s, pose[0], pose[1], pose[2], bool(eye_state), bool(yawn), ACTIVITIES[activity])
    # the whole head (with a held object) rolls together; position jitters in the frame
    head.alpha_composite(over)
    head = head.rotate(pose[2] * 30.0, resample=Image.BILINEAR, center=(s / 2, s / 2))
    off = (int(rng.uniform(-0.07, 0.07) * s), int(rng.uniform(-0.05, 0.05) * s))
    img.paste(head, off, head)
    img = img.resize((size, size), Image.BILINEAR)

    # lighting: a directional gradient, exposure, IR (grey, flat colours) or colour cast
    a = np.asarray(img, dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    ang = rng.uniform(0, 2 * math.pi)
    grad = 1 + rng.uniform(0.1, 0.6) * ((xx - 0.5) * math.cos(ang) + (yy - 0.5) * math.sin(ang))
    a = a * grad[..., None] * rng.uniform(0.65, 1.3)
    if rng.random() < 0.4:
        grey = a @ np.array([0.3, 0.55, 0.15], dtype=np.float32)
        a = np.repeat(grey[..., None], 3, axis=2) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    else:
        a = a * rng.uniform(0.8, 1.2, 3).astype(np.float32)
    a = a + rng.uniform(-25, 25)
    img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.0))))
    a = np.asarray(img, dtype=np.float32)
    a = a + rng.normal(0, rng.uniform(2, 8), a.shape).astype(np.float32)
    image = np.clip(a, 0, 255).astype(np.uint8)
    return Sample(image=image, eye_state=eye_state, yawn=yawn, activity=activity, head_pose=pose)


def render_batch(seed: int, start: int, count: int, size: int = DEFAULT_SIZE) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Samples ``start .. start+count`` as a uint8 (N, H, W, 3) array and label arrays."""
    samples = [render(seed, i, size) for i in range(start, start + count)]
    images = np.stack([smp.image for smp in samples])
    labels = {
        "eye_state": np.array([smp.eye_state for smp in samples], dtype=np.int64),
        "yawn": np.array([smp.yawn for smp in samples], dtype=np.int64),
        "activity": np.array([smp.activity for smp in samples], dtype=np.int64),
        "head_pose": np.array([smp.head_pose for smp in samples], dtype=np.float32),
    }
    return images, labels


def write_set(folder: Path, seed: int, count: int, size: int, with_labels: bool) -> None:
    """Write ``count`` PNGs (and labels.json) into ``folder``; same seed, same bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    labels: dict[str, dict] = {}
    for i in range(count):
        smp = render(seed, i, size)
        name = f"{i:04d}.png"
        # fixed PNG settings and no metadata, so the files are byte-identical across runs
        Image.fromarray(smp.image).save(folder / name, format="PNG", optimize=False, compress_level=9)
        labels[name] = smp.labels()
    if with_labels:
        (folder / "labels.json").write_text(json.dumps(labels, indent=1, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("data"), help="folder receiving calibration/ and validation/")
    p.add_argument("--calibration", type=int, default=64, help="number of calibration images")
    p.add_argument("--validation", type=int, default=128, help="number of labelled validation images")
    p.add_argument("--size", type=int, default=DEFAULT_SIZE, help="square image size in pixels")
    args = p.parse_args(argv)
    write_set(args.out / "calibration", CALIBRATION_SEED, args.calibration, args.size, with_labels=False)
    write_set(args.out / "validation", VALIDATION_SEED, args.validation, args.size, with_labels=True)
    print(f"wrote {args.calibration} calibration and {args.validation} validation images ({args.size}px) to {args.out}")


if __name__ == "__main__":
    main()
