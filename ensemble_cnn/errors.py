"""Every error type of the library, under one base (:class:`EnsembleCnnError`), and the one first-line helper.

Every message is one line that names the folder, file, option or engine and what is
wrong; the command line prints it as is. Each class also derives from the built-in
type a caller would expect (``ValueError`` for bad data, ``RuntimeError`` for an
engine), so ``except ValueError`` keeps working.
"""
from __future__ import annotations


class EnsembleCnnError(Exception):
    """Base of every error the library raises on purpose (one-line message)."""


class DataError(EnsembleCnnError, ValueError):
    """A data file is missing, unreadable or holds something other than MNIST."""


class InputError(EnsembleCnnError, ValueError):
    """An input file (``predict``) cannot be used; the message is one line that starts with the file's name."""


class OutputPathError(EnsembleCnnError, ValueError):
    """An output path cannot be used; the message is one line and names the option."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


class RunFolderError(EnsembleCnnError, ValueError):
    """The run folder cannot be used (it holds a different run, a member file is bad, ...)."""


class UnsafeMemberError(RunFolderError):
    """A member file carries Python code (e.g. a Lambda layer): refused by Keras' safe_mode."""


class RunFolderBusy(RunFolderError):
    """Another train/run holds the run folder's lock."""


class ExportError(EnsembleCnnError, ValueError):
    """An ensemble that cannot be exported as a plain Keras model (e.g. a member with an input normalization)."""


class BackendError(EnsembleCnnError, RuntimeError):
    """The execution engine (dask, ray) is not installed or cannot be reached."""


class NoInkError(EnsembleCnnError, ValueError):
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


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type's name when it has none (for one-line messages)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
