"""The endpoint as SageMaker runs it: our model.tar.gz under the Hugging Face inference toolkit on multi-model-server.

The artifact is made by the real packaging code (steps/train.py's), extracted to an /opt/ml/model-shaped
directory and served by the image's entry point with the image's packages (.venv-dlc: the toolkit with
the transformers-5 change the image carries, multi-model-server 1.1.11 on Java) -- no onnxruntime, nothing
of this project but what the artifact's code/ carries, no package index, no Hub. Clients are boto3's
`sagemaker-runtime` and the unchanged predict Lambda, through SageMaker Runtime's InvokeEndpoint
(mlops.runtime_front: a container error comes back as a 424 ModelError, as on AWS).
"""
from __future__ import annotations

import json
import shutil
import subprocess

import boto3
import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lambda_fn import predict
from lambda_fn.local_adapter import LambdaContext, function_url_event
from pipelines.bertmlc.pipeline import MODEL_ENVIRONMENT
from pipelines.tarball import make_model_tarball
from tests.helpers.aws_runtime import DLC_PYTHON, group_alive, missing_runtime, runtime_front, start_dlc_endpoint
from tests.helpers.servers import free_port

ENDPOINT = "bert-multilabel-test"
TEXTS = ["an apple and a cherry", "nothing to see", "banana"]
PORTS = (18400, 18500)  # multi-model-server refuses ports above 32767

pytestmark = pytest.mark.skipif(missing_runtime() is not None, reason=str(missing_runtime()))

# The defect this tier was built for: output_fn returned (body, content type); the toolkit hands that to
# multi-model-server as is, which JSON-encodes it: every answer was ["[{...}]", "application/json"].
OUTPUT_FN = "def output_fn(predictions: list[dict], accept: str | None = JSON) -> str:"
BROKEN_OUTPUT_FN = '''def output_fn(predictions, accept=JSON):
    results = [res for p in predictions for res in p["results"]]
    kind = response_type(accept)
    return ENCODERS[kind](results), kind


def _replaced_output_fn(predictions: list[dict], accept: str | None = JSON) -> str:'''


def results_problem(doc, n_texts: int) -> str | None:
    """What is wrong with an answer to `n_texts` texts (None: the documented shape, consistent labels)."""
    if not isinstance(doc, list) or len(doc) != n_texts:
        return f"expected a list of {n_texts} results, got {json.dumps(doc)[:200]}"
    for result in doc:
        if not isinstance(result, dict) or set(result) != {"labels", "scores", "thresholds"}:
            return f"expected {{labels, scores, thresholds}}, got {json.dumps(result)[:200]}"
        passing = [l for l in sorted(result["scores"], key=result["scores"].get, reverse=True)
                   if result["scores"][l] >= result["thresholds"][l]]
        if result["labels"] != passing:
            return f"labels {result['labels']} are not the labels passing their thresholds {passing}"
    return None


def runtime_client(front_url: str):
    return boto3.client("sagemaker-runtime", endpoint_url=front_url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"total_max_attempts": 1}))


def lambda_call(monkeypatch, front_url: str, body: dict) -> tuple[int, dict]:
    """The predict Lambda, unchanged, with a Function URL event, calling the endpoint through boto3."""
    for name, value in {"AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": front_url, "ENDPOINT_NAME": ENDPOINT,
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "POWERTOOLS_METRICS_DISABLED": "true",
                        "ALLOWED_ORIGINS": "https://site.example"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(predict, "_client", None)
    event = function_url_event("POST", "/", {"Content-Type": "application/json"}, json.dumps(body).encode(), "203.0.113.9")
    result = predict.handler(event, LambdaContext())
    return result["statusCode"], json.loads(result["body"])


def serve(tmp_path_factory, artifact_dir, name: str):
    root = tmp_path_factory.mktemp(name)
    tarball = make_model_tarball(artifact_dir, root / "model.tar.gz")
    return start_dlc_endpoint(tarball, root / "container", free_port(*PORTS), dict(MODEL_ENVIRONMENT))


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory, packaged_tiny_model):
    served = serve(tmp_path_factory, packaged_tiny_model, "dlc")
    try:
        with runtime_front(ENDPOINT, served.url) as front:
            yield served, front
    finally:
        served.stop()


def test_the_image_has_neither_this_project_nor_onnxruntime():
    """What the artifact must carry itself: a check of the environment the other tests rely on."""
    for module in ("mlcore", "onnxruntime", "inference.server"):
        probe = subprocess.run([str(DLC_PYTHON), "-c", f"import {module}"], capture_output=True, text=True,
                               cwd="/", env={"PATH": "/usr/bin:/bin"})
        assert probe.returncode != 0, f"{module} is importable in the image environment"


def test_invoke_endpoint_answers_every_text_like_the_model(endpoint, packaged_tiny_model):
    from mlcore.predictor import load_predictor

    _, front = endpoint
    answer = runtime_client(front).invoke_endpoint(
        EndpointName=ENDPOINT, ContentType="application/json", Accept="application/json",
        Body=json.dumps({"inputs": TEXTS}))
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200 and answer["ContentType"] == "application/json"
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    doc = json.loads(answer["Body"].read())
    assert results_problem(doc, len(TEXTS)) is None
    expected = load_predictor(packaged_tiny_model).predict_proba(TEXTS)
    labels = load_predictor(packaged_tiny_model).label_names
    got = np.array([[r["scores"][l] for l in labels] for r in doc])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_single_text_and_parameters(endpoint):
    _, front = endpoint
    answer = runtime_client(front).invoke_endpoint(
        EndpointName=ENDPOINT, ContentType="application/json",
        Body=json.dumps({"inputs": "an apple", "parameters": {"threshold": 0.0, "top_k": 2}}))
    [result] = json.loads(answer["Body"].read())
    assert len(result["labels"]) == 2 and set(result["thresholds"].values()) == {0.0}


