"""Renamed keywords: the old name keeps working for a while, with a warning.

One decorator, :func:`renamed_keyword`, and the warning it gives,
:class:`EnsembleCnnDeprecationWarning` (a :class:`DeprecationWarning`, so
``python -W error::DeprecationWarning`` and the usual filters apply; the test suite
makes it an error so that no caller of the package's own uses a deprecated name).
"""
from __future__ import annotations

import functools
import warnings
from typing import Any, Callable, TypeVar

__all__ = ["EnsembleCnnDeprecationWarning", "renamed_keyword"]

F = TypeVar("F", bound=Callable[..., Any])


class EnsembleCnnDeprecationWarning(DeprecationWarning):
    """A name of this package's API that still works but will go: the message names its replacement."""


def renamed_keyword(old: str, new: str) -> Callable[[F], F]:
    """Accept the keyword ``old`` of the decorated function as ``new``, with a deprecation warning.

    Parameters
    ----------
    old : str
        The keyword's former name, no longer in the function's signature.
    new : str
        Its name now, a keyword of the decorated function.

    Returns
    -------
    decorator : callable
        Wraps a function (or method) so that a call with ``old=value`` warns
        (:class:`EnsembleCnnDeprecationWarning`: "f(old=...) is deprecated; use new=...",
        pointing at the caller's line) and calls it with ``new=value``. A call without
        ``old`` goes through untouched and silent. The wrapper keeps the function's name,
        docstring and signature (:func:`functools.wraps`).

    Raises
    ------
    TypeError
        From the wrapped function, when a call gives both ``old`` and ``new`` (as Python
        does for a keyword given twice).

    Examples
    --------
    >>> @renamed_keyword("method", "voting")
    ... def score(*, voting="majority"):
    ...     return voting
    >>> score(voting="soft")
    'soft'
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     score(method="soft")
    'soft'
    """
    if old == new:
        raise ValueError(f"renamed_keyword: the old and new names are both {old!r}")

    def decorate(func: F) -> F:
        name = func.__qualname__

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"{name}() got both {old}= (deprecated) and {new}=; give only {new}=")
                warnings.warn(f"{name}({old}=...) is deprecated; use {new}=...",
                              EnsembleCnnDeprecationWarning, stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
