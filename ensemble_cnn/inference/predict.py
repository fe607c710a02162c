"""Predicting users' own digits: files in, one row per digit out (table, CSV or JSON), and a preview.

Image files (PNG, JPEG, BMP, GIF, TIFF) hold one digit each and go through MNIST's
own preprocessing by default (:mod:`ensemble_cnn.inference.preprocess`); array files (``.npy``,
``.npz`` with ``x`` or ``x_test``, IDX) hold MNIST-style 28x28 digits and are used as
they are. A file that cannot be read is reported in one line and the others are
still predicted. Nothing here writes to an input.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ensemble_cnn.inference.ensemble import Ensemble
from ensemble_cnn.inference.inputs import InputError, classify_path, expand_paths, read_arrays, read_image
from ensemble_cnn.storage.outputs import shown
from ensemble_cnn.inference.preprocess import preprocess_digits, to_grayscale
from ensemble_cnn.inference.vote import VOTES

__all__ = ["PREPROCESSING", "ImagePredictor", "Prediction", "Predictions", "format_predictions", "predict_paths",
           "preview_figure"]

PREPROCESSING = ("mnist", "none")
CSV_COLUMNS = ("path", "label", "confidence", "vote_share", "member_labels", *(f"p{c}" for c in range(10)))


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
    original : ndarray or None
        The decoded image (for image files), for the preview.
    """

    path: str
    label: int
    confidence: float
    vote_share: float
    member_labels: list[int]
    probabilities: list[float]
    digit: np.ndarray = field(repr=False)
    original: np.ndarray | None = field(default=None, repr=False)

    def row(self) -> dict[str, Any]:
        """The CSV/JSON row: ``path, label, confidence, vote_share, member_labels, p0 .. p9``."""
        return {"path": self.path, "label": self.label, "confidence": round(self.confidence, 6),
                "vote_share": round(self.vote_share, 6), "member_labels": " ".join(map(str, self.member_labels)),
                **{f"p{c}": round(p, 6) for c, p in enumerate(self.probabilities)}}


@dataclass
class Predictions:
    """What :func:`predict_paths` did: the answers, and the paths that failed (with a one-line reason)."""

    vote: str
    members: list[str]
    tta: str = "none"
    items: list[Prediction] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


def _digits_of(path: Path, *, preprocess: str) -> tuple[list[str], np.ndarray, list[np.ndarray | None]]:
    """(names, digits (N, 28, 28), originals) of one file; :class:`InputError` when it cannot be used."""
    if classify_path(path) == "array":
        digits = read_arrays(path)
        return [f"{path}[{i}]" for i in range(len(digits))], digits, [None] * len(digits)
    image = read_image(path)
    if preprocess == "mnist":
        try:
            digit = preprocess_digits([image])
        except ValueError as exc:
            raise InputError(f"{shown(path)}: {str(exc).splitlines()[0].removeprefix('images[0]: ')}") from None
    else:
        gray = to_grayscale(image)
        if gray.shape != (28, 28):
            raise InputError(f"{shown(path)}: is {gray.shape[1]}x{gray.shape[0]} pixels; --preprocess none takes "
                             "28x28 digits as they are (light ink on black)")
        digit = np.rint(gray * 255).astype(np.uint8)[None]
    return [str(path)], digit, [image]


def predict_paths(
    ensemble: Ensemble,
    paths: Sequence[str | Path],
    *,
    recursive: bool = False,
    preprocess: str = "mnist",
    vote: str = "majority",
) -> Predictions:
    """Predict every digit in ``paths`` (files and folders).

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
    vote : str
        A name in :data:`ensemble_cnn.inference.vote.VOTES`.
    """
    if preprocess not in PREPROCESSING:
        raise ValueError(f"preprocess must be one of {', '.join(PREPROCESSING)}, got {preprocess!r}")
    if vote not in VOTES:
        raise ValueError(f"vote must be one of {', '.join(VOTES)}, got {vote!r}")
    result = Predictions(vote=vote, members=list(ensemble.names_), tta=ensemble.tta)
    files, problems = expand_paths(paths, recursive=recursive)
    result.failures += [(str(path), reason) for path, reason in problems]
    names, digits, originals = [], [], []
    for path in files:
        try:
            file_names, file_digits, file_originals = _digits_of(path, preprocess=preprocess)
        except InputError as exc:
            result.failures.append((str(path), _reason(exc, path)))
            continue
        names += file_names
        digits.append(file_digits)
        originals += file_originals
    if not names:
        return result
    stack = np.concatenate(digits)
    probabilities = ensemble.member_probabilities(stack)  # (K, N, 10)
    rule = VOTES[vote]
    labels = rule.labels(probabilities)
    shares = rule.shares(probabilities)
    member_labels = probabilities.argmax(axis=2)  # (K, N)
    for i, name in enumerate(names):
        label = int(labels[i])
        result.items.append(Prediction(
            path=name, label=label, confidence=float(shares[i, label]),
            vote_share=float(np.mean(member_labels[:, i] == label)),
            member_labels=[int(v) for v in member_labels[:, i]],
            probabilities=[float(v) for v in shares[i]], digit=stack[i], original=originals[i],
        ))
    return result


