"""The ``ensemble-cnn`` command line through click's CliRunner, on slices of the real MNIST."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from conftest import TINY_ARGS, tiny_args

TINY_TRAIN = [*TINY_ARGS, "--members", "2"]


@pytest.fixture()
def runner():
    return CliRunner()


def test_help_lists_every_command(runner):
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("augment", "train", "evaluate", "run"):
        assert command in result.output


def test_augment_writes_expanded_set_manifest_and_preview(runner, mnist_npz_path, tmp_path):
    out = tmp_path / "expanded.npz"
    args = ["augment", "--data", str(mnist_npz_path), "--limit", "1000", "--copies", "3", "--seed", "5",
            "--out", str(out), "--preview", str(tmp_path / "preview.png")]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    with np.load(out, allow_pickle=False) as npz:
        assert npz["x_train"].shape == (4000, 28, 28) and npz["x_train"].dtype == np.uint8
        assert npz["x_test"].shape == (10000, 28, 28)
        np.testing.assert_array_equal(npz["y_train"], np.tile(npz["y_train"][:1000], 4))
        original = np.load(mnist_npz_path)["x_train"][:1000]
        np.testing.assert_array_equal(npz["x_train"][:1000], original)
        assert not np.array_equal(npz["x_train"][1000:2000], original)
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["n_train"] == 4000 and manifest["seed"] == 5 and manifest["copies"] == 3
    assert manifest["distortion"]["alpha"] == 34.0
    assert (tmp_path / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the same command again gives the same bytes
    again = runner.invoke(main, args)
    assert again.exit_code == 0
    assert json.loads(out.with_suffix(".json").read_text())["sha256"] == manifest["sha256"]
    assert not list(tmp_path.glob(".*tmp*"))


def test_augment_nielsen_mode(runner, mnist_npz_path, tmp_path):
    out = tmp_path / "nielsen.npz"
    result = runner.invoke(main, ["augment", "--data", str(mnist_npz_path), "--limit", "100", "--nielsen",
                                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    with np.load(out) as npz:
        assert npz["x_train"].shape == (500, 28, 28)


@pytest.mark.parametrize(
    "args, code, text",
    [
        (["augment", "--data", "nowhere.npz"], 1, "nowhere.npz: no such file"),
        (["augment", "--copies", "-1"], 2, "--copies"),
        (["augment", "--transforms", "shift,warp"], 2, "--transforms"),
        (["augment", "--sigma", "0"], 2, "--sigma"),
        (["augment", "--max-rotation", "200"], 2, "--max-rotation"),
        (["train", "--members", "0"], 2, "--members"),
        (["train", "--epochs", "0"], 2, "--epochs"),
        (["evaluate", "--run", "no-such-run"], 2, "--run"),
    ],
)
def test_bad_input_gives_one_line_error_and_exit_code(runner, args, code, text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(main, args)
    assert result.exit_code == code, result.output
    assert text in result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1


def test_train_grow_then_evaluate(runner, small_mnist_npz, tmp_path, fake_training):
    """Growing a run trains only the new member and keeps the others byte for byte (untrained members: the
    property is the command's, not the training's; the command really trains in test_run_one_shot)."""
    run_dir = tmp_path / "run"
    train = ["train", "--data", str(small_mnist_npz), *TINY_TRAIN, "--out", str(run_dir)]
    result = runner.invoke(main, train)
    assert result.exit_code == 0, result.output
    assert "majority vote" in result.output and "member_01" in result.output
    report = json.loads((run_dir / "report.json").read_text())
    assert len(report["members"]) == 2
    assert set(report["ensemble"]) == {"majority", "soft"}
    kept = (run_dir / "member_01.keras").read_bytes()

    grown = runner.invoke(main, [*train, "--members", "3"])
    assert grown.exit_code == 0, grown.output
    assert "members 00, 01 already trained, kept" in grown.output and "(trained 1, kept 2)" in grown.output
    assert (run_dir / "member_01.keras").read_bytes() == kept
    assert fake_training == [0, 1, 2], "the grown run trained member 02 alone"
    assert len(json.loads((run_dir / "report.json").read_text())["members"]) == 3

    evaluated = runner.invoke(main, ["evaluate", "--run", str(run_dir), "--vote", "soft", "--members", "2"])
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((run_dir / "report.json").read_text())
    assert report["vote_shown"] == "soft" and [m["name"] for m in report["members"]] == ["member_00", "member_01"]
    assert "## Confusion matrix (soft vote)" in (run_dir / "report.md").read_text()

    other = runner.invoke(main, [*train, "--seed", "3"])
    assert other.exit_code == 1 and "holds a different run (it differs in --seed (0 in the folder, 3 asked))" \
        in other.output


def test_train_on_expanded_set(runner, mnist_npz_path, tmp_path):
    expanded = tmp_path / "expanded.npz"
    assert runner.invoke(main, ["augment", "--data", str(mnist_npz_path), "--limit", "1000", "--copies", "1",
                                "--out", str(expanded)]).exit_code == 0
    run_dir = tmp_path / "run"
    result = runner.invoke(main, ["train", "--expanded", str(expanded), *TINY_TRAIN, "--members", "1",
                                  "--limit", "1000", "--val-size", "100", "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    record = json.loads((run_dir / "member_00.json").read_text())
    # 100 held-out originals: their variants are excluded from training too
    assert record["val_size"] == 100 and record["train_size"] == 1800


def test_run_one_shot(runner, small_mnist_npz, tmp_path):
    run_dir = tmp_path / "oneshot"
    result = runner.invoke(main, ["run", "--data", str(small_mnist_npz), *TINY_TRAIN, "--members", "1",
                                  "--augment", "distort", "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    for name in ("config.json", "member_00.keras", "report.json", "report.md", "preview.png", "errors.png"):
        assert (run_dir / name).is_file(), name


@pytest.mark.parametrize("command", ["train", "run"])
def test_defaults_come_from_train_config(runner, command):
    """The CLI's defaults are TrainConfig's, so TrainConfig() is the command line's default recipe."""
    from ensemble_cnn.config import TrainConfig

    config = TrainConfig()
    defaults = {param.name: param.default for param in main.commands[command].params}
    fields = {"members": "members", "arch": "arch", "recipe": "recipe", "epochs": "epochs",
              "batch_size": "batch_size", "lr": "learning_rate", "final_lr_fraction": "final_lr_fraction",
              "width": "width", "dropout": "dropout", "augmentation": "augmentation", "val_size": "val_size",
              "seed": "seed", "jobs": "jobs", "mode": "mode", "precision": "precision", "backend": "backend"}
    for option, field in fields.items():
        assert defaults[option] == getattr(config, field), option
    for key in ("max_shift", "max_rotation", "max_scale", "alpha", "sigma"):
        assert defaults[key] == config.distortion[key], key
    assert defaults["transforms"] == ",".join(config.distortion["transforms"])
    help_text = runner.invoke(main, [command, "--help"]).output
    assert "[default: 30; 1<=x<=1000]" in help_text and "[default: auto]" in help_text


