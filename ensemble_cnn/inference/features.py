""""Not a digit" scores past the softmax: from each member's penultimate features and its logits.

The softmax scores of :mod:`ensemble_cnn.inference.uncertainty` see only the members'
probabilities, which label smoothing caps. These look further back into each member:

* :func:`mahalanobis_score` -- the smallest squared Mahalanobis distance of a digit's
  penultimate features (the input of the member's last ``Dense`` layer) to the class means,
  under one covariance shared by the classes (Lee et al. 2018, "A simple unified framework
  for detecting out-of-distribution samples"); needs the member's :class:`ClassGaussian`,
  fitted at training time on its own training originals (:func:`fit_class_gaussian`);
* :func:`relative_mahalanobis_score` -- that distance minus the distance to one class-blind
  Gaussian of the same features (Ren et al. 2021, "A simple fix to Mahalanobis distance for
  improving near-OOD detection"); the best of these on Fashion-MNIST (docs/uncertainty.md);
* :func:`energy_score` -- ``-logsumexp(logits)``, the member's negative free energy (Liu et
  al. 2020, "Energy-based out-of-distribution detection"); needs no fit, so every run has it.

**Higher means less like a digit**, as every score of :data:`~ensemble_cnn.inference.uncertainty.SCORES`.
A committee's score is the mean over its members of each member's score
(:func:`ensemble_feature_scores`). Each member's Gaussian lives in its run folder as
``member_XX_gaussian.npz`` (:data:`GAUSSIAN_KEYS`, float32; its sha256 in the
member's record), read by :func:`read_member_gaussian`; a run trained before these scores
has none, and then only the energy is given.

Keras is imported inside the functions that need it (members are Keras models); nothing
here imports training code.
"""
from __future__ import annotations

import hashlib
import io
import math
import weakref
import zipfile
from typing import Any, NamedTuple, Sequence

import numpy as np
from numpy.typing import ArrayLike

from ensemble_cnn.data.mnist import N_CLASSES
from ensemble_cnn.data.reader import RUN_FILES, read_member, read_regular
from ensemble_cnn.errors import RunFolderError, first_line
from ensemble_cnn.storage.calibration import FEATURE_SCORE_COLUMNS
from ensemble_cnn.storage.outputs import shown
from ensemble_cnn.storage.run_folder import RunFolder, member_stem

__all__ = ["FEATURE_SCORES", "GAUSSIAN_FIT_SIZE", "GAUSSIAN_KEYS", "GAUSSIAN_RIDGE", "ClassGaussian",
           "energy_score", "ensemble_feature_scores", "ensemble_gaussians", "fit_class_gaussian",
           "gaussian_arrays", "ink_area", "logits_tensor", "mahalanobis_score", "member_feature_scores", "member_features",
           "member_pass",
           "read_member_gaussian", "relative_mahalanobis_score", "scores_of"]

FEATURE_SCORES = FEATURE_SCORE_COLUMNS
"""The scores past the softmax, in the order of a member's ``member_XX_calibration_scores.npy`` columns."""
GAUSSIAN_KEYS = ("means", "precision", "background_mean", "background_precision")
"""The arrays of ``member_XX_gaussian.npz`` (the fields of :class:`ClassGaussian`)."""
GAUSSIAN_FIT_SIZE = 10_000
"""Most training originals a member's Gaussian is fitted on (a seeded draw from the member's seed)."""
GAUSSIAN_RIDGE = 1e-6
"""The shared covariance's ridge, relative to its mean variance: ``cov + GAUSSIAN_RIDGE * trace(cov) / D * I``."""
_FEATURE_MODELS: "weakref.WeakKeyDictionary[Any, dict[bool, Any]]" = weakref.WeakKeyDictionary()


class ClassGaussian(NamedTuple):
    """One member's class-conditional Gaussian of its penultimate features, and its class-blind background.

    Attributes
    ----------
    means : ndarray of float64, shape (C, D)
        Each class's mean feature vector.
    precision : ndarray of float64, shape (D, D)
        The inverse of the covariance shared by the classes (tied), symmetric positive definite.
    background_mean : ndarray of float64, shape (D,), or None
        The mean of every fitted feature vector, whatever its class.
    background_precision : ndarray of float64, shape (D, D), or None
        The inverse of their covariance about that mean (the same ridge): the background of
        :func:`relative_mahalanobis_score`.
    """

    means: np.ndarray
    precision: np.ndarray
    background_mean: np.ndarray | None = None
    background_precision: np.ndarray | None = None


