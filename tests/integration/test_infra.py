"""CloudFormation templates: cfn-lint clean, least privilege (also in what SAM generates), a private Function
URL, one CORS owner, the deploy Lambda's retry queue, and settings the handlers actually read."""
from __future__ import annotations

import ast
import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.decode import decode

from tests.helpers.paths import REPO_ROOT

TEMPLATES = sorted((REPO_ROOT / "infra").glob("*.yaml"))
SERVING = REPO_ROOT / "infra" / "template.yaml"


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


def _assert_no_wildcard_actions(doc: dict, where: str) -> None:
    statements = list(_statements(doc))
    assert statements, f"expected IAM statements in {where}"
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            assert isinstance(action, str) and "*" not in action, f"wildcard action {action!r} in {where}"


def _load(template: Path) -> dict:
    doc, errors = decode(str(template))
    assert not errors, errors
    return json.loads(json.dumps(doc))  # plain dicts, no cfn-lint node types


@pytest.fixture(scope="module")
def translated(tmp_path_factory) -> dict:
    """infra/template.yaml after the SAM transform, as CloudFormation would deploy it."""
    import os

    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self):
            return {}

    doc = copy.deepcopy(_load(SERVING))
    doc["Globals"]["Function"]["CodeUri"] = "s3://bucket/code.zip"  # what `sam package` puts there
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(doc, {"ModelExecutionRoleArn": "arn:aws:iam::123456789012:role/m",
                           "DataCaptureS3Uri": "s3://bucket/capture"}, NoManagedPolicies())


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_no_wildcard_actions_in_the_source(template: Path):
    _assert_no_wildcard_actions(_load(template), template.name)


def test_no_wildcard_actions_in_the_sam_output_either(translated):
    roles = {k: v for k, v in translated["Resources"].items() if v["Type"] == "AWS::IAM::Role"}
    assert set(roles) == {"PredictFunctionRole", "DeployFunctionRole"}
    users = {k: v for k, v in translated["Resources"].items() if v["Type"] == "AWS::IAM::User"}
    assert set(users) == {"PredictInvokerUser"}
    for name, principal in {**roles, **users}.items():
        _assert_no_wildcard_actions(principal["Properties"]["Policies"], name)


def test_predict_lambda_may_only_use_its_endpoint_and_write_feedback_under_its_prefix(translated):
    role = translated["Resources"]["PredictFunctionRole"]["Properties"]
    statements = {s["Sid"]: s for s in _statements(role["Policies"])}
    endpoint = {"Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/${EndpointName}"}
    assert {sid: (s["Action"], s["Resource"]) for sid, s in statements.items()} == {
        "InvokeTheEndpoint": ("sagemaker:InvokeEndpoint", endpoint),
        "ReadTheServingVersion": ("sagemaker:DescribeEndpoint", endpoint),
        "WriteFeedbackAsGroundTruth": (
            "s3:PutObject", {"Fn::Sub": "arn:${AWS::Partition}:s3:::${GroundTruthBucket}/${GroundTruthPrefix}/*"}),
        "ReadTheFeedbackTokenKey": ("secretsmanager:GetSecretValue", {"Ref": "FeedbackTokenSecret"}),
    }
    # the feedback statements and the token key exist only with a ground-truth bucket
    [conditional] = [p for p in role["Policies"] if "Fn::If" in json.dumps(p)]
    assert json.dumps(conditional).count('"FeedbackOn"') == 1
    assert translated["Resources"]["FeedbackTokenSecret"]["Condition"] == "FeedbackOn"


def test_every_variable_the_template_gives_the_predict_lambda_is_one_it_reads(translated):
    source = (REPO_ROOT / "lambda_fn" / "predict.py").read_text()
    env = translated["Resources"]["PredictFunction"]["Properties"]["Environment"]["Variables"]
    unread = [name for name in env if not name.startswith("POWERTOOLS_") and f'"{name}"' not in source]
    assert unread == []
    assert env["GROUND_TRUTH_S3_URI"] == {"Fn::If": ["FeedbackOn", {
        "Fn::Sub": "s3://${GroundTruthBucket}/${GroundTruthPrefix}"}, ""]}


