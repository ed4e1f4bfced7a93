"""sagemaker.train.ModelTrainer that uploads local directories (its sm_drivers channel) to content-hashed keys.

ModelTrainer puts them under `<input_s3_key_prefix>/<base_job_name>-<timestamp>/input/<channel>`, so every
build of the definition names new S3 URIs and SageMaker's step cache, whose key includes InputDataConfig,
never hits (15 builds of the same code gave 15 cache keys). Here the key is
`<input_s3_key_prefix>/<sha256 of the directory, 16 hex>/<channel>`: the same content gives the same URI,
changed content a new one. (The drivers record the source directory in sourcecode.json: pass the code as an
S3 URI, itself content-addressed, or a temporary path makes every build's drivers differ.)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sagemaker.train.model_trainer import ModelTrainer

from pipelines.digests import hash_path


class ContentAddressedModelTrainer(ModelTrainer):
    """ModelTrainer whose local input directories go to `<input_s3_key_prefix>/<content hash>/<channel>`."""

    def create_input_data_channel(self, channel_name: str, data_source: Any, key_prefix: str | None = None,
                                  *args: Any, **kwargs: Any):
        if isinstance(data_source, str) and Path(data_source).is_dir() and self.input_s3_key_prefix:
            key_prefix = f"{self.input_s3_key_prefix}/{hash_path(data_source)[:16]}"
        return super().create_input_data_channel(channel_name, data_source, key_prefix, *args, **kwargs)
