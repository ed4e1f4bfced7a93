"""The predict Lambda's feedback route: a person's labels for a text we classified become SageMaker ground
truth that the monitor reads. Real Function URL events, a fake runtime over real HTTP, moto server for S3,
Secrets Manager and DescribeEndpoint."""
from __future__ import annotations

import json
import time

import boto3
import pytest

from lambda_fn import feedback, predict
from lambda_fn.local_adapter import LambdaContext, function_url_event
from monitoring.ground_truth import GroundTruth, load_ground_truth, parse_ground_truth, to_sagemaker
from tests.helpers.servers import moto_server
from tests.unit.test_lambda_predict import ORIGIN, FakeRuntime

SECRET = "s3cret-for-tests"


@pytest.fixture
def runtime(monkeypatch, tmp_path):
    fake = FakeRuntime()
    for name, value in {"AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": fake.url, "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "ENDPOINT_NAME": "my-endpoint",
                        "ALLOWED_ORIGINS": ORIGIN, "POWERTOOLS_METRICS_DISABLED": "true", "FEEDBACK_SECRET": SECRET,
                        "GROUND_TRUTH_DIR": str(tmp_path / "ground_truth")}.items():
        monkeypatch.setenv(name, value)
    for name in ("FEEDBACK_SECRET_ARN", "GROUND_TRUTH_S3_URI", "MODEL_VERSION_FROM_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(predict, "_client", None)
    monkeypatch.setattr(predict, "_feedback_route", feedback.FeedbackRoute())
    yield fake
    fake.server.shutdown()


def post(path: str, body, source_ip: str = "203.0.113.9", headers: dict | None = None) -> tuple[int, dict, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    event = function_url_event("POST", path, {"Content-Type": "application/json", "Origin": ORIGIN, **(headers or {})},
                               data, source_ip)
    result = predict.handler(event, LambdaContext())
    return result["statusCode"], result["headers"], json.loads(result["body"])


def predicted(texts: list[str]) -> dict:
    status, _, body = post("/", {"texts": texts})
    assert status == 200, body
    return body


def test_a_correction_is_stored_as_ground_truth_the_monitor_reads(runtime, tmp_path):
    answer = predicted(["I was charged twice", "my parcel is late"])
    token, second = answer["feedbackToken"], answer["predictions"][1]["inferenceId"]
    status, _, body = post("/feedback", {"token": token, "inferenceId": second, "labels": ["b", "a", "b"]})
    assert status == 200, body
    assert body["stored"] is True and body["inferenceId"] == second and body["labels"] == ["a", "b"]

    [file] = (tmp_path / "ground_truth").rglob("*.jsonl")  # <store>/yyyy/mm/dd/hh/feedback-*.jsonl
    assert file.parent.relative_to(tmp_path / "ground_truth").as_posix() == time.strftime("%Y/%m/%d/%H", time.gmtime())
    [record] = [json.loads(line) for line in file.read_text().splitlines()]
    assert record == to_sagemaker(GroundTruth(second, ("a", "b"), None, ""))  # the monitor's own record shape
    records, stats = load_ground_truth(tmp_path / "ground_truth", ["a", "b"])
    assert [(r.inference_id, r.labels) for r in records] == [(second, ("a", "b"))] and not stats.rejected


def test_no_label_applies_is_ground_truth_too(runtime, tmp_path):
    answer = predicted(["hello there"])
    status, _, body = post("/feedback", {"token": answer["feedbackToken"],
                                         "inferenceId": answer["inferenceId"] + ":0", "labels": []})
    assert status == 200 and body["labels"] == []
    records, _ = load_ground_truth(tmp_path / "ground_truth", ["a", "b"])
    assert [r.labels for r in records] == [()]


def forged(claims: dict, secret: bytes = SECRET.encode()) -> str:
    return feedback.issue_token(secret, claims["i"], claims["n"], claims["l"], claims.get("t"))


@pytest.mark.parametrize("change,status,code,needle", [
    (lambda t, i: {"token": forged({"i": i[:-2], "n": 1, "l": ["a", "b"]}, b"another key"), "inferenceId": i,
                   "labels": ["a"]}, 403, "invalid_token", "not issued by this service"),
    (lambda t, i: {"token": t[:-3] + ("AAA" if not t.endswith("AAA") else "BBB"), "inferenceId": i, "labels": ["a"]},
     403, "invalid_token", "not issued"),
    (lambda t, i: {"token": forged({"i": i[:-2], "n": 1, "l": ["a", "b"], "t": time.time() - 90000}), "inferenceId": i,
                   "labels": ["a"]}, 403, "token_expired", "feedback is taken for 24 h"),
    (lambda t, i: {"token": "nonsense", "inferenceId": i, "labels": ["a"]}, 400, "bad_request", "feedbackToken"),
    (lambda t, i: {"inferenceId": i, "labels": ["a"]}, 400, "bad_request", "feedbackToken"),
    (lambda t, i: {"token": t, "inferenceId": i[:-1] + "1", "labels": ["a"]}, 400, "bad_request",
     "one of the ids of this token's 1 prediction"),
    (lambda t, i: {"token": t, "inferenceId": "someone-else:0", "labels": ["a"]}, 400, "bad_request", "ids of this token"),
    (lambda t, i: {"token": t, "inferenceId": i, "labels": ["a", "refund"]}, 400, "unknown_label",
     "not labels of this model: 'refund'; known: a, b"),
    (lambda t, i: {"token": t, "inferenceId": i, "labels": "a"}, 400, "bad_request", "list of label names"),
    (lambda t, i: {"token": t, "inferenceId": i, "labels": [1]}, 400, "bad_request", "list of label names"),
])
def test_bad_feedback_is_refused_with_a_reason_and_nothing_is_stored(runtime, tmp_path, change, status, code, needle):
    answer = predicted(["x"])
    got, _, body = post("/feedback", change(answer["feedbackToken"], answer["predictions"][0]["inferenceId"]))
    assert (got, body["error"]["code"]) == (status, code), body
    assert needle in body["error"]["message"] and body["requestId"]
    assert not (tmp_path / "ground_truth").exists()


def test_a_body_that_is_not_json_or_too_large_is_refused(runtime, tmp_path):
    assert post("/feedback", b"{nope")[0] == 400
    status, _, body = post("/feedback", {"token": "x" * 20000})
    assert status == 413 and "16384 bytes" in body["error"]["message"]


def test_without_a_secret_there_is_no_token_and_feedback_is_503(runtime, monkeypatch):
    monkeypatch.delenv("FEEDBACK_SECRET")
    assert "feedbackToken" not in predicted(["x"])
    status, _, body = post("/feedback", {"token": "1.a.b", "inferenceId": "r:0", "labels": []})
    assert status == 503 and body["error"]["code"] == "feedback_disabled"


def test_feedback_is_rate_limited_per_client_and_per_text(runtime, monkeypatch, tmp_path):
    monkeypatch.setenv("FEEDBACK_RATE_PER_MINUTE", "3")
    monkeypatch.setenv("FEEDBACK_MAX_PER_TEXT", "2")
    answer = predicted(["one", "two", "three", "four"])
    ids = [p["inferenceId"] for p in answer["predictions"]]

    def send(i, ip="198.51.100.1", **headers):
        return post("/feedback", {"token": answer["feedbackToken"], "inferenceId": ids[i], "labels": ["a"]}, ip,
                    headers)

    assert [send(0)[0], send(0)[0], send(0)[0]] == [200, 200, 429]  # the third correction of one text
    status, headers, body = send(1)  # the client's fourth feedback this minute
    assert status == 429 and "at most 3 a minute" in body["error"]["message"]
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert send(1, ip="198.51.100.2")[0] == 200  # another client is not held back by the first
    # behind the site's function every request comes from its address: it forwards the browser's
    assert send(2, ip="198.51.100.1", **{"X-Mlops-Client-Ip": "192.0.2.7"})[0] == 200
    assert len(list((tmp_path / "ground_truth").rglob("*.jsonl"))) == 4


def test_on_aws_feedback_lands_in_the_ground_truth_prefix_and_the_secret_comes_from_secrets_manager(
        runtime, monkeypatch, tmp_path):
    with moto_server(18620, 18660) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", url)
        s3, secrets = boto3.client("s3", endpoint_url=url), boto3.client("secretsmanager", endpoint_url=url)
        s3.create_bucket(Bucket="mlops-bucket")
        arn = secrets.create_secret(Name="feedback-key", SecretString="from-secrets-manager")["ARN"]
        monkeypatch.delenv("FEEDBACK_SECRET")
        monkeypatch.delenv("GROUND_TRUTH_DIR")
        monkeypatch.setenv("FEEDBACK_SECRET_ARN", arn)
        monkeypatch.setenv("GROUND_TRUTH_S3_URI", "s3://mlops-bucket/ground-truth/bert-multilabel")

        answer = predicted(["x"])
        feedback.verify_token(b"from-secrets-manager", answer["feedbackToken"], 60)  # signed with that secret
        status, _, body = post("/feedback", {"token": answer["feedbackToken"],
                                             "inferenceId": answer["predictions"][0]["inferenceId"], "labels": ["b"]})
        assert status == 200, body
        [obj] = s3.list_objects_v2(Bucket="mlops-bucket")["Contents"]
        hour = time.strftime("%Y/%m/%d/%H", time.gmtime())
        assert obj["Key"].startswith(f"ground-truth/bert-multilabel/{hour}/feedback-") and obj["Key"].endswith(".jsonl")
        (tmp_path / "object.jsonl").write_bytes(s3.get_object(Bucket="mlops-bucket", Key=obj["Key"])["Body"].read())
    records, stats = parse_ground_truth(tmp_path / "object.jsonl", "sagemaker", ["a", "b"])
    assert [(r.inference_id, r.labels) for r in records] == [(answer["predictions"][0]["inferenceId"], ("b",))]
    assert not stats.rejected


def test_on_aws_the_serving_version_comes_from_describe_endpoint(runtime, monkeypatch):
    with moto_server(18660, 18700) as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", url)
        monkeypatch.setenv("MODEL_VERSION_FROM_ENDPOINT", "true")
        monkeypatch.setattr(predict, "_serving", {"at": 0.0, "version": None})
        sm = boto3.client("sagemaker", endpoint_url=url)
        sm.create_model(ModelName="my-endpoint-v12", ExecutionRoleArn="arn:aws:iam::123456789012:role/m",
                        PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/x:1"})
        sm.create_endpoint_config(EndpointConfigName="my-endpoint-v12", ProductionVariants=[{
            "VariantName": "AllTraffic", "ModelName": "my-endpoint-v12", "InitialInstanceCount": 1,
            "InstanceType": "ml.m5.xlarge"}])
        sm.create_endpoint(EndpointName="my-endpoint", EndpointConfigName="my-endpoint-v12")
        assert predicted(["x"])["model"] == {"version": "12", "variant": "AllTraffic"}
    # cached: the next answer does not ask again (the control plane is gone now)
    assert predicted(["x"])["model"]["version"] == "12"
