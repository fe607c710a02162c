"""Checking output paths before anything is written: never a device, never an input, never twice.

Every command that writes a file checks all its output paths here first, so a bad
path is refused in one line while nothing has been created or changed:

* an output must be (or become) a regular file: not a folder, a device (``/dev/null``),
  a FIFO or a socket;
* an output (a file, or a folder to be created or replaced) must not be, contain or lie
  inside any of the command's inputs, at any depth (a run folder, a data file, a teacher
  run, a plan, an image or folder ``predict`` reads; symbolic links resolved, and by inode
  for hard links), nor be another of its outputs;
* a file output must not be a hard link to a file in a folder the command reads (a run folder);
* a file output is not named like a folder (``x/``, ``x/.``): click turns ``x/`` into ``x``,
  so the command line checks the text first (:func:`check_file_name`);
* the folder it goes into must be creatable and writable (or, where the command asks,
  exist already: ``predict`` and ``export`` never create folders);
* an existing target is replaced only where the command allows it (``export`` needs ``--overwrite``).

A run folder (``train``/``run --out``) must be new, empty, or a run folder of this
tool (it has a ``config.json``): a folder of the user's own files is never written into.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable, Sequence

from ensemble_cnn.errors import OutputPathError

__all__ = ["OutputPathError", "check_clear_of_inputs", "check_file_name", "check_output_files", "check_output_folder",
           "check_run_folder_target", "shown"]


def shown(path: str | os.PathLike) -> str:
    """A path as it goes into a one-line message: control characters (a newline, ...) escaped."""
    text = os.fspath(path)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return repr(text)[1:-1]
    return text


def _kind(mode: int) -> str | None:
    """What a non-regular, non-folder file is, in words (``None`` for a regular file or folder)."""
    for test, word in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return word
    return None


def _same(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name the same file: same resolved path, or the same inode."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_parent(path: Path, option: str, *, new_folders: bool = True) -> None:
    """Refuse an output whose folder cannot be created (or, without ``new_folders``, does not exist) or written."""
    ancestor = path.parent
    if not new_folders and not ancestor.is_dir():
        what = "is not a folder" if ancestor.exists() else "does not exist (create it first)"
        raise OutputPathError(option, f"cannot create {shown(path)}: folder {shown(ancestor)} {what}")
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputPathError(option, f"cannot create {shown(path)}: {shown(ancestor)} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputPathError(option, f"cannot create {shown(path)}: folder {shown(ancestor)} is not writable")


def check_file_name(option: str, path: str | os.PathLike) -> None:
    """Refuse a file output named like a folder: ``x/``, ``x/.``, ``.``, ``..`` (raise :class:`OutputPathError`).

    Checked on the text as typed: ``Path("x/")`` is ``Path("x")``, which names the file ``x``.
    """
    text = os.fspath(path)
    separators = tuple(sep for sep in (os.sep, os.altsep) if sep)
    if text.endswith(separators) or os.path.basename(text) in (".", ".."):
        raise OutputPathError(option, f"{shown(text)} is a folder, expected a file path")


def check_clear_of_inputs(option: str, path: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse an output that is, contains or lies inside one of ``inputs``, at any depth: the one rule.

    Compared after resolving symbolic links (the output's folders included), and by inode
    for an existing output and input (a hard link). An input that does not exist is skipped.
    Raises :class:`OutputPathError` naming ``option``.
    """
    path = Path(path)
    target = path.resolve()
    for source in inputs:
        source = Path(source)
        if not (source.exists() or source.is_symlink()):
            continue
        root = source.resolve()
        if _same(path, source):
            raise OutputPathError(option, f"{shown(path)} is an input of this command; it would be overwritten")
        if root in target.parents:
            raise OutputPathError(option, f"{shown(path)} is inside {shown(source)}, an input of this command; "
                                          "write it elsewhere")
        if target in root.parents:
            raise OutputPathError(option, f"{shown(path)} contains {shown(source)}, an input of this command; "
                                          "write it elsewhere")


def _check_no_hard_link(path: Path, option: str, folders: Sequence[Path]) -> None:
    """Refuse an existing output that is a hard link to a file in one of ``folders`` (a run folder read whole)."""
    try:
        linked = path.stat() if path.exists() else None
    except OSError:
        linked = None
    if linked is None or linked.st_nlink < 2:
        return
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for entry in folder.resolve().iterdir():
            try:
                other = entry.stat()
            except OSError:
                continue
            if (other.st_dev, other.st_ino) == (linked.st_dev, linked.st_ino):
                raise OutputPathError(option, f"{shown(path)} is the same file as {shown(folder / entry.name)} "
                                              "(a hard link), an input of this command; write it elsewhere")