def test_deploy_lambda_passes_only_the_model_role_to_sagemaker(translated):
    role = translated["Resources"]["DeployFunctionRole"]["Properties"]
    statements = {s.get("Sid"): s for s in _statements(role["Policies"])}
    assert statements["PassModelRole"]["Resource"] == {"Ref": "ModelExecutionRoleArn"}
    assert statements["PassModelRole"]["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    for statement in statements.values():
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert all(r != "*" for r in resources), f"{statement.get('Sid')} is not scoped"


def test_the_predict_function_url_is_private_and_cors_has_one_owner(translated):
    url = translated["Resources"]["PredictFunctionUrl"]["Properties"]
    assert url["AuthType"] == "AWS_IAM", "the paid endpoint must not be callable by anyone with the URL"
    assert "Cors" not in url, "the handler sets CORS headers; the Function URL must not add its own"
    env = translated["Resources"]["PredictFunction"]["Properties"]["Environment"]["Variables"]
    assert env["ALLOWED_ORIGINS"] == {"Ref": "AllowedOrigins"}
    # no resource policy opens the function to anyone (SAM adds one only for AuthType NONE)
    public = [k for k, p in translated["Resources"].items() if p["Type"] == "AWS::Lambda::Permission"
              and p["Properties"]["FunctionName"] == {"Ref": "PredictFunction"}]
    assert public == []


def test_the_predict_invoker_may_only_invoke_that_function_through_its_url(translated):
    user = translated["Resources"]["PredictInvokerUser"]["Properties"]
    statements = list(_statements(user["Policies"]))
    assert {s["Action"]: (s["Resource"], s["Condition"]) for s in statements} == {
        "lambda:InvokeFunctionUrl": ({"Fn::GetAtt": ["PredictFunction", "Arn"]},
                                     {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}),
        # function URLs created since October 2025 need both actions (AWS Lambda docs)
        "lambda:InvokeFunction": ({"Fn::GetAtt": ["PredictFunction", "Arn"]},
                                  {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}),
    }
    kinds = {r["Type"] for r in translated["Resources"].values()}
    assert "AWS::IAM::AccessKey" not in kinds, "no secret may come out of the stack: the key is made by a person"


def test_the_predict_lambda_has_a_reserved_concurrency_and_a_throttle_alarm(translated):
    function = translated["Resources"]["PredictFunction"]["Properties"]
    assert function["ReservedConcurrentExecutions"] == {"Ref": "PredictReservedConcurrency"}
    doc = _load(SERVING)
    assert doc["Parameters"]["PredictReservedConcurrency"]["Default"] >= 1
    alarm = translated["Resources"]["PredictThrottlesAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Throttles")
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "PredictFunction"}}]


