"""A member plan (``train --plan PLAN.toml``) and input normalization, through the real paths.

ONE mixed run is trained (module fixture, the tiny recipe of ``TINY_ARGS``) from the plan

* ``base`` x 2 (the base options),
* ``normalize=deskew`` x 1,
* ``epochs=2,normalize=width-14,width=0.5`` x 1,

and reused: its records and report, every way of getting a member's probabilities (what
training saved, ``evaluate``, :class:`Ensemble`, ``predict``, ``serve``, the exported model)
agreeing on the same digits, and growing copies of it. The plan file's errors, the scheduling
helpers (``plan_groups``, ``run_cost``), :class:`DigitViews` and the old-config compatibility
are checked without training.
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from augment import normalize
from cli.main import main
from conftest import tiny_args
from ensemble_cnn.config import TrainConfig
from ensemble_cnn.errors import EnsembleCnnError
from ensemble_cnn.evaluation.evaluate import evaluate_run
from ensemble_cnn.inference.ensemble import DigitViews, Ensemble, digit_views
from ensemble_cnn.models import load_member
from ensemble_cnn.plan import PlanError, canonical_plan, plan_differences, read_plan
from ensemble_cnn.storage.run_folder import RunFolder

PLAN = """\
[[members]]
count = 2

[[members]]
count = 1
normalize = "deskew"

[[members]]
count = 1
normalize = "width-14"
width = 0.5
epochs = 2
"""
GROUPS = ["base", "normalize=deskew", "epochs=2,normalize=width-14,width=0.5"]
MEMBER_GROUPS = [GROUPS[0], GROUPS[0], GROUPS[1], GROUPS[2]]
NORMALIZATIONS = ["none", "none", "deskew", "width-14"]
N_DIGITS = 30  # test digits every path is compared on
ATOL = 1e-5


def plan_args(*extra: str) -> list[str]:
    """The tiny options without --members (a plan sets it)."""
    return [*tiny_args(drop=("--members",)), *extra]


def write_plan(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def member_hashes(run: Path, indices) -> dict[str, str]:
    folder = RunFolder(run)
    return {path.name: sha256(path) for i in indices for path in vars(folder.files(i)).values()}


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Error")]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, small_mnist_npz):
    """The mixed run, trained once by ``ensemble-cnn train --plan`` (sequential): (run folder, plan, output)."""
    root = tmp_path_factory.mktemp("plan")
    plan = write_plan(root / "plan.toml", PLAN)
    run = root / "mixed"
    result = CliRunner().invoke(main, ["train", "--data", str(small_mnist_npz), *plan_args(), "--plan", str(plan),
                                       "--out", str(run)])
    assert result.exit_code == 0, result.output
    return run, plan, result.output


@pytest.fixture(scope="module")
def digits(small_mnist_npz):
    with np.load(small_mnist_npz) as npz:
        return npz["x_test"][:N_DIGITS], npz["y_test"][:N_DIGITS].astype(np.int64)


@pytest.fixture(scope="module")
def saved(mixed):
    """What training saved: every member's probabilities of the first N_DIGITS test digits, (4, N, 10)."""
    folder = RunFolder(mixed[0])
    return np.stack([np.load(folder.files(i).probabilities)[:N_DIGITS] for i in range(4)])


def records(run: Path) -> list[dict]:
    folder = RunFolder(run)
    return [json.loads(folder.files(i).record.read_text()) for i in range(4)]


# --------------------------------------------------------------------------- the plan file
def test_read_plan_good_file(tmp_path):
    groups = read_plan(write_plan(tmp_path / "p.toml", PLAN + '\n[[members]]\nname = "wide"\ncount = 3\nwidth = 2\n'
                                  'distortion = { alpha = 20.0 }\n'))
    assert groups == [{"count": 2}, {"count": 1, "normalize": "deskew"},
                      {"count": 1, "normalize": "width-14", "width": 0.5, "epochs": 2},
                      {"name": "wide", "count": 3, "width": 2, "distortion": {"alpha": 20.0}}]


