"""The one hardened reader of data files: ``.npy``, ``.npz`` members and IDX (optionally gzip). numpy only.

Used by training data loading (:mod:`ensemble_cnn.data.mnist`, :mod:`ensemble_cnn.data.training`)
and by ``predict`` (:mod:`ensemble_cnn.inference.arrays`, :mod:`ensemble_cnn.inference.images`,
:mod:`ensemble_cnn.inference.paths`). Every file is read the same careful way:

* **opening** (:func:`open_regular`): ``stat`` first, so a FIFO, device, socket or folder is
  refused before it is opened; then opened non-blocking (never waits on a FIFO swapped in
  meanwhile) and checked again with ``fstat``: a regular, non-empty file within the
  caller's size limit;
* **.npy** (:func:`read_npy`, also each ``.npz`` member): the header is read and checked
  before any data is allocated: format 1.0 or 2.0, no object (pickled) dtype, the caller's
  own shape/dtype check, the promised size equal to what the file or member holds, and
  within the caller's limit. Pickles are never loaded (the data is read with ``frombuffer``);
* **.npz** (:func:`open_npz`): a zip read through the already opened file; a corrupt zip or
  deflate stream is refused in one line;
* **IDX** (:func:`read_idx`): gzip exactly when named ``*.gz``; magic number, header length
  and dimensions (Python integers: dimensions overflowing int64 are just too large)
  checked before allocating; a plain file's size must match the header, and a ``.gz`` is
  inflated only up to the size promised (plus one byte, to tell it holds more);
* **any other file** the package reads (a run's ``config.json``, member records, plans,
  the teacher's targets, export metadata, ...): :func:`read_regular` (the whole file, at
  most the caller's limit read from the open descriptor: a device's ``st_size`` of 0
  proves nothing) and :func:`read_json` on top of it (invalid JSON, text that is not
  UTF-8 and nesting deeper than :data:`MAX_JSON_DEPTH` refused in one line, never a
  ``RecursionError``); :func:`nesting_depth` bounds any parsed document (a TOML plan).

Messages: every refusal is one line, raised as the caller's :class:`Voice` says: its error
type and its wording. :data:`DATA_FILES` (:class:`~ensemble_cnn.errors.DataError`, the
training data's wording) is the default; :data:`INPUT_FILES`
(:class:`~ensemble_cnn.errors.InputError`) is ``predict``'s; :data:`RUN_FILES` and
:data:`RUN_CONFIG` (:class:`~ensemble_cnn.errors.RunFolderError`) are a run folder's.
"""
from __future__ import annotations

import gzip
import json
import math
import os
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ensemble_cnn.errors import DataError, EnsembleCnnError, InputError, RunFolderError, first_line
from ensemble_cnn.storage.outputs import shown

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip member, an empty zip
GZIP_MAGIC = b"\x1f\x8b"
IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}
"""Unsigned-byte IDX magic numbers by number of dimensions (3: images, 1: labels)."""
_IDX_KIND = {3: "images", 1: "labels"}
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
_NPZ_HEADER_SLACK = 64 * 1024  # room for a .npy header on top of the data in an npz member
_CHUNK = 2**20
MAX_JSON_BYTES = 16 << 20
"""Largest JSON file the package reads (a config, a member record, a report: kilobytes)."""
MAX_JSON_DEPTH = 100
"""Deepest nesting of a JSON (or TOML) document the package reads (its own files nest fewer than 10 levels)."""

NpyCheck = Callable[[tuple[int, ...], np.dtype], None]
"""A caller's own check of a ``.npy`` header (shape, dtype), run before anything is allocated."""
IdxCheck = Callable[[tuple[int, ...]], None]
"""A caller's own check of an IDX header's dimensions, run before anything is allocated."""


# ----------------------------------------------------------------------------- wording