def test_preset_is_a_set_of_ordinary_options_that_explicit_ones_override(runner, small_mnist_npz, tmp_path,
                                                                        fake_training):
    """(Untrained members: the property is which options the run gets, not 16 epochs of training.)"""
    from ensemble_cnn.config import PRESETS, TrainConfig

    run_dir = tmp_path / "quick"
    args = tiny_args(drop=("--epochs", "--members"))  # these two come from the preset, or from the command line
    result = runner.invoke(main, ["train", "--data", str(small_mnist_npz), "--preset", "quick", *args,
                                  "--members", "1", "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    config = json.loads((run_dir / "config.json").read_text())
    assert config["preset"] == "quick"
    assert config["members"] == 1, "an option given on the command line wins over the preset"
    assert PRESETS["quick"]["epochs"] != TrainConfig().epochs
    assert config["epochs"] == PRESETS["quick"]["epochs"], "the preset sets what the command line leaves"
    help_text = " ".join(runner.invoke(main, ["train", "--help"]).output.split())
    assert "quick = --" in help_text and "best = --" in help_text


def test_preset_best_trains_the_batchnorm_committee_without_the_weight_ema(runner, small_mnist_npz, tmp_path,
                                                                          fake_training):
    """``--preset best`` is round 4's winner: deotte members, EMA off (its BN statistics would not match the
    averaged weights), 2 of them; what it leaves (epochs, schedule) is the default's."""
    from ensemble_cnn.config import TrainConfig

    run_dir = tmp_path / "best"
    args = tiny_args(drop=("--arch", "--members", "--ema"))
    result = runner.invoke(main, ["train", "--data", str(small_mnist_npz), "--preset", "best", *args,
                                  "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["preset"], config["arch"], config["ema"], config["members"]) == ("best", "deotte", 0.0, 2)
    assert config["schedule"] == TrainConfig().schedule and config["label_smoothing"] == TrainConfig().label_smoothing
    assert fake_training == [0, 1]
    help_text = " ".join(runner.invoke(main, ["train", "--help"]).output.split())
    assert "best = --arch deotte --ema 0.0 --members 2" in help_text