def test_plan_names_counts_and_canonical_settings(tiny_config):
    config = tiny_config(members=7, augmentation="distort", plan=[
        {"count": 2}, {"count": 1, "normalize": "deskew"}, {"count": 1, "width": 2, "normalize": "deskew"},
        {"count": 1, "normalize": "deskew"}, {"count": 1, "normalize": "deskew"},
        {"count": 1, "name": "soft", "distortion": {"alpha": 20}}])
    assert [g["name"] for g in config.plan] == ["base", "normalize=deskew", "normalize=deskew,width=2.0",
                                                "normalize=deskew#2", "normalize=deskew#3", "soft"]
    assert config.plan[2]["width"] == 2.0 and isinstance(config.plan[2]["width"], float)
    assert [config.group_of(i) for i in range(7)] == ["base", "base", "normalize=deskew",
                                                      "normalize=deskew,width=2.0", "normalize=deskew#2",
                                                      "normalize=deskew#3", "soft"]
    assert config.member_config(0) == config.member_config(1)
    assert config.member_config(0).normalize == "none" and config.member_config(0).plan is None
    assert config.member_config(3).width == 2.0 and config.member_config(3).normalize == "deskew"
    # a group's distortion is merged over the base's
    assert config.member_config(6).distortion == {**config.distortion, "alpha": 20.0}
    assert config.member_config(6).distortion != config.distortion
    assert config.member_spec(3) == {"group": "normalize=deskew,width=2.0", "arch": "nielsen", "width": 2.0,
                                     "dropout": None, "normalize": "deskew", "epochs": 1}
    # the same config from its own canonical plan (config.json round trip)
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.plan == config.plan


def test_an_empty_distortion_table_is_no_setting(tiny_config):
    config = tiny_config(members=2, augmentation="distort", plan=[{"count": 1}, {"count": 1, "distortion": {}}])
    assert [group["name"] for group in config.plan] == ["base", "base#2"]
    assert "distortion" not in config.plan[1]


def test_a_distortion_without_augmentation_is_refused(tiny_config):
    with pytest.raises(PlanError, match="plan group 2: distortion needs augmentation distort"):
        tiny_config(members=2, augmentation="none", plan=[{"count": 1}, {"count": 1, "distortion": {"alpha": 20.0}}])


@pytest.mark.parametrize("text, message", [
    ("", "a plan needs at least one [[members]] table"),
    ("count = 3\n", "unknown top-level key 'count'"),
    ("[[members]]\ncount = [1\n", "not valid TOML"),
    ("[[members]]\ncount = 1\nseed = 3\n", "plan group 1: unknown key 'seed'"),
    ("[[members]]\ncount = 1\n[[members]]\nwidth = 2.0\n", "plan group 2: no count"),
    ("[members]\ncount = 1\n", "a plan needs at least one [[members]] table"),
])
def test_read_plan_refuses(tmp_path, text, message):
    path = write_plan(tmp_path / "p.toml", text)
    with pytest.raises(PlanError, match=None) as caught:
        read_plan(path)
    assert isinstance(caught.value, EnsembleCnnError) and isinstance(caught.value, ValueError)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("groups, message", [
    ([], "non-empty list"),
    ([{"count": 0}, {"count": 1}], "plan group 1: count must be an integer >= 1, got 0"),
    ([{"count": 1}, {"count": "3"}], "plan group 2: count must be an integer >= 1, got '3'"),
    ([{"count": True}], "plan group 1: count must be an integer >= 1, got True"),
    ([{"count": 1, "name": "a"}, {"count": 1, "name": "a"}], "plan group 2: name 'a' is given to two groups"),
    ([{"count": 600}, {"count": 401}], "plan must hold at most 1000 members"),
])
def test_canonical_plan_refuses(groups, message):
    with pytest.raises(PlanError) as caught:
        canonical_plan(groups, max_members=1000)
    assert message in str(caught.value)


@pytest.mark.parametrize("plan, message", [
    ([{"count": 1, "normalize": "bogus"}], "plan group 1: normalize must be none, deskew or width-W"),
    ([{"count": 1}, {"count": 1, "arch": "bogus"}], "plan group 2: arch must be one of"),
    ([{"count": 1, "width": 0}], "plan group 1: width must be"),
])
def test_train_config_refuses_bad_group_settings(tiny_config, plan, message):
    with pytest.raises(PlanError, match=message):
        tiny_config(members=len(plan), plan=plan)


def test_train_config_members_must_be_the_plans_total(tiny_config):
    with pytest.raises(PlanError, match=r"members must be the plan's total \(3\), got 4"):
        tiny_config(members=4, plan=[{"count": 2}, {"count": 1, "normalize": "deskew"}])