# --------------------------------------------------------------------------- #
# A member's features and logits
# --------------------------------------------------------------------------- #
def logits_tensor(member: Any, *, name: str | None = None) -> Any:
    """The pre-softmax tensor of a member's graph, standard layers only (the exported model uses it too).

    The head is either ``Dense(10, softmax, name="probabilities")`` (the logits: a plain Dense copy
    of it, with its weights, on its input, named ``name`` or ``<member>_logits``) or
    ``Dense(10, use_bias=False)`` + ``BatchNormalization`` + ``Activation(softmax,
    name="probabilities")`` (the logits: the activation's input).
    """
    import keras

    head = member.layers[-1]
    if head.name != "probabilities":
        raise ValueError(f"{member.name}: no layer named 'probabilities' at the end (not an ensemble-cnn member)")
    if not isinstance(head, keras.layers.Dense):
        return head.input
    copy = keras.layers.Dense(head.units, use_bias=head.use_bias, dtype=head.dtype_policy,
                              name=name or f"{member.name}_logits")
    logits = copy(head.input)
    copy.set_weights(head.get_weights())
    return logits


def _feature_model(member: Any, *, features: bool) -> Any:
    """A sub-model of ``member`` giving ``[features,] logits, probabilities`` in one pass (cached per member).

    ``features``: the input of its last Dense layer; the logits: :func:`logits_tensor`; the
    probabilities: the member's own output, so one pass gives them exactly as it computes them.
    Built once per member and variant (a weak cache: it goes with the member).
    """
    cached = _FEATURE_MODELS.setdefault(member, {})
    if features in cached:
        return cached[features]
    import keras

    dense = [layer for layer in member.layers if isinstance(layer, keras.layers.Dense)]
    if not dense:
        raise ValueError(f"{member.name}: no Dense layer (not an ensemble-cnn member)")
    outputs = [logits_tensor(member), member.outputs[0]]
    model = keras.Model(member.inputs, [dense[-1].input, *outputs] if features else outputs,
                        name=f"{member.name}_{'features' if features else 'logits'}")
    cached[features] = model
    return model


