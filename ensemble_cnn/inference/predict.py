"""Predicting users' own digits: files in, one row per digit out (table, CSV or JSON), and a preview.

Image files (PNG, JPEG, BMP, GIF, TIFF) hold one digit each and go through MNIST's
own preprocessing by default (:mod:`ensemble_cnn.inference.preprocess`); array files (``.npy``,
``.npz`` with ``x`` or ``x_test``, IDX) hold MNIST-style 28x28 digits and are used as
they are. A file that cannot be read is reported in one line and the others are
still predicted. Nothing here writes to an input.

No ink, no label: an image with nothing standing out from its background (all white,
all black, fully transparent, ...), and a 28x28 digit whose pixels span less than
:data:`ensemble_cnn.inference.preprocess.NO_INK_LEVEL` of the grey range, is reported as a failure
("no ink found") instead of being labelled. (:meth:`Ensemble.predict` itself takes digits as
they are, so evaluation and the library API are unchanged.)

Memory: files are read one at a time; each image is decoded within
:data:`ensemble_cnn.inference.images.DECODE_PIXELS`, made into its 28x28 digit and dropped (only a
grey thumbnail of at most :data:`ensemble_cnn.inference.preprocess.THUMBNAIL_SIZE` pixels a side is
kept, and only when a preview is asked for), so the memory used does not grow with the
size of the images or the number of files beyond those small per-digit arrays.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ensemble_cnn.data.reader import RUN_FILES, read_json
from ensemble_cnn.errors import InputError, NoInkError, RunFolderError
from ensemble_cnn.inference.ensemble import Ensemble
from ensemble_cnn.inference.arrays import read_arrays
from ensemble_cnn.inference.images import read_image
from ensemble_cnn.inference.paths import classify_path, expand_paths
from ensemble_cnn.inference.preprocess import NO_INK_LEVEL, has_ink, mnist_style, thumbnail, to_grayscale
from ensemble_cnn.inference.trust import DEFAULT_COVERAGE, DEFAULT_LEVEL, set_text
from ensemble_cnn.shares import check_share
from ensemble_cnn.inference.vote import get_vote
from ensemble_cnn.storage.outputs import OutputPathError, shown

__all__ = ["PREPROCESSING", "PREVIEW_FORMATS", "ImagePredictor", "Prediction", "Predictions", "format_predictions",
           "left_out_names", "predict_paths", "preview_figure", "preview_format", "write_preview"]

PREPROCESSING = ("mnist", "none")
PREVIEW_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".svg": "svg", ".pdf": "pdf"}
"""``--preview`` file endings (any case) and the picture format each is written in."""
NO_INK = "no ink found"
PREVIEW_ITEMS = 40
"""Most inputs a preview draws (the first ones); only they keep a thumbnail."""
CSV_COLUMNS = ("path", "label", "confidence", "vote_share", "member_labels", *(f"p{c}" for c in range(10)),
               "set", "unsure", "not_a_digit")
"""The CSV header; the last three (:mod:`ensemble_cnn.inference.trust`) are empty without calibration digits."""


@dataclass
class Prediction:
    """One digit's answer.

    Attributes
    ----------
    path : str
        The file, or ``FILE[i]`` for the i-th digit of an array file.
    label : int
        The vote's label.
    confidence : float
        The vote's probability of ``label`` (``probabilities[label]``).
    vote_share : float
        Fraction of the members whose own label is ``label``.
    member_labels : list of int
    probabilities : list of float
        The vote's probabilities (soft: the members' mean; majority: each class's
        share of the votes), 10 values.
    digit : ndarray of uint8, shape (28, 28)
        What the members saw.
    thumbnail : ndarray of uint8, shape (h, w), or None
        A grey copy of the image file (255 = white), at most
        :data:`~ensemble_cnn.inference.preprocess.THUMBNAIL_SIZE` pixels a side, for the
        preview; ``None`` for an array's digit or when no thumbnails were asked for.
    label_set : list of int or None
        The conformal label set (may be empty: no label fits, and the digit is unsure);
        ``None`` without thresholds (:attr:`Predictions.trust_note` says why).
    unsure, not_a_digit : bool or None
        The flags of :mod:`ensemble_cnn.inference.trust`; ``None`` without thresholds.
    """

    path: str
    label: int
    confidence: float
    vote_share: float
    member_labels: list[int]
    probabilities: list[float]
    digit: np.ndarray = field(repr=False)
    thumbnail: np.ndarray | None = field(default=None, repr=False)
    label_set: list[int] | None = None
    unsure: bool | None = None
    not_a_digit: bool | None = None

    def row(self, *, fmt: str = "csv") -> dict[str, Any]:
        """The CSV/JSON row: ``path, label, confidence, vote_share, member_labels, p0 .. p9, set, unsure,
        not_a_digit``. CSV: the set as ``"4 9"`` (``"-"``: empty), the flags as ``true``/``false``, all three
        empty without thresholds; JSON: a list, booleans, ``null``."""
        row = {"path": self.path, "label": self.label, "confidence": round(self.confidence, 6),
               "vote_share": round(self.vote_share, 6), "member_labels": " ".join(map(str, self.member_labels)),
               **{f"p{c}": round(p, 6) for c, p in enumerate(self.probabilities)}}
        if fmt == "json":
            return {**row, "set": self.label_set, "unsure": self.unsure, "not_a_digit": self.not_a_digit}
        known = self.label_set is not None
        return {**row, "set": (" ".join(map(str, self.label_set)) or "-") if known else "",
                **{name: ("true" if flag else "false") if known else ""
                   for name, flag in (("unsure", self.unsure), ("not_a_digit", self.not_a_digit))}}

    @property
    def flag(self) -> str:
        """``"not a digit"``, ``"unsure"`` or ``""`` (answered, or no thresholds)."""
        return "not a digit" if self.not_a_digit else "unsure" if self.unsure else ""


@dataclass
class Predictions:
    """What :func:`predict_paths` did: the answers, and the paths that failed (with a one-line reason).

    ``left_out``: the members of the run asked for but left out (name -> one-line reason,
    from :attr:`Ensemble.left_out_`); empty when the ensemble is complete. ``voting``: the vote's name
    (written as ``"vote"`` in the JSON output). ``thresholds``: the run's
    :class:`~ensemble_cnn.inference.trust.Thresholds` that set each item's label set and flags, or
    ``None``, and then ``trust_note`` says why in one line (a run without calibration digits, test-time views).
    """

    voting: str
    members: list[str]
    tta: str = "none"
    items: list[Prediction] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    thresholds: Any = None
    trust_note: str | None = None

    def summary(self) -> str:
        """One line: ``N of M answered, K set aside (U unsure, D not a digit)``, or why there are no flags."""
        if self.thresholds is None:
            return f"{len(self.items)} predicted; no unsure / not-a-digit flags: {self.trust_note}"
        unsure = sum(bool(item.unsure) for item in self.items)
        foreign = sum(bool(item.not_a_digit) for item in self.items)
        aside = sum(bool(item.unsure or item.not_a_digit) for item in self.items)
        return (f"{len(self.items) - aside} of {len(self.items)} answered, {aside} set aside ({unsure} unsure, "
                f"{foreign} not a digit; thresholds from {self.thresholds.n_calibration} calibration digits: "
                f"coverage {self.thresholds.coverage:g}, level {self.thresholds.level:g})")


def _digits_of(path: Path, *, preprocess: str, thumbnails: bool) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """(names, digits (N, 28, 28), thumbnail or None) of one file; :class:`InputError` when it cannot be used.

    The decoded image is dropped before this returns: only the digit and (with ``thumbnails``)
    a small grey copy are kept.
    """
    if classify_path(path) == "array":
        digits = read_arrays(path)
        return [f"{path}[{i}]" for i in range(len(digits))], digits, None
    gray = to_grayscale(read_image(path))  # the decoded array is freed here
    if preprocess == "mnist":
        try:
            digit = mnist_style(gray)[None]
        except ValueError as exc:
            raise InputError(f"{shown(path)}: {str(exc).splitlines()[0].removeprefix('gray: ')}") from None
    else:
        if gray.shape != (28, 28):
            raise InputError(f"{shown(path)}: is {gray.shape[1]}x{gray.shape[0]} pixels; --preprocess none takes "
                             "28x28 digits as they are (light ink on black)")
        digit = np.rint(gray * 255).astype(np.uint8)[None]
        if not has_ink(digit)[0]:
            raise InputError(f"{shown(path)}: {NO_INK} (its pixels span less than {_no_ink_span()} grey levels)")
    return [str(path)], digit, thumbnail(gray) if thumbnails else None


def _no_ink_span() -> str:
    return f"{NO_INK_LEVEL * 255:.0f} of 255"


def predict_paths(
    ensemble: Ensemble,
    paths: Sequence[str | Path],
    *,
    recursive: bool = False,
    preprocess: str = "mnist",
    voting: str = "majority",
    thumbnails: bool = False,
    coverage: float = DEFAULT_COVERAGE,
    level: float = DEFAULT_LEVEL,
) -> Predictions:
    """Predict every digit in ``paths`` (files and folders), one file at a time.

    A file that cannot be used, and a digit with no ink (an image, or one digit of an
    array file), is a failure with a one-line reason; the others are still predicted.

    Parameters
    ----------
    ensemble : Ensemble
    paths : sequence of path-like
        Image files, array files, folders of them (sorted by name).
    recursive : bool
        Descend into sub-folders.
    preprocess : {"mnist", "none"}
        Image files: MNIST's preprocessing (polarity from the border, crop, fit
        20x20, centre of mass to the centre), or none (28x28 images as they are).
    voting : str
        A name in :data:`ensemble_cnn.inference.vote.VOTES`.
    thumbnails : bool, keyword-only
        Keep a small grey copy of the first :data:`PREVIEW_ITEMS` image files
        (:attr:`Prediction.thumbnail`) for :func:`preview_figure`; decoded images
        themselves are never kept.
    coverage, level : float, keyword-only
        The "unsure" threshold answers ``coverage`` of the run's calibration digits; the label
        sets hold the true label with probability ``level`` (:mod:`ensemble_cnn.inference.trust`).
        Without calibration digits (or with test-time views) the items carry no set and no
        flags, and :attr:`Predictions.trust_note` says why.

    Returns
    -------
    Predictions
        ``items`` in the order of the files (each file's digits in order), ``failures``
        as ``(path, reason)`` with the reason not repeating the path.
    """
    if preprocess not in PREPROCESSING:
        raise ValueError(f"preprocess must be one of {', '.join(PREPROCESSING)}, got {preprocess!r}")
    rule = get_vote(voting)
    check_share(coverage, "coverage"), check_share(level, "level")
    result = Predictions(voting=voting, members=list(ensemble.names_), tta=ensemble.tta,
                         left_out=left_out_names(ensemble))
    if ensemble.tta != "none":
        result.trust_note = (f"the thresholds were fixed on digits seen without test-time views (not {ensemble.tta!r})"
                             "; no flags with --tta")
    else:
        try:
            result.thresholds = ensemble.thresholds(coverage=coverage, level=level)
        except RunFolderError as exc:
            result.trust_note = str(exc).strip().splitlines()[0]
    files, problems = expand_paths(paths, recursive=recursive)
    result.failures += [(str(path), reason) for path, reason in problems]
    names: list[str] = []
    digits: list[np.ndarray] = []
    kept: list[np.ndarray | None] = []
    for path in files:
        try:
            keep = thumbnails and len(names) < PREVIEW_ITEMS
            file_names, file_digits, small = _digits_of(path, preprocess=preprocess, thumbnails=keep)
        except InputError as exc:
            result.failures.append((str(path), _reason(exc, path)))
            continue
        inked = has_ink(file_digits)
        if not inked.all():  # an array file's blank digits (an image's digit always has ink)
            span = _no_ink_span()
            result.failures += [(name, f"{NO_INK} (its pixels span less than {span} grey levels)")
                                for name, ok in zip(file_names, inked) if not ok]
            file_names = [name for name, ok in zip(file_names, inked) if ok]
            file_digits = file_digits[inked]
        names += file_names
        digits.append(file_digits)
        kept += [small] * len(file_names)
    if not names:
        return result
    stack = np.concatenate(digits)
    verdicts = None  # the flags and the probabilities come from one pass of each member
    if result.thresholds is not None:
        verdicts = ensemble.judge(stack, thresholds=result.thresholds, voting=voting)
    probabilities = verdicts.probabilities if verdicts is not None else ensemble.member_probabilities(stack)
    labels = rule.labels(probabilities)  # (K, N, 10) -> (N,)
    shares = rule.shares(probabilities)
    member_labels = probabilities.argmax(axis=2)  # (K, N)
    for i, name in enumerate(names):
        label = int(labels[i])
        trusted = {} if verdicts is None else {
            "label_set": [int(c) for c in np.flatnonzero(verdicts.sets[i])], "unsure": bool(verdicts.unsure[i]),
            "not_a_digit": bool(verdicts.not_a_digit[i])}
        result.items.append(Prediction(
            path=name, label=label, confidence=float(shares[i, label]),
            vote_share=float(np.mean(member_labels[:, i] == label)),
            member_labels=[int(v) for v in member_labels[:, i]],
            probabilities=[float(v) for v in shares[i]], digit=stack[i], thumbnail=kept[i], **trusted,
        ))
    return result


def _reason(exc: Exception, path: Path) -> str:
    """The one-line reason without the file name the message starts with (the failure line names it once).

    ``"x.npz [x]: has shape ..."`` (an array in an ``.npz``) becomes ``"array x: has shape ..."``.
    """
    text = str(exc).strip().splitlines()[0]
    name = shown(path)
    if text.startswith(f"{name}: "):
        return text[len(name) + 2:]
    if text.startswith(f"{name} ["):
        key, separator, rest = text[len(name) + 2:].partition("]: ")
        if separator:
            return f"array {key}: {rest}"
    return text


def left_out_names(ensemble: Ensemble) -> dict[str, str]:
    """The ensemble's left-out members by name (``member_01`` -> reason)."""
    from ensemble_cnn.storage.run_folder import member_stem

    return {member_stem(index): reason for index, reason in sorted(getattr(ensemble, "left_out_", {}).items())}


def format_predictions(predictions: Predictions, *, fmt: str = "table") -> str:
    """The answers as ``table`` (for a terminal), ``csv`` (header row + one row per digit) or ``json``.

    Members left out of the ensemble are always named: JSON has ``left_out``
    (``[{"member", "reason"}]``, empty when complete); CSV gets a last column
    ``left_out`` (``member_01: reason; ...``, the same in every row) only when some are
    left out, so a complete run's CSV keeps its columns; the table ends with a line.
    """
    rows = [item.row(fmt="json" if fmt == "json" else "csv") for item in predictions.items]
    left_out = "; ".join(f"{name}: {reason}" for name, reason in predictions.left_out.items())
    if fmt == "json":
        thresholds = predictions.thresholds.to_dict() if predictions.thresholds is not None else None
        return json.dumps({"vote": predictions.voting, "members": predictions.members, "tta": predictions.tta,
                           "left_out": [{"member": m, "reason": r} for m, r in predictions.left_out.items()],
                           "thresholds": thresholds, "trust_note": predictions.trust_note,
                           "summary": predictions.summary(),
                           "predictions": rows,
                           "failures": [{"path": p, "reason": r} for p, r in predictions.failures]}, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        columns = CSV_COLUMNS + (("left_out",) if left_out else ())
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows([{**row, "left_out": left_out} if left_out else row for row in rows])
        return buffer.getvalue()
    if fmt != "table":
        raise ValueError(f"fmt must be table, csv or json, got {fmt!r}")
    if not rows:
        return "no digit predicted\n"
    width = max(len("path"), *(len(shown(r["path"])) for r in rows))
    k = len(predictions.members)
    trusted = predictions.thresholds is not None
    extra = f"  {'set':<9}  flag" if trusted else ""
    lines = [f"{'path':<{width}}  label  confidence  members agree  {'member labels':<13}{extra}"
             f"  ({predictions.voting} vote)"]
    for item in predictions.items:
        agree = f"{round(item.vote_share * k)} of {k}"
        flags = f"  {set_text([c in item.label_set for c in range(10)]):<9}  {item.flag}" if trusted else ""
        lines.append(f"{shown(item.path):<{width}}  {item.label:>5}  {100 * item.confidence:>9.1f}%  {agree:>13}  "
                     f"{' '.join(map(str, item.member_labels)):<13}{flags}".rstrip())
    if left_out:
        lines.append(f"{k} of {k + len(predictions.left_out)} members voted; left out: {shown(left_out)}")
    lines.append(predictions.summary())
    return "\n".join(lines) + "\n"


def preview_figure(predictions: Predictions, *, max_items: int = PREVIEW_ITEMS, per_row: int = 4):
    """Each input (its thumbnail, or the array's digit) next to the 28x28 digit the members saw, labelled.

    Pairs go ``per_row`` to a row (a grid of ``2 * per_row`` panels), at most ``max_items`` of them.
    """
    from matplotlib.figure import Figure

    items = predictions.items[:max_items]
    columns = max(1, min(per_row, len(items)))
    rows = max(1, -(-len(items) // columns))
    fig = Figure(figsize=(2.3 * columns, 1.35 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, 2 * columns, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for position, item in enumerate(items):
        row, column = divmod(position, columns)
        left, right = axes[row, 2 * column], axes[row, 2 * column + 1]
        if item.thumbnail is None:  # an array's digit: it is already what the members saw
            left.imshow(item.digit, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:  # the image as the user sees it (grey levels, 255 = white)
            left.imshow(item.thumbnail, cmap="gray", vmin=0, vmax=255, interpolation="antialiased")
        left.set_title(_short(item.path, 18), fontsize=6)
        right.imshow(item.digit, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        flag = f", {item.flag}" if item.flag else ""
        right.set_title(f"→ {item.label} ({100 * item.confidence:.0f}%, {item.vote_share:.0%} agree{flag})",
                        fontsize=6, color="firebrick" if flag else "black")
    extra = f" (first {len(items)} of {len(predictions.items)})" if len(predictions.items) > len(items) else ""
    fig.suptitle(f"input → what the members saw, {predictions.voting} vote{extra}", fontsize=9)
    return fig


def preview_format(path: str | Path) -> str:
    """The picture format ``--preview`` writes for ``path``, from its ending (:data:`PREVIEW_FORMATS`).

    Raises
    ------
    OutputPathError
        ``--preview``: the ending names no format written (checked before anything is loaded or written).
    """
    suffix = Path(path).suffix.lower()
    if suffix not in PREVIEW_FORMATS:
        endings = ", ".join(PREVIEW_FORMATS)
        what = f"ends in {shown(suffix)}" if suffix else "has no file ending"
        raise OutputPathError("--preview", f"{shown(path)} {what}; expected one of {endings}")
    return PREVIEW_FORMATS[suffix]


def write_preview(predictions: Predictions, path: str | Path) -> Path:
    """Draw :func:`preview_figure` into ``path`` atomically, in the format its ending names (:func:`preview_format`)."""
    from ensemble_cnn.storage.atomic import atomic_path

    fmt = preview_format(path)
    figure = preview_figure(predictions)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=fmt, dpi=100, bbox_inches="tight")  # the format is explicit, not the temp's name
    return Path(path)


def _short(path: str, limit: int = 28) -> str:
    text = shown(path)
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


class ImagePredictor:
    """The model side of ``ensemble-cnn serve``: one uploaded image in, the members' votes out.

    Parameters
    ----------
    ensemble : Ensemble
        Loaded once; every request uses it.
    voting : str
        The vote shown (a name in :data:`ensemble_cnn.inference.vote.VOTES`).

    Not thread-safe (Keras models): the server serialises calls.
    """

    def __init__(self, ensemble: Ensemble, *, voting: str = "majority", coverage: float = DEFAULT_COVERAGE,
                 level: float = DEFAULT_LEVEL) -> None:
        get_vote(voting)
        self.ensemble, self.voting = ensemble, voting
        self.thresholds, self.trust_note = None, None  # fixed once on the run's calibration digits
        check_share(coverage, "coverage"), check_share(level, "level")
        if ensemble.tta != "none":
            self.trust_note = "no unsure / not-a-digit flags with test-time views"
        else:
            try:
                self.thresholds = ensemble.thresholds(coverage=coverage, level=level)
            except RunFolderError as exc:
                self.trust_note = str(exc).strip().splitlines()[0]

    def predict_image(self, data: bytes) -> dict[str, Any]:
        """Decode an image (PNG/JPEG bytes), preprocess it like MNIST, and let the members vote.

        Returns ``{"label", "confidence", "vote", "agreement": {"count", "of"}, "members": [{"name",
        "label", "probabilities"}], "probabilities", "input": 28x28 ints, "set", "unsure", "not_a_digit",
        "verdict"}`` (``set``: the conformal label set; ``verdict``: "answered", "unsure" or "not a digit";
        all four ``None`` without calibration digits); raises ``ValueError``
        (one line) for bytes that are not a usable image, and its subclass
        :class:`~ensemble_cnn.errors.NoInkError` for an image with no ink (``serve`` answers 422).
        """
        from ensemble_cnn.inference.images import decode_image

        gray = to_grayscale(decode_image(data, name="upload"))
        try:
            digit = mnist_style(gray)[None]
        except NoInkError as exc:
            raise NoInkError(f"upload: {str(exc).splitlines()[0]}") from None
        except ValueError as exc:
            raise ValueError(f"upload: {str(exc).splitlines()[0].removeprefix('gray: ')}") from None
        verdicts = None  # the flags and the probabilities come from one pass of each member
        if self.thresholds is not None:
            verdicts = self.ensemble.judge(digit, thresholds=self.thresholds, voting=self.voting)
        probabilities = verdicts.probabilities if verdicts is not None else self.ensemble.member_probabilities(digit)
        rule = get_vote(self.voting)
        label = int(rule.labels(probabilities)[0])
        shares = rule.shares(probabilities)[0]
        member_labels = probabilities[:, 0].argmax(axis=1)
        trusted = {"set": None, "unsure": None, "not_a_digit": None, "verdict": None}
        if verdicts is not None:
            unsure, foreign = bool(verdicts.unsure[0]), bool(verdicts.not_a_digit[0])
            trusted = {"set": [int(c) for c in np.flatnonzero(verdicts.sets[0])], "unsure": unsure,
                       "not_a_digit": foreign,
                       "verdict": "not a digit" if foreign else "unsure" if unsure else "answered"}
        return {**trusted,
            "label": label,
            "confidence": float(shares[label]),
            "vote": self.voting,
            "agreement": {"count": int(np.sum(member_labels == label)), "of": len(member_labels)},
            "members": [{"name": name, "label": int(member_label), "probabilities": [float(v) for v in p[0]]}
                        for name, member_label, p in zip(self.ensemble.names_, member_labels, probabilities)],
            "probabilities": [float(v) for v in shares],
            "input": digit[0].astype(int).tolist(),
        }

    def info(self) -> dict[str, Any]:
        """The run's members, architecture, vote, test-time views, its test accuracy (from its report, when
        there is one), the thresholds of the flags (``None``, and ``trust_note`` saying why, without calibration
        digits) and the members left out (``[{"member", "reason"}]``, empty when complete)."""
        config = self.ensemble.config
        accuracy = None
        run_dir = self.ensemble.run_dir
        if run_dir is not None and (run_dir / "report.json").is_file():
            try:  # the one guarded open: never a FIFO or device swapped in, never more than MAX_JSON_BYTES
                report = read_json(run_dir / "report.json", what="report", voice=RUN_FILES)
                accuracy = report["ensemble"][self.voting]["test_accuracy"]
            except (RunFolderError, KeyError, TypeError):
                accuracy = None
        specs = _member_specs(config, self.ensemble.names_)
        architecture = ", ".join(dict.fromkeys(spec["arch"] for spec in specs)) or getattr(config, "arch", None)
        return {"run": str(run_dir) if run_dir is not None else None, "members": list(self.ensemble.names_),
                "architecture": architecture, "member_specs": specs, "vote": self.voting, "tta": self.ensemble.tta,
                "test_accuracy": accuracy,
                "thresholds": self.thresholds.to_dict() if self.thresholds is not None else None,
                "trust_note": self.trust_note,
                "left_out": [{"member": m, "reason": r} for m, r in left_out_names(self.ensemble).items()]}


def _member_specs(config: Any, names: list[str]) -> list[dict[str, Any]]:
    """Each member's spec (its plan group, arch, width, normalize, ...) when the ensemble came from a run, else []."""
    if config is None or not hasattr(config, "member_spec"):
        return []
    try:
        return [config.member_spec(int(name.removeprefix("member_"))) for name in names]
    except (ValueError, IndexError):
        return []