def check_output_files(
    outputs: Sequence[tuple[str, str | os.PathLike]],
    *,
    inputs: Iterable[Path] = (),
    input_folders: Iterable[Path] = (),
    new_folders: bool = True,
    overwrite: bool = True,
) -> None:
    """Check every output file of one command; raise :class:`OutputPathError` for the first bad one.

    Parameters
    ----------
    outputs : sequence of (str, path-like)
        ``(option, path)`` of each file the command will write (e.g. ``("--out",
        out)``, ``("--out", manifest)``, ``("--preview", preview)``); a path given as
        text is also checked for a folder's name (``x/``).
    inputs : iterable of Path
        Files or folders the command reads: no output may be one, contain one, or lie
        inside one, at any depth (symbolic links resolved).
    input_folders : iterable of Path
        Folders the command reads as a whole (a run folder): inputs as above, and no
        output may be a hard link to a file in one.
    new_folders : bool, default True
        Missing folders above an output may be created; ``False``: they must exist.
    overwrite : bool, default True
        An existing output file may be replaced; ``False``: it is refused (the message
        points to ``--overwrite``).
    """
    inputs = [Path(p) for p in inputs]
    input_folders = [Path(p) for p in input_folders]
    for position, (option, path) in enumerate(outputs):
        check_file_name(option, path)
        path = Path(path)
        if path.is_dir():
            raise OutputPathError(option, f"{shown(path)} is a folder, expected a file path")
        if path.exists() or path.is_symlink():
            try:
                mode = path.stat().st_mode
            except OSError as exc:
                raise OutputPathError(option, f"{shown(path)}: cannot be checked ({exc.strerror or exc})") from None
            kind = _kind(mode)
            if kind is not None:
                raise OutputPathError(option, f"{shown(path)} is {kind}, expected a regular file path")
        check_clear_of_inputs(option, path, [*inputs, *input_folders])
        _check_no_hard_link(path, option, input_folders)
        if not overwrite and (path.exists() or path.is_symlink()):
            raise OutputPathError(option, f"{shown(path)} exists; give --overwrite to replace it")
        for other_option, other in outputs[:position]:
            if _same(path, Path(other)):
                raise OutputPathError(option, f"{shown(path)} is also the {other_option} output of this command")
        _check_parent(path, option, new_folders=new_folders)


def check_output_folder(
    option: str,
    path: Path,
    *,
    inputs: Iterable[Path] = (),
    input_folders: Iterable[Path] = (),
    overwrite: bool = False,
    replaceable: str | None = None,
) -> None:
    """Check a folder a command will create as its output (a SavedModel); raise :class:`OutputPathError`.

    The folder's parent must exist and be writable; the folder must not be, contain or lie
    inside any of ``inputs`` and ``input_folders`` (files or folders the command reads), at
    any depth, symbolic links resolved: replacing it would delete them. An existing ``path``
    is refused unless ``overwrite`` and it is a folder holding ``replaceable`` (e.g.
    ``saved_model.pb``: only a previous export is replaced).
    """
    path = Path(path)
    check_clear_of_inputs(option, path, [Path(p) for p in (*inputs, *input_folders)])
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise OutputPathError(option, f"{shown(path)} exists; give --overwrite to replace it")
        if path.is_symlink() or not path.is_dir() or replaceable is None or not (path / replaceable).is_file():
            raise OutputPathError(option, f"{shown(path)} exists and is not a folder holding {replaceable}; "
                                          "--overwrite replaces only a previous export")
    _check_parent(path, option, new_folders=False)


def check_run_folder_target(
    path: Path, *, option: str = "--out", foreign: Sequence[str] = (), inputs: Iterable[Path] = (),
) -> None:
    """Refuse a run folder that is a file, a special file, a non-empty folder of someone else's files,
    or that is, contains or lies inside an input.

    Parameters
    ----------
    path : Path
        The run folder ``train``/``run`` will write into.
    foreign : sequence of str
        Names of the files in it that this tool did not write (empty for a run
        folder of this tool; the caller decides).
    inputs : iterable of Path
        Files or folders the run reads (its data, a teacher run, a plan): the run folder
        may not be, contain or lie inside one, at any depth (symbolic links resolved).
    """
    path = Path(path)
    check_clear_of_inputs(option, path, [Path(p) for p in inputs])
    if path.exists():
        if not path.is_dir():
            kind = _kind(path.stat().st_mode) or "a file"
            raise OutputPathError(option, f"{shown(path)}: exists and is {kind}, not a folder")
        if foreign:
            foreign = sorted(foreign)
            listed = ", ".join(shown(name) for name in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise OutputPathError(option, f"{shown(path)} holds files that are not a run of ensemble-cnn "
                                          f"({listed}); choose an empty or new folder")
    else:
        _check_parent(path / "config.json", option)
