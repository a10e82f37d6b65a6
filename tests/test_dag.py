"""dvc.yaml tells the truth: every lib module a stage imports (transitively) is in its deps."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def lib_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lib"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("lib."))
    return {f"lib/{m.split('.', 1)[1]}.py" for m in found if "." in m}


def closure(script: Path) -> set[str]:
    todo, seen = [script], set()
    while todo:
        for dep in lib_imports(todo.pop()) - seen:
            seen.add(dep)
            todo.append(ROOT / dep)
    return seen


def stages():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in dvc.items():
        stage = stage.get("do", stage)
        script = re.search(r"python -m stages\.(\w+)", stage["cmd"]).group(1)
        yield name, script, stage


def test_every_imported_lib_module_is_a_dependency():
    for name, script, stage in stages():
        deps = set(stage["deps"])
        assert f"stages/{script}.py" in deps, name
        missing = closure(ROOT / "stages" / f"{script}.py") - deps
        assert not missing, f"stage {name} imports {sorted(missing)} but does not list them in deps"
        # folders under lib/ (lib/metric_modules: evaluate modules loaded by path) are data, not imports
        extra = {d for d in deps if d.startswith("lib/") and d.endswith(".py")} - closure(ROOT / "stages" / f"{script}.py")
        assert not extra, f"stage {name} lists {sorted(extra)} it does not import"


def test_every_stage_writes_its_metrics_file_uncached():
    for name, _, stage in stages():
        metrics = [next(iter(m)) for m in stage["metrics"]]
        assert len(metrics) == 1 and metrics[0].startswith("metrics/"), name
        assert stage["metrics"][0][metrics[0]]["cache"] is False


def test_help_is_fast_and_imports_no_torch():
    for _, script, _ in stages():
        code = (f"import sys; sys.argv=['x','--help']\nimport stages.{script} as s\n"
                "assert 'torch' not in sys.modules, 'torch imported at module level'\n")
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
