"""A trained ensemble in Python: load a run, predict digits, score, export one Keras model.

:class:`Ensemble` speaks scikit-learn's vocabulary (``predict``, ``predict_proba``,
``score``, ``classes_``, ``members_``) and takes MNIST-style digits: uint8 arrays of
shape (N, 28, 28), light ink on black, centred by mass (:func:`ensemble_cnn.inference.preprocess.preprocess_digits`
turns arbitrary images into such digits). ``evaluate`` and ``predict`` use it, so a
run is scored the same way everywhere.
"""
from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np
from numpy.typing import ArrayLike

from augment.views import TTA_VIEWS, view_stack
from ensemble_cnn.config import MAX_MEMBERS
from ensemble_cnn.data.mnist import N_CLASSES
from ensemble_cnn.errors import ExportError, MissingMembersError, RunFolderError, UnsafeMemberError, first_line
from ensemble_cnn.deprecation import renamed_keyword
from ensemble_cnn.inference.trust import PLAIN_OOD_SCORE
from ensemble_cnn.inference.uncertainty import DEFAULT_SCORE
from ensemble_cnn.inference.vote import get_vote
from ensemble_cnn.models import load_member
from ensemble_cnn.storage.outputs import shown
from ensemble_cnn.storage.run_folder import RunFolder, member_stem

__all__ = ["DigitViews", "Ensemble", "as_digits", "check_batch_size", "check_labels", "check_members",
           "check_normalizations", "check_tta", "digit_views", "left_out_message", "member_count", "refuse_normalized",
           "usable_records"]


def as_digits(x: ArrayLike) -> np.ndarray:
    """MNIST-style digits as the members take them: uint8 (N, 28, 28).

    Accepts (28, 28) or (N, 28, 28) (or a trailing channel of 1); uint8 as is, booleans
    as 0/255, integers in 0..255, floats in [0, 1] (scaled by 255) or in [0, 255].

    Raises
    ------
    ValueError
        One line: wrong shape, or values outside those ranges.
    """
    from ensemble_cnn.inference.arrays import as_uint8_levels

    array = np.asarray(x)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (28, 28):
        raise ValueError(f"digits must have shape (N, 28, 28) or (28, 28), got {np.asarray(x).shape}")
    if array.dtype == np.uint8:
        return array
    if array.size == 0:
        return array.astype(np.uint8)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ValueError(f"digits must be numeric, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise ValueError(f"digits must be real numbers, got dtype {array.dtype}")
    return as_uint8_levels(array, name="digits")


def check_labels(y: ArrayLike, n: int) -> np.ndarray:
    """Digit labels as :meth:`Ensemble.score` takes them: ``n`` integers from 0 to 9.

    Checked as scikit-learn checks a classifier's targets
    (:func:`sklearn.utils.multiclass.type_of_target` must find "binary" or "multiclass"
    labels, so fractions are refused as "continuous"), and further: numbers, not text or
    booleans (whole floats such as ``3.0`` are accepted), each a digit class 0..9.

    Parameters
    ----------
    y : array-like, shape (n,) or (n, 1)
    n : int
        How many digits the labels are for.

    Returns
    -------
    ndarray of int64, shape (n,)

    Raises
    ------
    ValueError
        One line: not one label per digit, not numbers, not finite, not whole, or outside 0..9.
    """
    from sklearn.utils.multiclass import type_of_target

    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"y must hold one label per digit, shape ({n},), got shape {labels.shape}")
    if len(labels) != n:
        raise ValueError(f"y must hold one label per digit ({n}), got {len(labels)}")
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise ValueError(f"y must hold integer digit labels 0-9, got dtype {labels.dtype}")
    if not np.isfinite(labels).all():
        raise ValueError("y must hold integer digit labels 0-9, got NaN or infinity")
    kind = type_of_target(labels, input_name="y")
    if kind not in ("binary", "multiclass"):
        fraction = labels[labels != np.round(labels)]
        example = f" (e.g. {fraction[0]:g})" if fraction.size else ""
        raise ValueError(f"y must hold integer digit labels 0-9, got {kind} values{example}")
    outside = labels[(labels < 0) | (labels >= N_CLASSES)]
    if outside.size:
        raise ValueError(f"y must hold digit labels 0-9, got {outside.size} outside them (e.g. {outside[0]:g})")
    return labels.astype(np.int64)


