"""The wheel: what it installs, under which import names (issue 21, packaging).

Builds the wheel of this tree (offline: ``--no-build-isolation`` with the test extra's
setuptools) and lists what it would install. The installed import names are
``ensemble_cnn``, ``augment`` and ``ensemble_cnn_cli`` (the ``cli/`` folder: a top-level
``cli`` would collide with any other distribution that ships one), and every module and
static file of the tree is in it.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# folder in the tree -> import name once installed
INSTALLED_AS = {"ensemble_cnn": "ensemble_cnn", "augment": "augment", "cli": "ensemble_cnn_cli"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a clean copy of this tree (a build/ folder left in the tree would add stale files)."""
    out = tmp_path_factory.mktemp("wheel")
    source = tmp_path_factory.mktemp("source") / "ensemble-cnn"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", ".venv", ".ci-venv", "__pycache__", "artifacts", ".pytest_cache"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=300, cwd=out,
    )
    if result.returncode != 0 and "setuptools" in result.stderr and "No module named" in result.stderr:
        pytest.skip("setuptools is not installed (pip install -e '.[test]' brings it)")
    assert result.returncode == 0, result.stderr[-2000:]
    (path,) = out.glob("ensemble_cnn-*.whl")
    return path


@pytest.fixture(scope="module")
def wheel_names(wheel) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_wheel_installs_only_unique_import_names(wheel_names):
    top_level = {name.split("/")[0] for name in wheel_names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == set(INSTALLED_AS.values())
    assert "cli" not in top_level


def test_the_wheel_holds_every_module_and_static_file_of_the_tree(wheel_names):
    expected = set()
    for folder, name in INSTALLED_AS.items():
        for path in (REPO_ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix in (".py", ".html", ".js", ".css"):
                expected.add(f"{name}/{path.relative_to(REPO_ROOT / folder).as_posix()}")
    installed = {name for name in wheel_names if name.split("/")[0] in INSTALLED_AS.values()}
    assert installed == expected


def test_the_console_script_points_at_the_installed_cli(wheel, wheel_names):
    entry_points = next(name for name in wheel_names if name.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(entry_points).decode()
    assert "ensemble-cnn = ensemble_cnn_cli.main:main" in text


def test_the_command_line_imports_its_own_modules_relatively():
    """``cli/`` installs as ``ensemble_cnn_cli``: an absolute ``cli.`` import would only work in the tree."""
    import ast

    absolute = []
    for path in sorted((REPO_ROOT / "cli").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            absolute += [f"{path.name}: {name}" for name in names if name.split(".")[0] in ("cli", "ensemble_cnn_cli")]
    assert absolute == []
