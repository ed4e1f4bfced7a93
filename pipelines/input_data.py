"""InputData for SageMaker: checked, and staged to S3 when it is local ('demo' or a path).

SageMaker processing reads S3 only; `stage_input_data` uploads a local dataset (or the demo data)
content-addressed, so the same data always gets the same URI and step caching still hits.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from mlcore.datasets.demo import write_demo
from pipelines.aws_session import upload_dir
from pipelines.digests import hash_path


class PipelineRunError(ValueError):
    """Bad user input for the AWS pipeline (parameters, kwargs, input data): the message says what to fix."""


def check_input_data(value: str) -> Path | None:
    """Validate an InputData value for SageMaker: None for s3:// and 'demo', else the local path to upload."""
    value = str(value).strip()
    if value.startswith("s3://"):
        if len(value) <= len("s3://") or value[len("s3://"):].startswith("/"):
            raise PipelineRunError(f"InputData {value!r} is not a valid S3 URI (expected s3://bucket/prefix/)")
        return None
    if value.startswith("hf:"):
        raise PipelineRunError(f"InputData {value!r}: SageMaker processing reads S3 only; download the dataset "
                               "(e.g. `mlops run --input hf:...` locally) and pass its directory or an s3:// URI")
    if not value:
        raise PipelineRunError("InputData must not be empty: use 'demo', a local path or an s3:// URI")
    if value == "demo":
        return None
    local = Path(value).expanduser().resolve()
    if not local.exists():
        raise PipelineRunError(f"InputData path not found: {local} (use 'demo', a local path or an s3:// URI)")
    return local


def stage_input_data(value: str, session, bucket: str, prefix: str) -> str:
    """InputData as SageMaker needs it (an S3 prefix): s3:// kept; 'demo' and local paths uploaded.

    Uploads are content-addressed (`s3://bucket/prefix/input/<name>-<sha>/`), so re-staging the same
    data gives the same URI and step caching still hits.
    """
    value = str(value).strip()
    local = check_input_data(value)
    if value.startswith("s3://"):
        return value
    with tempfile.TemporaryDirectory(prefix="bertmlc-input-") as tmp:
        if local is None:  # 'demo'
            local, name = write_demo(Path(tmp) / "demo" / "data.jsonl").parent, "demo"
        else:
            name = local.stem if local.is_file() else local.name
        uri = f"s3://{bucket}/{prefix.strip('/')}/input/{name}-{hash_path(local)[:12]}/"
        return upload_dir(session, local, uri)
