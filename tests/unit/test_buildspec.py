"""buildspec.yml: valid CodeBuild YAML whose every command exists in this repo."""
from __future__ import annotations

import re
import shlex
from importlib.metadata import entry_points

import pytest
import yaml

from mlops.cli import build_parser
from tests.helpers.paths import REPO_ROOT

BUILDSPEC = REPO_ROOT / "buildspec.yml"
REQUIRED_ENV = ("SAGEMAKER_PIPELINE_ROLE_ARN", "ARTIFACT_BUCKET", "AWS_REGION")


@pytest.fixture(scope="module")
def buildspec() -> dict:
    return yaml.safe_load(BUILDSPEC.read_text())


def _commands(doc: dict) -> list[str]:
    return [c for phase in doc["phases"].values() for c in phase.get("commands", [])]


def _make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.-]+):(?!=)", (REPO_ROOT / "Makefile").read_text(), re.M))


def _console_scripts() -> set[str]:
    return {ep.name for ep in entry_points(group="console_scripts") if ep.value.split(".")[0] in
            {"mlops", "pipelines"}}


def test_structure(buildspec):
    assert str(buildspec["version"]) == "0.2"
    assert {"install", "build"} <= set(buildspec["phases"])
    assert any("make install" in c for c in buildspec["phases"]["install"]["commands"])
    commands = " ".join(_commands(buildspec))
    assert "make test" in commands
    assert re.search(r"mlops pipeline upsert\b", commands) and re.search(r"mlops pipeline start\b", commands)


def test_make_targets_exist(buildspec):
    targets = _make_targets()
    used = [t for c in _commands(buildspec) for t in re.findall(r"\bmake\s+([A-Za-z0-9_.-]+)", c)]
    assert used, "expected make targets in buildspec.yml"
    assert set(used) <= targets, f"unknown make targets: {set(used) - targets}"


def test_console_scripts_exist_and_their_arguments_parse(buildspec):
    scripts = _console_scripts()
    invocations = [m for c in _commands(buildspec) for m in re.findall(r"\.venv/bin/([\w-]+)([^;|&]*)", c)]
    assert invocations
    for script, rest in invocations:
        assert script in scripts, f"{script} is not a console script of this project ({sorted(scripts)})"
        if script == "mlops":
            argv = [re.sub(r"\$\{?\w+\}?", "value", tok) for tok in shlex.split(rest)]
            args = build_parser().parse_args(argv)  # SystemExit on an unknown command or flag
            assert getattr(args, "pipeline_command", None), f"`mlops {rest.strip()}` names no pipeline action"


def test_every_env_var_used_is_documented_or_defaulted(buildspec):
    text = BUILDSPEC.read_text()
    comments = "\n".join(l for l in text.splitlines() if l.lstrip().startswith("#"))
    defaults = set((buildspec.get("env") or {}).get("variables") or {})
    used = {v for c in _commands(buildspec) for v in re.findall(r"\$\{?([A-Z][A-Z0-9_]*)\}?", c)}
    for name in REQUIRED_ENV:
        assert name in used and re.search(rf"^#\s+{name}\b", comments, re.M), f"{name} must be used and documented"
    for name in used:
        assert name in defaults or re.search(rf"^#\s+{name}\b", comments, re.M), f"${name} is neither documented nor defaulted"
