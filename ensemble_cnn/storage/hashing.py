"""sha256 fingerprints of files and arrays."""
from __future__ import annotations

import hashlib
import os

import numpy as np

from ensemble_cnn.data.reader import DATA_FILES, Voice, describe_size, memory_limit, open_regular
from ensemble_cnn.storage.outputs import shown

_BLOCK = 1 << 20


def sha256_file(path: str | os.PathLike, *, limit: int | None = None, what: str = "data",
                voice: Voice = DATA_FILES) -> str:
    """Hex sha256 of a regular file's bytes, read in 1 MiB blocks through the one guarded open.

    The file is opened by :func:`ensemble_cnn.data.reader.open_regular` (a FIFO or device
    is refused before it is opened, never waited on or read without end) and at most
    ``limit + 1`` bytes are read from it.

    Parameters
    ----------
    path : path-like
    limit : int, optional
        Most bytes to hash; ``None``: :func:`~ensemble_cnn.data.reader.memory_limit`.
    what : str
        The caller's word for the kind of file (in messages).
    voice : Voice
        How refusals are raised (one line naming the file).

    Returns
    -------
    str
        64 hex digits.
    """
    limit = memory_limit() if limit is None else limit
    digest, read = hashlib.sha256(), 0
    with open_regular(path, limit=limit, what=what, voice=voice, allow_empty=True) as fh:
        while read <= limit:
            block = fh.read(min(_BLOCK, limit + 1 - read))
            if not block:
                break
            read += len(block)
            digest.update(block)
    if read > limit:
        raise voice.refuse("too_large", name=shown(path), size=f"more than {describe_size(limit)}",
                           limit=describe_size(limit), what=what)
    return digest.hexdigest()


def sha256_arrays(*arrays: np.ndarray) -> str:
    """Hex sha256 of the arrays' bytes (C order), one after another."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
