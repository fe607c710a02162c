"""Renamed keywords (ensemble_cnn/deprecation.py): the old name warns and works, both names is a TypeError,
the new name is silent; every former name of the vote (``method``, ``rule``, ``vote``) is ``voting`` now.

No TensorFlow: the shims are checked on the vote functions, an Ensemble of stand-in members, and on the
argument checks that come before any run is read.
"""
from __future__ import annotations

import importlib
import inspect
import re
import warnings

import numpy as np
import pytest

from ensemble_cnn.deprecation import EnsembleCnnDeprecationWarning, renamed_keyword
from ensemble_cnn.inference.vote import VOTES, get_vote, majority_vote, soft_vote, vote


@renamed_keyword("method", "voting")
def _shown(*, voting: str = "majority", weights: object = None) -> tuple[str, object]:
    """Doc kept."""
    return voting, weights


def test_old_keyword_warns_and_works() -> None:
    with pytest.warns(EnsembleCnnDeprecationWarning,
                      match=r"^_shown\(method=\.\.\.\) is deprecated; use voting=\.\.\.$") as caught:
        assert _shown(method="soft", weights=3) == ("soft", 3)
    assert caught[0].filename == __file__  # the warning points at the caller's line
    assert issubclass(EnsembleCnnDeprecationWarning, DeprecationWarning)


def test_new_keyword_is_silent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _shown(voting="soft") == ("soft", None)
        assert _shown() == ("majority", None)


def test_both_keywords_is_a_type_error() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(TypeError, match=r"_shown\(\) got both method= \(deprecated\) and voting="):
            _shown(method="soft", voting="majority")


def test_wrapper_keeps_name_doc_and_signature() -> None:
    assert _shown.__name__ == "_shown" and _shown.__doc__ == "Doc kept."
    assert list(inspect.signature(_shown).parameters) == ["voting", "weights"]
    with pytest.raises(ValueError, match="both 'voting'"):
        renamed_keyword("voting", "voting")


def test_our_deprecations_are_errors_in_this_suite() -> None:
    """pyproject.toml's filter: a caller of ours using an old name fails its test."""
    with pytest.raises(EnsembleCnnDeprecationWarning):
        _shown(method="soft")


def test_get_vote() -> None:
    assert get_vote("majority") is VOTES["majority"] and get_vote("soft") is VOTES["soft"]
    for bad in ("hard", "", None, ["soft"]):
        with pytest.raises(ValueError, match=f"^{re.escape(f'voting must be one of majority, soft, got {bad!r}')}$"):
            get_vote(bad)


# ------------------------------------------------------------------ the public shims
class _Member:
    """A stand-in Keras member: the same probabilities for every digit."""

    def __init__(self, probabilities: dict[int, float]) -> None:
        self.probabilities = np.zeros(10, dtype=np.float32)
        for label, p in probabilities.items():
            self.probabilities[label] = p

    def predict_on_batch(self, x: np.ndarray) -> np.ndarray:
        return np.tile(self.probabilities, (len(x), 1))


def _ensemble():
    """Two members say 1 (0.4 against 0.3 for 7), one is sure of 7: majority 1, soft 7."""
    from ensemble_cnn.inference.ensemble import Ensemble

    unsure = {1: 0.4, 7: 0.3, 2: 0.3}
    return Ensemble([_Member(unsure), _Member(unsure), _Member({7: 1.0})], ["a", "b", "c"])


def test_vote_method_is_voting() -> None:
    import ensemble_cnn

    proba = np.random.default_rng(0).dirichlet(np.ones(4), size=(3, 20))
    with pytest.warns(EnsembleCnnDeprecationWarning, match=r"^vote\(method=\.\.\.\) is deprecated; use voting="):
        np.testing.assert_array_equal(ensemble_cnn.vote(proba, method="soft"), soft_vote(proba))
    np.testing.assert_array_equal(vote(proba, voting="majority"), majority_vote(proba))
    assert ensemble_cnn.vote is vote


def test_ensemble_vote_rule_is_voting() -> None:
    ensemble, x = _ensemble(), np.zeros((2, 28, 28), dtype=np.uint8)
    assert ensemble.vote(x).tolist() == [1, 1] and ensemble.vote(x, voting="soft").tolist() == [7, 7]
    with pytest.warns(EnsembleCnnDeprecationWarning,
                      match=r"^Ensemble\.vote\(rule=\.\.\.\) is deprecated; use voting=\.\.\.$"):
        assert ensemble.vote(x, rule="soft").tolist() == [7, 7]
    with pytest.raises(ValueError, match="voting must be one of majority, soft, got 'hard'"):
        ensemble.vote(x, voting="hard")


@pytest.mark.parametrize("module, function, args, old", [
    ("ensemble_cnn.evaluation.evaluate", "evaluate_run", ("no-such-run",), "method"),
    ("ensemble_cnn.evaluation.compare", "compare_runs", (["run-a", "run-b"],), "vote"),
    ("ensemble_cnn.inference.export", "export_ensemble", ("run-a", "out.keras"), "vote"),
])
def test_run_functions_take_their_old_keyword(module: str, function: str, args: tuple, old: str) -> None:
    """The old keyword reaches ``voting``: its value is checked under the new name, before any run is read."""
    call = getattr(importlib.import_module(module), function)
    bad = "voting must be one of majority, soft, got 'hard'"
    with pytest.warns(EnsembleCnnDeprecationWarning,
                      match=rf"^{function}\({old}=\.\.\.\) is deprecated; use voting=\.\.\.$"):
        with pytest.raises(ValueError, match=bad):
            call(*args, **{old: "hard"})
    with pytest.raises(ValueError, match=bad):
        call(*args, voting="hard")
    with pytest.raises(TypeError, match=f"got both {old}= \\(deprecated\\) and voting="):
        call(*args, voting="soft", **{old: "soft"})


@pytest.mark.parametrize("module, function", [
    ("ensemble_cnn.inference.vote", "vote"),
    ("ensemble_cnn.evaluation.evaluate", "evaluate_run"),
    ("ensemble_cnn.evaluation.compare", "compare_runs"),
    ("ensemble_cnn.evaluation.compare", "compare_predictions"),
    ("ensemble_cnn.inference.export", "export_ensemble"),
    ("ensemble_cnn.inference.export", "export_metadata"),
    ("ensemble_cnn.inference.predict", "predict_paths"),
    ("ensemble_cnn.inference.predict", "ImagePredictor"),
    ("ensemble_cnn.evaluation.plots", "plot_confusion"),
    ("ensemble_cnn.evaluation.plots", "confusion_figure"),
    ("ensemble_cnn.evaluation.plots", "write_plots"),
    ("ensemble_cnn.training.job", "train_and_evaluate"),
])
def test_one_name_for_the_vote(module: str, function: str) -> None:
    parameters = inspect.signature(getattr(importlib.import_module(module), function)).parameters
    assert "voting" in parameters and not {"vote", "method", "rule"} & set(parameters)


def test_one_name_for_the_vote_of_an_ensemble() -> None:
    from ensemble_cnn.inference.ensemble import Ensemble
    from ensemble_cnn.inference.predict import ImagePredictor, Predictions

    assert list(inspect.signature(Ensemble.vote).parameters) == ["self", "x", "voting"]
    assert ImagePredictor(_ensemble(), voting="soft").voting == "soft"
    assert "voting" in Predictions.__dataclass_fields__ and "vote" not in Predictions.__dataclass_fields__
