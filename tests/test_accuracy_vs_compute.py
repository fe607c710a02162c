"""benchmarks/accuracy_vs_compute.py: the Pareto frontier, the cost arithmetic, the transcribed screens, the PNG.

Fast and TensorFlow-free (the script takes multiply-adds from ensemble_cnn.models.multiply_adds)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "benchmarks" / "accuracy_vs_compute.py"
CSV = REPO_ROOT / "benchmarks" / "study_screens.csv"


@pytest.fixture(scope="module")
def avc():
    spec = importlib.util.spec_from_file_location("accuracy_vs_compute", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pareto_frontier_known_answer(avc):
    #          0    1    2    3    4    5    6
    costs = [1.0, 1.0, 2.0, 2.0, 3.0, 4.0, 0.5]
    accs = [0.90, 0.90, 0.95, 0.93, 0.95, 0.97, 0.80]
    # 0 and 1 tie exactly (both kept); 3 is dominated by 2 (same cost, less accurate);
    # 4 is dominated by 2 (more cost, same accuracy); 6 is the cheapest; 5 the most accurate.
    assert avc.pareto_frontier(costs, accs) == [6, 0, 1, 2, 5]


def test_pareto_frontier_single_and_empty(avc):
    assert avc.pareto_frontier([3.0], [0.5]) == [0]
    assert avc.pareto_frontier([], []) == []
    with pytest.raises(ValueError):
        avc.pareto_frontier([1.0, 2.0], [0.5])


def test_training_cost_arithmetic(avc):
    # nielsen width 1, 2 runs x 16 epochs x 45,000 digits: the quick preset's screen
    assert avc.training_cost("nielsen", 1.0, 16, 2, 45_000) == pytest.approx(3.218e6 * 1.44e6)
    # width 2: the counted net (conv 40@5x5, conv 80@5x5, dense 2000, dense 2000): 12.276 M per digit
    assert avc.training_cost("nielsen", 2.0, 16, 2, 45_000) == pytest.approx(12.276e6 * 1.44e6)


def test_csv_loads_with_positive_costs(avc):
    points = avc.load_points(CSV, None)
    assert len(points) >= 21 + 4 + 3
    for point in points:
        assert point["cost"] > 0, point["name"]
        assert 0.9 < point["val_majority"] < 1, point["name"]
    quick = [p for p in points if p["name"] == "nielsen-cos-ema-ls-mild" and p["round"] == 1]
    assert quick and quick[0]["cost"] == pytest.approx(3.218e6 * 1.44e6)
    pooled = {p["name"]: p["cost"] for p in points if p["members"] == 2 or "+" in p["name"]}
    assert pooled["nielsen-x2+deotte50-x2"] == pytest.approx(pooled["nielsen-cos-ema-ls-mild"]
                                                             + pooled["deotte50-cos-ema"])
    assert any(p["name"] == "default (5 x 30)" and p["val_majority"] == pytest.approx(0.9966) for p in points)


def test_jsonl_adds_new_lines_and_reads_plans(avc, tmp_path):
    plan = tmp_path / "norm4.toml"
    plan.write_text("[[members]]\ncount = 3\n\n[[members]]\ncount = 1\nnormalize = \"deskew\"\nepochs = 8\n")
    base = ["--arch", "nielsen", "--epochs", "16"]
    lines = [  # a duplicate of a CSV row (round 4), and a new candidate with a member plan
        {"name": "nielsen-w15-cos-ema-ls-mild", "members": 2, "stage": "round4", "val_majority": 0.5,
         "options": base + ["--width", "1.5"]},
        {"name": "nielsen-plan-test", "members": 4, "stage": "round4", "val_majority": 0.996,
         "test_majority": 0.996, "wall_minutes": 14.0, "cpu": "x86 AVX-512", "options": base + ["--plan", str(plan)]},
    ]
    jsonl = tmp_path / "results.jsonl"
    jsonl.write_text("".join(json.dumps(line) + "\n" for line in lines))
    points = avc.load_points(CSV, jsonl)
    w15 = [p for p in points if p["name"] == "nielsen-w15-cos-ema-ls-mild"]
    assert len(w15) == 1 and w15[0]["source"] == "csv"
    norm4 = [p for p in points if p["name"] == "nielsen-plan-test"]
    assert len(norm4) == 1 and norm4[0]["round"] == 4
    assert norm4[0]["cost"] == pytest.approx(3.218e6 * 45_000 * (3 * 16 + 8))


def test_script_writes_png(tmp_path):
    import subprocess

    out = tmp_path / "figure.png"
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--jsonl", str(tmp_path / "none.jsonl")],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| name | members |" in done.stdout
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # the temporary file was renamed


def test_script_refuses_to_overwrite_its_inputs(tmp_path):
    import subprocess

    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(CSV)], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=120)
    assert done.returncode != 0 and "refusing" in done.stderr
