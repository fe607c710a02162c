"""What each training recipe asks of a run's settings: its name, its members per run, the settings it needs.

The core owns what it validates: :class:`~ensemble_cnn.config.TrainConfig` checks ``recipe``
and a recipe's needs against :data:`RECIPE_RULES` without importing the training package.
:mod:`ensemble_cnn.training.recipes` implements each named recipe (its schedule, loss and
checkpoint policy) and takes its name, members per run and check from its rule here
(``tests/test_recipes.py`` checks that the two registries name the same recipes).
Adding a recipe is one rule here plus one class and one entry there. Pure Python.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ensemble_cnn.config import TrainConfig

__all__ = ["RECIPE_NAMES", "RECIPE_RULES", "RecipeRule"]


@dataclass(frozen=True)
class RecipeRule:
    """What one recipe needs of a config (checked when the config is built, before anything runs).

    Attributes
    ----------
    name : str
        The recipe's name (``--recipe``, ``config.json``).
    members_per_run : int
        Members one training run yields (run ``r`` yields members ``r*M .. r*M+M-1``).
    epochs_multiple : tuple of (int, str) or None
        ``(m, why)``: ``epochs`` must be a multiple of ``m``.
    needs : dict of str to (value, str)
        Field -> ``(the value it must have, why)``, checked in order.
    min_epochs : tuple of (int, str) or None
        ``(n, why)``: ``epochs`` must be at least ``n``.
    """

    name: str
    members_per_run: int = 1
    epochs_multiple: tuple[int, str] | None = None
    needs: dict[str, tuple[Any, str]] = field(default_factory=dict)
    min_epochs: tuple[int, str] | None = None

    def check(self, cfg: "TrainConfig") -> None:
        """Raise a one-line ``ValueError`` naming the option when ``cfg`` asks for what this recipe cannot do."""
        if self.epochs_multiple is not None and cfg.epochs % self.epochs_multiple[0]:
            self._refuse("epochs", f"a multiple of {self.epochs_multiple[0]}", self.epochs_multiple[1], cfg.epochs)
        for option, (value, why) in self.needs.items():
            if getattr(cfg, option) != value:
                self._refuse(option, str(value), why, getattr(cfg, option))
        if self.min_epochs is not None and cfg.epochs < self.min_epochs[0]:
            self._refuse("epochs", f"at least {self.min_epochs[0]}", self.min_epochs[1], cfg.epochs)

    def _refuse(self, option: str, expected: str, why: str, got: Any) -> None:
        raise ValueError(f"{option} must be {expected} with recipe {self.name} ({why}), got {got!r}")


RECIPE_RULES: dict[str, RecipeRule] = {rule.name: rule for rule in (
    RecipeRule("standard"),
    RecipeRule("snapshot", members_per_run=3, epochs_multiple=(3, "3 equal cycles"),
               needs={"schedule": ("cosine", "its cycles are cosine restarts"),
                      "checkpoint": ("last", "each cycle's last epoch is a member")}),
    RecipeRule("fge", members_per_run=3,
               needs={"schedule": ("cosine", "its cycles are cosine decays"),
                      "checkpoint": ("last", "each cycle's last epoch is a member")},
               min_epochs=(5, "a main cycle of 3 epochs and two short ones")),
    RecipeRule("swa",
               needs={"ema": (0, "its uniform weight average replaces the EMA"),
                      "schedule": ("cosine", "it decays along a cosine before averaging"),
                      "checkpoint": ("last", "the member is the average at the run's end")},
               min_epochs=(4, "3/4 of the run decays, the rest averages")),
)}
"""Every recipe's rule by name, in the order ``--recipe`` lists them."""

RECIPE_NAMES = tuple(RECIPE_RULES)
"""The recipe names ``config.json`` may store."""
