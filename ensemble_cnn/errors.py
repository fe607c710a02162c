"""The library's error types for run folders and execution engines (data errors: :mod:`ensemble_cnn.data.mnist`).

Every message is one line that names the folder, file or engine and what is wrong;
the command line prints it as is.
"""
from __future__ import annotations


class RunFolderError(ValueError):
    """The run folder cannot be used (it holds a different run, a member file is bad, ...)."""


class UnsafeMemberError(RunFolderError):
    """A member file carries Python code (e.g. a Lambda layer): refused by Keras' safe_mode."""


class RunFolderBusy(RunFolderError):
    """Another train/run holds the run folder's lock."""


class BackendError(RuntimeError):
    """The execution engine (dask, ray) is not installed or cannot be reached."""


class NoInkError(ValueError):
    """An image (or digit) holds no ink: nothing stands out from its background, so it is not a digit.

    Raised by :func:`ensemble_cnn.inference.preprocess.preprocess_digits` (and so by ``predict`` and ``serve``)
    instead of labelling a blank picture; see :data:`ensemble_cnn.inference.preprocess.NO_INK_LEVEL`.
    """


class MissingMembersError(RunFolderError):
    """Members asked for are missing or unusable, and leaving them out was not allowed.

    Attributes
    ----------
    left_out : dict of int to str
        Member index -> one-line reason.
    asked : int
        How many members were asked for.
    """

    def __init__(self, message: str, *, left_out: dict[int, str], asked: int) -> None:
        super().__init__(message)
        self.left_out = dict(left_out)
        self.asked = asked