CLI_PLAN_ERRORS = [
    ("[[members]]\ncount = 1\nfoo = 1\n", "plan group 1: unknown key 'foo'"),
    ("[[members]]\nwidth = 0.5\n", "plan group 1: no count"),
    ("[[members]]\ncount = 2\n[[members]]\ncount = 0\n", "plan group 2: count must be an integer >= 1, got 0"),
    ("[[members]]\ncount = 2\n[[members]]\ncount = \"3\"\n", "plan group 2: count must be an integer >= 1"),
    ("[[members]]\ncount = true\n", "plan group 1: count must be an integer >= 1, got True"),
    ("[[members]]\ncount = 1\nnormalize = \"bogus\"\n", "plan group 1: normalize must be none, deskew or width-W"),
    ("[[members]]\ncount = 1\n[[members]]\ncount = 1\narch = \"bogus\"\n", "plan group 2: arch must be one of"),
    ("", "a plan needs at least one [[members]] table"),
    ("x = 1\n", "unknown top-level key 'x'"),
    ("[[members]]\ncount = [1\n", "not valid TOML"),
    ("[[members]]\nname = \"a\"\ncount = 1\n[[members]]\nname = \"a\"\ncount = 1\n",
     "plan group 2: name 'a' is given to two groups"),
]
CLI_PLAN_COUNT_ERRORS = [
    ("[[members]]\ncount = 0\n", "plan group 1: count must be an integer >= 1, got 0"),
    ("[[members]]\ncount = \"3\"\n", "plan group 1: count must be an integer >= 1, got '3'"),
    ("[[members]]\ncount = 1.5\n", "plan group 1: count must be an integer >= 1, got 1.5"),
    ("[[members]]\ncount = 999\n[[members]]\ncount = 2\n", "plan must hold at most 1000 members"),
]


