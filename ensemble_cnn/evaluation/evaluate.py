"""Evaluating a run: members' test predictions, the votes, the uncertainty scores, the report and its pictures."""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np

from augment.views import TTA_VIEWS
from ensemble_cnn.config import TrainConfig
from ensemble_cnn.data.mnist import MnistData, load_mnist
from ensemble_cnn.data.reader import RUN_FILES, read_npy_file
from ensemble_cnn.deprecation import renamed_keyword
from ensemble_cnn.inference.ensemble import (
    DigitViews, Ensemble, check_members, check_tta, member_count, usable_records,
)
from ensemble_cnn.errors import RunFolderError, UnsafeMemberError
from ensemble_cnn.models import load_member  # noqa: F401 (load_member: API)
from ensemble_cnn.storage.calibration import read_calibration
from ensemble_cnn.storage.outputs import check_output_files
from ensemble_cnn.storage.run_folder import RunFolder, member_stem
from ensemble_cnn.inference.features import ensemble_feature_scores, ink_area
from ensemble_cnn.inference.trust import combined_score
from ensemble_cnn.inference.paths import load_image_set
from ensemble_cnn.inference.uncertainty import SCORES, uncertainty
from ensemble_cnn.inference.vote import VoteRule, get_vote, soft_shares

__all__ = ["calibrated_uncertainty", "evaluate_run", "load_member", "member_probabilities", "test_split"]


def test_split(config: TrainConfig, data: str | Path | None) -> MnistData:
    """The test split: from ``data`` if given, else from the run's own data source."""
    if data is not None:
        return load_mnist(data)
    return load_mnist(config.expanded if config.expanded else config.data)


def member_probabilities(
    folder: RunFolder, records: list[dict[str, Any]], test: MnistData, *, reload: bool, tta: str = "none"
) -> np.ndarray:
    """Test-set probabilities of every member, shape (K, N, 10).

    ``reload=True`` loads each ``.keras`` file (Keras ``safe_mode``) and predicts
    (averaged over the ``tta`` views of each digit); ``False`` reads the probabilities
    saved at training time (their sha256 is checked by the record).
    """
    views = DigitViews(test.x_test, tta) if reload else None  # made once per normalization, shared
    return np.stack([member_test_probabilities(folder, record, test, reload=reload, tta=tta, views=views)
                     for record in records])


def member_test_probabilities(
    folder: RunFolder, record: dict[str, Any], test: MnistData, *, reload: bool, tta: str = "none",
    views: DigitViews | None = None,
) -> np.ndarray:
    """One member's test-set probabilities, shape (N, 10).

    The member sees the test digits under its own input normalization (its plan group's).
    ``views``: a :class:`~ensemble_cnn.inference.ensemble.DigitViews` of ``test.x_test`` under
    ``tta``, when the caller made it once for several members (default: made here).

    Raises
    ------
    ValueError
        ``tta`` other than "none" without ``reload`` (saved probabilities have no views).
    UnsafeMemberError
        The member file carries Python code (refused, whatever else).
    RunFolderError
        The member cannot give probabilities, or gives non-finite ones (it diverged).
    """
    expected = (len(test.x_test), 10)
    if tta != "none" and not reload:
        raise ValueError(f"test-time augmentation (tta={tta!r}) needs the models: the saved probabilities "
                         "are of the plain digits")
    if reload:
        path = folder.resolve(record["model"])
        member = Ensemble.from_records(folder, [record], tta=tta)
        try:
            probabilities = member.view_probabilities(DigitViews(test.x_test, tta) if views is None else views)[0]
        except RunFolderError as exc:
            raise RunFolderError(f"{path}: {str(exc).split(': ', 1)[-1]}") from None
    else:
        path = folder.resolve(record["probabilities"])
        # the one guarded open: a FIFO or device refused; the header checked against the file's size before allocation
        probabilities = read_npy_file(path, what="member probabilities", voice=RUN_FILES)
    if probabilities.shape != expected:
        raise RunFolderError(
            f"{path}: gives probabilities of shape {probabilities.shape}, expected {expected}"
            + ("" if reload else "; re-evaluate with the models")
        )
    if not np.isfinite(probabilities).all():
        raise RunFolderError(f"{path}: gives non-finite probabilities (the member diverged)")
    return probabilities


