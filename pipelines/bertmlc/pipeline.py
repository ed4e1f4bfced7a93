"""The SageMaker Pipeline (the AWS twin of the local runner), built from `pipelines.spec`.

PreprocessData -> TrainModel -> EvaluateModel -> CheckModelQuality -> RegisterModel | FailModelQuality.
This module is the one place that touches the SageMaker SDK's pipeline API (sagemaker 3.x), so
an SDK change is fixed here. `get_pipeline(...)` follows the AWS MLOps project templates.

Training runs under SageMaker's torchrun driver (one process per GPU, every instance of
TrainingInstanceCount): data parallel, process 0 writes the model. The code goes to content-addressed
S3 keys, so a definition built again from the same code is the same, byte for byte, and the step
cache hits. With an MLflow tracking server ARN the definition carries MlflowConfig and the training
and evaluation steps log there (MLFLOW_TRACKING_URI = the ARN, through the sagemaker-mlflow plugin).
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from mlcore.config import TrainingConfig
from pipelines import spec
from pipelines.digests import hash_path
from pipelines.parameters import training_hyperparameters
from pipelines.source_bundle import TRACKING_REQUIREMENTS, step_source_bundle

BASE_JOB_PREFIX = spec.BASE_JOB_PREFIX
PROCESSING_INSTANCE_TYPE = spec.PARAMETERS_BY_NAME["ProcessingInstanceType"].default
TRAINING_INSTANCE_TYPE = spec.PARAMETERS_BY_NAME["TrainingInstanceType"].default
# Training images: Hugging Face's (transformers 5.x as this project needs) is GPU only; on CPU instances the
# PyTorch training image, which gets transformers from the bundle's requirements.txt. Inference: Hugging
# Face's CPU build; the processing steps run on it too (it carries torch + transformers for CPU).
HF_TRAINING = {"version": "5.3.0", "base_framework_version": "pytorch2.9.0", "py_version": "py312"}
PYTORCH_TRAINING = {"version": "2.9.0", "py_version": "py312"}
HF_INFERENCE = {"version": "5.5.3", "base_framework_version": "pytorch2.6.0", "py_version": "py312"}
# The registered image is the CPU build (the model server's int8 ONNX path is CPU-first).
INFERENCE_INSTANCE_TYPES = ("ml.m5.large", "ml.m5.xlarge", "ml.c6i.large", "ml.c6i.xlarge")
TRANSFORM_INSTANCE_TYPES = ("ml.m5.xlarge", "ml.c6i.xlarge")
# The HF inference toolkit loads the handlers the training step wrote into the artifact's code/.
MODEL_ENVIRONMENT = {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}
CONTENT_TYPES = ("application/json", "application/jsonlines")
RESPONSE_TYPES = ("application/json", "application/jsonlines")
CACHE_EXPIRE_AFTER = "P30D"
MAX_TRAINING_SECONDS = 6 * 3600
MAX_SPOT_WAIT_SECONDS = 12 * 3600

# SageMaker metric definitions: regexes over the training log lines of docs/architecture.md
# ("epoch=1 train_loss=0.1234", "eval_loss=0.0812 eval_f1_macro=0.4312 ...").
METRIC_NAMES = ("train_loss", "eval_loss", "eval_f1_macro", "eval_f1_micro", "eval_roc_auc_macro")
METRIC_DEFINITIONS = tuple(
    {"Name": name, "Regex": rf"\b{name}=([0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"} for name in METRIC_NAMES
)

# Container paths of the step contracts (docs/architecture.md).
PROCESSING = "/opt/ml/processing"
SPLITS = ("train", "validation", "test")


def _parameter(p: spec.PipelineParameter, default: Any, choices: tuple[str, ...] | None = None):
    from sagemaker.core.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString

    if choices:
        if len(choices) > spec.MAX_ENUM_VALUES:
            raise ValueError(f"{p.name}: {len(choices)} EnumValues, SageMaker takes at most {spec.MAX_ENUM_VALUES}")
        if default not in choices:
            raise ValueError(f"{p.name} default {default!r} is not one of its values: {', '.join(choices)}")
        return ParameterString(name=p.name, default_value=default, enum_values=list(choices))
    cls = {"String": ParameterString, "Integer": ParameterInteger, "Float": ParameterFloat}[p.type]
    return cls(name=p.name, default_value=default)


def build_parameters(defaults: dict[str, Any] | None = None,
                     choices: dict[str, tuple[str, ...]] | None = None) -> dict[str, Any]:
    """One SageMaker pipeline parameter per `spec.PARAMETERS` entry, with its type, default and EnumValues."""
    defaults, choices = defaults or {}, choices or {}
    unknown = sorted((set(defaults) | set(choices)) - set(spec.PARAMETERS_BY_NAME))
    if unknown:
        raise ValueError(f"unknown pipeline parameters {unknown}; valid: {', '.join(spec.PARAMETERS_BY_NAME)}")
    return {p.name: _parameter(p, defaults.get(p.name, p.default), choices.get(p.name)) for p in spec.PARAMETERS}


def training_image(region: str, instance_type: str) -> tuple[str, tuple[str, ...]]:
    """(the training image for `instance_type`'s kind, the instance types that image runs on)."""
    from sagemaker.core import image_uris

    allowed = spec.training_instance_types(instance_type)
    if allowed is spec.GPU_TRAINING_INSTANCE_TYPES:
        return image_uris.retrieve("huggingface", region=region, instance_type=instance_type, image_scope="training",
                                   **HF_TRAINING), allowed
    return image_uris.retrieve("pytorch", region=region, instance_type=instance_type, image_scope="training",
                               **PYTORCH_TRAINING), allowed


def mlflow_environment(tracking_server_arn: str | None, experiment: str) -> dict[str, str]:
    """What the steps need to log to a SageMaker managed MLflow server (the plugin takes the ARN as tracking URI)."""
    if not tracking_server_arn:
        return {}
    if not re.fullmatch(r"arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:mlflow-[a-zA-Z-]+/.+", tracking_server_arn):
        raise ValueError(f"mlflow_tracking_server_arn {tracking_server_arn!r} is not a SageMaker MLflow ARN "
                         "(arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>)")
    return {"MLFLOW_TRACKING_URI": tracking_server_arn, "MLFLOW_EXPERIMENT_NAME": experiment}


def _job_name(prefix: str, step: str, digest: str) -> str:
    """A deterministic name for the code upload location (SageMaker job names: 63 chars, [a-zA-Z0-9-])."""
    name = re.sub(r"[^a-zA-Z0-9-]+", "-", f"{prefix}-{step}-{digest}")
    return name[-63:].lstrip("-")


def get_pipeline(
    region: str,
    role: str | None = None,
    default_bucket: str | None = None,
    model_package_group_name: str = spec.MODEL_PACKAGE_GROUP,
    pipeline_name: str = spec.PIPELINE_NAME,
    base_job_prefix: str = BASE_JOB_PREFIX,
    processing_instance_type: str = PROCESSING_INSTANCE_TYPE,
    training_instance_type: str = TRAINING_INSTANCE_TYPE,
    sagemaker_session=None,
    input_data_uri: str | None = None,
    training_config: TrainingConfig | None = None,
    use_spot_instances: bool = True,
    enable_caching: bool = True,
    build_dir: str | Path | None = None,
    mlflow_tracking_server_arn: str | None = None,
    mlflow_experiment_name: str | None = None,
):
    """Build the pipeline (uploads the step source bundle to S3; starts nothing).

    `input_data_uri` is the S3 default of the InputData parameter (SageMaker reads S3 only); when None,
    the spec's default ('demo') is uploaded by `pipelines.input_data.stage_input_data`.
    `training_instance_type` picks the training image (GPU or CPU kind) and TrainingInstanceType's
    EnumValues: the instance types of that kind. `mlflow_tracking_server_arn`: a SageMaker managed MLflow
    tracking server, the experiment defaulting to the pipeline's name.
    """
    from sagemaker.core import image_uris
    from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.core.processing import FrameworkProcessor
    from sagemaker.core.shapes import ProcessingInput, ProcessingOutput, ProcessingS3Input, ProcessingS3Output
    from sagemaker.core.training.configs import CheckpointConfig, Compute, InputData, SourceCode, StoppingCondition
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow import CacheConfig, ModelStep, Pipeline, ProcessingStep, TrainingStep
    from sagemaker.serve.model_builder import ModelBuilder
    from sagemaker.train.distributed import Torchrun

    from pipelines.aws_session import pipeline_session, upload_dir
    from pipelines.bertmlc.content_addressed import ContentAddressedModelTrainer
    from pipelines.input_data import stage_input_data

    if not role:
        raise ValueError("an execution role ARN is needed to build the pipeline (role=...)")
    session = sagemaker_session or pipeline_session(region, default_bucket)
    bucket = default_bucket or session.default_bucket()
    if input_data_uri is None:  # the spec's default ('demo'), staged to S3 where SageMaker can read it
        input_data_uri = stage_input_data(spec.PARAMETERS_BY_NAME["InputData"].default, session.boto_session,
                                          bucket, base_job_prefix)
    if not str(input_data_uri).startswith("s3://"):
        raise ValueError(f"input_data_uri must be an s3:// URI, got {input_data_uri!r}")
    prefix_uri = f"s3://{bucket}/{base_job_prefix}"

    trainer_image, training_types = training_image(region, training_instance_type)
    params = build_parameters(
        {"ProcessingInstanceType": processing_instance_type, "TrainingInstanceType": training_instance_type,
         "InputData": input_data_uri},
        {"ProcessingInstanceType": spec.PROCESSING_INSTANCE_TYPES, "TrainingInstanceType": training_types})
    cache = CacheConfig(enable_caching=enable_caching, expire_after=CACHE_EXPIRE_AFTER)
    experiment = mlflow_experiment_name or pipeline_name
    tracking = mlflow_environment(mlflow_tracking_server_arn, experiment)

    processing_image = image_uris.retrieve(
        "huggingface", region=region, instance_type=processing_instance_type, image_scope="inference", **HF_INFERENCE)
    inference_image = image_uris.retrieve(
        "huggingface", region=region, instance_type=INFERENCE_INSTANCE_TYPES[0], image_scope="inference", **HF_INFERENCE)

    # The step source bundle: built at definition time, never committed; its S3 path is content-addressed.
    tmp = None
    if build_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bertmlc-bundle-")
        build_dir = tmp.name
    bundle = step_source_bundle(Path(build_dir) / "source", TRACKING_REQUIREMENTS if tracking else ())
    digest = hash_path(bundle)[:16]  # content-addressed code location
    # The training code channel: uploaded here, to its content's key (the SDK would put it under a timestamp and
    # record this machine's temporary path in the drivers' sourcecode.json).
    code_uri = upload_dir(session.boto_session, bundle, f"{prefix_uri}/code/{digest}/")

    def execution_path(*parts: str):
        """An S3 prefix unique to one pipeline execution (outputs never overwrite a registered version's)."""
        return Join(on="/", values=[prefix_uri, ExecutionVariables.PIPELINE_EXECUTION_ID, *parts])

    def processor(step: str, env: dict[str, str] | None = None) -> FrameworkProcessor:
        # one instance: preprocessing splits the whole dataset, evaluation scores one model on one test split
        return FrameworkProcessor(
            image_uri=processing_image, command=["python3"], role=role,
            instance_type=params["ProcessingInstanceType"], instance_count=1,
            base_job_name=f"{base_job_prefix}-{step}", code_location=f"{prefix_uri}/code",
            sagemaker_session=session, env={"TOKENIZERS_PARALLELISM": "false", **(env or {})},
        )

    def s3_input(name: str, source, local: str) -> ProcessingInput:
        return ProcessingInput(input_name=name, s3_input=ProcessingS3Input(
            s3_uri=source, local_path=local, s3_data_type="S3Prefix", s3_input_mode="File"))

    def s3_output(name: str, local: str) -> ProcessingOutput:
        return ProcessingOutput(output_name=name, s3_output=ProcessingS3Output(
            s3_uri=execution_path(name), local_path=local, s3_upload_mode="EndOfJob"))

    # 1. Preprocess: dataset -> train/validation/test JSONL + statistics.json.
    preprocess_args = processor("preprocess").run(
        code="preprocess.py", source_dir=str(bundle), requirements="requirements.txt",
        job_name=_job_name(base_job_prefix, "preprocess", digest),
        inputs=[s3_input("data", params["InputData"], f"{PROCESSING}/input/data")],
        outputs=[s3_output(name, f"{PROCESSING}/output/{name}") for name in (*SPLITS, "statistics")],
        arguments=["--input-dir", f"{PROCESSING}/input/data", "--output-dir", f"{PROCESSING}/output",
                   "--data-version", params["DataVersion"]],
    )
    step_preprocess = ProcessingStep(name=spec.PREPROCESS, step_args=preprocess_args, cache_config=cache)

    def split_uri(name: str):
        return step_preprocess.properties.ProcessingOutputConfig.Outputs[name].S3Output.S3Uri

    # 2. Train (managed spot by default; checkpoints in S3 let it resume), data parallel under torchrun.
    trainer = ContentAddressedModelTrainer(
        training_image=trainer_image, role=role, sagemaker_session=session,
        base_job_name=f"{base_job_prefix}-train", input_s3_key_prefix=f"{base_job_prefix}/code",
        source_code=SourceCode(source_dir=code_uri, entry_script="train.py", requirements="requirements.txt"),
        distributed=Torchrun(), environment=dict(tracking),
        compute=Compute(instance_type=params["TrainingInstanceType"], instance_count=params["TrainingInstanceCount"],
                        volume_size_in_gb=50, enable_managed_spot_training=use_spot_instances),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=MAX_TRAINING_SECONDS,
            **({"max_wait_time_in_seconds": MAX_SPOT_WAIT_SECONDS} if use_spot_instances else {})),
        hyperparameters=_hyperparameters(params, training_config),
        # Per execution: a spot restart of this job resumes, a later execution starts fresh.
        checkpoint_config=CheckpointConfig(s3_uri=execution_path("checkpoints"), local_path="/opt/ml/checkpoints"),
        output_data_config=_output_data_config(f"{prefix_uri}/models"),
    ).with_metric_definitions([_metric_definition(m) for m in METRIC_DEFINITIONS])
    train_args = trainer.train(input_data_config=[
        InputData(channel_name=name, data_source=split_uri(name)) for name in ("train", "validation")])
    step_train = TrainingStep(name=spec.TRAIN, step_args=train_args, cache_config=cache)
    model_data = step_train.properties.ModelArtifacts.S3ModelArtifacts

    # 3. Evaluate the model artifact on the test split -> evaluation.json (read by the gate).
    evaluation_report = PropertyFile(name=spec.EVALUATION_REPORT_NAME, output_name="evaluation",
                                     path=spec.EVALUATION_FILE)
    # The training job's output.tar.gz holds the complete model (model/): evaluation's torch reference.
    training_output = Join(on="/", values=[step_train.properties.OutputDataConfig.S3OutputPath,
                                           step_train.properties.TrainingJobName, "output", "output.tar.gz"])
    evaluate_args = processor("evaluate", tracking).run(
        code="evaluate.py", source_dir=str(bundle), requirements="requirements.txt",
        job_name=_job_name(base_job_prefix, "evaluate", digest),
        inputs=[s3_input("model", model_data, f"{PROCESSING}/model"),
                s3_input("test", split_uri("test"), f"{PROCESSING}/test"),
                s3_input("reference", training_output, f"{PROCESSING}/reference")],
        outputs=[s3_output("evaluation", f"{PROCESSING}/evaluation")],
        arguments=["--model-path", f"{PROCESSING}/model/model.tar.gz", "--test-dir", f"{PROCESSING}/test",
                   "--output-dir", f"{PROCESSING}/evaluation", "--reference-model-path", f"{PROCESSING}/reference",
                   "--progress", "false"],
    )
    step_evaluate = ProcessingStep(name=spec.EVALUATE, step_args=evaluate_args, property_files=[evaluation_report],
                                   cache_config=cache)
    evaluation_uri = Join(on="/", values=[
        step_evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri, spec.EVALUATION_FILE])

    # 4. Register the model package (approval status from the parameter) when the gate passes.
    model = ModelBuilder(image_uri=inference_image, s3_model_data_url=model_data, role_arn=role,
                         sagemaker_session=session, env_vars=dict(MODEL_ENVIRONMENT))
    register_args = model.register(
        model_package_group_name=model_package_group_name,
        content_types=list(CONTENT_TYPES), response_types=list(RESPONSE_TYPES),
        inference_instances=list(INFERENCE_INSTANCE_TYPES), transform_instances=list(TRANSFORM_INSTANCE_TYPES),
        approval_status=params["ModelApprovalStatus"],
        model_metrics=ModelMetrics(model_statistics=MetricsSource(
            content_type="application/json", s3_uri=evaluation_uri)),
        description="BERT multi-label text classifier (per-label thresholds tuned on validation)",
    )
    step_register = ModelStep(name=spec.REGISTER, step_args=register_args)

    # 5. The quality gate: every spec.QUALITY_GATE metric must reach its threshold parameter.
    step_check = _quality_gate(step_evaluate, evaluation_report, params, step_register)

    pipeline = Pipeline(
        name=pipeline_name,
        parameters=list(params.values()),
        steps=[step_preprocess, step_train, step_evaluate, step_check],
        sagemaker_session=session,
        mlflow_config=_mlflow_config(mlflow_tracking_server_arn, experiment),
    )
    pipeline._bertmlc_bundle_tmp = tmp  # keep the bundle alive as long as the pipeline object
    return pipeline


