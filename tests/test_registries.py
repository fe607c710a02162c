"""Registry-wide tests: every architecture, every recipe and every vote, through the real paths.

The package has three registries that the command line, the config and the trainer read:
:data:`ensemble_cnn.models.ARCHITECTURES`, :data:`ensemble_cnn.training.recipes.RECIPES` and
:data:`ensemble_cnn.inference.vote.VOTES`. Adding an entry is meant to be one function or class plus
one line, so the tests here are parametrized over the registries themselves (as
albumentations runs every transform): a new entry is walked automatically, and an entry
that does not work end to end fails here, not in a user's run.

Walked, on a few hundred real MNIST digits (``small_mnist_npz``, ``tiny_config``):

* every architecture (at ``WIDTH``) trains a few steps through :func:`train_ensemble`,
  saves, loads back with Keras ``safe_mode`` (:func:`load_member`) giving the
  probabilities it stored at training time, and exports (:func:`export_ensemble`) to one
  model whose outputs equal the :class:`Ensemble`'s;
* every recipe trains its members for real with the fewest epochs it accepts
  (``RECIPE_OPTIONS``, which must name every recipe), and the folder then holds the
  recipe's member count, from the right training runs, with distinct weights;
* every vote goes through ``evaluate`` (:func:`evaluate_run`), ``predict`` and ``export``
  (the command line, ``--vote NAME``) and ``serve`` (the real HTTP server on an ephemeral
  port), all on ONE 2-member run trained enough to read digits (two members of the session's trained run);
* every uncertainty score (:data:`ensemble_cnn.inference.uncertainty.SCORES`) goes through
  :meth:`Ensemble.uncertainty` on that run and must score the vote's errors higher than its answers.
"""
from __future__ import annotations

import io
import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import main
from conftest import subset_run
from ensemble_cnn.inference.ensemble import Ensemble
from ensemble_cnn.evaluation.evaluate import evaluate_run
from ensemble_cnn.inference.export import export_ensemble
from ensemble_cnn.models import ARCHITECTURES, build_model
from ensemble_cnn.inference.predict import ImagePredictor
from ensemble_cnn.inference.preprocess import preprocess_digits
from ensemble_cnn.training.recipes import RECIPES
from ensemble_cnn.models import load_member
from ensemble_cnn.storage.run_folder import RunFolder
from ensemble_cnn.inference.serve import make_server, server_url
from ensemble_cnn.training.train import train_ensemble
from ensemble_cnn.inference.vote import VOTES
from ensemble_cnn.inference.uncertainty import SCORES

WIDTH = 0.25  # every net at a quarter of its channels: the An nets cost width**2, seconds at 0.25
LIMIT, VAL_SIZE = 300, 50  # the hold-out is capped to a tenth (30): 270 training digits, 9 steps of 32
N_COMPARE = 200  # test digits the reloaded and exported models are compared on
TOLERANCE = dict(rtol=1e-5, atol=1e-5)  # the same float32 weights, run again: equal to rounding

# The fewest options each recipe accepts (its Recipe.check), at least two members so their
# weights can be compared, and a whole number of training runs (members_per_run each):
#   standard: any epochs, one member per run        -> 2 runs of 1 epoch
#   snapshot: epochs a multiple of 3, 3 members/run -> 1 run of 3 epochs (one cycle per epoch)
#   fge:      epochs >= 5, 3 members per run        -> 1 run of 5 epochs (3 + 1 + 1)
#   swa:      ema 0, epochs >= 4, one member/run    -> 2 runs of 4 epochs (the last one averaged)
# (schedule "cosine" and checkpoint "last", which the cyclic recipes need, are TrainConfig's defaults;
# the tiny recipe already has ema 0.) A recipe added to RECIPES without a row here fails loudly.
RECIPE_OPTIONS: dict[str, dict[str, Any]] = {
    "standard": dict(members=2, epochs=1),
    "snapshot": dict(members=3, epochs=3),
    "fge": dict(members=3, epochs=5),
    "swa": dict(members=2, epochs=4, ema=0.0),
}


def flat_weights(model: Any) -> np.ndarray:
    """Every weight of ``model`` in one float64 vector."""
    return np.concatenate([np.ravel(w).astype(np.float64) for w in model.get_weights()])