def check_tta(tta: str) -> str:
    """``tta`` if it names a view set of :data:`augment.TTA_VIEWS`, else a one-line ValueError."""
    if tta not in TTA_VIEWS:
        raise ValueError(f"tta must be one of {', '.join(TTA_VIEWS)}, got {tta!r}")
    return tta


def digit_views(digits: np.ndarray, tta: str) -> np.ndarray:
    """What the members see of uint8 ``digits`` (N, 28, 28) under ``tta``: (V, N, 28, 28); V = 1 for "none"."""
    return digits[None] if check_tta(tta) == "none" else view_stack(digits, tta)


class DigitViews:
    """What members see of some digits under one ``tta``: the views of the digits under each input
    normalization, each made once and shared by the members that use it.

    Normalization comes first, then the views (a normalization recentres the digit, so it
    would undo a shifted view).

    Parameters
    ----------
    digits : ndarray of uint8, shape (N, 28, 28)
    tta : str
        A view set of :data:`augment.TTA_VIEWS`.
    """

    def __init__(self, digits: np.ndarray | None, tta: str = "none") -> None:
        self.digits = digits
        self.tta = check_tta(tta)
        self._views: dict[str, np.ndarray] = {}

    @classmethod
    def ready(cls, views: np.ndarray) -> "DigitViews":
        """Views already made of digits taken as they are (normalization "none" only): uint8 (V, N, 28, 28)."""
        made = cls(None)
        made._views["none"] = views
        return made

    def get(self, normalize: str = "none") -> np.ndarray:
        """The views of the digits under ``normalize``: uint8 (V, N, 28, 28)."""
        if normalize not in self._views:
            if self.digits is None:
                raise ValueError(f"these views were made without normalization; a member with normalize "
                                 f"{normalize!r} needs the digits themselves (pass a DigitViews of them)")
            from augment import normalize as normalized

            digits = self.digits if normalize == "none" or len(self.digits) == 0 else normalized(self.digits, normalize)
            self._views[normalize] = digit_views(digits, self.tta)
        return self._views[normalize]


def check_normalizations(normalizations: Sequence[str], count: int) -> list[str]:
    """One input normalization per member, each a name in :data:`augment.NORMALIZATIONS`; else a one-line ValueError."""
    from augment import NORMALIZATIONS

    names = list(normalizations)
    if len(names) != count:
        raise ValueError(f"normalizations must name one normalization per member ({count}), got {len(names)}")
    for name in names:
        if name not in NORMALIZATIONS:
            raise ValueError(f"normalizations: {name!r} is not none, deskew or width-W for W in 8..20")
    return names


def refuse_normalized(names: Sequence[str], normalizations: Sequence[str], *, where: str = "") -> None:
    """Raise :class:`~ensemble_cnn.errors.ExportError` naming the members with an input normalization, if any.

    Deskewing and width normalization (per-digit moments, ink boxes, area resampling) have no
    standard Keras layer; a custom layer would make the exported file unloadable without this
    package, so such members are not exported.
    """
    normalized = [f"{name} ({normalize})" for name, normalize in zip(names, normalizations) if normalize != "none"]
    if normalized:
        raise ExportError(f"{where}cannot export members with an input normalization: {', '.join(normalized)} "
                          "(deskew and width-W have no standard Keras layer, and the exported file must load "
                          "without ensemble-cnn); export the members before them (members=K), or use predict/serve")