def _reason(exc: Exception, path: Path) -> str:
    """The one-line reason without the file name the message starts with."""
    text = str(exc).strip().splitlines()[0]
    prefix = f"{shown(path)}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def format_predictions(predictions: Predictions, *, fmt: str = "table") -> str:
    """The answers as ``table`` (for a terminal), ``csv`` (header row + one row per digit) or ``json``."""
    rows = [item.row() for item in predictions.items]
    if fmt == "json":
        return json.dumps({"vote": predictions.vote, "members": predictions.members, "tta": predictions.tta,
                           "predictions": rows,
                           "failures": [{"path": p, "reason": r} for p, r in predictions.failures]}, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    if fmt != "table":
        raise ValueError(f"fmt must be table, csv or json, got {fmt!r}")
    if not rows:
        return "no digit predicted\n"
    width = max(len("path"), *(len(shown(r["path"])) for r in rows))
    k = len(predictions.members)
    lines = [f"{'path':<{width}}  label  confidence  members agree  member labels ({predictions.vote} vote)"]
    for item in predictions.items:
        agree = f"{round(item.vote_share * k)} of {k}"
        lines.append(f"{shown(item.path):<{width}}  {item.label:>5}  {100 * item.confidence:>9.1f}%  {agree:>13}  "
                     f"{' '.join(map(str, item.member_labels))}")
    return "\n".join(lines) + "\n"


def preview_figure(predictions: Predictions, *, max_items: int = 40, per_row: int = 4):
    """Each input (the decoded image, or the array's digit) next to the 28x28 digit the members saw, labelled.

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
        if item.original is None:  # an array's digit: it is already what the members saw
            left.imshow(item.digit, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:  # the image as the user sees it (grey levels, 1 = white)
            left.imshow(to_grayscale(item.original), cmap="gray", vmin=0, vmax=1, interpolation="antialiased")
        left.set_title(_short(item.path, 18), fontsize=6)
        right.imshow(item.digit, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        right.set_title(f"→ {item.label} ({100 * item.confidence:.0f}%, {item.vote_share:.0%} agree)", fontsize=6)
    extra = f" (first {len(items)} of {len(predictions.items)})" if len(predictions.items) > len(items) else ""
    fig.suptitle(f"input → what the members saw, {predictions.vote} vote{extra}", fontsize=9)
    return fig


def _short(path: str, limit: int = 28) -> str:
    text = shown(path)
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


class ImagePredictor:
    """The model side of ``ensemble-cnn serve``: one uploaded image in, the members' votes out.

    Parameters
    ----------
    ensemble : Ensemble
        Loaded once; every request uses it.
    vote : str
        The vote shown.

    Not thread-safe (Keras models): the server serialises calls.
    """

    def __init__(self, ensemble: Ensemble, *, vote: str = "majority") -> None:
        if vote not in VOTES:
            raise ValueError(f"vote must be one of {', '.join(VOTES)}, got {vote!r}")
        self.ensemble, self.vote = ensemble, vote

    def predict_image(self, data: bytes) -> dict[str, Any]:
        """Decode an image (PNG/JPEG bytes), preprocess it like MNIST, and let the members vote.

        Returns ``{"label", "confidence", "vote", "agreement": {"count", "of"}, "members": [{"name",
        "label", "probabilities"}], "probabilities", "input": 28x28 ints}``; raises ``ValueError``
        (one line) for bytes that are not a usable image.
        """
        from ensemble_cnn.inference.inputs import decode_image

        image = decode_image(data, name="upload")
        try:
            digit = preprocess_digits([image])
        except ValueError as exc:
            raise ValueError(f"upload: {str(exc).splitlines()[0].removeprefix('images[0]: ')}") from None
        probabilities = self.ensemble.member_probabilities(digit)  # (K, 1, 10)
        rule = VOTES[self.vote]
        label = int(rule.labels(probabilities)[0])
        shares = rule.shares(probabilities)[0]
        member_labels = probabilities[:, 0].argmax(axis=1)
        return {
            "label": label,
            "confidence": float(shares[label]),
            "vote": self.vote,
            "agreement": {"count": int(np.sum(member_labels == label)), "of": len(member_labels)},
            "members": [{"name": name, "label": int(member_label), "probabilities": [float(v) for v in p[0]]}
                        for name, member_label, p in zip(self.ensemble.names_, member_labels, probabilities)],
            "probabilities": [float(v) for v in shares],
            "input": digit[0].astype(int).tolist(),
        }

    def info(self) -> dict[str, Any]:
        """The run's members, architecture, vote, test-time views and its test accuracy (from its report, when
        there is one)."""
        config = self.ensemble.config
        accuracy = None
        run_dir = self.ensemble.run_dir
        if run_dir is not None and (run_dir / "report.json").is_file():
            try:
                report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
                accuracy = report["ensemble"][self.vote]["test_accuracy"]
            except (OSError, ValueError, KeyError, TypeError):
                accuracy = None
        return {"run": str(run_dir) if run_dir is not None else None, "members": list(self.ensemble.names_),
                "architecture": getattr(config, "arch", None), "vote": self.vote, "tta": self.ensemble.tta,
                "test_accuracy": accuracy}