_DATA_WORDING = {
    "missing": "{name}: no such file",
    "unreadable": "{name}: cannot read the file ({reason})",
    "cannot_open": "{name}: cannot open the file ({reason})",
    "not_regular": "{name}: not a regular file (a FIFO, device or socket); expected a data file",
    "empty": "{name}: file is empty (expected {what})",
    "too_large": "{name}: file is {size}, more than this machine's memory ({limit} usable)",
    "not_npz": "{name}: not an .npz archive (expected a Keras mnist.npz or a folder of MNIST IDX files)",
    "bad_npz": "{name}: not a readable .npz file ({reason})",
    "npz_missing": "{name}: missing arrays {missing} (expected keys {keys})",
    "member_too_large": "{path}: {key} unpacks to {size}, more than this machine's memory ({limit} usable)",
    "npy_invalid": "{path}: {key} is not a valid .npy array ({reason})",
    "npy_version": "{path}: {key} is not a valid .npy array (unsupported .npy format version {version})",
    "npy_object": "{path}: holds object (pickled) arrays, which are refused; expected numeric arrays",
    "npy_short": "{path}: {key} header promises shape {shape} ({nbytes:,} bytes) but the archive holds {held:,} bytes",
    "npy_long": "{path}: {key} header promises shape {shape} ({nbytes:,} bytes) but the archive holds {held:,} bytes",
    "npy_too_large": "{path}: {key} of shape {shape} would need {size}, more than this machine's memory",
    "idx_gzip_name": "{name}: an IDX file must be {rule}",
    "idx_short_header": "{name}: truncated IDX file ({held} bytes, header needs {need})",
    "idx_magic": "{name}: wrong IDX magic number 0x{magic:08x} (expected 0x{expected:08x})",
    "idx_other_kind": "{name}: wrong IDX magic number 0x{magic:08x} (expected 0x{expected:08x})",
    "idx_too_large": "{name}: IDX header promises shape {dims} ({nbytes:,} bytes), more than this machine's memory",
    "idx_length": "{name}: IDX data holds {held} bytes, header promises {nbytes} for shape {dims}",
    "idx_length_gz": "{name}: IDX data holds {held} bytes, header promises {nbytes} for shape {dims}",
    "idx_unreadable": "{name}: cannot read IDX file ({reason})",
    "not_json": "{name}: not valid JSON ({reason})",
    "not_utf8": "{name}: not UTF-8 text (expected {what})",
    "too_deep": "{name}: nested more than {depth} levels deep (expected {what})",
}

_INPUT_WORDING = {
    **_DATA_WORDING,
    "not_regular": "{name}: is {kind}, expected a regular {what} file",
    "empty": "{name}: file is empty (expected {what} data)",
    "too_large": "{name}: file is {size}, more than the {limit} limit for {what} files",
    "not_npz": "{name}: not an .npz archive",
    "bad_npz": "{name}: not a readable .npz archive ({reason})",
    "member_too_large": "{path}: array {key} unpacks to {size}, more than the {limit} limit",
    "npy_invalid": "{member}: not a valid .npy header ({reason})",
    "npy_version": "{member}: .npy format version {version} is not supported (expected 1.0 or 2.0)",
    "npy_object": "{member}: holds object (pickled) data, which is refused; expected numeric pixel values",
    "npy_short": "{member}: truncated .npy data ({held} bytes, header promises {nbytes} for {shape})",
    "npy_long": "{member}: .npy data holds {held} bytes, header promises {nbytes} for {shape}",
    "npy_too_large": "{member}: header claims shape {shape} of {dtype} ({size}), more than the {limit} limit",
    "idx_magic": "{name}: wrong IDX magic number 0x{magic:08x} (expected 0x{expected:08x}, {wanted})",
    "idx_other_kind": "{name}: an IDX {found} file (magic 0x{magic:08x}), expected an {wanted} file (0x{expected:08x})",
    "idx_too_large": "{name}: header claims shape {dims} ({size}), more than the {limit} limit",
    "idx_length": "{name}: IDX data holds {held} bytes, header promises {nbytes}",
    "idx_length_gz": "{name}: IDX data unpacks to {unpacked} bytes, header promises {promised}",
}