@pytest.mark.parametrize("text, message", CLI_PLAN_ERRORS + CLI_PLAN_COUNT_ERRORS)
def test_train_refuses_a_bad_plan_file(tmp_path, small_mnist_npz, text, message):
    plan = write_plan(tmp_path / "bad plan.toml", text)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["train", "--data", str(small_mnist_npz), *plan_args(), "--plan", str(plan),
                                       "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = error_lines(result.output)
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert str(plan) in lines[0] and message in lines[0], lines[0]
    assert not out.exists(), "nothing is written for a bad plan"


def test_train_refuses_members_other_than_the_plans_total(tmp_path, small_mnist_npz):
    plan = write_plan(tmp_path / "plan.toml", PLAN)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["train", "--data", str(small_mnist_npz), *plan_args("--members", "3"),
                                       "--plan", str(plan), "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = error_lines(result.output)
    assert len(lines) == 1 and "--members 3" in lines[0] and "(4 in" in lines[0], result.output
    assert not out.exists()
    missing = CliRunner().invoke(main, ["train", "--data", str(small_mnist_npz), *plan_args(),
                                        "--plan", str(tmp_path / "nowhere.toml"), "--out", str(out)])
    assert missing.exit_code == 2 and "--plan" in missing.output and not out.exists()


def test_plan_total_equal_to_members_is_accepted_and_default_folder(tmp_path, small_mnist_npz, monkeypatch,
                                                                     fake_training):
    """--members equal to the plan's total is fine; without --out the run goes to artifacts/runs/plan-k{N}-s{seed}
    (untrained members: the property is the folder's name)."""
    monkeypatch.chdir(tmp_path)
    plan = write_plan(tmp_path / "plan.toml", "[[members]]\ncount = 1\n[[members]]\ncount = 1\nnormalize = \"deskew\"\n")
    result = CliRunner().invoke(main, ["train", "--data", str(small_mnist_npz), *plan_args("--members", "2",
                                                                                            "--seed", "5"),
                                       "--plan", str(plan)])
    assert result.exit_code == 0, result.output
    run = tmp_path / "artifacts" / "runs" / "plan-k2-s5"
    assert TrainConfig.load(run / "config.json").plan[1] == {"name": "normalize=deskew", "count": 1,
                                                            "normalize": "deskew"}
    assert fake_training == [0, 1]


# --------------------------------------------------------------------------- the mixed run
def test_mixed_run_records_and_config(mixed):
    run, _, output = mixed
    config = TrainConfig.load(run / "config.json")
    assert config.members == 4 and [g["name"] for g in config.plan] == GROUPS
    assert [g["count"] for g in config.plan] == [2, 1, 1]
    for index, record in enumerate(records(run)):
        assert record["spec"] == config.member_spec(index)
        assert record["spec"]["group"] == MEMBER_GROUPS[index]
        assert record["spec"]["normalize"] == NORMALIZATIONS[index]
    spec = records(run)[3]["spec"]
    assert spec == {"group": GROUPS[2], "arch": "nielsen", "width": 0.5, "dropout": None, "normalize": "width-14",
                    "epochs": 2}
    history = json.loads(RunFolder(run).files(3).history.read_text())
    assert len(history["accuracy"]) == 2, "the width-14 group trains 2 epochs"
    assert len(json.loads(RunFolder(run).files(0).history.read_text())["accuracy"]) == 1
    # the wider member really is wider: twice the channels of the base (about 4x its weights)
    assert load_member(RunFolder(run).files(3).model).count_params() > \
        3 * load_member(RunFolder(run).files(0).model).count_params()
    assert "(trained 4, kept 0)" in output


def test_mixed_run_trains_longest_first(mixed):
    """member 03 (2 epochs at width 0.5: 8x the others' cost) trains first, then the others in index order."""
    _, _, output = mixed
    order = []
    for line in output.splitlines():
        if line.startswith("member ") and "epoch" in line:
            index = int(line.split()[1])
            if index not in order:
                order.append(index)
    assert order == [3, 0, 1, 2], output


def test_mixed_run_report_groups(mixed):
    run, _, output = mixed
    report = json.loads((run / "report.json").read_text())
    accuracy = {m["name"]: m["test_accuracy"] for m in report["members"]}
    assert [m["spec"]["group"] for m in report["members"]] == MEMBER_GROUPS
    assert [g["name"] for g in report["groups"]] == GROUPS
    assert [g["members"] for g in report["groups"]] == [["member_00", "member_01"], ["member_02"], ["member_03"]]
    probabilities = np.stack([np.load(RunFolder(run).files(i).probabilities) for i in range(4)])
    with np.load(TrainConfig.load(run / "config.json").data) as npz:
        y = npz["y_test"]
    for group in report["groups"]:
        own = [accuracy[name] for name in group["members"]]
        assert group["mean"] == pytest.approx(np.mean(own), abs=1e-9)
        assert group["std"] == pytest.approx(np.std(own), abs=1e-9)
        positions = [int(name[-2:]) for name in group["members"]]
        soft = np.mean(probabilities[positions].mean(axis=0).argmax(axis=1) == y)
        assert group["soft_accuracy"] == pytest.approx(soft, abs=1e-9)
        assert "group" not in group["spec"] and group["spec"]["normalize"] == \
            NORMALIZATIONS[positions[0]]
    assert report["groups"][1]["majority_accuracy"] == accuracy["member_02"]  # one member: its own vote
    markdown = (run / "report.md").read_text()
    assert "## Groups" in markdown
    section = markdown.split("## Groups", 1)[1].split("\n## ", 1)[0]
    for group in report["groups"]:
        assert f"| {group['name']} | {len(group['members'])} |" in section
    for group in report["groups"]:
        line = f"group {group['name']} ({len(group['members'])} member"
        assert line in output
    assert output.index("group base (2 members): mean") < output.index(f"group {GROUPS[2]} (1 member): mean")


# --------------------------------------------------------------------------- one member, every path
def test_normalization_is_really_applied(mixed, digits, saved):
    x, _ = digits
    folder = RunFolder(mixed[0])
    for index, name in ((2, "deskew"), (3, "width-14")):
        model = load_member(folder.files(index).model)
        normalized = model.predict(normalize(x, name), verbose=0)
        raw = model.predict(x, verbose=0)
        np.testing.assert_allclose(saved[index], normalized, atol=ATOL)
        assert np.abs(raw - saved[index]).max() > 1e-3, f"member {index} saved raw-digit probabilities"
    base = load_member(folder.files(0).model)
    np.testing.assert_allclose(saved[0], base.predict(x, verbose=0), atol=ATOL)


def test_compare_rescores_a_mixed_run_with_each_members_normalization(mixed, small_mnist_npz):
    # with --data, compare predicts again from the models (each member under its own normalization): its figures
    # must equal those of the probabilities training saved (compare without --data)
    saved_figures = CliRunner().invoke(main, ["compare", str(mixed[0]), str(mixed[0]), "--json"])
    again = CliRunner().invoke(main, ["compare", str(mixed[0]), str(mixed[0]), "--json", "--data", str(small_mnist_npz)])
    assert saved_figures.exit_code == 0 and again.exit_code == 0, saved_figures.output + again.output
    assert json.loads(saved_figures.output)["runs"] == json.loads(again.output)["runs"]


def test_evaluate_and_ensemble_equal_what_training_saved(mixed, digits, saved, tmp_path):
    run = shutil.copytree(mixed[0], tmp_path / "copy")  # evaluate rewrites the report
    x, _ = digits
    report = evaluate_run(run, reload=True, plots=False, log=None)
    assert [m["test_accuracy"] for m in report["members"]] == \
        pytest.approx([r["test_accuracy"] for r in records(run)], abs=1e-9)
    ensemble = Ensemble.load(mixed[0])
    assert ensemble.normalizations_ == NORMALIZATIONS
    np.testing.assert_allclose(ensemble.member_probabilities(x), saved, atol=ATOL)
    np.testing.assert_allclose(ensemble.member_probabilities(x, batch_size=7), saved, atol=ATOL)
    assert Ensemble.load(mixed[0], members=3).normalizations_ == NORMALIZATIONS[:3]


def test_predict_equals_what_training_saved(mixed, digits, saved, tmp_path):
    x, _ = digits
    for i, digit in enumerate(x):
        Image.fromarray(digit).save(tmp_path / f"d{i:02d}.png")  # light ink on black, as MNIST
    result = CliRunner().invoke(main, ["predict", "--run", str(mixed[0]), "--preprocess", "none", "--vote", "soft",
                                       "--format", "json", str(tmp_path)])
    assert result.exit_code == 0, result.output
    answers = {Path(a["path"]).name: a for a in json.loads(result.output)["predictions"]}
    assert len(answers) == N_DIGITS
    mean = saved.mean(axis=0)
    for i in range(N_DIGITS):
        answer = answers[f"d{i:02d}.png"]
        np.testing.assert_allclose([answer[f"p{c}"] for c in range(10)], mean[i], atol=ATOL)
        assert answer["member_labels"] == " ".join(str(v) for v in saved[:, i].argmax(axis=1))
        assert answer["label"] == int(mean[i].argmax())


def test_serve_uses_each_members_normalization(mixed, digits):
    from ensemble_cnn.inference.predict import ImagePredictor
    from ensemble_cnn.inference.serve import make_server, server_url

    x, _ = digits
    server = make_server(ImagePredictor(Ensemble.load(mixed[0]), voting="soft"), port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        buffer = io.BytesIO()
        Image.fromarray(255 - x[0]).resize((140, 140)).save(buffer, format="PNG")  # a drawing: dark ink on white
        request = urllib.request.Request(server_url(server) + "api/predict", data=buffer.getvalue(), method="POST",
                                         headers={"Content-Type": "image/png"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200
            answer = json.loads(response.read())
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    seen = np.array(answer["input"], dtype=np.uint8)[None]  # the digit the members were given
    folder = RunFolder(mixed[0])
    expected = np.stack([load_member(folder.files(i).model).predict(normalize(seen, NORMALIZATIONS[i]), verbose=0)[0]
                         for i in range(4)])
    assert [m["name"] for m in answer["members"]] == [f"member_{i:02d}" for i in range(4)]
    np.testing.assert_allclose([m["probabilities"] for m in answer["members"]], expected, atol=ATOL)
    np.testing.assert_allclose(answer["probabilities"], expected.mean(axis=0), atol=ATOL)
    assert [m["label"] for m in answer["members"]] == expected.argmax(axis=1).tolist()


def test_export_refuses_normalized_members_and_exports_the_others(mixed, digits, saved, tmp_path):
    import keras

    run = mixed[0]
    out = tmp_path / "all.keras"
    refused = CliRunner().invoke(main, ["export", "--run", str(run), "--out", str(out)])
    assert refused.exit_code == 1, refused.output
    lines = error_lines(refused.output)
    assert len(lines) == 1 and "cannot export members with an input normalization" in lines[0], refused.output
    assert "member_02 (deskew)" in lines[0] and "member_03 (width-14)" in lines[0]
    assert "member_00" not in lines[0] and "member_01" not in lines[0]
    assert not out.exists() and not list(tmp_path.iterdir())
    three = CliRunner().invoke(main, ["export", "--run", str(run), "--out", str(out), "--members", "3"])
    assert three.exit_code == 1 and "member_02 (deskew)" in three.output and "member_03" not in three.output
    assert not out.exists()

    out = tmp_path / "two.keras"
    result = CliRunner().invoke(main, ["export", "--run", str(run), "--out", str(out), "--members", "2"])
    assert result.exit_code == 0, result.output
    model = keras.saving.load_model(out, safe_mode=True)
    members = model.predict(digits[0], verbose=0)["members"]
    assert members.shape == (N_DIGITS, 2, 10)
    np.testing.assert_allclose(members, saved[:2].transpose(1, 0, 2), atol=ATOL)


def test_ensemble_to_keras_refuses_normalized_members(mixed):
    with pytest.raises(EnsembleCnnError, match=r"member_02 \(deskew\)"):
        Ensemble.load(mixed[0], members=3).to_keras()


# --------------------------------------------------------------------------- growing a mixed run
def test_grow_by_a_group_trains_only_the_new_member(mixed, small_mnist_npz, tmp_path):
    run = shutil.copytree(mixed[0], tmp_path / "grown")
    before = member_hashes(run, range(4))
    plan = write_plan(tmp_path / "grown.toml", PLAN + '\n[[members]]\ncount = 1\narch = "keras"\n')
    result = CliRunner().invoke(main, ["train", "--data", str(small_mnist_npz), *plan_args(), "--plan", str(plan),
                                       "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "(trained 1, kept 4)" in result.output
    assert member_hashes(run, range(4)) == before, "the members already trained are kept byte for byte"
    record = json.loads(RunFolder(run).files(4).record.read_text())
    assert record["spec"]["group"] == "arch=keras" and record["spec"]["arch"] == "keras"
    from ensemble_cnn.models import build_model
    assert load_member(RunFolder(run).files(4).model).count_params() == build_model("keras", width=0.25).count_params()
    config = TrainConfig.load(run / "config.json")
    assert config.members == 5 and [g["name"] for g in config.plan] == [*GROUPS, "arch=keras"]
    report = json.loads((run / "report.json").read_text())
    assert [g["name"] for g in report["groups"]] == [*GROUPS, "arch=keras"]


def test_grow_a_middle_group_is_refused(mixed, small_mnist_npz, tmp_path):
    run = shutil.copytree(mixed[0], tmp_path / "middle")
    config_bytes = (run / "config.json").read_bytes()
    before = member_hashes(run, range(4))
    plan = write_plan(tmp_path / "middle.toml", PLAN.replace('count = 1\nnormalize = "deskew"',
                                                             'count = 2\nnormalize = "deskew"'))
    assert read_plan(plan)[1]["count"] == 2
    result = CliRunner().invoke(main, ["train", "--data", str(small_mnist_npz), *plan_args(), "--plan", str(plan),
                                       "--out", str(run)])
    assert result.exit_code == 1, result.output
    assert "a run grows only by adding members to its last group or adding groups" in result.output
    assert len(error_lines(result.output)) == 1
    assert (run / "config.json").read_bytes() == config_bytes
    assert member_hashes(run, range(4)) == before and not RunFolder(run).files(4).model.exists()


def test_changing_a_groups_settings_is_refused(mixed, small_mnist_npz, tmp_path):
    run = shutil.copytree(mixed[0], tmp_path / "changed")
    config_bytes = (run / "config.json").read_bytes()
    plan = write_plan(tmp_path / "changed.toml", PLAN.replace("width-14", "width-16"))
    result = CliRunner().invoke(main, ["train", "--data", str(small_mnist_npz), *plan_args(), "--plan", str(plan),
                                       "--out", str(run)])
    assert result.exit_code == 1 and "a run grows only" in result.output and "member 03" in result.output, \
        result.output
    assert (run / "config.json").read_bytes() == config_bytes


def test_plain_train_on_a_mixed_run(mixed, small_mnist_npz, tmp_path):
    """Without --plan, --members 2 uses the first two (the base group): nothing trains, the plan stays;
    --members 5 would make member 02 a base member: refused."""
    run = shutil.copytree(mixed[0], tmp_path / "plain")
    plan = TrainConfig.load(run / "config.json").plan
    before = member_hashes(run, range(4))
    result = CliRunner().invoke(main, ["train", "--data", str(small_mnist_npz), *tiny_args(members="2"),
                                       "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "(trained 0, kept 2)" in result.output
    config = TrainConfig.load(run / "config.json")
    assert config.plan == plan and config.members == 4
    assert member_hashes(run, range(4)) == before
    grown = CliRunner().invoke(main, ["train", "--data", str(small_mnist_npz), *tiny_args(members="5"),
                                      "--out", str(run)])
    assert grown.exit_code == 1 and "a run grows only" in grown.output, grown.output
    assert not RunFolder(run).files(4).model.exists()


def test_a_plain_run_grows_by_a_plan_starting_with_its_members(small_mnist_npz, tmp_path, fake_training):
    """A plan-less run of K members is the plan [{count = K}] (untrained members: the property is the folder's)."""
    run = tmp_path / "plain"
    first = CliRunner().invoke(main, ["train", "--data", str(small_mnist_npz), *tiny_args(members="2"),
                                      "--out", str(run)])
    assert first.exit_code == 0, first.output
    plan = write_plan(tmp_path / "plan.toml", "[[members]]\ncount = 2\n[[members]]\ncount = 1\nnormalize = \"deskew\"\n")
    grown = CliRunner().invoke(main, ["train", "--data", str(small_mnist_npz), *plan_args(), "--plan", str(plan),
                                      "--out", str(run)])
    assert grown.exit_code == 0, grown.output
    assert fake_training == [0, 1, 2] and "(trained 1, kept 2)" in grown.output
    config = TrainConfig.load(run / "config.json")
    assert [g["name"] for g in config.plan] == ["base", "normalize=deskew"] and config.members == 3
    other = write_plan(tmp_path / "other.toml", "[[members]]\ncount = 1\n[[members]]\ncount = 2\nnormalize = \"deskew\"\n")
    refused = CliRunner().invoke(main, ["train", "--data", str(small_mnist_npz), *plan_args(), "--plan", str(other),
                                        "--out", str(run)])
    assert refused.exit_code == 1 and "a run grows only" in refused.output and fake_training == [0, 1, 2]


def test_plan_differences():
    base = [{"name": "base", "count": 2}]
    grown = [{"name": "base", "count": 3}]
    more = [{"name": "base", "count": 2}, {"name": "normalize=deskew", "count": 1, "normalize": "deskew"}]
    assert plan_differences(None, 2, None, 2) == []
    assert plan_differences(base, 2, None, 2) == [] and plan_differences(None, 2, base, 2) == []
    assert plan_differences(grown, 3, base, 2) == []  # the last group grown
    assert plan_differences(more, 3, base, 2) == []  # a group added
    assert plan_differences(None, 1, more, 3) == []  # fewer: the first members
    assert plan_differences(None, 3, more, 3)  # member 02 would be base
    wrong = plan_differences([{"name": "base", "count": 3}, *more[1:]], 4, more, 3)
    assert len(wrong) == 1 and "member 02" in wrong[0] and "a run grows only" in wrong[0]


# --------------------------------------------------------------------------- scheduling
RUNS = [(i, [i]) for i in range(5)]
GROUP_OF = {0: "a", 1: "a", 2: "b", 3: "b", 4: "b"}.get


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_fused_never_mixes_plan_groups(jobs):
    from ensemble_cnn.training.train import plan_groups

    remote, local = plan_groups(RUNS, mode="fused", jobs=jobs, group_of=GROUP_OF)
    tasks = remote + local
    assert sorted(run for task in tasks for run in task) == RUNS, "every run once"
    for task in tasks:
        assert task and len({GROUP_OF(run) for run, _ in task}) == 1, tasks
    if jobs == 1:
        assert remote == [] and local == [RUNS[:2], RUNS[2:]]
    # without groups a fused model holds them all
    assert plan_groups(RUNS, mode="fused", jobs=1) == ([], [RUNS])


@pytest.mark.parametrize("mode, jobs", [("processes", 2), ("processes", 3), ("sequential", 1)])
def test_plan_groups_unchanged_outside_fused(mode, jobs):
    from ensemble_cnn.training.train import plan_groups

    assert plan_groups(RUNS, mode=mode, jobs=jobs, group_of=GROUP_OF) == plan_groups(RUNS, mode=mode, jobs=jobs)


def test_run_cost(tiny_config):
    from ensemble_cnn.models import multiply_adds
    from ensemble_cnn.training.member import run_cost

    config = tiny_config(members=4, plan=[{"count": 1}, {"count": 1, "epochs": 3}, {"count": 1, "width": 0.5},
                                          {"count": 1, "arch": "keras"}])
    costs = [run_cost(config, i) for i in range(4)]
    assert costs[0] == multiply_adds("nielsen", 0.25)
    assert costs[1] == pytest.approx(3 * costs[0])
    assert costs[2] == multiply_adds("nielsen", 0.5) > 3 * costs[0]
    assert costs[3] == pytest.approx(multiply_adds("keras", 0.25))
    assert multiply_adds("an3", 2.0) > 3 * multiply_adds("an3")


@pytest.mark.parametrize("plan, order", [
    ([{"count": 2}, {"count": 1, "epochs": 3}], [2, 0, 1]),
    ([{"count": 1}, {"count": 1, "arch": "keras"}, {"count": 1, "epochs": 3}], [1, 2, 0]),
    ([{"count": 3}], [0, 1, 2]),
])
def test_training_order_is_longest_first(tiny_config, tmp_path, fake_training, plan, order):
    from ensemble_cnn.training.member import run_cost
    from ensemble_cnn.training.train import train_ensemble

    config = tiny_config(members=sum(g["count"] for g in plan), plan=plan)
    assert sorted(range(config.members), key=lambda i: (-run_cost(config, i), i)) == order
    assert train_ensemble(config, tmp_path / "run", log=None).complete
    assert fake_training == order


# --------------------------------------------------------------------------- inference pieces
def test_digit_views_normalize_before_the_views(synthetic_digits):
    x = synthetic_digits[:20]
    views = DigitViews(x, "shift")
    deskewed = views.get("deskew")
    np.testing.assert_array_equal(deskewed, digit_views(normalize(x, "deskew"), "shift"))
    np.testing.assert_array_equal(views.get("none"), digit_views(x, "shift"))
    wrong = np.stack([normalize(view, "deskew") for view in digit_views(x, "shift")])
    assert not np.array_equal(deskewed, wrong), "the views of the normalized digits, not the views normalized"
    assert deskewed.shape[0] > 1 and views.get("deskew") is deskewed, "made once"
    np.testing.assert_array_equal(DigitViews(x).get("width-12"), normalize(x, "width-12")[None])


def test_ready_views_refuse_a_normalization(synthetic_digits):
    views = DigitViews.ready(digit_views(synthetic_digits[:3], "none"))
    assert views.get("none").shape == (1, 3, 28, 28)
    with pytest.raises(ValueError, match="deskew"):
        views.get("deskew")


@pytest.mark.parametrize("normalizations, message", [
    (["bogus"], "'bogus' is not none, deskew or width-W"),
    (["none", "none"], "one normalization per member"),
    (["width-7"], "'width-7'"),
])
def test_ensemble_checks_normalizations(normalizations, message):
    with pytest.raises(ValueError, match=message):
        Ensemble([object()], ["member_00"], normalizations=normalizations)
    assert Ensemble([object()], ["member_00"]).normalizations_ == ["none"]
    assert Ensemble([object()], ["member_00"], normalizations=["width-20"]).normalizations_ == ["width-20"]


def test_old_config_without_normalize_or_plan_loads(tiny_config, tmp_path):
    old = tiny_config(members=3).to_dict()
    del old["normalize"], old["plan"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old))
    config = TrainConfig.load(path)
    assert config.normalize == "none" and config.plan is None and config.members == 3
    assert config.member_config(2) is config and config.group_of(2) == "base"
    assert config.member_spec(1) == {"group": "base", "arch": "nielsen", "width": 0.25, "dropout": None,
                                     "normalize": "none", "epochs": 1}
    assert config.identity_differences(tiny_config(members=3)) == []
    assert "--normalize" in " ".join(config.identity_differences(tiny_config(members=3, normalize="deskew")))
