"""Synthetic sample photos for the demo, the tests and the benchmarks.

They are drawn, not real people: a face-like figure on a noisy background, different
for every (person, index) pair and identical for the same pair, so runs are repeatable
and every file has distinct bytes. No real photo ships inside the package.
"""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw, ImageFilter

__all__ = ["synthetic_photo"]


def synthetic_photo(
    person: int, index: int, *, size: int = 250, quality: int = 90, fmt: str = "JPEG"
) -> bytes:
    """A deterministic drawn portrait of ``person`` (their colours) in pose ``index``."""
    who = random.Random(person * 7919 + 17)
    pose = random.Random(person * 1_000_003 + index)
    skin = tuple(who.randint(120, 235) for _ in range(3))
    hair = tuple(who.randint(10, 120) for _ in range(3))
    bg_top = tuple(pose.randint(40, 220) for _ in range(3))
    bg_bottom = tuple(pose.randint(40, 220) for _ in range(3))

    gradient = Image.linear_gradient("L").resize((size, size))
    img = Image.composite(
        Image.new("RGB", (size, size), bg_bottom), Image.new("RGB", (size, size), bg_top), gradient
    )
    noise = Image.frombytes("L", (size, size), pose.randbytes(size * size)).convert("RGB")
    img = Image.blend(img, noise, 0.15)

    draw = ImageDraw.Draw(img)
    cx = size // 2 + pose.randint(-size // 12, size // 12)
    cy = size // 2 + pose.randint(-size // 16, size // 16)
    fw = size // 4 + who.randint(-size // 40, size // 40)
    fh = int(fw * 1.3)
    draw.ellipse((cx - fw - 6, cy - fh - 14, cx + fw + 6, cy + fh // 3), fill=hair)
    draw.ellipse((cx - fw, cy - fh, cx + fw, cy + fh), fill=skin)
    ey = cy - fh // 4
    for dx in (-fw // 2, fw // 2):
        draw.ellipse((cx + dx - 9, ey - 6, cx + dx + 9, ey + 6), fill=(250, 250, 250))
        draw.ellipse((cx + dx - 4, ey - 4, cx + dx + 4, ey + 4), fill=(30, 30, 40))
    draw.line((cx, ey + 6, cx - 5, cy + fh // 5), fill=tuple(max(0, c - 60) for c in skin), width=3)
    smile = pose.randint(-8, 12)
    draw.arc(
        (cx - fw // 2, cy + fh // 3 - 10, cx + fw // 2, cy + fh // 3 + 10 + smile),
        10,
        170,
        fill=(150, 40, 50),
        width=4,
    )
    img = img.filter(ImageFilter.GaussianBlur(0.6))

    out = io.BytesIO()
    if fmt == "JPEG":
        img.save(out, "JPEG", quality=quality)
    else:
        img.save(out, fmt)
    return out.getvalue()
