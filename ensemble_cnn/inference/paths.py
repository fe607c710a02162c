"""Which files ``predict`` reads: path discovery and each file's kind.

:func:`expand_paths` turns the command line's paths (files and folders, optionally
recursive; symbolic-link loops, dangling links and FIFOs reported, not followed) into the files to read;
:func:`classify_path` tells whether a file holds an image or an array of digits (by
name, else by its first bytes); :func:`load_inputs` reads one file into the digits the
model sees (:func:`ensemble_cnn.inference.images.read_image` and
:func:`~ensemble_cnn.inference.preprocess.preprocess_digits` for an image,
:func:`ensemble_cnn.inference.arrays.read_arrays` for an array file);
:func:`load_image_set` reads every image one path holds as one set (``evaluate --ood``).

Nothing here writes to an input file; a file's bytes are read only through the hardened
reader (:func:`ensemble_cnn.data.reader.open_regular`). Every problem raises
:class:`~ensemble_cnn.errors.InputError` with a one-line message that starts with the
file's name, or (:func:`expand_paths`) is handed back as a (path, reason) pair.
"""
from __future__ import annotations

import errno
import gzip
import os
import stat
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np

from ensemble_cnn.data.mnist import IDX_FILES
from ensemble_cnn.data.reader import GZIP_MAGIC, INPUT_FILES, NPY_MAGIC, ZIP_MAGIC, file_type, open_regular, read_head
from ensemble_cnn.errors import InputError, first_line
from ensemble_cnn.inference import arrays, images
from ensemble_cnn.inference.arrays import IDX_IMAGES_MAGIC, read_arrays
from ensemble_cnn.inference.images import IMAGE_MAGIC, read_image
from ensemble_cnn.inference.preprocess import preprocess_digits
from ensemble_cnn.storage.outputs import shown

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
"""Name endings of image files (any case)."""
ARRAY_SUFFIXES = (".npy", ".npz", ".idx", ".idx.gz", "-ubyte", "-ubyte.gz")
"""Name endings of array files. ``-ubyte[.gz]`` are MNIST's own IDX names (``t10k-images-idx3-ubyte.gz``).
A file with another ending (``.gz`` included) is classified by its first bytes when named on its own,
and skipped when listing a folder."""

Kind = Literal["image", "array"]


def _kind_by_name(path: Path) -> Kind | None:
    """``"image"`` or ``"array"`` from the file name's ending (any case), else ``None``."""
    name = path.name.lower()
    if name.endswith(IMAGE_SUFFIXES):
        return "image"
    if name.endswith(ARRAY_SUFFIXES):
        return "array"
    return None


def classify_path(path: str | os.PathLike) -> Kind:
    """Whether a file holds an image or an array of digits.

    By name first (:data:`IMAGE_SUFFIXES`, :data:`ARRAY_SUFFIXES`, any case); a
    file with no known ending (e.g. ``digits.gz`` or no suffix at all) is
    recognised by its first bytes: image signatures (PNG, JPEG, GIF, BMP, TIFF),
    ``.npy``, zip (``.npz``), IDX images, or gzip holding IDX images.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    {"image", "array"}

    Raises
    ------
    InputError
        The file is unknown by name and content, or (when its bytes are needed)
        missing, not a regular file, empty or too large.
    """
    path = Path(path)
    kind = _kind_by_name(path)
    if kind is not None:
        return kind
    head = read_head(path, 8, limit=max(images.MAX_IMAGE_FILE_BYTES, arrays.MAX_ARRAY_FILE_BYTES),
                     what="image or array", voice=INPUT_FILES)
    if head.startswith(IMAGE_MAGIC):
        return "image"
    if head.startswith((NPY_MAGIC, *ZIP_MAGIC)) or int.from_bytes(head[:4], "big") == IDX_IMAGES_MAGIC:
        return "array"
    if head.startswith(GZIP_MAGIC) and _gzip_holds_idx(path):
        return "array"
    raise InputError(
        f"{shown(path)}: not a recognised image or array file (expected {', '.join(IMAGE_SUFFIXES)} images or "
        f"{', '.join(ARRAY_SUFFIXES)} arrays)"
    )


def _gzip_holds_idx(path: Path) -> bool:
    """Whether a gzip file unpacks to an IDX images header (reads 4 unpacked bytes)."""
    with open_regular(path, limit=arrays.MAX_ARRAY_FILE_BYTES, what="array", voice=INPUT_FILES) as fh:
        try:
            with gzip.GzipFile(fileobj=fh, mode="rb") as unpacked:
                return int.from_bytes(unpacked.read(4), "big") == IDX_IMAGES_MAGIC
        except (OSError, EOFError, zlib.error):
            return False