def test_the_deploy_role_grows_only_by_what_redrive_cleanup_and_autoscaling_need(translated):
    role = translated["Resources"]["DeployFunctionRole"]["Properties"]
    statements = {s["Sid"]: s for s in _statements(role["Policies"])}
    granted = {a for s in statements.values() for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    assert granted == {
        "sagemaker:DescribeModelPackage", "sagemaker:ListModelPackages",
        "sagemaker:CreateModel", "sagemaker:DescribeModel", "sagemaker:AddTags", "sagemaker:CreateEndpointConfig",
        "sagemaker:DescribeEndpointConfig", "sagemaker:CreateEndpoint", "sagemaker:UpdateEndpoint",
        "sagemaker:DescribeEndpoint", "sagemaker:DeleteModel", "sagemaker:DeleteEndpointConfig",
        "sagemaker:DeleteEndpoint", "sagemaker:UpdateEndpointWeightsAndCapacities",
        "cloudwatch:DescribeAlarms", "sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage",
        "sqs:GetQueueAttributes", "application-autoscaling:RegisterScalableTarget",
        "application-autoscaling:PutScalingPolicy", "application-autoscaling:DeregisterScalableTarget",
        "iam:CreateServiceLinkedRole", "iam:PassRole"}
    # the deletes act on the endpoint's own names only
    assert all(r["Fn::Sub"].endswith(("model/${EndpointName}-v*", "endpoint-config/${EndpointName}-v*",
                                      "endpoint/${EndpointName}"))
               for r in statements["ManageEndpointResources"]["Resource"])
    # blue/green auto-rollback reads its alarm, and only that one
    assert statements["ReadTheRollbackAlarm"]["Resource"] == {"Fn::GetAtt": ["EndpointErrorsAlarm", "Arn"]}
    assert statements["ScaleTheEndpointVariant"]["Condition"] == {"StringEquals": {
        "application-autoscaling:service-namespace": "sagemaker",
        "application-autoscaling:scalable-dimension": "sagemaker:variant:DesiredInstanceCount"}}
    assert statements["AutoscalingServiceLinkedRole"]["Condition"] == {"StringEquals": {
        "iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"}}
    assert statements["ReceiveRedrives"]["Resource"] == {"Fn::GetAtt": ["DeployRetryQueue", "Arn"]}
    assert role.get("ManagedPolicyArns") == ["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]


def test_a_busy_endpoint_is_re_driven_through_a_delay_queue_into_the_same_function(translated):
    resources = translated["Resources"]
    [mapping] = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["DeployRetryQueue", "Arn"]}
    assert mapping["FunctionName"] == {"Ref": "DeployFunction"}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]  # the handler answers per message
    queue = resources["DeployRetryQueue"]["Properties"]
    # AWS: the queue's visibility timeout must be at least the function's timeout (6x recommended)
    assert queue["VisibilityTimeout"] >= 6 * resources["DeployFunction"]["Properties"]["Timeout"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeployFailuresQueue", "Arn"]}
    env = resources["DeployFunction"]["Properties"]["Environment"]["Variables"]
    assert env["RETRY_QUEUE_URL"] == {"Ref": "DeployRetryQueue"}
    assert env["FAILURES_QUEUE_URL"] == {"Ref": "DeployFailuresQueue"}
    alarm = resources["DeployErrorsAlarm"]["Properties"]
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeployFailuresQueue", "QueueName"]}}]


def test_the_deploy_environment_is_what_its_settings_read(translated, monkeypatch):
    """Every variable the template sets parses into SageMakerDeploySettings, from the parameters' defaults."""
    from lambda_fn.deploy import SageMakerDeploySettings

    doc = _load(SERVING)
    values = {name: str(p.get("Default", "")) for name, p in doc["Parameters"].items()}
    values.update(ModelExecutionRoleArn="arn:aws:iam::123456789012:role/m", DataCaptureS3Uri="s3://b/capture",
                  EndpointErrorsAlarm="ep-5xx", DeployRetryQueue="https://sqs/retry",
                  DeployFailuresQueue="https://sqs/failures")
    env = {**doc["Globals"]["Function"]["Environment"]["Variables"],
           **translated["Resources"]["DeployFunction"]["Properties"]["Environment"]["Variables"]}
    for key, value in env.items():
        monkeypatch.setenv(key, values[value["Ref"]] if isinstance(value, dict) else value)
    settings = SageMakerDeploySettings()
    assert env["INSTANCE_COUNT"] == {"Ref": "MinInstances"}  # read by the handler, wired by the template
    assert (settings.instance_count, settings.max_instances, settings.keep_versions) == (1, 2, 3)
    assert (settings.retry_queue_url, settings.failures_queue_url, settings.alarms) == (
        "https://sqs/retry", "https://sqs/failures", ("ep-5xx",))
    assert settings.retry_delay_s == 300 and settings.retry_max_hours == 6


def test_the_rule_listens_to_our_model_package_group_only(translated):
    [rule] = [r for r in translated["Resources"].values() if r["Type"] == "AWS::Events::Rule"]
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.sagemaker"], "detail-type": ["SageMaker Model Package State Change"],
        "detail": {"ModelPackageGroupName": [{"Ref": "ModelPackageGroupName"}]}}


def test_the_predict_lambda_outlives_its_worst_case_endpoint_call(translated, monkeypatch):
    from lambda_fn.predict import PredictSettings

    function = translated["Resources"]["PredictFunction"]["Properties"]
    for key, value in function["Environment"]["Variables"].items():
        if isinstance(value, str):
            monkeypatch.setenv(key, value)
    budget = PredictSettings().invoke_budget_s()
    assert function["Environment"]["Variables"]["INVOKE_ATTEMPTS"] == "2"
    assert function["Timeout"] > budget, f"Lambda timeout {function['Timeout']} s <= invoke budget {budget} s"


