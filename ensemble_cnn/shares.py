"""The one check of a share (a coverage, a level, a pass rate, a confidence): a number in 0..1."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["check_share"]


def check_share(value: object, name: str, *, zero: bool = False, one: bool = False) -> float:
    """``value`` as a float if it is a number in (0, 1), else a one-line ValueError naming ``name``.

    Parameters
    ----------
    value : object
        What the caller passed; booleans, text and NaN are refused.
    name : str
        The argument's name in the error.
    zero, one : bool, default False
        Whether 0 (resp. 1) itself is allowed.

    Returns
    -------
    share : float

    Examples
    --------
    >>> check_share(0.99, "coverage")
    0.99
    >>> check_share(1, "coverage", one=True)
    1.0
    """
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    number = float(value) if numeric else math.nan
    inside = (0.0 < number < 1.0) or (zero and number == 0.0) or (one and number == 1.0)
    if not inside:
        interval = f"{'[' if zero else '('}0, 1{']' if one else ')'}"
        raise ValueError(f"`{name}` must be a number in {interval}, e.g. 0.99; got {value!r}")
    return number