@dataclass(frozen=True)
class Voice:
    """How one caller words the reader's refusals.

    Attributes
    ----------
    error : type of Exception
        Raised for every refusal (one-line message).
    wording : mapping of str to str
        One :meth:`str.format` template per problem (the keys of :data:`DATA_FILES`'s wording).
        Fields: ``name`` (the file), ``path`` and ``key`` (an ``.npz`` and its array),
        ``member`` (``"FILE [key]"``, or the file), ``what`` (the caller's word for the kind of
        file), ``kind`` (``"a FIFO"``, ...), ``size``/``limit`` (in binary units), ``reason``,
        ``shape``, ``dtype``, ``nbytes``, ``held``, ``version``, ``magic``, ``expected``,
        ``found``, ``wanted``, ``dims``, ``need``, ``rule``, ``missing``, ``keys``; for a ``.gz`` IDX,
        ``unpacked`` and ``promised`` (bytes of the whole unpacked file, header included).
    """

    error: type[Exception]
    wording: Mapping[str, str] = field(repr=False)

    def refuse(self, problem: str, **fields: object) -> Exception:
        """The error to raise for ``problem``, its message filled from ``fields``."""
        return self.error(self.wording[problem].format(**fields))


_RUN_WORDING = {
    **_INPUT_WORDING,
    "missing": "{name}: missing",
    "unreadable": "{name}: unreadable ({reason})",
    "too_large": "{name}: file is {size}, more than the {limit} limit for a {what} file",
    "not_json": "{name}: not valid JSON",
    "not_utf8": "{name}: not valid JSON (not UTF-8 text)",
}

_CONFIG_WORDING = {
    **_RUN_WORDING,
    "not_regular": "{name}: not a valid {what} (it is {kind}, not a regular file)",
    "empty": "{name}: not a valid {what} (the file is empty)",
    "too_large": "{name}: not a valid {what} ({size}, more than the {limit} limit)",
    "not_json": "{name}: not a valid {what} ({reason})",
    "not_utf8": "{name}: not a valid {what} (not UTF-8 text)",
    "too_deep": "{name}: not a valid {what} (nested more than {depth} levels deep)",
}

DATA_FILES = Voice(DataError, _DATA_WORDING)
"""Training data's voice: :class:`~ensemble_cnn.errors.DataError`, ``"FILE: x_train is not a valid .npy array"``."""
INPUT_FILES = Voice(InputError, _INPUT_WORDING)
"""``predict``'s voice: :class:`~ensemble_cnn.errors.InputError`, ``"FILE [x]: not a valid .npy header"``."""
RUN_FILES = Voice(RunFolderError, _RUN_WORDING)
"""A run folder's files (member records, probabilities, models, the teacher's targets):
:class:`~ensemble_cnn.errors.RunFolderError`, ``"FILE: is a FIFO, expected a regular member record file"``."""
RUN_CONFIG = Voice(RunFolderError, _CONFIG_WORDING)
"""A run's ``config.json``: :class:`~ensemble_cnn.errors.RunFolderError`, ``"FILE: not a valid run config (...)"``."""


# ----------------------------------------------------------------------------- sizes and files