def expand_paths(
    paths: Iterable[str | os.PathLike], *, recursive: bool = False
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The files to predict from the user's paths, and the paths that give none.

    A regular file is kept as it is (whatever its name; reading it decides). A
    folder gives its files whose names end in :data:`IMAGE_SUFFIXES` or
    :data:`ARRAY_SUFFIXES` (any case), sorted by name; with ``recursive`` it also
    descends into sub-folders (not through links to folders), all its files
    sorted in path order (by path components). Names starting with ``.`` (hidden
    files and folders) are skipped. The order of the paths, and repeats, are kept.

    Parameters
    ----------
    paths : iterable of path-like
    recursive : bool, keyword-only

    Returns
    -------
    files : list of Path
    problems : list of (Path, str)
        A path and a one-line reason: missing, not a file or folder (a FIFO,
        device, ...), unreadable, a symbolic link that loops (given, or found in
        a folder whatever its name), an entry of a folder named like an image or
        array file that is not a regular file (a dangling symbolic link, a FIFO, a
        socket, a device, a link to a folder), or a folder with no image or array files.
    """
    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw)
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            problems.append((path, "no such file or folder"))
            continue
        except OSError as exc:
            problems.append((path, _unreadable_entry(exc)))
            continue
        if stat.S_ISREG(mode):
            files.append(path)
        elif stat.S_ISDIR(mode):
            found, folder_problems = _folder_files(path, recursive=recursive)
            files.extend(found)
            problems.extend(folder_problems)
        else:
            problems.append((path, f"is {file_type(mode)}, expected a file or folder"))
    return files, problems


def _folder_files(folder: Path, *, recursive: bool) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Image and array files in ``folder`` (sorted), and problems (unreadable, none found)."""
    found: list[Path] = []
    problems: list[tuple[Path, str]] = []
    pending = [folder]
    skipped_folders = 0
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as entries:
                listing = [entry for entry in entries if not entry.name.startswith(".")]
        except OSError as exc:
            problems.append((current, f"cannot list the folder ({exc.strerror or first_line(exc)})"))
            continue
        for entry in listing:
            try:
                is_folder = entry.is_dir(follow_symlinks=False)
                is_file = not is_folder and entry.is_file()
            except OSError as exc:  # a symbolic link loop, an entry removed meanwhile, ...
                problems.append((Path(entry.path), _unreadable_entry(exc)))
                continue
            if is_folder:
                if recursive:
                    pending.append(Path(entry.path))
                else:
                    skipped_folders += 1
            elif _kind_by_name(Path(entry.name)) is None:
                continue
            elif is_file:
                found.append(Path(entry.path))
            else:  # named like an image or array, but a dangling link, a FIFO, a socket, a link to a folder, ...
                problems.append((Path(entry.path), _not_a_file_entry(Path(entry.path))))
    found.sort(key=lambda p: p.relative_to(folder).parts)
    if not found and not problems:
        hint = f" (its {skipped_folders} sub-folder(s) are searched only when recursive)" if skipped_folders else ""
        problems.append((folder, f"no image or array files in it{hint}"))
    return found, problems


def _not_a_file_entry(path: Path) -> str:
    """The one-line reason a folder entry named like an image or array file is not one to read."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        try:
            target = os.readlink(path)
        except OSError:  # removed meanwhile
            return "no such file or folder"
        return f"is a symbolic link to nothing (its target {shown(target)} does not exist)"
    except OSError as exc:
        return _unreadable_entry(exc)
    if stat.S_ISDIR(mode):
        return "is a symbolic link to a folder (not followed), expected a file"
    return f"is {file_type(mode)}, expected a file"


def _unreadable_entry(exc: OSError) -> str:
    """The one-line reason a path's type cannot be read: a symbolic link loop, or the system's words."""
    if exc.errno == errno.ELOOP:
        return f"is a symbolic link that loops ({exc.strerror})"
    return f"cannot read it ({exc.strerror or first_line(exc)})"


def load_inputs(path: str | os.PathLike) -> tuple[np.ndarray, Kind]:
    """The digits the model sees from one file, and the file's kind.

    An image is decoded and made MNIST-style (:func:`~ensemble_cnn.inference.preprocess.preprocess_digits`);
    an array file's digits are used as stored.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    digits : ndarray of uint8, shape (N, 28, 28)
        N = 1 for an image.
    kind : {"image", "array"}

    Raises
    ------
    InputError
        One line naming the file; ``"FILE: no ink found (...)"`` for an image with no ink
        (all white, all black, fully transparent, ...: see :class:`~ensemble_cnn.errors.NoInkError`).
    """
    path = Path(path)
    kind = classify_path(path)
    if kind == "array":
        return read_arrays(path), kind
    image = read_image(path)
    try:
        return preprocess_digits([image]), kind
    except ValueError as exc:
        raise InputError(f"{shown(path)}: {first_line(exc).removeprefix('images[0]: ')}") from None


def load_image_set(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """Every image one path holds, as one set scored whole (``evaluate --ood``), and how it was read.

    * a folder holding MNIST's test-images IDX file (``t10k-images-idx3-ubyte[.gz]``: an
      MNIST-layout dataset such as Fashion-MNIST): that file's images only, the dataset's test split;
    * any other folder: its image and array files, sub-folders included, in path order
      (:func:`expand_paths` with ``recursive``);
    * a file: its digits (:func:`load_inputs`; an ``.npz`` gives its ``x``, else its ``x_test``).

    Image files get MNIST's preprocessing and array files are taken as they are, as in
    ``predict``. Unlike ``predict``, the set is read whole or not at all: the first file that
    cannot be used (an unreadable file, an image with no ink, a folder with nothing to read)
    stops it.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    images : ndarray of uint8, shape (N, 28, 28), N >= 1
    read : str
        How the images were read, e.g. ``"t10k-images-idx3-ubyte.gz: the test split of an
        MNIST-layout folder"`` or ``"3 files"``.

    Raises
    ------
    InputError
        One line naming the path or file that cannot be used.
    """
    path = Path(path)
    if path.is_dir():
        stem = IDX_FILES["x_test"]
        test_images = next((path / name for name in (stem, f"{stem}.gz")
                            if (path / name).exists() or (path / name).is_symlink()), None)
        if test_images is not None:
            return read_arrays(test_images), f"{test_images.name}: the test split of an MNIST-layout folder"
    files, problems = expand_paths([path], recursive=True)
    if problems:
        problem, reason = problems[0]
        raise InputError(f"{shown(problem)}: {reason}")
    images = np.concatenate([load_inputs(file)[0] for file in files])
    return images, f"{len(files)} file" + ("" if len(files) == 1 else "s")