def calibrated_uncertainty(
    folder: RunFolder, records: list[dict[str, Any]], config: TrainConfig, *, rule: VoteRule, tta: str,
    probabilities: np.ndarray, y_test: np.ndarray, scores: dict[str, np.ndarray],
) -> dict[str, Any]:
    """The uncertainty section's calibrated part: thresholds and conformal sets fixed on the run's calibration digits.

    Parameters
    ----------
    folder : RunFolder
    records : list of dict
        The members evaluated, in the order of ``probabilities``.
    config : TrainConfig
        The run's config.
    rule : VoteRule
        The vote whose answers are judged.
    tta : str
        The test digits' views: the calibration probabilities are of the plain digits only.
    probabilities : ndarray of shape (K, N, 10)
        The members' test probabilities.
    y_test : ndarray of shape (N,)
    scores : dict of str to ndarray of shape (N,)
        Every score of :data:`~ensemble_cnn.inference.uncertainty.SCORES` on the test digits.

    Returns
    -------
    dict
        :func:`~ensemble_cnn.evaluation.report.calibrated_section`, or ``{"note": ...}`` saying in
        one line why there is none (no calibration digits, a member without its calibration
        probabilities, test-time views, an unreadable calibration file).
    """
    from ensemble_cnn.evaluation.report import NO_CALIBRATION_NOTE, calibrated_section

    if config.holdout != "shared":
        return {"note": NO_CALIBRATION_NOTE}
    lacking = [member_stem(record["index"]) for record in records if not record.get("calibration")]
    if lacking:
        return {"note": f"{', '.join(lacking)} evaluated without calibration probabilities: no calibrated "
                        "thresholds (they must come from the very members evaluated)"}
    if tta != "none":
        return {"note": f"the calibration probabilities are of the plain digits, not of the {tta!r} views: "
                        "no calibrated thresholds with --tta"}
    try:
        calibration = read_calibration(folder, records, config=config)
    except RunFolderError as exc:
        return {"note": f"no calibrated thresholds: {exc}"}
    if calibration is None or len(calibration.labels) == 0:
        return {"note": NO_CALIBRATION_NOTE}
    fixed = calibration.probabilities
    return calibrated_section(
        {name: uncertainty(fixed, score=name) for name in scores}, rule.labels(fixed) == calibration.labels,
        scores, rule.labels(probabilities) == y_test,
        calibration_mean=soft_shares(fixed), calibration_labels=calibration.labels,
        test_mean=soft_shares(probabilities), test_labels=y_test)


def _with_input_scores(scores: dict[str, np.ndarray], images: np.ndarray, thresholds: Any) -> dict[str, np.ndarray]:
    """``scores`` with the images' ``ink_area`` and, for thresholds with a combined score, that score's values."""
    scores = {**scores, "ink_area": ink_area(images)}
    if thresholds is not None and thresholds.ood_components:
        scores[thresholds.ood_score] = combined_score(scores, thresholds.ood_components)
    return scores


def _default_thresholds(committee: Ensemble) -> Any:
    """The committee's default thresholds (``predict``'s), or ``None`` without calibration digits or with views."""
    try:
        return committee.thresholds()
    except (RunFolderError, ValueError):
        return None


