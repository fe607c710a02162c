"""Digits that are not MNIST, for trying `ensemble-cnn predict` and `serve`: 0-9 rendered from fonts.

    python benchmarks/make_font_digits.py [--out docs/digits]

Writes 20 PNGs (each digit in DejaVu Sans and DejaVu Serif, the fonts matplotlib ships),
on canvases of different sizes and colours, off-centre: black ink on white, white on dark
blue, grey on cream, with and without alpha. Never overwrites: an existing folder is refused.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
from PIL import Image, ImageDraw, ImageFont

FONTS = {"sans": "DejaVuSans.ttf", "serif": "DejaVuSerif.ttf"}
STYLES = [  # (background, ink, canvas size, font size, offset)
    ("white", "black", (160, 200), 150, (25, 5)),
    ((20, 30, 90), "white", (300, 240), 180, (90, 10)),
    ((250, 240, 215), (90, 90, 90), (120, 120), 90, (10, 0)),
    ((0, 0, 0, 0), (0, 0, 0, 255), (200, 200), 120, (60, 40)),  # transparent background, alpha
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/digits"))
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; choose another --out")
    args.out.mkdir(parents=True)
    fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    for family, name in FONTS.items():
        for digit in range(10):
            background, ink, size, font_size, offset = STYLES[(digit + (family == "serif")) % len(STYLES)]
            mode = "RGBA" if len(background) == 4 else "RGB"
            image = Image.new(mode, size, background)
            ImageDraw.Draw(image).text(offset, str(digit), fill=ink, font=ImageFont.truetype(str(fonts / name),
                                                                                            font_size))
            image.save(args.out / f"{family}_{digit}.png")
    print(f"wrote 20 digits to {args.out}")


if __name__ == "__main__":
    main()
