"""Declarative description of a random distortion (no randomness here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from augment._checks import check_number

__all__ = ["ALPHA_RANGE", "LIMITS", "MAX_SHIFT_RANGE", "SIGMA_RANGE", "TRANSFORMS", "Distortion"]

#: Names of the available transforms, in canonical order.
TRANSFORMS: tuple[str, ...] = ("shift", "rotate", "scale", "elastic")

#: Ranges that mean something for 28x28 digits (bounds included). Beyond them a
#: distortion no longer looks like a digit (and absurd values would make coordinates
#: non-finite): an elastic field of alpha 100 at sigma 4 moves pixels ~4 px RMS
#: (Simard's 34 moves them ~1.4 px); sigma below 0.5 px is noise, above 28 px a
#: global shift; a shift of 14 px moves the digit out of its frame.
ALPHA_RANGE: tuple[float, float] = (0.0, 100.0)
SIGMA_RANGE: tuple[float, float] = (0.5, 28.0)
MAX_SHIFT_RANGE: tuple[int, int] = (0, 14)
LIMITS: dict[str, tuple[float, float]] = {
    "max_shift": MAX_SHIFT_RANGE,
    "max_rotation": (0.0, 180.0),
    "alpha": ALPHA_RANGE,
    "sigma": SIGMA_RANGE,
}


@dataclass(frozen=True)
class Distortion:
    """Parameters of a random distortion (Ciresan / Simard style).

    Attributes
    ----------
    transforms : tuple of str
        Subset of :data:`TRANSFORMS`; order and repeats are irrelevant (it is
        stored in canonical order).  Empty means identity.
    max_shift : int
        Each axis shifts by an integer uniform in ``[-max_shift, max_shift]``; 0..14.
    max_rotation : float
        Rotation in degrees uniform in ``[-max_rotation, max_rotation]``; 0..180.
    max_scale : float
        Zoom factor uniform in ``[1 - max_scale, 1 + max_scale]``; 0 <= . < 1.
    alpha : float
        Simard's elastic strength in pixels, 0..100 (see :data:`ALPHA_RANGE`).
    sigma : float
        Simard's Gaussian width in pixels, 0.5..28 (see :data:`SIGMA_RANGE`).
    """

    transforms: tuple[str, ...] = TRANSFORMS
    max_shift: int = 2
    max_rotation: float = 12.0
    max_scale: float = 0.1
    alpha: float = 34.0
    sigma: float = 4.0

    def __post_init__(self) -> None:
        names = self.transforms
        if isinstance(names, str) or not hasattr(names, "__iter__"):
            raise ValueError(f"transforms must be a sequence of names, got {names!r}")
        names = tuple(names)
        unknown = [t for t in names if t not in TRANSFORMS]
        if unknown:
            raise ValueError(f"transforms has unknown name {unknown[0]!r}; choose from {TRANSFORMS}")
        object.__setattr__(self, "transforms", tuple(t for t in TRANSFORMS if t in names))
        max_shift = check_number(self.max_shift, name="max_shift", integer=True)
        if not MAX_SHIFT_RANGE[0] <= max_shift <= MAX_SHIFT_RANGE[1]:
            raise ValueError(f"max_shift must be in [{MAX_SHIFT_RANGE[0]}, {MAX_SHIFT_RANGE[1]}], got {max_shift}")
        max_rotation = check_number(self.max_rotation, name="max_rotation")
        if not 0.0 <= max_rotation <= 180.0:
            raise ValueError(f"max_rotation must be in [0, 180], got {self.max_rotation}")
        max_scale = check_number(self.max_scale, name="max_scale")
        if not 0.0 <= max_scale < 1.0:
            raise ValueError(f"max_scale must be in [0, 1), got {self.max_scale}")
        alpha = check_number(self.alpha, name="alpha")
        if not ALPHA_RANGE[0] <= alpha <= ALPHA_RANGE[1]:
            raise ValueError(f"alpha must be in [{ALPHA_RANGE[0]:g}, {ALPHA_RANGE[1]:g}], got {self.alpha}")
        sigma = check_number(self.sigma, name="sigma")
        if not SIGMA_RANGE[0] <= sigma <= SIGMA_RANGE[1]:
            raise ValueError(f"sigma must be in [{SIGMA_RANGE[0]:g}, {SIGMA_RANGE[1]:g}], got {self.sigma}")
        for name, value in (
            ("max_shift", max_shift),
            ("max_rotation", max_rotation),
            ("max_scale", max_scale),
            ("alpha", alpha),
            ("sigma", sigma),
        ):
            object.__setattr__(self, name, value)

    @property
    def shift_only(self) -> bool:
        """True when the distortion is a pure integer shift (fast slice path)."""
        return self.transforms == ("shift",)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (``transforms`` as a list of names)."""
        d = asdict(self)
        d["transforms"] = list(self.transforms)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Distortion:
        """Inverse of :meth:`to_dict`; missing keys take their defaults.

        Raises
        ------
        ValueError
            On an unknown key or an invalid value.
        """
        if not isinstance(data, dict):
            raise ValueError(f"Distortion.from_dict needs a dict, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown Distortion field {unknown[0]!r}; known: {sorted(known)}")
        kwargs = dict(data)
        if "transforms" in kwargs and isinstance(kwargs["transforms"], list):
            kwargs["transforms"] = tuple(kwargs["transforms"])
        return cls(**kwargs)