@renamed_keyword("method", "voting")
def evaluate_run(
    run_dir: str | Path,
    *,
    data: str | Path | None = None,
    voting: str = "majority",
    members: int | None = None,
    reload: bool = True,
    tta: str = "none",
    plots: bool = True,
    ood: Sequence[str | os.PathLike] = (),
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Score every usable member and the ensemble on the test set; write the report.

    Members that are missing (never trained, or still training), corrupt (files not
    matching their record) or unusable (not loadable, non-finite predictions) are
    left out, listed in ``report["dropped_members"]``, in ``report.md`` and on the
    terminal; the others are scored. A member carrying Python code, or a record
    naming a file outside the folder, stops the evaluation (:class:`RunFolderError`). The
    report's paths in the folder are checked before anything is scored (a read-only folder,
    a folder or FIFO in a report file's place: :class:`~ensemble_cnn.errors.OutputPathError`).

    Parameters
    ----------
    run_dir : path-like
        A run folder written by :func:`ensemble_cnn.training.train.train_ensemble`.
    data : path-like, optional
        MNIST to take the test split from; default: the run's own source.
    voting : str, default "majority"
        The vote (a name in :data:`ensemble_cnn.inference.vote.VOTES`) whose predictions the
        confusion matrix and error grid show (every vote is scored); ``report["vote_shown"]``.
        Formerly ``method``, still accepted with a deprecation warning.
    members : int, optional
        Score only the first ``members`` members, 1 .. the run's member count (itself at most
        :data:`~ensemble_cnn.config.MAX_MEMBERS`); default: every member the folder holds.
    reload : bool, default True
        Load the saved ``.keras`` members and predict (``False``: use the
        probabilities saved at training time).
    tta : str, default "none"
        Test-time augmentation: average each member's probabilities over the views
        of each digit (a name in :data:`augment.TTA_VIEWS`; needs ``reload``). The
        seconds taken to load the members and predict (views included) are in
        ``report["tta"]["predict_seconds"]``.
    plots : bool, default True
        Also write the pictures (:data:`~ensemble_cnn.evaluation.plots.REPORT_PLOTS`: ``accuracy.png``,
        ``confusion.png``, ``errors.png``, ..., ``risk_coverage.png``).
    ood : sequence of path-like, default ()
        Image sets that are not digits ("not a digit", e.g. Fashion-MNIST's folder), each read by
        :func:`ensemble_cnn.inference.paths.load_image_set` (an MNIST-layout folder gives its test
        images) before any member runs, predicted by the members (their own normalization,
        ``tta`` as the test digits; with ``reload=False`` the members are loaded for them) and
        scored against the test digits by every uncertainty score and by the scores past the softmax
        (:func:`ensemble_cnn.inference.features.ensemble_feature_scores`: ``energy`` always, ``mahalanobis``
        when every member has its Gaussian; on the digits themselves, without ``tta``): ``report["not_a_digit"]``.
        Inputs: no report file may be, or lie inside, one.
    log : callable, optional
        Receives the notes on left-out members and the printed table.

    Returns
    -------
    dict
        The report (also written as ``report.json`` and ``report.md``). ``report["uncertainty"]``:
        every score of :data:`~ensemble_cnn.inference.uncertainty.SCORES` judged on the answers of the
        vote ``voting`` (:func:`~ensemble_cnn.evaluation.report.uncertainty_section`), with its
        ``seconds`` and its ``calibrated`` part (:func:`calibrated_uncertainty`: thresholds and conformal
        sets fixed on the run's calibration digits, or a one-line note); ``report["not_a_digit"]`` with ``ood``.
    """
    from ensemble_cnn.evaluation.plots import REPORT_PLOTS, write_plots
    from ensemble_cnn.evaluation.render import REPORT_JSON, REPORT_MARKDOWN, format_table, write_report
    from ensemble_cnn.evaluation.report import OOD_ANCHORS, build_report, group_summaries, ood_section, \
        uncertainty_section

    rule = get_vote(voting)
    if members is not None:
        check_members(members)
    check_tta(tta)
    if tta != "none" and not reload:
        raise ValueError(f"test-time augmentation (tta={tta!r}) needs reload=True")
    say = log or (lambda line: None)
    folder = RunFolder(run_dir)
    started = time.perf_counter()
    config = folder.require_config()
    # the report's paths are checked before anything is scored (OutputPathError: the command line's exit 2)
    reported = [REPORT_JSON, REPORT_MARKDOWN, *(f"{name}.png" for name in (REPORT_PLOTS if plots else ()))]
    source = data if data is not None else (config.expanded or config.data)
    ood = [Path(path) for path in ood]
    check_output_files([("--run", folder.path / name) for name in reported],
                       inputs=([source] if source else []) + ood)
    count = member_count(members, config, folder.path)
    holder = folder.holder()
    complete, dropped = usable_records(folder, count)
    if holder is not None:
        say(f"{folder.path} is being trained (pid {holder.get('pid')} on {holder.get('host')}, since "
            f"{holder.get('started')}): scoring the {count - len(dropped)} complete members")
    test = test_split(config, data)
    ood_sets = [(path, *load_image_set(path)) for path in ood]  # (path, images, how read): read before any member runs
    stacks, records = [], []
    predicting = time.perf_counter()
    views = DigitViews(test.x_test, tta) if reload else None  # made once per normalization, shared
    for record in complete:
        try:
            stacks.append(member_test_probabilities(folder, record, test, reload=reload, tta=tta, views=views))
            records.append(record)
        except UnsafeMemberError:
            raise
        except RunFolderError as exc:
            dropped[record["index"]] = str(exc)
    for index, reason in sorted(dropped.items()):
        say(f"member {index:02d} left out: {reason}")
    if not records:
        raise RunFolderError(f"{folder.path}: no usable trained member found (run ensemble-cnn train first)")
    predict_seconds = time.perf_counter() - predicting
    probabilities = np.stack(stacks)
    names = [member_stem(r["index"]) for r in records]
    report = build_report(probabilities, test.y_test, member_names=names)
    specs = [config.member_spec(record["index"]) for record in records]
    for scored, record, spec in zip(report["members"], records, specs):
        scored.update(
            best_epoch=record["best_epoch"],
            val_accuracy=record["val_accuracy"],
            train_seconds=record["train_seconds"],
            spec=spec,
        )
    report["groups"] = group_summaries(probabilities, test.y_test, specs, names)
    report["vote_shown"] = voting
    report["members_asked"] = count
    report["missing_members"] = sorted(dropped)
    report["dropped_members"] = [{"index": i, "reason": reason} for i, reason in sorted(dropped.items())]
    report["in_training"] = holder is not None
    report["config"] = config.to_dict()
    report["test_source"] = test.source
    report["tta"] = {"views": tta, "n_views": len(TTA_VIEWS[tta]), "predict_seconds": round(predict_seconds, 2)}
    scoring = time.perf_counter()
    predictions = rule.labels(probabilities)
    scores = {name: uncertainty(probabilities, score=name) for name in SCORES}
    report["uncertainty"] = uncertainty_section(scores, predictions == test.y_test, answer=voting)
    report["uncertainty"]["calibrated"] = calibrated_uncertainty(
        folder, records, config, rule=rule, tta=tta, probabilities=probabilities, y_test=test.y_test, scores=scores)
    if "note" in report["uncertainty"]["calibrated"] and config.holdout == "shared":
        say(f"calibrated thresholds left out: {report['uncertainty']['calibrated']['note']}")
    report["uncertainty"]["seconds"] = round(time.perf_counter() - scoring, 3)
    if ood_sets:
        predicting = time.perf_counter()
        committee = Ensemble.from_records(folder, records, tta=tta, config=config)
        # the scores past the softmax (energy always, mahalanobis where every member has its Gaussian), the
        # digits' ink area, and the default combined score (energy+ink_area) where the thresholds use one
        thresholds = _default_thresholds(committee)
        in_scores = _with_input_scores({**scores, **ensemble_feature_scores(committee, test.x_test, records=records)},
                                       test.x_test, thresholds)
        sets = []
        for path, images, read in ood_sets:
            ood_probabilities = committee.view_probabilities(DigitViews(images, tta))
            ood_scores = {name: uncertainty(ood_probabilities, score=name) for name in SCORES}
            ood_scores.update(ensemble_feature_scores(committee, images, records=records))
            ood_scores = _with_input_scores(ood_scores, images, thresholds)
            sets.append(ood_section(in_scores, ood_scores, path=str(path), read=read, thresholds=thresholds))
        report["not_a_digit"] = {"anchors": OOD_ANCHORS, "sets": sets,
                                 "predict_seconds": round(time.perf_counter() - predicting, 2)}
    report["evaluate_seconds"] = round(time.perf_counter() - started, 2)
    write_report(report, folder.path)
    if plots:
        write_plots(report, test.x_test, test.y_test, predictions, folder.path, voting=voting, scores=scores)
    if log is not None:
        log(format_table(report))
    return report
