"""The package layering, read from the source: imports go downward only, no module cycles, and every
third-party package the code imports is declared in setup.py.

    mlcore  <-  steps, inference, pipelines, monitoring  <-  mlops
    lambda_fn (the Lambda package: CodeUri lambda_fn/) imports nothing else of the project.

Every import counts, the ones inside functions too: a lazy import is still a dependency.
"""
from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

from tests.helpers.paths import REPO_ROOT

PACKAGES = ("mlcore", "steps", "inference", "pipelines", "monitoring", "lambda_fn", "mlops")
# What each package may import besides itself.
ALLOWED = {
    "mlcore": set(),
    "steps": {"mlcore"},
    "inference": {"mlcore"},
    "pipelines": {"mlcore"},
    "monitoring": {"mlcore"},
    "lambda_fn": set(),
    "mlops": {"mlcore", "steps", "inference", "pipelines", "monitoring", "lambda_fn"},
}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """Lines of the imports under `if TYPE_CHECKING:` (for the type checker only, never run)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lines |= {n.lineno for stmt in node.body for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return lines


def _imports(name: str, path: Path, runtime_only: bool = False) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every import in the module, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    skip = _type_checking_lines(tree) if runtime_only else set()
    out = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + [base] if base else parts)
            out += [(node.lineno, f"{base}.{alias.name}" if base else alias.name) for alias in node.names]
    return out


def _resolve(dotted: str, modules: dict[str, Path]) -> str | None:
    """The project module an imported name lives in (`pkg.mod.func` -> `pkg.mod`), or None."""
    while dotted and dotted not in modules:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def test_packages_import_only_downward():
    modules = _modules()
    forbidden = []
    for name, path in modules.items():
        package = name.split(".")[0]
        for line, imported in _imports(name, path):
            target = imported.split(".")[0]
            if target in PACKAGES and target != package and target not in ALLOWED[package]:
                forbidden.append(f"{path.relative_to(REPO_ROOT)}:{line} ({name}) imports {imported}")
    assert not forbidden, "imports against the layering (see this test's docstring):\n" + "\n".join(forbidden)


def test_no_import_cycles_between_modules():
    modules = _modules()
    graph = {name: {target for _, imported in _imports(name, path)
                    if (target := _resolve(imported, modules)) and target != name}
             for name, path in modules.items()}
    cycles = []
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            cycles.append(" -> ".join(trail[trail.index(node):] + [node]))
            return
        if node in done:
            return
        for target in sorted(graph[node]):
            visit(target, trail + [node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])
    assert not cycles, "modules that import each other:\n" + "\n".join(cycles)


def _requirement_names(requirements: list[str]) -> set[str]:
    return {_normalise(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) for r in requirements}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _install_requires() -> list[str]:
    tree = ast.parse((REPO_ROOT / "setup.py").read_text(encoding="utf-8"))
    [value] = [node.value for node in tree.body if isinstance(node, ast.Assign)
               and any(isinstance(t, ast.Name) and t.id == "INSTALL_REQUIRES" for t in node.targets)]
    return ast.literal_eval(value)


def test_every_imported_third_party_package_is_declared():
    declared = _requirement_names(_install_requires())
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for name, path in _modules().items():
        for line, imported in _imports(name, path, runtime_only=True):
            top = imported.split(".")[0]
            if not top or top in PACKAGES or top in sys.stdlib_module_names or top == "__future__":
                continue
            if name.startswith("lambda_fn.") and (path.parent / f"{top}.py").is_file():
                continue  # a sibling module as the Lambda package imports it (lambda_fn/ is its code root)
            providers = {_normalise(d) for d in distributions.get(top, [])} | {_normalise(top)}
            if not providers & declared:
                missing.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {top} "
                               f"(distribution {sorted(providers)}): add it to INSTALL_REQUIRES in setup.py")
    assert not missing, "\n".join(sorted(set(missing)))


def test_the_lambda_package_defaults_to_the_projects_names(monkeypatch):
    """The Lambda package cannot import pipelines.spec, so its default endpoint name is a copy: it must agree."""
    from lambda_fn.deploy import SageMakerDeploySettings
    from lambda_fn.predict import PredictSettings
    from pipelines import spec

    monkeypatch.delenv("ENDPOINT_NAME", raising=False)
    monkeypatch.setenv("MODEL_EXECUTION_ROLE_ARN", "arn:aws:iam::123456789012:role/model")
    assert PredictSettings().endpoint_name == SageMakerDeploySettings().endpoint_name == spec.ENDPOINT_NAME