def check_batch_size(batch_size: int) -> int:
    """``batch_size`` if it is an integer >= 1, else a one-line ValueError naming it."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return int(batch_size)


def check_members(members: int) -> int:
    """``members`` if it is an integer from 1 to :data:`~ensemble_cnn.config.MAX_MEMBERS`, else a one-line
    ValueError naming it."""
    if isinstance(members, bool) or not isinstance(members, (int, np.integer)) or not 1 <= members <= MAX_MEMBERS:
        raise ValueError(f"members must be an integer from 1 to {MAX_MEMBERS} (None: every member of the run), "
                         f"got {members!r}")
    return int(members)


def member_count(members: int | None, config: Any, run_dir: str | Path) -> int:
    """How many members (indices ``0 .. count - 1``) to use: every member of the run (``None``) or the first ``members``.

    Raises
    ------
    ValueError
        ``members`` is not an integer >= 1.
    RunFolderError
        ``members`` is more than the run has (``config.members``).
    """
    if members is None:
        return int(config.members)
    check_members(members)
    if members > config.members:
        raise RunFolderError(f"{shown(run_dir)}: the run has {config.members} members, {members} asked "
                             f"(members must be at most {config.members})")
    return int(members)


def usable_records(folder: RunFolder, count: int) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """The records of the complete members among indices ``0 .. count - 1``, and why each other one is left out.

    Returns
    -------
    records : list of dict
        By index; their files match their sha256.
    left_out : dict of int to str
        Index -> one-line reason (a file missing or corrupt, never trained, ...).
    """
    records, left_out = [], {}
    for index, status in folder.scan(range(count)).items():
        if status.complete:
            records.append(status.record)
        else:
            left_out[index] = status.problem or "missing (not trained yet)"
    return records, left_out


def left_out_message(run_dir: str | Path, left_out: dict[int, str], asked: int) -> str:
    """One line naming every left-out member and why: ``RUN: 2 of 5 members left out: member_01 (reason); ...``."""
    listed = "; ".join(f"{member_stem(index)} ({reason})" for index, reason in sorted(left_out.items()))
    return f"{shown(run_dir)}: {len(left_out)} of {asked} members left out: {listed}"


class Ensemble:
    """The members of a run, ready to predict.

    Parameters
    ----------
    members : sequence of keras.Model
        Models taking uint8 (N, 28, 28) and giving probabilities (N, 10).
    names : sequence of str
        One per member.
    voting : str, default "majority"
        The rule :meth:`predict` uses (a name in :data:`ensemble_cnn.inference.vote.VOTES`).
    tta : str, default "none"
        Test-time augmentation: a view set of :data:`augment.TTA_VIEWS` ("shift",
        "rotate", "shift-rotate"); each member's probabilities are averaged over the
        views of each digit (V views cost V predictions). "none": the digit alone.
    run_dir : Path, optional
        Where the members came from.
    config : TrainConfig, optional
        The run's config.
    normalizations : sequence of str, optional
        Each member's input normalization (a name in :data:`augment.NORMALIZATIONS`),
        applied to every digit before that member sees it; default "none" for every member.
        :meth:`load` reads them from the run (each member's plan group).

    Attributes
    ----------
    members_ : list of keras.Model
    names_ : list of str
    classes_ : ndarray of int, shape (10,)
    left_out_ : dict of int to str
        Members of the run that were asked for but left out (index -> one-line reason:
        missing or unusable); empty when every member asked for is here.
    members_asked_ : int
        How many members were asked for (``len(members_) + len(left_out_)``).
    normalizations_ : list of str
        Each member's input normalization.
    calibration_ : CalibrationSet or None
        The run's calibration digits (labels and these members' probabilities on them,
        :mod:`ensemble_cnn.storage.calibration`) that :meth:`thresholds` and :meth:`judge` use;
        ``None`` without them, and then ``calibration_note_`` says why in one line.
    """

    def __init__(self, members: Sequence[Any], names: Sequence[str], *, voting: str = "majority",
                 tta: str = "none", run_dir: Path | None = None, config: Any = None,
                 normalizations: Sequence[str] | None = None) -> None:
        get_vote(voting)
        check_tta(tta)
        if not members or len(members) != len(names):
            raise ValueError("an ensemble needs at least one member and one name per member")
        self.normalizations_ = check_normalizations(
            ["none"] * len(members) if normalizations is None else normalizations, len(members))
        self.members_ = list(members)
        self.names_ = list(names)
        self.voting = voting
        self.tta = tta
        self.run_dir = run_dir
        self.config = config
        self.classes_ = np.arange(N_CLASSES)
        self.left_out_: dict[int, str] = {}
        self.members_asked_ = len(self.members_)
        self.calibration_: Any = None
        self.calibration_note_ = "no calibration digits (an ensemble of models, not loaded from a run folder)"
        self._gaussians: list[Any] | None = None  # the members' Gaussians, read (and hash-checked) once

    def __repr__(self) -> str:
        tta = "" if self.tta == "none" else f", tta={self.tta!r}"
        missing = f", {len(self.left_out_)} left out" if self.left_out_ else ""
        return f"Ensemble({len(self.members_)} members from {self.run_dir}{missing}, voting={self.voting!r}{tta})"

    def __len__(self) -> int:
        return len(self.members_)

    @classmethod
    def load(cls, run_dir: str | Path, *, members: int | None = None, voting: str = "majority",
             tta: str = "none", allow_missing: bool = False) -> "Ensemble":
        """Load a run's members (the first ``members``, default every one) with Keras ``safe_mode``.

        A member that is missing (never trained), corrupt (files not matching its
        record) or not loadable is *left out* and named, with its reason, in
        :attr:`left_out_`. Without ``allow_missing`` that is an error.

        Parameters
        ----------
        run_dir : path-like
            A run folder written by ``ensemble-cnn train``.
        members : int, optional
            Use the first ``members`` members (at most the run's count); default every one.
        voting, tta : str
            See :class:`Ensemble`.
        allow_missing : bool, default False
            Accept an ensemble of the usable members when some are left out.

        Raises
        ------
        TypeError
            ``run_dir`` is not a path (``None``, a number, ...).
        ValueError
            ``members`` is not an integer >= 1.
        MissingMembersError
            Members were left out and ``allow_missing`` is False (one line naming each).
        RunFolderError
            Not a run folder, more members asked than the run has, no usable member,
            or a member carrying Python code (one line naming it).
        """
        get_vote(voting)
        check_tta(tta)
        if not isinstance(run_dir, (str, os.PathLike)):
            raise TypeError(f"run_dir must be the path of a run folder (str or path-like), "
                            f"got {type(run_dir).__name__}")
        if members is not None:
            check_members(members)  # before reading the folder
        folder = RunFolder(run_dir)
        config = folder.require_config()
        count = member_count(members, config, folder.path)
        records, left_out = usable_records(folder, count)
        if not records:
            raise RunFolderError(f"{folder.path}: no trained member found (run ensemble-cnn train first)")
        models, names, normalizations = [], [], []
        for record in records:
            try:
                models.append(load_member(folder.resolve(record["model"])))
            except UnsafeMemberError:
                raise
            except RunFolderError as exc:
                left_out[record["index"]] = str(exc).strip().splitlines()[0]
                continue
            names.append(member_stem(record["index"]))
            normalizations.append(config.member_config(record["index"]).normalize)
        left_out = dict(sorted(left_out.items()))
        if not models:
            raise RunFolderError(f"no usable member: {left_out_message(folder.path, left_out, count)}")
        if left_out and not allow_missing:
            raise MissingMembersError(left_out_message(folder.path, left_out, count)
                                      + " (allow_missing=True to use the others)", left_out=left_out, asked=count)
        ensemble = cls(models, names, voting=voting, tta=tta, run_dir=folder.path, config=config,
                       normalizations=normalizations)
        ensemble.left_out_ = left_out
        ensemble.members_asked_ = count
        ensemble._attach_calibration(folder, [r for r in records if r["index"] not in left_out], config)
        return ensemble

    @classmethod
    def from_records(cls, folder: RunFolder, records: Sequence[dict[str, Any]], *, voting: str = "majority",
                     tta: str = "none", config: Any = None) -> "Ensemble":
        """The members named by ``records`` (already checked against their sha256); ``config``: the run's
        (default: the folder's), which gives each member's input normalization."""
        config = config if config is not None else folder.require_config()
        models = [load_member(folder.resolve(record["model"])) for record in records]
        ensemble = cls(models, [member_stem(r["index"]) for r in records], voting=voting, tta=tta,
                       run_dir=folder.path, config=config,
                       normalizations=[config.member_config(r["index"]).normalize for r in records])
        ensemble._attach_calibration(folder, records, config)
        return ensemble

    def _attach_calibration(self, folder: RunFolder, records: Sequence[dict[str, Any]], config: Any) -> None:
        """Read the run's calibration digits for these members into :attr:`calibration_`, or say why not.

        A run without them (``--holdout member``) or with a calibration file that fails its check
        still predicts: :attr:`calibration_` stays ``None`` and :attr:`calibration_note_` says why
        in one line (:meth:`thresholds` raises it).
        """
        from ensemble_cnn.storage.calibration import read_calibration

        if getattr(config, "holdout", "member") != "shared":
            self.calibration_note_ = (f"{shown(folder.path)}: no calibration digits (trained with --holdout member); "
                                      "train with --holdout shared (the default since it exists) for unsure and "
                                      "not-a-digit flags")
            return
        try:
            calibration = read_calibration(folder, records, config=config)
        except RunFolderError as exc:
            self.calibration_note_ = f"no calibration digits: {first_line(exc)}"
            return
        if calibration is None or len(calibration.labels) == 0:
            self.calibration_note_ = f"{shown(folder.path)}: no calibration digits"
            return
        self.calibration_, self.calibration_note_ = calibration, None

    # ------------------------------------------------------------------ predictions
    def member_probabilities(self, x: ArrayLike, *, batch_size: int = 1000) -> np.ndarray:
        """Every member's class probabilities, shape (K, N, 10), float32.

        Each member sees the digits under its own input normalization (:attr:`normalizations_`);
        with :attr:`tta` set, its probabilities are its mean over the views of each normalized
        digit (the views are computed once per normalization and shared by the members).
        """
        check_batch_size(batch_size)
        return self.view_probabilities(DigitViews(as_digits(x), self.tta), batch_size=batch_size)

    def view_probabilities(self, views: "DigitViews | np.ndarray", *, batch_size: int = 1000) -> np.ndarray:
        """Every member's probabilities averaged over ready-made views, shape (K, N, 10), float32.

        ``views``: a :class:`DigitViews` of some digits made once for several ensembles (each
        member takes the views under its normalization), or uint8 (V, N, 28, 28) views when
        every member's normalization is "none" (V = 1: the digits themselves).
        """
        check_batch_size(batch_size)
        if not isinstance(views, DigitViews):
            views = DigitViews.ready(np.asarray(views))
        out = []
        for name, model, normalize in zip(self.names_, self.members_, self.normalizations_):
            seen = views.get(normalize)
            n_views, n = seen.shape[:2]
            if n == 0:
                return np.zeros((len(self.members_), 0, N_CLASSES), dtype=np.float32)
            flat = seen.reshape(n_views * n, *seen.shape[2:])
            try:
                # predict_on_batch reuses one compiled step per batch shape: a single digit takes milliseconds
                # where model.predict (a data pipeline and callbacks per call) takes a fifth of a second.
                chunks = [model.predict_on_batch(flat[start:start + batch_size])
                          for start in range(0, len(flat), batch_size)]
                probabilities = np.concatenate([np.asarray(c, dtype=np.float32) for c in chunks])
            except Exception as exc:  # noqa: BLE001 - a member of another shape must not end in a traceback
                text = first_line(exc)
                raise RunFolderError(f"{name}: cannot predict MNIST digits ({text})") from None
            out.append(probabilities.reshape(n_views, n, -1).mean(axis=0, dtype=np.float32))
        return np.stack(out)

    @renamed_keyword("rule", "voting")
    def vote(self, x: ArrayLike, *, voting: str | None = None) -> np.ndarray:
        """Labels (N,) by the vote ``voting`` (default: :attr:`voting`).

        ``voting`` was called ``rule``; that name still works, with a deprecation warning.
        """
        return get_vote(voting or self.voting).labels(self.member_probabilities(x))

    def predict(self, x: ArrayLike) -> np.ndarray:
        """Labels (N,) by :attr:`voting`: ``predict_proba(x).argmax(axis=1)``, for every vote."""
        return self.vote(x)

    def predict_proba(self, x: ArrayLike) -> np.ndarray:
        """The vote's probabilities, shape (N, 10), rows summing to 1; their argmax is :meth:`predict`.

        Soft vote: the members' mean. Majority vote: each class's share of the votes with
        the tie rule folded in (:func:`ensemble_cnn.inference.vote.majority_shares`), the
        exported model's ``vote`` output.
        """
        return get_vote(self.voting).shares(self.member_probabilities(x))

    def uncertainty(self, x: ArrayLike, *, score: str = "max_probability") -> np.ndarray:
        """How unsure the committee is about each digit, shape (N,), float64: higher means less trustworthy.

        ``score``: a name in :data:`ensemble_cnn.inference.uncertainty.SCORES` (checked before any
        member runs), applied to :meth:`member_probabilities`; whatever :attr:`voting` is.
        """
        from ensemble_cnn.inference.uncertainty import get_score

        return get_score(score).function(self.member_probabilities(x))

    def thresholds(self, *, coverage: float | None = None, level: float | None = None, score: str | None = None,
                   ood_score: str | None = None, digit_pass: float | None = None):
        """The "unsure", label-set and "not a digit" thresholds, fixed on the run's calibration digits.

        Every option defaults to :mod:`ensemble_cnn.inference.trust`'s (``coverage`` 0.99,
        ``level`` 0.999, ``score`` "max_probability", ``digit_pass`` 0.995, ``ood_score``
        :data:`~ensemble_cnn.inference.trust.DEFAULT_OOD_SCORE` ("energy+ink_area");
        :data:`~ensemble_cnn.inference.trust.PLAIN_OOD_SCORE` ("energy") for a run whose calibration
        digits have no ink areas, :data:`~ensemble_cnn.inference.trust.FALLBACK_OOD_SCORE`
        ("entropy") for one whose members kept no scores past the softmax on them: runs trained
        before these).

        Returns
        -------
        ensemble_cnn.inference.trust.Thresholds

        Raises
        ------
        RunFolderError
            The ensemble has no calibration digits (:attr:`calibration_note_` says why), or
            ``ood_score`` is a score past the softmax its members kept no calibration scores of.
        ValueError
            Test-time views are set (the calibration digits were seen without them), or an
            option is out of range.
        """
        from ensemble_cnn.inference import trust

        options = {"coverage": coverage, "level": level, "score": score, "ood_score": ood_score,
                   "digit_pass": digit_pass}
        options = {name: value for name, value in options.items() if value is not None}
        if self.calibration_ is None:
            raise RunFolderError(self.calibration_note_)
        self._refuse_views()
        kept = {name: np.asarray(values, dtype=np.float64).mean(axis=0)
                for name, values in (self.calibration_.feature_scores or {}).items()}
        if self.calibration_.ink_area is not None:
            kept["ink_area"] = np.asarray(self.calibration_.ink_area, dtype=np.float64)

        def needs(candidate: str) -> list[str]:
            return [part for part in trust.ood_components(candidate) if part not in trust.SCORE_NAMES]

        name = options.pop("ood_score", None) or next(
            candidate for candidate in (trust.DEFAULT_OOD_SCORE, trust.PLAIN_OOD_SCORE, trust.FALLBACK_OOD_SCORE)
            if all(part in kept for part in needs(candidate)))
        trust.check_ood_score(name)
        missing = [part for part in needs(name) if part not in kept]
        if missing:
            raise RunFolderError(f"{shown(self.run_dir)}: no {' or '.join(missing)} values on its calibration digits "
                                 "(trained before them); use a softmax ood_score such as "
                                 f"{trust.FALLBACK_OOD_SCORE!r}, or train again")
        return trust.fit_thresholds(self.calibration_.probabilities, self.calibration_.labels, voting=self.voting,
                                    ood_score=name, ood_calibration={part: kept[part] for part in needs(name)},
                                    **options)

    def _refuse_views(self) -> None:
        """A one-line ValueError when test-time views are set: the thresholds hold for the plain digits only."""
        if self.tta != "none":
            raise ValueError(f"the thresholds were fixed on digits seen without test-time views; load the ensemble "
                             f"with tta='none' (not {self.tta!r}) to judge its answers")

    def judge(self, x: ArrayLike, *, thresholds: Any = None, voting: str | None = None, **options: Any):
        """Each digit's label, conformal label set and "unsure" / "not a digit" flags.

        Parameters
        ----------
        x : array-like of shape (N, 28, 28)
            Digits, as :meth:`predict` takes them.
        thresholds : Thresholds, optional
            Default: :meth:`thresholds` with ``options`` (``coverage``, ``level``, ``score``,
            ``ood_score``, ``digit_pass``).
        voting : str, optional
            The vote that labels the digits; default :attr:`voting`.

        Returns
        -------
        ensemble_cnn.inference.trust.Verdicts
            ``labels`` equal :meth:`predict`'s; ``sets`` (N, 10) bool, ``unsure``, ``not_a_digit``,
            ``answered`` (N,) bool, ``summary()``.
        """
        from ensemble_cnn.inference.features import ink_area
        from ensemble_cnn.inference.trust import FEATURE_SCORE_COLUMNS, judge, ood_components

        thresholds = thresholds if thresholds is not None else self.thresholds(**options)
        voting = voting or self.voting
        get_vote(voting)
        parts = ood_components(thresholds.ood_score)
        past_softmax = [part for part in parts if part in FEATURE_SCORE_COLUMNS]
        given: dict[str, np.ndarray] = {}
        if "ink_area" in parts:
            self._refuse_views()
            given["ink_area"] = ink_area(as_digits(x))
        if not past_softmax:
            return judge(self.member_probabilities(x), thresholds, voting=voting, ood_scores=given)
        self._refuse_views()
        # one pass of each member gives its probabilities and its logits (energy) or features (Mahalanobis)
        probabilities, scores = self.feature_pass(x, fitted=past_softmax != ["energy"])
        absent = [part for part in past_softmax if part not in scores]
        if absent:
            raise RunFolderError(f"{shown(self.run_dir)}: not every member has its Gaussian, so no "
                                 f"{' or '.join(absent)} score")
        given.update({part: scores[part] for part in past_softmax})
        return judge(probabilities, thresholds, voting=voting, ood_scores=given)

    def feature_pass(self, x: ArrayLike, *, batch_size: int = 1000, records: Sequence[dict[str, Any]] | None = None,
                     fitted: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The members' probabilities and the committee's scores past the softmax, in one pass of each member.

        Each member sees the digits under its own input normalization, without test-time views.
        ``"energy"`` (``-logsumexp`` of the logits) is given for every run; ``"mahalanobis"`` and
        ``"relative_mahalanobis"`` only when every member has its Gaussian
        (:mod:`ensemble_cnn.inference.features`). Each committee score is the members' mean.

        Parameters
        ----------
        x : array-like of shape (N, 28, 28)
        batch_size : int, default 1000
        records : sequence of dict, optional
            The members' records, in the order of :attr:`names_`; default: read from the folder.
        fitted : bool, default True
            Read the members' Gaussians (once per ensemble: later calls reuse them); ``False``: ``energy``
            alone, no file read.

        Returns
        -------
        probabilities : ndarray of float32, shape (K, N, 10)
            The members' own outputs (:meth:`member_probabilities` without views).
        scores : dict of str to ndarray of float64, shape (N,)

        Raises
        ------
        RunFolderError
            A member's Gaussian is unusable (one line naming its file).
        """
        from ensemble_cnn.inference.features import FEATURE_SCORES, ensemble_gaussians, member_pass, scores_of

        check_batch_size(batch_size)
        views = DigitViews(as_digits(x))
        if fitted and self._gaussians is None:
            self._gaussians = ensemble_gaussians(self, records)
        gaussians = self._gaussians if fitted else [None] * len(self.members_)
        per_member: dict[str, list[np.ndarray]] = {}
        probabilities = []
        for member, normalize, gaussian in zip(self.members_, self.normalizations_, gaussians):
            member_probabilities, features, logits = member_pass(member, views.get(normalize)[0],
                                                                 batch_size=batch_size, features=fitted)
            probabilities.append(member_probabilities)
            for name, values in scores_of(features, logits, gaussian).items():
                per_member.setdefault(name, []).append(values)
        complete = {name: values for name, values in per_member.items() if len(values) == len(self.members_)}
        return (np.stack(probabilities),
                {name: np.mean(complete[name], axis=0) for name in FEATURE_SCORES if name in complete})

    def score(self, x: ArrayLike, y: ArrayLike) -> float:
        """Accuracy of :meth:`predict` on digits ``x`` with labels ``y``.

        Raises
        ------
        ValueError
            ``x`` holds no digit (the accuracy of nothing is undefined), or ``y`` is not
            one digit label 0-9 per digit (:func:`check_labels`: fractions, text, labels
            such as 10 are refused, not scored as wrong).
        """
        digits = as_digits(x)
        if len(digits) == 0:
            raise ValueError("x holds no digits; score needs at least one digit and its label")
        labels = check_labels(y, len(digits))  # before predicting
        return float(np.mean(self.predict(digits) == labels))

    # ------------------------------------------------------------------ export
    def to_keras(self, *, voting: str | None = None, ood_score: str = PLAIN_OOD_SCORE,
                 ood_components: Mapping[str, Mapping[str, float]] | None = None):
        """One Keras model holding every member and the vote, with no custom objects and no Lambda layers.

        Input: uint8 (N, 28, 28). Outputs: ``vote`` (N, 10), the vote's probabilities,
        ``members`` (N, K, 10), the members' stacked probabilities, and two scores (N,) of
        :mod:`ensemble_cnn.inference.uncertainty` (higher: less trustworthy), so that a file user
        applies the thresholds of :meth:`thresholds` (written beside the model by ``export``)
        without this package: ``unsure_score``, the default "unsure" score (``max_probability``:
        one minus the members' largest mean probability), and ``not_a_digit_score``, the "not a
        digit" score ``ood_score`` (default ``energy``: the members' mean of ``-logsumexp(logits)``;
        ``entropy``, ``max_probability`` and ``ink_area``, the share of the digit's pixels above 0,
        too), or a combined score of these (``"energy+ink_area"``, the default of
        :meth:`thresholds`) with its ``ood_components`` (:attr:`Thresholds.ood_components
        <ensemble_cnn.inference.trust.Thresholds.ood_components>`): the largest
        ``(score - above) / scale`` over its scores. For the soft vote,
        ``vote`` is the members' mean; for the majority vote it is each class's share of
        the votes with the summed probability folded in to break ties,
        ``(votes_c + sum_k p_kc / (K + 1)) / (K + K / (K + 1))``, so its argmax is the
        majority label with this package's tie rule (most votes, then the larger summed
        probability, then the lower label). Test-time augmentation is not exported: an
        ensemble with :attr:`tta` set is refused, since the model would answer differently.
        Nor is an input normalization other than "none": deskewing and width normalization
        (per-digit moments, bounding boxes and area resampling) have no standard Keras layer,
        and a custom layer would make the file unloadable without this package, so an
        ensemble with such a member is refused, naming the members.
        """
        import keras

        from ensemble_cnn.inference.features import logits_tensor

        if self.tta != "none":
            raise ValueError(f"to_keras exports the members without test-time augmentation (tta={self.tta!r}); "
                             "load the ensemble with tta='none'")
        refuse_normalized(self.names_, self.normalizations_)

        from ensemble_cnn.models import INPUT_SHAPE

        voting = voting or self.voting
        get_vote(voting)
        ops, layers = keras.ops, keras.layers
        digits = keras.Input(shape=INPUT_SHAPE, dtype="uint8", name="digits")
        parts = ood_score.split("+") if isinstance(ood_score, str) else [ood_score]
        if any(part not in _KERAS_SCORES for part in parts):
            raise ValueError(f"ood_score must be one of {', '.join(_KERAS_SCORES)}, or several joined with +, "
                             f"to be exported, got {ood_score!r}")
        if len(parts) > 1 and (ood_components is None or set(ood_components) != set(parts)):
            raise ValueError(f"a combined ood_score ({ood_score}) is exported with its ood_components, one per score")
        outputs, energies = [], []
        for name, member in zip(self.names_, self.members_):
            # unique names inside the ensemble; the member's logits come along for the energy score
            logits = logits_tensor(member, name=f"{name}_logits")
            renamed = keras.Model(member.inputs[0], [member.outputs[0], logits], name=name)
            probabilities, logits = renamed(digits)
            outputs.append(layers.Identity(dtype="float32", name=f"{name}_probabilities")(probabilities))
            energies.append(-ops.logsumexp(ops.cast(logits, "float32"), axis=-1))
        k = len(outputs)
        stack = ops.stack(outputs, axis=1) if k > 1 else ops.expand_dims(outputs[0], 1)
        if voting == "soft":
            vote = ops.mean(stack, axis=1)
        else:
            counts = ops.sum(ops.one_hot(ops.argmax(stack, axis=-1), N_CLASSES), axis=1)
            vote = (counts + ops.sum(stack, axis=1) / (k + 1.0)) / (k + k / (k + 1.0))
        mean = ops.mean(stack, axis=1)
        energy = ops.mean(ops.stack(energies, axis=1), axis=1) if k > 1 else energies[0]
        ink = ops.mean(ops.cast(ops.greater(layers.Flatten()(digits), 0), "float32"), axis=-1)
        if len(parts) == 1:
            not_a_digit = _keras_score(ood_score, mean, energy, ink, ops)
        else:
            margins = [(_keras_score(part, mean, energy, ink, ops) - float(ood_components[part]["above"]))
                       / float(ood_components[part]["scale"]) for part in parts]
            not_a_digit = ops.max(ops.stack(margins, axis=1), axis=1)
        scores = {"unsure_score": _keras_score(DEFAULT_SCORE, mean, energy, ink, ops),
                  "not_a_digit_score": not_a_digit}
        return keras.Model(
            digits,
            {"vote": layers.Identity(name="vote")(vote), "members": layers.Identity(name="members")(stack),
             **{name: layers.Identity(name=name)(score) for name, score in scores.items()}},
            name=f"ensemble_{voting}",
        )


_KERAS_SCORES = ("max_probability", "entropy", "energy", "ink_area")
"""The scores :meth:`Ensemble.to_keras` can give as an output."""


def _keras_score(name: str, mean: Any, energy: Any, ink: Any, ops: Any) -> Any:
    """The score ``name`` in Keras ops, from the members' mean probabilities (N, 10), their mean energy (N,)
    or the digits' ink area (N,)."""
    if name == "max_probability":
        return 1.0 - ops.max(mean, axis=-1)
    if name == "entropy":
        positive = ops.greater(mean, 0.0)
        return -ops.sum(ops.where(positive, mean * ops.log(ops.where(positive, mean, 1.0)), 0.0), axis=-1)
    if name == "energy":
        return energy
    if name == "ink_area":
        return ink
    raise ValueError(f"no Keras form of the score {name!r} (exported: {', '.join(_KERAS_SCORES)})")
