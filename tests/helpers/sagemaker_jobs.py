"""SageMaker jobs as their containers run them, offline: what the pipeline uploads, run under a temp root.

The pipeline definition is built by the real code against moto server (S3 and SageMaker over HTTP on
loopback). A job is then staged the way SageMaker stages it: every input (ProcessingInput or training
channel) is downloaded from moto S3 to where its LocalPath (or /opt/ml/input/data/<channel>) says,
under a temporary root that stands for /opt/ml; the container's entry point and arguments come from
the definition. The one change is that root: `/opt/ml` is rewritten to it in the entry point files
the SDK generated (runproc.sh, sm_train.sh and its drivers) and in the arguments, because these
hard-code it. The project's code is not touched. Nothing here can reach a package index or the Hub.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import boto3
import pytest
import requests

from tests.helpers.servers import moto_server

REGION, BUCKET = "us-east-1", "bertmlc-artifacts"
ROLE = "arn:aws:iam::123456789012:role/SageMakerPipelineRole"
PORTS = (18500, 18600)  # this tier's moto servers
OPT_ML = "/opt/ml"
PROCESSING = "/opt/ml/processing"
# The interpreter of this test run: its venv's bin/ is the container's PATH (python3, pip, train).
VENV_BIN = Path(sys.executable).parent


@contextmanager
def moto_aws(ports: tuple[int, int] = PORTS) -> Iterator[str]:
    """moto server with the artifact bucket, fake credentials, every boto3 client pointed at it; yields its URL."""
    with moto_server(*ports) as url, pytest.MonkeyPatch.context() as mp:
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_SESSION_TOKEN": "testing", "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
                            "AWS_ENDPOINT_URL": url, "AWS_ENDPOINT_URL_S3": url,
                            "AWS_EC2_METADATA_DISABLED": "true", "SAGEMAKER_VALIDATE_ROLE": "false"}.items():
            mp.setenv(name, value)
        for name in ("AWS_PROFILE", "ARTIFACT_BUCKET", "SAGEMAKER_PIPELINE_ROLE_ARN"):
            mp.delenv(name, raising=False)
        requests.post(f"{url}/moto-api/reset", timeout=10)
        s3().create_bucket(Bucket=BUCKET)
        yield url


def build_definition(build_dir: Path, **extra) -> dict:
    """The pipeline definition as `mlops pipeline definition` builds it (uploads the code to moto S3)."""
    from pipelines.run_pipeline import build_pipeline

    pipeline = build_pipeline(REGION, ROLE, BUCKET, extra={"build_dir": build_dir, **extra})
    return json.loads(pipeline.definition())


def steps_by_name(definition: dict) -> dict[str, dict]:
    out = {}
    for step in definition["Steps"]:
        out[step["Name"]] = step
        if step["Type"] == "Condition":
            for inner in step["Arguments"].get("IfSteps", []) + step["Arguments"].get("ElseSteps", []):
                out[inner["Name"]] = inner
    return out


# ----------------------------------------------------------------------------- S3 (moto)
def s3():
    return boto3.client("s3", region_name=REGION)


def split_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def upload(local: Path, uri: str) -> str:
    """Upload a file, or every file under a directory below the `uri` prefix; returns `uri`."""
    bucket, key = split_uri(uri)
    files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    for path in files:
        target = key if local.is_file() else "/".join(filter(None, [key.rstrip("/"), path.relative_to(local).as_posix()]))
        s3().upload_file(str(path), bucket, target)
    return uri


def download_prefix(uri: str, dest: Path) -> list[Path]:
    """S3Prefix input semantics: every object under the key prefix, at its path below the prefix.

    An object whose key is the prefix itself (a single-object URI, such as a model.tar.gz) lands
    under its own name.
    """
    bucket, prefix = split_uri(uri)
    pages = s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    if not keys:
        raise FileNotFoundError(f"nothing in moto S3 under {uri}")
    written = []
    for key in keys:
        relative = key[len(prefix):].lstrip("/") or key.rsplit("/", 1)[-1]
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        s3().download_file(bucket, key, str(target))
        written.append(target)
    return written


# ----------------------------------------------------------------------------- definition values
def parameter_values(definition: dict, **overrides: Any) -> dict[str, str]:
    """`{"Parameters.<name>": value}` of one execution: defaults, then overrides, as the strings SageMaker passes."""
    values = {p["Name"]: p.get("DefaultValue") for p in definition["Parameters"]}
    unknown = sorted(set(overrides) - set(values))
    assert not unknown, f"no such pipeline parameters: {unknown}"
    values.update(overrides)
    types = {p["Name"]: p["Type"] for p in definition["Parameters"]}
    as_text = {"Float": lambda v: str(float(v)), "Integer": lambda v: str(int(v)), "String": str}
    return {f"Parameters.{name}": as_text[types[name]](value) for name, value in values.items()}


def resolve(value: Any, known: Mapping[str, str]) -> Any:
    """A definition value with its `Get` and `Std:Join` expressions replaced by what an execution knows."""
    if isinstance(value, dict):
        if set(value) == {"Get"}:
            if value["Get"] not in known:
                raise KeyError(f"this test gives no value for {value['Get']!r}")
            return known[value["Get"]]
        if set(value) == {"Std:Join"}:
            join = value["Std:Join"]
            return join["On"].join(str(resolve(v, known)) for v in join["Values"])
        return {k: resolve(v, known) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, known) for v in value]
    return value


def rewrite(value: Any, old: str, new: str) -> Any:
    """`old` (a container path prefix) replaced by `new` in a string or in each string of a list."""
    if isinstance(value, list):
        return [rewrite(v, old, new) for v in value]
    return value.replace(old, new) if isinstance(value, str) else value


def rewrite_file(path: Path, old: str, new: str) -> bool:
    """Rewrite `old` to `new` in a text file; True when it changed."""
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        return False
    if old not in text:
        return False
    path.write_text(text.replace(old, new))
    return True


# ----------------------------------------------------------------------------- the container's process
def container_env(root: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment: this venv's bin/ first on PATH, no package index, no Hub, no AWS endpoint."""
    for sub in ("home", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(root / "home"),
        "TMPDIR": str(root / "tmp"),
        "LANG": "C.UTF-8",
        # pip runs (the requirements step) but finds no index: everything must already be satisfied
        "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
        "TOKENIZERS_PARALLELISM": "false",
        "AWS_REGION": REGION,
    }
    env.update(extra or {})
    return env


def run(argv: list[str], env: Mapping[str, str], cwd: Path, log: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the container's command; stdout+stderr go to `log` (and are returned)."""
    proc = subprocess.run(argv, env=dict(env), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)
    log.write_text(proc.stdout)
    return proc
