"""CloudFormation templates: cfn-lint clean, and no IAM statement grants a wildcard action."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.decode import decode

from tests.conftest import REPO_ROOT

TEMPLATES = sorted((REPO_ROOT / "infra").glob("*.yaml"))


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_is_clean(template: Path):
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    proc = subprocess.run([str(cfn_lint), str(template)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _statements(node):
    if isinstance(node, dict):
        if "Effect" in node and "Action" in node:
            yield node
        for value in node.values():
            yield from _statements(value)
    elif isinstance(node, list):
        for value in node:
            yield from _statements(value)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_no_wildcard_actions(template: Path):
    doc, errors = decode(str(template))
    assert not errors, errors
    statements = list(_statements(doc))
    assert statements, "expected IAM statements in the template"
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            assert isinstance(action, str) and "*" not in action, f"wildcard action {action!r} in {template.name}"


def test_predict_lambda_may_only_invoke_its_endpoint():
    doc, _ = decode(str(REPO_ROOT / "infra" / "template.yaml"))
    [statement] = list(_statements(doc["Resources"]["PredictFunction"]))
    assert statement["Action"] == "sagemaker:InvokeEndpoint"
    assert "endpoint/${EndpointName}" in str(statement["Resource"])