def test_alarms_cover_errors_latency_and_failed_deployments(translated):
    alarms = {k: v["Properties"] for k, v in translated["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"}
    metrics = {(a["Namespace"], a["MetricName"]) for a in alarms.values()}
    assert {("BertMultilabel", "ServerErrors"), ("AWS/Lambda", "Duration"), ("AWS/SageMaker", "Invocation5XXErrors"),
            ("AWS/SQS", "ApproximateNumberOfMessagesVisible"), ("AWS/Lambda", "Throttles")} <= metrics
    assert alarms["PredictLatencyAlarm"]["ExtendedStatistic"] == "p99"
    deploy_env = translated["Resources"]["DeployFunction"]["Properties"]["Environment"]["Variables"]
    assert deploy_env["ROLLBACK_ALARM_NAMES"] == {"Ref": "EndpointErrorsAlarm"}


# What the python3.12 Lambda runtime itself provides besides the standard library.
LAMBDA_RUNTIME_PACKAGES = {"boto3", "botocore"}
# A Lambda context object, as much of it as powertools reads.
FAKE_CONTEXT = ("type('Context', (), dict(function_name='f', function_version='1', memory_limit_in_mb=128, "
                "invoked_function_arn='arn:aws:lambda:us-east-1:123456789012:function:f', aws_request_id='r', "
                "get_remaining_time_in_millis=lambda self: 30000))()")


def test_each_handler_imports_and_runs_from_its_package_alone(translated):
    """What `sam build` ships is CodeUri (lambda_fn/) + requirements.txt: no project package may be needed,
    at import or when a handler runs, and every third-party import is in requirements.txt or the runtime."""
    code_dir = (SERVING.parent / _load(SERVING)["Globals"]["Function"]["CodeUri"]).resolve()
    requirements = (code_dir / "requirements.txt").read_text()
    assert "aws-lambda-powertools" in requirements
    shipped = {re.split(r"[<>=!~ ]", line.strip(), maxsplit=1)[0].replace("-", "_").lower()
               for line in requirements.splitlines() if line.strip() and not line.startswith("#")}
    third_party = {node.module.split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name.split(".")[0]
                   for path in code_dir.glob("*.py") for node in ast.walk(ast.parse(path.read_text()))
                   if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(node, "level", 0)
                   for alias in node.names}
    own = {path.stem for path in code_dir.glob("*.py")}  # modules of the package itself (`import feedback`)
    third_party = {m for m in third_party
                   if m not in sys.stdlib_module_names and m not in ("__future__", "lambda_fn") and m not in own}
    assert third_party - shipped - LAMBDA_RUNTIME_PACKAGES == set(), "imported but neither shipped nor in the runtime"
    handlers = [r["Properties"]["Handler"] for r in translated["Resources"].values()
                if r["Type"] == "AWS::Lambda::Function"]
    assert sorted(handlers) == ["deploy.handler", "predict.handler"]
    blocked = ["mlcore", "mlops", "pipelines", "inference", "steps", "monitoring", "lambda_fn"]
    options = {"requestContext": {"http": {"method": "OPTIONS"}, "requestId": "r"},
               "headers": {"origin": "https://example.com"}, "version": "2.0"}
    script = "\n".join([
        "import sys, importlib",
        f"sys.modules.update(dict.fromkeys({blocked!r}))",  # None: importing them raises ImportError
        *[f"assert callable(getattr(importlib.import_module({h.split('.')[0]!r}), {h.split('.')[1]!r}))"
          for h in handlers],
        # run them: a CORS preflight, and an event that is not the deploy handler's
        "import deploy, predict",
        f"assert predict.handler({options!r}, {FAKE_CONTEXT})['statusCode'] == 204",
        "try:",
        f"    deploy.handler({{'detail-type': 'Other'}}, {FAKE_CONTEXT})",
        "except ValueError as exc:",
        "    assert 'not a' in str(exc), exc",
        "else:",
        "    raise SystemExit('the deploy handler accepted an event that is not a model package state change')",
    ])
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(code_dir), "AWS_DEFAULT_REGION": "us-east-1",
           "ALLOWED_ORIGINS": "https://example.com", "ENDPOINT_NAME": "e", "POWERTOOLS_METRICS_NAMESPACE": "Test",
           "MODEL_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/m", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "x", "RETRY_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/r",
           "FAILURES_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/f"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=code_dir, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_monitoring_schedule_starts_a_valid_processing_job_of_the_monitor_script():
    """The scheduler's input, with parameters filled in, is a valid CreateProcessingJob request
    (botocore's own validator) that runs monitoring/monitor_job.py on the channels it reads."""
    import json
    import re

    import botocore.session
    from botocore.validate import validate_parameters

    from monitoring import monitor_job

    doc, errors = decode(str(REPO_ROOT / "infra" / "monitoring.yaml"))
    assert not errors, errors
    text = doc["Resources"]["MonitoringSchedule"]["Properties"]["Target"]["Input"]["Fn::Sub"]
    values = {"EndpointName": "bert-multilabel", "ProcessingRoleArn": "arn:aws:iam::123456789012:role/monitor",
              "ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/img:1", "InstanceType": "ml.m5.large",
              "MonitoringCodeS3Uri": "s3://b/code/", "CaptureS3Uri": "s3://b/capture/bert-multilabel",
              "GroundTruthS3Uri": "s3://b/ground-truth", "BaselineS3Uri": "s3://b/baseline", "OutputS3Uri": "s3://b/out"}
    filled = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text)
    request = json.loads(filled.replace("<aws.scheduler.execution-id>", "0f8a9b7c-1d2e-4f5a-8b6c-7d8e9f0a1b2c"))
    model = botocore.session.get_session().get_service_model("sagemaker")
    validate_parameters(request, model.operation_model("CreateProcessingJob").input_shape)
    assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", request["ProcessingJobName"])
    assert request["AppSpecification"]["ContainerEntrypoint"][:3] == ["python3", "-m", "monitoring.monitor_job"]
    defaults = vars(monitor_job.build_parser().parse_args([]))
    local_paths = {i["InputName"]: i["S3Input"]["LocalPath"] for i in request["ProcessingInputs"]}
    assert local_paths["capture"] == defaults["capture_dir"]
    assert local_paths["ground_truth"] == defaults["ground_truth_dir"]
    assert local_paths["baseline"] == defaults["baseline_dir"]
    assert request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["LocalPath"] == defaults["output_dir"]