def memory_limit() -> int:
    """Bytes one array may take: 80% of the machine's physical memory (8 GiB where that cannot be read)."""
    try:
        return int(0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return 8 << 30


def describe_size(n_bytes: int) -> str:
    """``"812 bytes"``, ``"3.5 MiB"``, ``"7.1 TiB"``: binary units, one decimal."""
    for unit, power in (("TiB", 40), ("GiB", 30), ("MiB", 20)):
        if n_bytes >= 2**power:
            return f"{n_bytes / 2**power:.1f} {unit}"
    return f"{n_bytes} bytes"


def file_type(mode: int) -> str:
    """Words for a non-regular file type, from ``st_mode`` (``"a FIFO"``, ``"a folder"``, ...)."""
    for test, words in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return words
    return "not a regular file"


def _reason(exc: OSError) -> str:
    return exc.strerror or first_line(exc)


def _check_status(path: Path, status: os.stat_result, *, limit: int, what: str, voice: Voice,
                  allow_empty: bool = False) -> None:
    if not stat.S_ISREG(status.st_mode):
        raise voice.refuse("not_regular", name=shown(path), kind=file_type(status.st_mode), what=what)
    if status.st_size == 0 and not allow_empty:
        raise voice.refuse("empty", name=shown(path), what=what)
    if status.st_size > limit:
        raise voice.refuse("too_large", name=shown(path), size=describe_size(status.st_size),
                           limit=describe_size(limit), what=what)


def check_regular(path: str | os.PathLike, *, limit: int | None = None, what: str = "data",
                  voice: Voice = DATA_FILES, allow_empty: bool = False) -> os.stat_result:
    """``os.stat`` of ``path`` (links followed), refused unless a regular, non-empty file within ``limit``.

    Nothing is opened. ``limit`` ``None`` means :func:`memory_limit`; ``what`` is the
    caller's word for the kind of file, used in its ``voice``'s messages; ``allow_empty``
    lets an empty file through.
    """
    path = Path(path)
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise voice.refuse("missing", name=shown(path)) from None
    except OSError as exc:
        raise voice.refuse("unreadable", name=shown(path), reason=_reason(exc)) from None
    _check_status(path, status, limit=memory_limit() if limit is None else limit, what=what, voice=voice,
                  allow_empty=allow_empty)
    return status


def open_regular(path: str | os.PathLike, *, limit: int | None = None, what: str = "data",
                 voice: Voice = DATA_FILES, allow_empty: bool = False) -> BinaryIO:
    """Open a regular file for reading, refusing anything else before and after opening it.

    :func:`check_regular` first, so a FIFO or device is never opened; then opened
    non-blocking (a FIFO swapped in meanwhile cannot make it wait) and checked again with
    ``fstat`` (regular, non-empty, within ``limit``) before it is read blocking.

    Parameters
    ----------
    path : path-like
    limit : int, optional
        Largest file size in bytes; ``None``: :func:`memory_limit`.
    what : str
        The caller's word for the kind of file (in messages).
    voice : Voice
        How refusals are raised.
    allow_empty : bool, default False
        Let an empty file through (else refused as "empty").

    Returns
    -------
    binary file object, open for reading
    """
    path = Path(path)
    limit = memory_limit() if limit is None else limit
    check_regular(path, limit=limit, what=what, voice=voice, allow_empty=allow_empty)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise voice.refuse("cannot_open", name=shown(path), reason=_reason(exc)) from None
    try:
        _check_status(path, os.fstat(fd), limit=limit, what=what, voice=voice, allow_empty=allow_empty)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_head(path: str | os.PathLike, n_bytes: int, *, limit: int | None = None, what: str = "data",
              voice: Voice = DATA_FILES) -> bytes:
    """The first ``n_bytes`` of a regular file (opened by :func:`open_regular`)."""
    with open_regular(path, limit=limit, what=what, voice=voice) as fh:
        return fh.read(n_bytes)


def read_regular(path: str | os.PathLike, *, limit: int, what: str, voice: Voice,
                 allow_empty: bool = False) -> bytes:
    """The whole of a regular file, opened by :func:`open_regular`, at most ``limit`` bytes read from it.

    The size is checked twice: ``fstat`` before reading, and what the open descriptor
    really gives (at most ``limit + 1`` bytes are read, so a file growing meanwhile never
    makes memory grow past the limit).

    Parameters
    ----------
    path : path-like
    limit : int
        Largest size in bytes.
    what : str
        The caller's word for the kind of file (in messages).
    voice : Voice
        How refusals are raised (missing, a FIFO or device, empty, over ``limit``, unreadable).
    allow_empty : bool, default False
        An empty file gives ``b""`` instead of a refusal.

    Returns
    -------
    bytes
        At most ``limit`` of them.
    """
    with open_regular(path, limit=limit, what=what, voice=voice, allow_empty=allow_empty) as fh:
        try:
            data = _fill(fh, limit)
        except OSError as exc:
            raise voice.refuse("unreadable", name=shown(path), reason=_reason(exc)) from None
    if len(data) > limit:
        raise voice.refuse("too_large", name=shown(path), size=f"more than {describe_size(limit)}",
                           limit=describe_size(limit), what=what)
    return bytes(data)


def nesting_depth(document: object, *, limit: int = MAX_JSON_DEPTH) -> int:
    """How deeply lists and dicts nest in ``document`` (a scalar: 0), counted without recursion.

    Counting stops past ``limit`` (the result is then ``limit + 1``): a caller refuses a
    document nested deeper than it reads, before anything recursive (``repr``, ``copy``,
    ``json.dumps``) touches it.
    """
    deepest, stack = 0, [(document, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (list, tuple, dict)):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            stack.extend((child, depth) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def parse_json(data: bytes, *, path: str | os.PathLike, what: str, voice: Voice) -> object:
    """The JSON document in ``data`` (read from ``path``); one-line refusals, never a ``RecursionError``.

    Raises
    ------
    voice.error
        Not UTF-8 text, not valid JSON, or nested deeper than :data:`MAX_JSON_DEPTH`
        (whether the parser gives up on it or not).
    """
    name = shown(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise voice.refuse("not_utf8", name=name, what=what) from None
    try:
        document = json.loads(text)
    except RecursionError:
        raise voice.refuse("too_deep", name=name, what=what, depth=MAX_JSON_DEPTH) from None
    except ValueError as exc:
        raise voice.refuse("not_json", name=name, what=what, reason=first_line(exc)) from None
    if nesting_depth(document) > MAX_JSON_DEPTH:
        raise voice.refuse("too_deep", name=name, what=what, depth=MAX_JSON_DEPTH)
    return document


def read_json(path: str | os.PathLike, *, what: str, voice: Voice, limit: int = MAX_JSON_BYTES) -> object:
    """A JSON file read by :func:`read_regular` (at most ``limit`` bytes) and parsed by :func:`parse_json`."""
    return parse_json(read_regular(path, limit=limit, what=what, voice=voice), path=path, what=what, voice=voice)


def _fill(fh: BinaryIO, n_bytes: int) -> bytearray:
    """Up to ``n_bytes + 1`` bytes of ``fh``, read in chunks: memory grows only with what is really there."""
    data = bytearray()
    while len(data) <= n_bytes:
        chunk = fh.read(min(_CHUNK, n_bytes + 1 - len(data)))
        if not chunk:
            break
        data += chunk
    return data


# ----------------------------------------------------------------------------- .npy


def read_npy(fh: BinaryIO, *, available: int, path: str | os.PathLike, key: str | None = None,
             limit: int | None = None, check: NpyCheck | None = None, voice: Voice = DATA_FILES) -> np.ndarray:
    """Read one ``.npy`` stream, its header checked before any data is allocated.

    Parameters
    ----------
    fh : binary file object
        Positioned at the ``.npy`` magic (a file, or an ``.npz`` member).
    available : int
        Bytes the stream holds (the file's size, or the member's unpacked size): the header's
        shape and dtype must promise exactly that much data after the header.
    path : path-like
        The file, for messages.
    key : str, optional
        The array's name in an ``.npz`` (for messages; ``None`` for a plain ``.npy``).
    limit : int, optional
        Most bytes of data; ``None``: :func:`memory_limit`.
    check : callable (shape, dtype) -> None, optional
        The caller's own check of the header, run after the object-dtype refusal and
        before the size checks; it raises the caller's error.
    voice : Voice

    Returns
    -------
    ndarray, the header's shape and dtype (writable, not a pickle)

    Raises
    ------
    voice.error
        Not a .npy (format 1.0 or 2.0), object (pickled) or sub-array dtype, size not equal
        to ``available``, over ``limit``, or truncated while reading.
    """
    limit = memory_limit() if limit is None else limit
    words = {"path": shown(path), "key": key or Path(path).stem,
             "member": shown(f"{path} [{key}]" if key else path), "name": shown(path)}
    try:
        version = np.lib.format.read_magic(fh)
        if version not in _NPY_HEADER_READERS:
            raise voice.refuse("npy_version", version=f"{version[0]}.{version[1]}", **words)
        shape, fortran, dtype = _NPY_HEADER_READERS[version](fh)
    except (ValueError, SyntaxError, EOFError, TypeError) as exc:
        raise voice.refuse("npy_invalid", reason=first_line(exc), **words) from None
    if dtype.hasobject:
        raise voice.refuse("npy_object", **words)
    if dtype.subdtype is not None:
        raise voice.refuse("npy_invalid", reason=f"sub-array dtype {dtype}", **words)
    if check is not None:
        check(shape, dtype)
    count = math.prod(shape)  # Python integers: no overflow
    nbytes = count * dtype.itemsize
    held = max(0, available - fh.tell())
    sizes = {"shape": shape, "dtype": dtype, "nbytes": nbytes, "size": describe_size(nbytes),
             "limit": describe_size(limit), **words}
    if held != nbytes:
        raise voice.refuse("npy_short" if held < nbytes else "npy_long", held=held, **sizes)
    if nbytes > limit:
        raise voice.refuse("npy_too_large", **sizes)
    data = _fill(fh, nbytes)
    if len(data) != nbytes:
        raise voice.refuse("npy_short" if len(data) < nbytes else "npy_long", held=len(data), **sizes)
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape, order="F" if fortran else "C")


def read_npy_file(path: str | os.PathLike, *, limit: int | None = None, file_limit: int | None = None,
                  what: str = "data", check: NpyCheck | None = None, voice: Voice = DATA_FILES) -> np.ndarray:
    """Read a plain ``.npy`` file with :func:`read_npy` (opened by :func:`open_regular`, ``file_limit`` on its size)."""
    with open_regular(path, limit=file_limit, what=what, voice=voice) as fh:
        available = os.fstat(fh.fileno()).st_size
        try:
            return read_npy(fh, available=available, path=path, limit=limit, check=check, voice=voice)
        except OSError as exc:
            raise voice.refuse("unreadable", name=shown(path), reason=_reason(exc)) from None


# ----------------------------------------------------------------------------- .npz


@contextmanager
def open_npz(path: str | os.PathLike, *, limit: int | None = None, what: str = "data",
             voice: Voice = DATA_FILES) -> Iterator[zipfile.ZipFile]:
    """An ``.npz`` opened as a zip through :func:`open_regular`; read its arrays with :func:`read_member`.

    A file that is not a zip, and any zip or deflate error while the block runs (a
    corrupt archive, a member failing its CRC), are refused in one line.
    """
    path = Path(path)
    with open_regular(path, limit=limit, what=what, voice=voice) as fh:
        if fh.read(4) not in ZIP_MAGIC:
            raise voice.refuse("not_npz", name=shown(path))
        fh.seek(0)
        try:
            with zipfile.ZipFile(fh) as archive:
                yield archive
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError, zlib.error,
                ValueError, KeyError, RuntimeError) as exc:
            if isinstance(exc, EnsembleCnnError):  # a refusal from inside the block: already one line
                raise
            raise voice.refuse("bad_npz", name=shown(path), reason=first_line(exc)) from None


def read_member(archive: zipfile.ZipFile, key: str, *, path: str | os.PathLike, limit: int | None = None,
                check: NpyCheck | None = None, voice: Voice = DATA_FILES) -> np.ndarray:
    """The array ``key`` (member ``key.npy``) of an archive from :func:`open_npz`, read by :func:`read_npy`.

    A member whose unpacked size (from the zip directory) exceeds ``limit`` (plus room for
    a header) is refused before it is opened.
    """
    limit = memory_limit() if limit is None else limit
    info = archive.getinfo(f"{key}.npy")
    if info.file_size > limit + _NPZ_HEADER_SLACK:
        raise voice.refuse("member_too_large", path=shown(path), key=key, size=describe_size(info.file_size),
                           limit=describe_size(limit))
    with archive.open(info) as member:
        return read_npy(member, available=info.file_size, path=path, key=key, limit=limit, check=check, voice=voice)


def read_npz(path: str | os.PathLike, keys: Sequence[str], *, optional: bool = False, limit: int | None = None,
             what: str = "a Keras mnist.npz", voice: Voice = DATA_FILES) -> dict[str, np.ndarray]:
    """Read arrays ``keys`` from an ``.npz``, each header checked before any data is allocated.

    Parameters
    ----------
    path : path-like
    keys : sequence of str
        Array names (``x_train`` for the member ``x_train.npy``).
    optional : bool
        Missing keys are left out instead of refused (all or none: a partial set is refused).
    limit : int, optional
        Most bytes of one array (and of the file); ``None``: :func:`memory_limit`.
    what : str
        The caller's word for the file (in messages).
    voice : Voice

    Returns
    -------
    dict of str to ndarray
        Each array with the shape and dtype its header gives.

    Raises
    ------
    voice.error
        One line naming the file and what is wrong.
    """
    with open_npz(path, limit=limit, what=what, voice=voice) as archive:
        names = set(archive.namelist())
        missing = [key for key in keys if f"{key}.npy" not in names]
        if missing and not (optional and len(missing) == len(keys)):
            raise voice.refuse("npz_missing", name=shown(path), missing=", ".join(missing), keys=", ".join(keys))
        return {key: read_member(archive, key, path=path, limit=limit, voice=voice)
                for key in keys if f"{key}.npy" in names}


# ----------------------------------------------------------------------------- IDX


def read_idx(path: str | os.PathLike, *, ndim: int, limit: int | None = None, file_limit: int | None = None,
             what: str = "an IDX file", check: IdxCheck | None = None, voice: Voice = DATA_FILES) -> np.ndarray:
    """Read one unsigned-byte IDX file (gzip-compressed exactly when named ``*.gz``), header first.

    The header's dimensions decide how much is read: they are checked (``check``, then
    ``limit``) before anything is allocated; a plain file whose size differs from the
    promise is refused from its size, and a gzip stream is inflated only up to the promise
    (plus one byte: one that inflates beyond it is stopped there). Corrupt gzip data is
    refused.

    Parameters
    ----------
    path : path-like
    ndim : {1, 3}
        Expected number of dimensions (1 for labels, 3 for images).
    limit : int, optional
        Most bytes of data; ``None``: :func:`memory_limit`.
    file_limit : int, optional
        Largest file size; ``None``: :func:`memory_limit`.
    what : str
        The caller's word for the file (in messages).
    check : callable (dims) -> None, optional
        The caller's own check of the dimensions, raising its own error.
    voice : Voice

    Returns
    -------
    ndarray of uint8, shape (N,) or (N, rows, cols)
    """
    path = Path(path)
    name = shown(path)
    limit = memory_limit() if limit is None else limit
    header_len = 4 + 4 * ndim
    with open_regular(path, limit=file_limit, what=what, voice=voice) as raw:
        size = os.fstat(raw.fileno()).st_size
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        if compressed != (path.suffix == ".gz"):
            rule = "named *.gz when gzip-compressed" if compressed else "gzip-compressed when named *.gz"
            raise voice.refuse("idx_gzip_name", name=name, rule=rule)
        try:
            with (gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw) as fh:
                header = fh.read(header_len)
                dims = _checked_idx_header(header, ndim=ndim, name=name, voice=voice)
                if check is not None:
                    check(dims)
                nbytes = math.prod(dims)  # Python integers: no overflow
                sizes = {"name": name, "dims": dims, "nbytes": nbytes, "size": describe_size(nbytes),
                         "limit": describe_size(limit)}
                if nbytes > limit:
                    raise voice.refuse("idx_too_large", **sizes)
                if not compressed and size - header_len != nbytes:
                    raise voice.refuse("idx_length", held=_held(size - header_len, nbytes), **sizes)
                data = _fill(fh, nbytes)
        except (OSError, EOFError, zlib.error) as exc:
            raise voice.refuse("idx_unreadable", name=name, reason=first_line(exc)) from None
    if len(data) != nbytes:
        raise voice.refuse("idx_length_gz" if compressed else "idx_length", held=_held(len(data), nbytes),
                           unpacked=_held(header_len + len(data), header_len + nbytes),
                           promised=header_len + nbytes, **sizes)
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _held(held: int, promised: int) -> str:
    return f"more than {promised}" if held > promised else str(held)


def _checked_idx_header(header: bytes, *, ndim: int, name: str, voice: Voice) -> tuple[int, ...]:
    """The dimensions an IDX header gives, after its magic number and length are checked."""
    header_len = 4 + 4 * ndim
    if len(header) < 4:
        raise voice.refuse("idx_short_header", name=name, held=len(header), need=header_len)
    magic = int.from_bytes(header[:4], "big")
    expected = IDX_MAGIC[ndim]
    if magic != expected:
        other = next((n for n, m in IDX_MAGIC.items() if m == magic), None)
        fields = {"name": name, "magic": magic, "expected": expected, "wanted": _IDX_KIND[ndim],
                  "found": _IDX_KIND.get(other, "")}
        raise voice.refuse("idx_other_kind" if other is not None else "idx_magic", **fields)
    if len(header) < header_len:
        raise voice.refuse("idx_short_header", name=name, held=len(header), need=header_len)
    return tuple(int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