def test_json_lines_in_and_out(endpoint):
    _, front = endpoint
    body = '{"inputs": "an apple"}\n"banana and cherry"\n{"inputs": ["x y", "coconut"]}\n'
    answer = runtime_client(front).invoke_endpoint(
        EndpointName=ENDPOINT, ContentType="application/jsonlines", Accept="application/jsonlines", Body=body)
    assert answer["ContentType"] == "application/jsonlines"
    lines = [json.loads(line) for line in answer["Body"].read().decode().splitlines()]
    assert results_problem(lines, 4) is None


def test_the_unchanged_predict_lambda_answers_200(endpoint, monkeypatch):
    _, front = endpoint
    for body, n in (({"text": "an apple"}, 1), ({"texts": TEXTS}, len(TEXTS))):
        status, answer = lambda_call(monkeypatch, front, body)
        assert status == 200, answer
        assert [p.pop("text_index") for p in answer["predictions"]] == list(range(n))
        assert [p.pop("inferenceId") for p in answer["predictions"]] == [
            f"{answer['inferenceId']}:{i}" for i in range(n)]
        assert results_problem(answer["predictions"], n) is None


# What a client sees of each error through the toolkit: it answers every handler exception with 400 and
# str(exception); SageMaker Runtime turns any container error into a 424 ModelError.
ERRORS = [
    ("application/json", None, json.dumps({"inputs": []}), "must be a non-empty text or a non-empty list"),
    ("application/json", None, json.dumps({"inputs": ["ok", "  "]}), "inputs[1] is empty"),
    ("application/json", None, json.dumps({"inputs": "x", "parameters": {"top_k": 0}}), "top_k must be a positive"),
    ("application/json", None, "{not json", "invalid JSON"),
    ("text/csv", None, "a,b", "unsupported content type 'text/csv'"),  # our server: 415
    ("application/json", "text/csv", json.dumps({"inputs": "x"}), "cannot answer in 'text/csv'"),  # ours: 406
    ("application/json", None, json.dumps({"inputs": ["t"] * 257}), "257 texts in one request; the limit is 256"),  # 413
]


@pytest.mark.parametrize("content_type,accept,body,needle", ERRORS)
def test_errors_reach_boto3_as_model_errors_with_a_clear_message(endpoint, content_type, accept, body, needle):
    _, front = endpoint
    kwargs = {"Accept": accept} if accept else {}
    with pytest.raises(ClientError) as info:
        runtime_client(front).invoke_endpoint(EndpointName=ENDPOINT, ContentType=content_type, Body=body, **kwargs)
    response = info.value.response
    assert response["Error"]["Code"] == "ModelError" and response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["OriginalStatusCode"] == 400
    original = json.loads(response["OriginalMessage"])  # multi-model-server's error body
    assert original["code"] == 400 and needle in original["message"]
    assert response["Error"]["Message"].startswith("Received client error (400) from primary with message")


def test_an_invalid_text_through_the_lambda_is_a_400_that_names_it(endpoint, monkeypatch):
    _, front = endpoint  # the Lambda refuses it itself (issue 13): the endpoint is not called for it
    status, answer = lambda_call(monkeypatch, front, {"texts": ["fine", "bad \ud800 surrogate"]})
    assert status == 400 and answer["error"]["code"] == "bad_request"
    assert "text 1" in answer["error"]["message"] and "Unicode" in answer["error"]["message"]


def test_starts_with_no_network_and_installs_nothing(endpoint):
    served, _ = endpoint
    log = served.log_text()
    assert "installing packages from requirements.txt" not in log
    assert not (served.root / "opt" / "ml" / "model" / "code" / "requirements.txt").exists()
    assert served.cold_start_s > 0
    print(f"\ncold start (process start -> first 200 from the model): {served.cold_start_s:.1f} s")


def test_a_tuple_returning_output_fn_is_caught(tmp_path_factory, packaged_tiny_model, monkeypatch):
    """The defect as it was found: the same handler contract broken the same way fails this tier's checks."""
    broken = shutil.copytree(packaged_tiny_model, tmp_path_factory.mktemp("broken") / "artifact")
    handler = broken / "code" / "mlcore" / "handler.py"
    text = handler.read_text()
    assert text.count(OUTPUT_FN) == 1
    handler.write_text(text.replace(OUTPUT_FN, BROKEN_OUTPUT_FN))
    served = serve(tmp_path_factory, broken, "dlc-broken")
    try:
        with runtime_front(ENDPOINT, served.url) as front:
            answer = runtime_client(front).invoke_endpoint(EndpointName=ENDPOINT, ContentType="application/json",
                                                           Body=json.dumps({"inputs": TEXTS}))
            doc = json.loads(answer["Body"].read())
            assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200  # the transport is happy ...
            assert results_problem(doc, len(TEXTS)) is not None  # ... the check is not
            assert doc[1] == "application/json" and results_problem(json.loads(doc[0]), len(TEXTS)) is None
            # reported: the Lambda answered 502 for one text and 500 for two; both are the model's fault: 502
            for body in ({"text": "an apple"}, {"texts": TEXTS[:2]}):
                status, answer = lambda_call(monkeypatch, front, body)
                assert status == 502 and "unexpected shape" in answer["error"]["message"]
    finally:
        served.stop()
    assert not group_alive(served.proc.pid), "a multi-model-server process outlived the stop"