def test_the_bootstrap_stack_gives_the_other_templates_their_bucket_role_and_prefixes():
    """infra/bootstrap.yaml (README "Deploy to AWS", step 1): its outputs are the other stacks' parameters, its
    role may use its own bucket only and is assumable by SageMaker in this account only."""
    boot, serving, monitor = (_load(REPO_ROOT / "infra" / name) for name in ("bootstrap.yaml", "template.yaml",
                                                                               "monitoring.yaml"))
    project = boot["Parameters"]["ProjectName"]["Default"]
    assert serving["Parameters"]["GroundTruthPrefix"]["Default"] == f"ground-truth/{project}"
    outputs = {k: v["Value"] for k, v in boot["Outputs"].items()}
    assert outputs["GroundTruthS3Uri"] == {"Fn::Sub": "s3://${ArtifactBucket}/ground-truth/${ProjectName}"}
    assert outputs["DataCaptureS3Uri"] == {"Fn::Sub": "s3://${ArtifactBucket}/capture"}
    assert {"ModelExecutionRoleArn", "DataCaptureS3Uri", "GroundTruthBucket"} <= set(serving["Parameters"])
    assert {"ProcessingRoleArn", "GroundTruthS3Uri", "CaptureS3Uri"} <= set(monitor["Parameters"])
    role = boot["Resources"]["SageMakerExecutionRole"]["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    s3 = [s for s in _statements(role["Policies"]) if any(a.startswith("s3:") for a in
                                                           (s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))]
    assert sorted(json.dumps(s["Resource"]) for s in s3) == sorted(
        [json.dumps({"Fn::Sub": "${ArtifactBucket.Arn}/*"}), json.dumps({"Fn::GetAtt": ["ArtifactBucket", "Arn"]})])
    bucket = boot["Resources"]["ArtifactBucket"]
    assert bucket["DeletionPolicy"] == "Retain" and all(bucket["Properties"]["PublicAccessBlockConfiguration"].values())
