"""The house plan holds: import-linter's contracts (pyproject.toml), no cycles, small files, few late imports.

import-linter builds the import graph of the package (imports inside functions included) and checks the
contracts: the layers point down from the CLI to the config, models and the GAN math know nothing of Ray
or DeepSpeed, the loop never imports Ray, and only the engines module imports DeepSpeed in the loop.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "distgan"
MAX_LINES = 550
"""About 500 lines a module: a module past this has grown a second job."""
LAZY_LAYERS = {"cli.py", "generator_cli.py", "api.py", "__init__.py"}
"""The front doors may import the package late: ``distgan --help`` must answer before torch and Ray load."""


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_import_linter_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    kept = [line for line in done.stdout.splitlines() if line.endswith(" KEPT")]
    assert len(kept) >= 4, done.stdout  # every contract of pyproject.toml ran


def test_a_broken_layer_is_caught(tmp_path):
    """The contracts can fail: a copy of the package whose config imports the loop is refused."""
    import shutil

    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "distgan", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    schema = copy / "distgan" / "config" / "schema.py"
    schema.write_text(schema.read_text() + "\nfrom distgan.runtime import loop  # noqa\n")
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache", "--no-logo"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(copy), "PATH": str(Path(sys.executable).parent)})
    assert done.returncode != 0
    assert "distgan.config is not allowed to import distgan.runtime" in done.stdout, done.stdout


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_about_500_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines; split its second job into a module"


def _late_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a distgan module inside a function."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("distgan"):
                    found.append((inner.lineno, inner.module))
                elif isinstance(inner, ast.Import):
                    found += [(inner.lineno, a.name) for a in inner.names if a.name.startswith("distgan")]
    return found


def test_only_the_front_doors_import_the_package_late():
    """Below the CLI and the API the layers are acyclic, so no distgan import needs to hide in a function."""
    late = {f"{path.relative_to(ROOT)}:{line} {module}" for path in modules() if path.name not in LAZY_LAYERS
            for line, module in _late_imports(path)}
    # Each of these saves start-up time or an optional dependency, as its comment says.
    allowed = {"distgan/data/__init__.py", "distgan/sweeps/schedulers.py"}
    assert not {entry for entry in late if entry.split(":")[0] not in allowed}, sorted(late)


def test_only_launch_builds_trainers_and_tuners():
    builders = {"TorchTrainer", "Tuner", "DataParallelTrainer"}
    for path in modules():
        if path.parts[len(PACKAGE.parts)] == "launch":
            continue
        calls = {node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                 for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)}
        assert not calls & builders, f"{path.relative_to(ROOT)} builds {calls & builders}"


def test_no_task_branch_outside_the_task_folders():
    """The loop, launchers, persistence and CLI never ask which task they run: tasks answer for themselves."""
    task_names = {"generation", "super_resolution", "sr"}
    for path in modules():
        if path.parts[len(PACKAGE.parts)] in ("tasks", "models"):  # the tasks, and families naming their task
            continue
        named = {node.value for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Constant) and node.value in task_names}
        assert not named, f"{path.relative_to(ROOT)} names the task {sorted(named)}"


def test_every_late_import_below_the_front_doors_says_why():
    """An import inside a function (a third-party module that is slow, optional or needs an extra) carries a
    comment on its line or just above it; the front doors' module docstrings say theirs once."""
    silent = []
    for path in modules():
        if path.name in LAZY_LAYERS and path.parent == PACKAGE:
            continue
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    start = inner.lineno - 1
                    above = start - 1
                    while above >= 0 and lines[above].strip().startswith(("from ", "import ")):
                        above -= 1  # a comment may head a block of imports
                    if "#" not in lines[start] and not lines[above].strip().startswith("#") and not any(
                            "#" in lines[k] for k in range(above + 1, start)):
                        silent.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    assert not silent, silent
