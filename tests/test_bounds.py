"""Bounded training settings, honest plans, and a core that owns what it validates (issue 30, item 8).

Every numeric training setting has a bound a person would run on MNIST (``width`` 4, ``epochs``
1000, ``batch_size`` 4096, ``val_size`` 6000), refused in each of the three places a value comes
from: the command line (usage error, exit 2, naming the option and the bound), a plan file (one
line naming the plan group and the bound, exit 2) and a ``config.json`` read back (one line
naming the file and the field, exit 1). A run folder reused with a plan whose group changed is
refused naming the group and the setting. No TensorFlow runs here: every refusal comes first.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from conftest import TINY, tiny_args
from ensemble_cnn.config import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_VAL_SIZE, MAX_WIDTH, TrainConfig
from ensemble_cnn.errors import RunFolderError
from ensemble_cnn.plan import PlanError
from ensemble_cnn.storage.run_folder import RunFolder

# (option, field, a value far out of bound, the bound as the messages say it)
OUT_OF_BOUNDS = [
    ("--width", "width", "1e6", "4"),
    ("--epochs", "epochs", "100000000", "1000"),
    ("--batch-size", "batch_size", "100000", "4096"),
    ("--val-size", "val_size", "100000", "6000"),
]
IDS = [row[1] for row in OUT_OF_BOUNDS]


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Error")]


def absent_data(tmp_path: Path) -> list[str]:
    """``--data`` naming no file: a refusal must come from the option itself, before any data is read
    (and a build without the bound stops at the data, exit 1, instead of training a huge model)."""
    return ["--data", str(tmp_path / "no-such-mnist.npz")]


def test_the_bounds_are_what_the_messages_say():
    assert (MAX_WIDTH, MAX_EPOCHS, MAX_BATCH_SIZE, MAX_VAL_SIZE) == (4.0, 1000, 4096, 6000)
    edge = TrainConfig(width=4, epochs=1000, batch_size=4096, val_size=6000)  # the bounds themselves are allowed
    assert (edge.width, edge.epochs, edge.batch_size, edge.val_size) == (4, 1000, 4096, 6000)


# --------------------------------------------------------------------------- the command line
@pytest.mark.parametrize("command", ["train", "run"])
@pytest.mark.parametrize("option, field, value, bound", OUT_OF_BOUNDS, ids=IDS)
def test_an_option_beyond_its_bound_is_a_usage_error(tmp_path, command, option, field, value, bound):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, [command, *absent_data(tmp_path), *tiny_args(**{field: value}),
                                       "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = error_lines(result.output)
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert f"'{option}'" in lines[0] and f"<={bound}" in lines[0], lines[0]
    assert not out.exists(), "nothing is written for a refused option"


# --------------------------------------------------------------------------- a plan
@pytest.mark.parametrize("option, field, value, bound", OUT_OF_BOUNDS, ids=IDS)
def test_a_plan_group_beyond_a_bound_is_refused_naming_the_group(tmp_path, option, field, value, bound):
    number = int(float(value)) if field != "width" else 50
    plan = tmp_path / "plan.toml"
    plan.write_text(f"[[members]]\ncount = 1\n\n[[members]]\nname = \"big\"\ncount = 1\n{field} = {number}\n",
                    encoding="utf-8")
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", *absent_data(tmp_path), *tiny_args(drop=("--members",)),
                                       "--plan", str(plan), "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = error_lines(result.output)
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert f"plan group 2: {field} must be" in lines[0] and bound in lines[0] and str(number) in lines[0], lines[0]
    assert not out.exists(), "nothing is written for a refused plan"


def test_a_plans_val_size_is_refused_not_silently_cut():
    """``val_size = 100000`` was kept in config.json while a member held out only a tenth of its digits."""
    with pytest.raises(PlanError) as caught:
        TrainConfig(**{**TINY, "members": 2}, plan=[{"count": 1}, {"count": 1, "val_size": 100000}])
    message = str(caught.value)
    assert "\n" not in message and message.startswith("plan group 2: val_size must be")
    assert f"at most {MAX_VAL_SIZE}" in message and "got 100000" in message
    # the largest allowed value is kept as given: what config.json says is what a member may hold out
    config = TrainConfig(**{**TINY, "members": 2}, plan=[{"count": 1}, {"count": 1, "val_size": MAX_VAL_SIZE}])
    assert config.member_config(1).val_size == MAX_VAL_SIZE


# --------------------------------------------------------------------------- config.json read back
@pytest.mark.parametrize("option, field, value, bound", OUT_OF_BOUNDS, ids=IDS)
def test_a_config_json_beyond_a_bound_is_a_run_folder_error(tmp_path, option, field, value, bound):
    run = tmp_path / "run"
    run.mkdir()
    data = TrainConfig(**TINY).to_dict()
    data[field] = float(value) if field == "width" else int(float(value))
    (run / "config.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(RunFolderError) as caught:
        RunFolder(run).read_config()
    message = str(caught.value)
    assert "\n" not in message and "config.json" in message and f"{field} must be" in message and bound in message
    result = CliRunner().invoke(main, ["evaluate", "--run", str(run)])
    assert result.exit_code == 1, result.output
    lines = error_lines(result.output)
    assert len(lines) == 1 and "Traceback" not in result.output and f"{field} must be" in lines[0], result.output


# --------------------------------------------------------------------------- a changed plan group
def test_a_changed_group_is_refused_naming_the_group_and_the_setting(tmp_path):
    def config(width: float) -> TrainConfig:
        return TrainConfig(**{**TINY, "members": 3},
                           plan=[{"count": 1}, {"name": "deotte", "count": 2, "arch": "deotte", "width": width}])

    run = tmp_path / "run"
    run.mkdir()
    folder_config = config(0.75)
    (run / "config.json").write_text(json.dumps(folder_config.to_dict()), encoding="utf-8")
    assert RunFolder(run).check_compatible(config(0.75)) == folder_config  # the same plan: accepted
    with pytest.raises(RunFolderError) as caught:
        RunFolder(run).check_compatible(config(0.5))
    message = str(caught.value)
    assert "\n" not in message and "member 01" in message
    assert "plan group 2 ('deotte'): width 0.5 asked, 0.75 in the folder" in message, message
    assert "a run grows only by adding members to its last group or adding groups" in message


def test_a_group_in_the_place_of_another_names_both_and_the_settings(tmp_path):
    folder = TrainConfig(**{**TINY, "members": 2}, plan=[{"count": 1}, {"count": 1, "normalize": "deskew"}])
    asked = TrainConfig(**{**TINY, "members": 2}, plan=[{"count": 1}, {"count": 1, "normalize": "width-14"}])
    (message,) = asked.identity_differences(folder)
    assert ("plan group 2 ('normalize=width-14') asked, group 2 ('normalize=deskew') in the folder: "
            "normalize 'width-14' asked, 'deskew' in the folder") in message, message


# --------------------------------------------------------------------------- the core owns the recipe names
def test_the_recipe_implementations_are_registered_against_the_cores_rules():
    from ensemble_cnn.recipe_rules import RECIPE_NAMES, RECIPE_RULES
    from ensemble_cnn.training.recipes import RECIPES

    assert list(RECIPES) == list(RECIPE_NAMES) == list(RECIPE_RULES)
    for name, recipe in RECIPES.items():
        assert recipe.name == name and recipe.rule is RECIPE_RULES[name]
        assert recipe.members_per_run == RECIPE_RULES[name].members_per_run
    with pytest.raises(ValueError, match=r"recipe must be one of standard, snapshot, fge, swa, got 'bogus'"):
        TrainConfig(recipe="bogus")
