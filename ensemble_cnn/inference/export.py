"""Exporting a run as one model: every member and the vote in a single Keras file or TensorFlow SavedModel."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ensemble_cnn.storage import atomic as _atomic
from ensemble_cnn.inference.ensemble import Ensemble
from ensemble_cnn.storage.outputs import shown

__all__ = ["EXPORT_FORMATS", "export_ensemble"]

EXPORT_FORMATS = ("keras", "saved_model")


def export_ensemble(
    run_dir: str | Path,
    out: str | Path,
    *,
    vote: str = "majority",
    fmt: str = "keras",
    members: int | None = None,
) -> Path:
    """Write the run's ensemble (:meth:`Ensemble.to_keras`) to ``out``; return the path.

    Parameters
    ----------
    run_dir : path-like
        A trained run folder.
    out : path-like
        ``keras``: a ``.keras`` file that ``keras.saving.load_model(out, safe_mode=True)``
        loads without this package. ``saved_model``: a folder (``Model.export``) that
        ``tf.saved_model.load(out).serve(digits)`` serves (TensorFlow Serving reads it).
        Written to a temporary name beside ``out`` and renamed into place.
    vote : str
        The vote in the model's ``vote`` output.
    fmt : {"keras", "saved_model"}
    members : int, optional
        Export only the first ``members`` members.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    out = Path(out)
    model = Ensemble.load(run_dir, members=members, voting=vote).to_keras()
    if fmt == "keras":
        with _atomic.atomic_path(out, suffix=".keras") as tmp:
            model.save(tmp)
        return out
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        model.export(os.fspath(staging / "model"), format="tf_saved_model", verbose=False)
        if out.exists():
            raise FileExistsError(f"{shown(out)} appeared while exporting; not replaced")
        os.replace(staging / "model", out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