def member_pass(member: Any, digits: np.ndarray, *, batch_size: int = 1000,
                features: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """A member's probabilities, penultimate features and logits on some digits, in one pass (inference mode).

    Parameters
    ----------
    member : keras.Model
        An ensemble-cnn member (:func:`ensemble_cnn.models.build_model`): uint8 (N, 28, 28) in,
        softmax probabilities (N, 10) out.
    digits : ndarray of uint8, shape (N, 28, 28)
        As the member takes them (its input normalization already applied).
    batch_size : int, default 1000
    features : bool, default True
        Also return the penultimate features (``False``: ``None`` in their place, a lighter pass).

    Returns
    -------
    probabilities : ndarray of float32, shape (N, 10)
        The member's own output (the same layers, the same pass as its prediction).
    features : ndarray of float32, shape (N, D), or None
        The input of the member's last Dense layer.
    logits : ndarray of float32, shape (N, 10)
        Its pre-softmax output: ``softmax(logits)`` is the member's probabilities.
    """
    model = _feature_model(member, features=features)
    parts: list[list[np.ndarray]] = [[] for _ in model.outputs]
    for start in range(0, len(digits), batch_size):
        out = model.predict_on_batch(digits[start:start + batch_size])
        for part, array in zip(parts, out):
            part.append(np.asarray(array, dtype=np.float32))
    arrays = [np.concatenate(part) if part else np.zeros((0, int(output.shape[-1])), np.float32)
              for part, output in zip(parts, model.outputs)]
    if features:
        found, logits, probabilities = arrays
        return probabilities, found, logits
    logits, probabilities = arrays
    return probabilities, None, logits


def member_features(member: Any, digits: np.ndarray, *, batch_size: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """A member's penultimate features (N, D) and logits (N, 10) on some digits: :func:`member_pass` without
    the probabilities."""
    _, features, logits = member_pass(member, digits, batch_size=batch_size)
    return features, logits


# --------------------------------------------------------------------------- #
# The class-conditional Gaussian and the scores
# --------------------------------------------------------------------------- #
def fit_class_gaussian(features: ArrayLike, labels: ArrayLike, *, ridge: float = GAUSSIAN_RIDGE,
                       n_classes: int = N_CLASSES) -> ClassGaussian:
    """Class means and one covariance shared by the classes (Lee et al. 2018), as a precision matrix.

    The covariance is the within-class scatter over all samples (each centred on its class
    mean), divided by ``N``, plus a ridge ``ridge * trace / D`` on the diagonal: ReLU features
    have units that never fire on digits (zero variance), which would make the covariance
    singular. A small ridge keeps such units: an image that fires them lies far from every
    digit, which is what the score is for (a shrinkage estimator such as Ledoit-Wolf would
    blur exactly those directions).

    Parameters
    ----------
    features : array-like of shape (N, D)
        Penultimate features of digits (finite).
    labels : array-like of int, shape (N,)
        Their classes, ``0 .. n_classes - 1``; every class present.
    ridge : float, default :data:`GAUSSIAN_RIDGE`
        > 0, relative to the mean variance.
    n_classes : int, default 10

    Returns
    -------
    ClassGaussian

    Raises
    ------
    ValueError
        Malformed features or labels, a class without samples, or a ridge <= 0.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or x.shape[0] == 0 or not np.isfinite(x).all():
        raise ValueError(f"features must be a non-empty finite (N, D) array, got shape {x.shape}")
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be {x.shape[0]} integers, got shape {y.shape} dtype {y.dtype}")
    absent = [c for c in range(n_classes) if not np.any(y == c)]
    if absent or y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must be classes 0..{n_classes - 1}, each present (absent: {absent})")
    if not (isinstance(ridge, (int, float)) and ridge > 0 and math.isfinite(ridge)):
        raise ValueError(f"ridge must be a number > 0, got {ridge!r}")
    means = np.stack([x[y == c].mean(axis=0) for c in range(n_classes)])
    background_mean = x.mean(axis=0)
    return ClassGaussian(means=means, precision=_ridge_precision(x - means[y], ridge),
                         background_mean=background_mean,
                         background_precision=_ridge_precision(x - background_mean, ridge))


def _ridge_precision(centred: np.ndarray, ridge: float) -> np.ndarray:
    """The inverse of ``centred.T @ centred / N`` plus ``ridge * trace / D`` on the diagonal, symmetrized."""
    covariance = centred.T @ centred / centred.shape[0]
    dims = centred.shape[1]
    scale = np.trace(covariance) / dims
    covariance[np.diag_indices(dims)] += ridge * (scale if scale > 0 else 1.0)
    precision = np.linalg.inv(covariance)
    return (precision + precision.T) / 2


def mahalanobis_score(features: ArrayLike, gaussian: ClassGaussian, *, batch_size: int = 4096) -> np.ndarray:
    """The smallest squared Mahalanobis distance to a class mean: ``min_c (f - mu_c)^T P (f - mu_c)``.

    Parameters
    ----------
    features : array-like of shape (N, D)
    gaussian : ClassGaussian
        Means (C, D) and precision P (D, D).
    batch_size : int, default 4096
        Rows at a time (memory: ``batch_size * C * D`` floats).

    Returns
    -------
    score : ndarray of float64, shape (N,)
        >= 0 (up to rounding); 0 at a class mean; higher means less like a digit.
    """
    x = np.asarray(features, dtype=np.float64)
    means, precision = np.asarray(gaussian.means, np.float64), np.asarray(gaussian.precision, np.float64)
    if x.ndim != 2 or x.shape[1] != means.shape[1] or precision.shape != (means.shape[1],) * 2:
        raise ValueError(f"features must have shape (N, {means.shape[1]}), got {x.shape}")
    # (f - mu)^T P (f - mu) = f^T P f - 2 f^T P mu + mu^T P mu, per class
    projected_means = means @ precision  # (C, D)
    mean_terms = np.einsum("cd,cd->c", projected_means, means)  # (C,)
    out = np.empty(x.shape[0], dtype=np.float64)
    for start in range(0, x.shape[0], batch_size):
        block = x[start:start + batch_size]
        own = np.einsum("nd,nd->n", block @ precision, block)
        distances = own[:, None] - 2.0 * block @ projected_means.T + mean_terms[None, :]
        out[start:start + batch_size] = distances.min(axis=1)
    return np.maximum(out, 0.0)


def relative_mahalanobis_score(features: ArrayLike, gaussian: ClassGaussian) -> np.ndarray:
    """The relative Mahalanobis distance (Ren et al. 2021): :func:`mahalanobis_score` minus the squared
    distance to the class-blind background Gaussian, ``min_c MD_c(f) - MD_0(f)``.

    The background term takes out what every digit's features share (how far a vector lies
    along the directions all digits vary in), leaving what sets digits of one class together.

    Parameters
    ----------
    features : array-like of shape (N, D)
    gaussian : ClassGaussian
        With its background (:func:`fit_class_gaussian` fits it).

    Returns
    -------
    score : ndarray of float64, shape (N,)
        Any sign; higher means less like a digit.
    """
    if gaussian.background_mean is None or gaussian.background_precision is None:
        raise ValueError("this Gaussian has no background (fit it with fit_class_gaussian)")
    background = ClassGaussian(means=np.asarray(gaussian.background_mean, np.float64)[None, :],
                               precision=gaussian.background_precision)
    return mahalanobis_score(features, gaussian) - mahalanobis_score(features, background)


def energy_score(logits: ArrayLike) -> np.ndarray:
    """The negative free energy ``-logsumexp_c logits[n, c]`` (Liu et al. 2020): higher means less like a digit.

    Parameters
    ----------
    logits : array-like of shape (N, C)

    Returns
    -------
    score : ndarray of float64, shape (N,)
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 1:
        raise ValueError(f"logits must have shape (N, C), got {z.shape}")
    top = z.max(axis=1, keepdims=True) if z.shape[0] else np.zeros((0, 1))
    return -(top[:, 0] + np.log(np.exp(z - top).sum(axis=1)))


def ink_area(digits: ArrayLike) -> np.ndarray:
    """The share of each digit's pixels with any ink (above 0): higher means less like a digit.

    Not a member's score: a look at the digits themselves, as the members get them (uint8
    levels, ink bright on a dark background; ``predict`` sets every level below 5% of an
    image's brightest ink to 0, :func:`ensemble_cnn.inference.preprocess.mnist_style`).
    MNIST's digits cover 13-34% of their 28 x 28 pixels (the 0.5-99.5% range of the
    calibration digits); a garment, a photo or noise covers more.

    Parameters
    ----------
    digits : array-like of shape (N, H, W)

    Returns
    -------
    share : ndarray of float64, shape (N,)
        In [0, 1].

    Examples
    --------
    >>> ink_area(np.array([[[0, 0], [0, 0]], [[0, 255], [3, 0]]], dtype=np.uint8)).tolist()
    [0.0, 0.5]
    """
    x = np.asarray(digits)
    if x.ndim != 3:
        raise ValueError(f"digits must have shape (N, H, W), got {x.shape}")
    return (x.reshape(len(x), -1) > 0).mean(axis=1, dtype=np.float64) if x.size else np.zeros(len(x))


def member_feature_scores(member: Any, digits: np.ndarray, gaussian: ClassGaussian | None, *,
                          batch_size: int = 1000) -> dict[str, np.ndarray]:
    """One member's scores past the softmax on some digits: ``{"mahalanobis": (N,), "energy": (N,)}``.

    ``"mahalanobis"`` only with a ``gaussian``. ``digits``: uint8 (N, 28, 28), under the
    member's own input normalization.
    """
    features, logits = member_features(member, digits, batch_size=batch_size)
    return scores_of(features, logits, gaussian)


def scores_of(features: np.ndarray, logits: np.ndarray, gaussian: ClassGaussian | None) -> dict[str, np.ndarray]:
    """A member's scores past the softmax from its features and logits (``"energy"`` alone without a Gaussian)."""
    scores = {"energy": energy_score(logits)}
    if gaussian is not None:
        scores.update(mahalanobis=mahalanobis_score(features, gaussian),
                      relative_mahalanobis=relative_mahalanobis_score(features, gaussian))
    return {name: scores[name] for name in FEATURE_SCORES if name in scores}


# --------------------------------------------------------------------------- #
# A run's Gaussians
# --------------------------------------------------------------------------- #
def gaussian_arrays(gaussian: ClassGaussian) -> dict[str, np.ndarray]:
    """What ``member_XX_gaussian.npz`` holds, float32: ``means`` (10, D), ``precision`` (D, D),
    ``background_mean`` (D,), ``background_precision`` (D, D)."""
    return {key: np.asarray(getattr(gaussian, key), dtype=np.float32) for key in GAUSSIAN_KEYS}


def read_member_gaussian(folder: RunFolder, record: dict[str, Any], *, dims: int) -> ClassGaussian | None:
    """Member ``record``'s Gaussian from the run folder, checked against its sha256; ``None`` when it has none.

    The file is read once through the one guarded open (:func:`ensemble_cnn.data.reader.read_regular`:
    a FIFO, a device, a file larger than a Gaussian of ``dims`` features is refused), its bytes
    checked against the record's sha256 before they are parsed, each array's header checked
    before it is allocated.

    Parameters
    ----------
    folder : RunFolder
    record : dict
        The member's record.
    dims : int
        D, the member's feature count (its last Dense layer's input width).

    Raises
    ------
    RunFolderError
        One line naming the file: missing, not a regular file, too large, sha256 differs from the
        record, not an .npz of float32 ``means`` (10, D), ``precision`` (D, D), ``background_mean`` (D,)
        and ``background_precision`` (D, D), or non-finite.
    """
    name, digest = record.get("gaussian"), record.get("gaussian_sha256")
    if name is None and digest is None:
        return None  # a run trained before these scores
    index = record.get("index")
    files = folder.files(int(index)) if isinstance(index, int) and not isinstance(index, bool) else None
    source = files.record if files is not None else folder.path
    if files is None or not isinstance(name, str) or not isinstance(digest, str):
        raise RunFolderError(f"{shown(source)}: malformed member record (gaussian or gaussian_sha256)")
    path = folder.resolve(name, source=files.record)
    if path != files.gaussian.resolve():
        raise RunFolderError(f"{shown(files.record)}: names {name!r}, expected {files.gaussian.name!r}")
    what = f"{member_stem(index)} Gaussian"
    limit = (N_CLASSES + 1 + 2 * dims) * dims * 4 + 64 * 1024
    data = read_regular(path, limit=limit, what=what, voice=RUN_FILES)
    if hashlib.sha256(data).hexdigest() != digest:
        raise RunFolderError(f"{shown(path)}: sha256 differs from the one in {files.record.name} "
                             "(corrupt or overwritten)")
    shapes = {"means": (N_CLASSES, dims), "precision": (dims, dims), "background_mean": (dims,),
              "background_precision": (dims, dims)}

    def check(key: str):
        def expected(shape: tuple[int, ...], dtype: np.dtype) -> None:
            if shape != shapes[key] or dtype != np.float32:
                raise RunFolderError(f"{shown(path)}: {key} is {dtype} {shape}, expected float32 {shapes[key]}")
        return expected

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            arrays = {key: read_member(archive, key, path=path, limit=limit, check=check(key), voice=RUN_FILES)
                      for key in shapes}
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        if isinstance(exc, RunFolderError):
            raise
        raise RunFolderError(f"{shown(path)}: not a member's Gaussian (.npz of {', '.join(GAUSSIAN_KEYS)}: "
                             f"{first_line(exc)})") from None
    if not all(np.isfinite(array).all() for array in arrays.values()):
        raise RunFolderError(f"{shown(path)}: holds non-finite values")
    return ClassGaussian(**{key: arrays[key].astype(np.float64) for key in GAUSSIAN_KEYS})


def _feature_width(member: Any) -> int:
    """D: the width of a member's penultimate features (its last Dense layer's input)."""
    return int(_feature_model(member, features=True).outputs[0].shape[-1])


def ensemble_feature_scores(ensemble: Any, digits: ArrayLike, *, batch_size: int = 1000,
                            records: Sequence[dict[str, Any]] | None = None) -> dict[str, np.ndarray]:
    """The committee's scores past the softmax: each the mean over the members of the member's score.

    :meth:`Ensemble.feature_pass <ensemble_cnn.inference.ensemble.Ensemble.feature_pass>` without the
    probabilities.

    Returns
    -------
    dict of str to ndarray of float64, shape (N,)
        ``{"mahalanobis": ..., "relative_mahalanobis": ..., "energy": ...}``, or ``{"energy": ...}`` for a
        run without Gaussians.
    """
    return ensemble.feature_pass(digits, batch_size=batch_size, records=records)[1]


def ensemble_gaussians(ensemble: Any, records: Sequence[dict[str, Any]] | None) -> list[ClassGaussian | None]:
    """Each member's Gaussian (``None`` for a member without one, or an ensemble not read from a run folder)."""
    if ensemble.run_dir is None:
        return [None] * len(ensemble.members_)
    folder = RunFolder(ensemble.run_dir)
    if records is None:
        by_name = {}
        for name in ensemble.names_:
            status = folder.status(int(name.rsplit("_", 1)[1]))
            if status.record is None:
                raise RunFolderError(status.problem or f"{shown(folder.path)}: {name} has no complete record")
            by_name[name] = status.record
        records = [by_name[name] for name in ensemble.names_]
    return [read_member_gaussian(folder, record, dims=_feature_width(member))
            for member, record in zip(ensemble.members_, records)]
