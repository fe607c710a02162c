"""The main job: train (or resume, or grow) a run, then evaluate it; what ``train`` and ``run`` do."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ensemble_cnn.config import TrainConfig
from ensemble_cnn.storage.run_folder import RunFolder
from ensemble_cnn.training.train import TrainResult, check_run, train_ensemble

__all__ = ["JobResult", "train_and_evaluate"]


@dataclass
class JobResult:
    """What :func:`train_and_evaluate` did: the training result and the report (``None`` without members)."""

    train: TrainResult
    report: dict[str, Any] | None = None
    preview: Path | None = None
    notes: list[str] = field(default_factory=list)


def train_and_evaluate(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    preview: bool = False,
    voting: str = "majority",
    log: Callable[[str], None] | None = print,
) -> JobResult:
    """Train the run, then score its first ``config.members`` members and write the report.

    Parameters
    ----------
    config : TrainConfig
    run_dir : path-like
        The run folder.
    preview : bool
        Also draw what member 00 trains on (``preview.png``: one digit of each class
        and its distortion in each of the first epochs) before training; the folder
        is locked from then on.
    voting : str
        The vote shown by the confusion matrix and the error grid (a name in
        :data:`ensemble_cnn.inference.vote.VOTES`).
    log : callable, optional
        Receives progress lines and the report table.
    """
    from ensemble_cnn.evaluation.evaluate import evaluate_run

    folder = RunFolder(run_dir)
    drawn = None
    hold = folder.lock() if preview and config.augmentation == "distort" else nullcontext()
    if preview and config.augmentation == "distort":
        config = check_run(config, folder.path)  # validate everything before the folder is created
    with hold:
        if preview and config.augmentation == "distort":
            from ensemble_cnn.evaluation.preview import write_training_preview

            folder.check_compatible(config)
            written = folder.claim(config)
            drawn = write_training_preview(written, folder.path / "preview.png")
        result = train_ensemble(config, folder.path, log=log)
        report = None
        if result.records:
            report = evaluate_run(folder.path, voting=voting, members=config.members, reload=False, log=log)
    return JobResult(train=result, report=report, preview=drawn)