def _quality_gate(step_evaluate, evaluation_report, params: dict[str, Any], step_register):
    """The ConditionStep: register when every gate metric reaches its parameter, else a FailStep naming them."""
    from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.mlops.workflow import ConditionStep, FailStep

    gate_values = {path: JsonGet(step_name=step_evaluate.name, property_file=evaluation_report, json_path=path)
                   for path, _ in spec.QUALITY_GATE}
    conditions = [ConditionGreaterThanOrEqualTo(left=gate_values[path], right=params[threshold])
                  for path, threshold in spec.QUALITY_GATE]
    message_parts: list[Any] = ["Model below the quality gate:"]
    for path, threshold in spec.QUALITY_GATE:
        message_parts += [f" {path.rsplit('.', 2)[-2]}=", gate_values[path], f" (needs >= {threshold}=",
                          params[threshold], ")"]
    step_fail = FailStep(name=spec.FAIL, error_message=Join(on="", values=message_parts))
    return ConditionStep(name=spec.CHECK, conditions=conditions, if_steps=[step_register], else_steps=[step_fail])


def _hyperparameters(params: dict[str, Any], config: TrainingConfig | None) -> dict[str, Any]:
    """Every TrainingConfig field as a hyperparameter, the sourced ones from the pipeline parameters."""
    hps = training_hyperparameters(params, config or TrainingConfig())
    hps["progress"] = "false"  # a progress bar only clutters CloudWatch logs
    return hps


def _mlflow_config(tracking_server_arn: str | None, experiment: str):
    from sagemaker.core.shapes.shapes import MlflowConfig

    if not tracking_server_arn:
        return None
    return MlflowConfig(mlflow_resource_arn=tracking_server_arn, mlflow_experiment_name=experiment)


def _metric_definition(definition: dict):
    from sagemaker.core.shapes import MetricDefinition

    return MetricDefinition(name=definition["Name"], regex=definition["Regex"])


def _output_data_config(s3_uri: str):
    from sagemaker.core.training.configs import OutputDataConfig

    return OutputDataConfig(s3_output_path=s3_uri)