# --------------------------------------------------------------------------- architectures
def test_every_architecture_is_a_distinct_net() -> None:
    assert len(ARCHITECTURES) >= 6 and len(set(ARCHITECTURES)) == len(ARCHITECTURES)
    sizes = {arch: build_model(arch, width=WIDTH).count_params() for arch in ARCHITECTURES}
    assert len(set(sizes.values())) == len(sizes), f"two architectures build the same net: {sizes}"


def test_multiply_adds_equals_the_count_on_every_built_net() -> None:
    """multiply_adds (traced from the builders on shapes, no TensorFlow) equals count_multiply_adds of every built
    net at several widths; the counter itself on a net whose count is known by hand."""
    import keras

    from ensemble_cnn.models import count_multiply_adds, multiply_adds

    inputs = keras.Input((28, 28, 1))
    hidden = keras.layers.Conv2D(4, 3)(inputs)  # 26 x 26 x 4 outputs, 3 x 3 x 1 each
    hidden = keras.layers.Conv2D(2, 5, padding="same")(hidden)  # 26 x 26 x 2 outputs, 5 x 5 x 4 each
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(keras.layers.MaxPooling2D(2)(hidden)))  # 338 -> 10
    assert count_multiply_adds(keras.Model(inputs, outputs)) == 26 * 26 * 4 * 9 + 26 * 26 * 2 * 100 + 338 * 10
    for arch in ARCHITECTURES:
        for width in (0.25, 1.0, 1.5):
            assert multiply_adds(arch, width) == count_multiply_adds(build_model(arch, width=width)), (arch, width)
    assert multiply_adds("nielsen") == 3_218_000  # Nielsen's net: 24*24*20*25 + 8*8*40*500 + 640*1000 + 1000*1000 + 10000


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_architecture_trains_saves_loads_and_exports(arch: str, tiny_config: Callable, small_mnist_npz: Path,
                                                     tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    config = tiny_config(arch=arch, width=WIDTH, members=1, epochs=1, limit=LIMIT, val_size=VAL_SIZE)
    result = train_ensemble(config, run_dir, log=None)
    assert result.complete and result.trained == [0] and len(result.records) == 1, result.failures
    record = result.records[0]
    assert record["train_size"] + record["val_size"] == LIMIT and record["best_epoch"] == 1

    # Saved and loaded back with safe_mode: the architecture at WIDTH, trained (every bias / BN
    # offset starts at zero and has moved), and the probabilities it stored when it was trained.
    folder = RunFolder(run_dir)
    member = load_member(folder.resolve(record["model"]))
    assert member.name == arch
    assert member.count_params() == build_model(arch, width=WIDTH).count_params()
    offsets = [v for v in member.trainable_variables if v.path.endswith(("bias", "beta"))]
    assert offsets and all(np.any(np.asarray(v) != 0) for v in offsets), "no training step reached the weights"
    with np.load(small_mnist_npz) as npz:
        n_test, digits = len(npz["x_test"]), npz["x_test"][:N_COMPARE]
    stored = np.load(folder.resolve(record["probabilities"]))
    assert stored.shape == (n_test, 10) and np.allclose(stored.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(member.predict_on_batch(digits), stored[:N_COMPARE], **TOLERANCE)

    # Exported as one model (safe_mode load): its outputs are the Ensemble's.
    out = export_ensemble(run_dir, tmp_path / f"{arch}.keras", voting="soft")
    import keras

    exported = keras.saving.load_model(out, safe_mode=True).predict_on_batch(digits)
    assert exported["members"].shape == (N_COMPARE, 1, 10)
    np.testing.assert_allclose(exported["members"][:, 0], stored[:N_COMPARE], **TOLERANCE)
    np.testing.assert_allclose(exported["vote"], Ensemble.load(run_dir, voting="soft").predict_proba(digits), **TOLERANCE)


# --------------------------------------------------------------------------- recipes
def test_recipe_table_names_every_recipe() -> None:
    assert set(RECIPE_OPTIONS) == set(RECIPES), "RECIPE_OPTIONS must give the minimal options of every recipe"


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_table_is_valid_and_minimal(name: str, tiny_config: Callable) -> None:
    if name not in RECIPE_OPTIONS:
        pytest.fail(f"recipe {name!r} has no row in RECIPE_OPTIONS: add the fewest options it accepts")
    options, recipe = RECIPE_OPTIONS[name], RECIPES[name]
    tiny_config(recipe=name, **options)  # accepted by the recipe's check
    assert options["members"] >= 2 and options["members"] % recipe.members_per_run == 0
    if options["epochs"] > 1:
        with pytest.raises(ValueError, match="epochs"):
            tiny_config(recipe=name, **{**options, "epochs": options["epochs"] - 1})


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_trains_its_members(name: str, tiny_config: Callable, tmp_path: Path) -> None:
    if name not in RECIPE_OPTIONS:
        pytest.fail(f"recipe {name!r} has no row in RECIPE_OPTIONS: add the fewest options it accepts")
    options, recipe = RECIPE_OPTIONS[name], RECIPES[name]
    config = tiny_config(recipe=name, width=WIDTH, limit=LIMIT, val_size=VAL_SIZE, **options)
    run_dir = tmp_path / "run"
    result = train_ensemble(config, run_dir, log=None)
    count = options["members"]
    assert result.complete, result.failures
    assert sorted(result.trained) == list(range(count))

    records = RunFolder(run_dir).records(count + 1)  # one more asked: the folder holds exactly `count`
    assert [r["index"] for r in records] == list(range(count))
    assert all(r["recipe"] == name for r in records)
    runs: dict[int, list[int]] = {}
    for r in records:
        runs.setdefault(r["run"], []).append(r["best_epoch"])
        assert 1 <= r["best_epoch"] <= options["epochs"]
    assert sorted(runs) == list(range(count // recipe.members_per_run))
    assert all(len(epochs) == len(set(epochs)) == recipe.members_per_run for epochs in runs.values()), \
        f"the members of one run must be checkpoints of different epochs: {runs}"

    weights = [flat_weights(load_member(RunFolder(run_dir).resolve(r["model"]))) for r in records]
    assert len({w.shape for w in weights}) == 1
    for (i, a), (j, b) in combinations(enumerate(weights), 2):
        assert np.all(np.isfinite(a)) and not np.array_equal(a, b), f"members {i} and {j} have the same weights"


# --------------------------------------------------------------------------- votes
@pytest.fixture(scope="module")
def voted_run(tmp_path_factory: pytest.TempPathFactory, trained_run: Path) -> Path:
    """One real 2-member run shared by every vote's tests: the first two members of the session's trained run
    (copied, not trained again)."""
    return subset_run(trained_run, tmp_path_factory.mktemp("votes") / "run", [0, 1])


@pytest.fixture(scope="module")
def real_digits(small_mnist_npz: Path) -> dict[str, np.ndarray]:
    """The slice's 1,000 real test digits ``x`` and their labels ``y``."""
    with np.load(small_mnist_npz) as npz:
        return {"x": npz["x_test"], "y": npz["y_test"]}


@pytest.mark.parametrize("name", list(VOTES))
def test_vote_through_evaluate(name: str, voted_run: Path, real_digits: dict[str, np.ndarray]) -> None:
    report = evaluate_run(voted_run, voting=name, plots=False, log=None)
    assert report["vote_shown"] == name and set(report["ensemble"]) == set(VOTES)
    expected = Ensemble.load(voted_run, voting=name).score(real_digits["x"], real_digits["y"])
    assert report["ensemble"][name]["test_accuracy"] == pytest.approx(expected, abs=1e-9)
    assert expected > 0.5, f"the {name} vote reads {expected:.1%} of the digits: the run is not trained"
    saved = json.loads((voted_run / "report.json").read_text(encoding="utf-8"))
    assert saved["vote_shown"] == name


@pytest.mark.parametrize("name", list(VOTES))
def test_predict_is_the_argmax_of_predict_proba(name: str, voted_run: Path, real_digits: dict[str, np.ndarray]) -> None:
    """scikit-learn's discipline: ``predict == predict_proba.argmax`` and ``score`` is predict's accuracy."""
    ensemble = Ensemble.load(voted_run, voting=name)
    x, y = real_digits["x"], real_digits["y"]
    proba = ensemble.predict_proba(x)
    labels = ensemble.predict(x)
    assert proba.shape == (len(x), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert np.array_equal(proba.argmax(axis=1), labels)
    assert ensemble.score(x, y) == pytest.approx(float(np.mean(labels == y)))


@pytest.mark.parametrize("name", list(VOTES))
def test_vote_through_predict(name: str, voted_run: Path, real_digits: dict[str, np.ndarray],
                              tmp_path: Path) -> None:
    digits = real_digits["x"][:40]
    path = tmp_path / "digits.npy"
    np.save(path, digits)
    result = CliRunner().invoke(main, ["predict", "--run", str(voted_run), str(path), "--vote", name,
                                       "--format", "json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["vote"] == name and answer["members"] == ["member_00", "member_01"]
    ensemble = Ensemble.load(voted_run, voting=name)
    probabilities = ensemble.member_probabilities(digits)
    labels = [row["label"] for row in answer["predictions"]]
    assert labels == ensemble.predict(digits).tolist()
    np.testing.assert_allclose([row["confidence"] for row in answer["predictions"]],
                               VOTES[name].shares(probabilities)[np.arange(len(digits)), labels], rtol=1e-5)


@pytest.mark.parametrize("name", list(VOTES))
def test_vote_through_export(name: str, voted_run: Path, real_digits: dict[str, np.ndarray],
                             tmp_path: Path) -> None:
    out = tmp_path / f"{name}.keras"
    result = CliRunner().invoke(main, ["export", "--run", str(voted_run), "--out", str(out), "--vote", name])
    assert result.exit_code == 0, result.output
    import keras

    model = keras.saving.load_model(out, safe_mode=True)
    assert model.name == f"ensemble_{name}"
    digits = real_digits["x"][:N_COMPARE]
    outputs = model.predict_on_batch(digits)
    ensemble = Ensemble.load(voted_run, voting=name)
    np.testing.assert_allclose(outputs["members"], ensemble.member_probabilities(digits).transpose(1, 0, 2),
                               **TOLERANCE)
    np.testing.assert_allclose(outputs["vote"].sum(axis=1), 1.0, atol=1e-5)
    assert outputs["vote"].argmax(axis=1).tolist() == ensemble.predict(digits).tolist()
    np.testing.assert_allclose(outputs["vote"], ensemble.predict_proba(digits), **TOLERANCE)


@pytest.fixture
def serving(request: pytest.FixtureRequest, voted_run: Path) -> Iterator[tuple[str, ImagePredictor]]:
    """The real server for ``voted_run`` with the vote ``request.param``, on 127.0.0.1 and a free port."""
    name = request.param
    predictor = ImagePredictor(Ensemble.load(voted_run, voting=name), voting=name)
    server = make_server(predictor, port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server_url(server), predictor
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def png_drawing(digit: np.ndarray) -> bytes:
    """An MNIST digit as a user would draw it: 280x280 RGB, black ink on white, PNG."""
    buffer = io.BytesIO()
    Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BILINEAR).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("serving", list(VOTES), indirect=True)
def test_vote_through_serve(serving: tuple[str, ImagePredictor], real_digits: dict[str, np.ndarray]) -> None:
    url, predictor = serving
    body = png_drawing(real_digits["x"][0])
    request = urllib.request.Request(url + "api/predict", data=body, method="POST",
                                     headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200
        answer = json.loads(response.read())
    name = predictor.voting
    seen = preprocess_digits([np.asarray(Image.open(io.BytesIO(body)))])
    probabilities = predictor.ensemble.member_probabilities(seen)
    assert answer["vote"] == name
    assert answer["label"] == int(VOTES[name].labels(probabilities)[0]) == int(predictor.ensemble.predict(seen)[0])
    np.testing.assert_allclose(answer["probabilities"], VOTES[name].shares(probabilities)[0], rtol=1e-5, atol=1e-7)
    assert answer["confidence"] == pytest.approx(answer["probabilities"][answer["label"]])
    assert [m["label"] for m in answer["members"]] == probabilities[:, 0].argmax(axis=1).tolist()
    assert answer["agreement"]["of"] == 2


# --------------------------------------------------------------------------- uncertainty scores
@pytest.mark.parametrize("name", list(SCORES))
def test_score_through_uncertainty(name: str, voted_run: Path, real_digits: dict[str, np.ndarray]) -> None:
    """Every uncertainty score through Ensemble.uncertainty on the real 2-member run: the registry's function of
    the members' probabilities, and higher on the digits the vote gets wrong (higher = less trustworthy)."""
    from sklearn.metrics import roc_auc_score

    ensemble = Ensemble.load(voted_run, voting="soft")
    x, y = real_digits["x"], real_digits["y"]
    scores = ensemble.uncertainty(x, score=name)
    assert scores.shape == (len(x),) and scores.dtype == np.float64 and np.all(scores >= 0)
    np.testing.assert_array_equal(scores, SCORES[name].function(ensemble.member_probabilities(x)))
    wrong = ensemble.predict(x) != y
    assert 0 < wrong.sum() < len(x) / 2, "the run reads no digit, or every digit"
    assert roc_auc_score(wrong, scores) > 0.6, f"{name} does not score the vote's errors higher than its answers"
