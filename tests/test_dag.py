"""dvc.yaml tells the truth: every package module a stage imports (transitively) lies in a folder its deps list."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "synthtune"


def module_file(name: str) -> Path | None:
    """The file of a dotted module name inside the package (a module or a package's __init__)."""
    base = ROOT / name.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def package_imports(path: Path) -> set[Path]:
    """Package files imported by `path`, function-level imports included (ast.walk sees them all)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)   # `from pkg import module`
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
    files = set()
    for name in names:
        parts = name.split(".")
        for n in range(2, len(parts) + 1):      # importing a.b.c runs a/b/__init__.py too
            found = module_file(".".join(parts[:n]))
            if found:
                files.add(found)
    return files


def closure(script: Path) -> set[Path]:
    todo, seen = [script], set()
    while todo:
        for dep in package_imports(todo.pop()) - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def stages():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in dvc.items():
        stage = stage.get("do", stage)
        script = re.search(r"python -m stages\.(\w+)", stage["cmd"]).group(1)
        yield name, script, stage


def covered(path: str, folders: set[str]) -> bool:
    return any(path == f or path.startswith(f + "/") for f in folders)


def test_every_imported_package_module_lies_in_a_listed_folder():
    for name, script, stage in stages():
        deps = set(stage["deps"])
        assert {"stages/__init__.py", f"stages/{script}.py"} <= deps, name
        folders = {d for d in deps if d.startswith(f"{PACKAGE}/")}
        used = {str(p.relative_to(ROOT)) for p in closure(ROOT / "stages" / f"{script}.py")}
        used = {u for u in used if not is_empty(ROOT / u)}   # empty package files run nothing
        missing = sorted(u for u in used if not covered(u, folders))
        assert not missing, f"stage {name} imports {missing} but no folder in its deps holds them"
        idle = sorted(f for f in folders if not any(covered(u, {f}) for u in used))
        assert not idle, f"stage {name} lists {idle} but imports nothing from them"


def is_empty(path: Path) -> bool:
    """A module of nothing but its docstring (a package marker)."""
    body = ast.parse(path.read_text()).body
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def test_top_level_package_file_is_empty():
    # no stage lists synthtune/ as a whole: its __init__ must hold no code a stage would run
    assert is_empty(ROOT / PACKAGE / "__init__.py")


def test_the_dag_finder_sees_function_level_imports(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("def f():\n    from synthtune.core import io\n")
    assert ROOT / PACKAGE / "core" / "io.py" in package_imports(script)


def test_package_has_no_import_cycles():
    graph = {}
    for path in (ROOT / PACKAGE).rglob("*.py"):
        graph[path] = {p for p in package_imports(path) if p.name != "__init__.py" and p != path}
    state: dict[Path, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
                raise AssertionError("import cycle: " + " -> ".join(str(p.relative_to(ROOT)) for p in cycle))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


# which phase packages each one may import (docs/architecture.md, "Shape"): the client layer (llm)
# and text never reach up into training or evaluation, so a judge or a teacher can use them alone.
LAYERS = {
    "core": set(),
    "llm": {"core"},
    "text": {"core", "llm"},
    "model": {"core", "llm"},                        # llm: lm_head (the loss's head on labelled positions)
    "curate": {"core", "text"},
    "generate": {"core", "llm", "text", "curate"},   # curate: the no-graph ablation asks split_of
    "evaluate": {"core", "llm", "text", "generate", "model"},
    "handover": {"core", "model", "evaluate"},       # reads what the run wrote; nothing depends on it
}


def test_phase_packages_import_only_the_layers_below():
    wrong = set()
    for phase, allowed in LAYERS.items():
        for path in (ROOT / PACKAGE / phase).rglob("*.py"):
            for dep in package_imports(path):
                other = dep.relative_to(ROOT / PACKAGE).parts[0]
                if other != phase and other in LAYERS and other not in allowed:
                    wrong.add(f"{path.relative_to(ROOT)} imports {dep.relative_to(ROOT)}")
    assert not wrong, sorted(wrong)
    assert set(LAYERS) == {p.name for p in (ROOT / PACKAGE).iterdir() if (p / "__init__.py").exists()}


def test_no_package_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / PACKAGE).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 420}
    assert not long, f"split these modules: {long}"


HANDOVER_STAGES = {"dataset_card", "report"}    # they write cards and a page, not measurements


def test_every_stage_writes_its_metrics_file_uncached():
    for name, _, stage in stages():
        if name in HANDOVER_STAGES:
            assert "metrics" not in stage, name
            continue
        metrics = [next(iter(m)) for m in stage["metrics"]]
        assert len(metrics) == 1 and metrics[0].startswith("metrics/"), name
        assert stage["metrics"][0][metrics[0]]["cache"] is False


def test_help_is_fast_and_imports_no_torch():
    for _, script, _ in stages():
        code = (f"import sys; sys.argv=['x','--help']\nimport stages.{script} as s\n"
                "assert 'torch' not in sys.modules, 'torch imported at module level'\n")
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
