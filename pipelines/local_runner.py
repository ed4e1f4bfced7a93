"""Run the DAG of `pipelines.spec` locally: the real step scripts as subprocesses, SageMaker-style.

PreprocessData -> TrainModel -> EvaluateModel -> CheckModelQuality -> RegisterModel | FailModelQuality.
Each step runs `python steps/<x>.py` with SageMaker's conventions (path flags for processing,
SM_* env vars + `--name value` hyperparameters for training) mapped onto
`<home>/runs/<run-id>/<StepName>/`. Unchanged steps are served from the step cache; a passing
quality gate registers the model in the LocalModelRegistry.
"""
from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import mlcore
from mlcore import tracking
from pipelines import spec
from pipelines.caching import StepCache, StepSignature
from pipelines.digests import file_sha256
from pipelines.liveness import started_at
from pipelines.parameters import PipelineError, check_hyperparameters, resolve_parameters, training_hyperparameters
from pipelines.registry import LocalModelRegistry, atomic_write_json
from pipelines.run_result import CACHED, FAILED, RUN_FILE, SUCCEEDED, RunResult, StepFailed, StepResult, format_summary
from pipelines.step_process import StepPrinter, log_tail, run_script
from pipelines.tarball import make_model_tarball

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STEPS_DIR = REPO_ROOT / "steps"
LOG_FILE = "step.log"
# Parameters that choose AWS instances: recorded, meaningless on this machine.
AWS_ONLY_PARAMETERS = ("ProcessingInstanceType", "TrainingInstanceType", "TrainingInstanceCount")
# MLflow's variables: a step gets this execution's run, never one inherited from the caller's environment.
TRACKING_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID")


def _input_source(value: str) -> tuple[str, Path | None]:
    """(what preprocess gets as --input, local path to hash or None); clear errors for what can't work here."""
    if value == "demo" or value.startswith("hf:"):
        return value, None
    if value.startswith("s3://"):
        raise PipelineError(f"InputData {value!r} is an S3 URI: the local runner reads local paths, 'demo' or "
                            "hf:<name>; download it first (aws s3 cp --recursive) or run on SageMaker")
    path = Path(value).expanduser().resolve()
    if not path.exists():
        raise PipelineError(f"InputData path not found: {path}")
    return str(path), path


def _count_rows(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def _fmt(value: Any) -> str:
    return "null" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _training_summary_line(tarball: Path, summary_file: Path) -> str:
    """'model.tar.gz 45.2 MB, validation f1_macro=0.5522' for the run summary."""
    line = f"model.tar.gz {tarball.stat().st_size / 1e6:.1f} MB"
    try:
        validation = json.loads(summary_file.read_text()).get("validation", {})
    except (OSError, ValueError, AttributeError):
        return line
    if isinstance(validation.get("f1_macro"), (int, float)):
        line += f", validation f1_macro={validation['f1_macro']:.4f}"
    return line


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


# ----------------------------------------------------------------------------- the runner
class LocalPipelineRunner:
    """One execution of the DAG; `run()` returns a RunResult and never raises for a failed step."""

    def __init__(self, parameters: Mapping[str, Any] | None, settings, cache: bool = True,
                 steps_dir: str | Path | None = None, hyperparameters: Mapping[str, Any] | None = None,
                 out: TextIO | None = None, on_event: Callable[[dict], None] | None = None,
                 run_id: str | None = None, verbose: bool = True,
                 preprocess_options: Mapping[str, str] | None = None):
        self.values = resolve_parameters(parameters)
        self.extra_hps = check_hyperparameters(hyperparameters)
        self.input_arg, self.input_path = _input_source(str(self.values["InputData"]))
        self.settings = settings
        self.use_cache = cache
        self.steps_dir = Path(steps_dir) if steps_dir else DEFAULT_STEPS_DIR
        missing = [s for s in ("preprocess.py", "train.py", "evaluate.py") if not (self.steps_dir / s).is_file()]
        if missing:
            raise PipelineError(f"step scripts missing in {self.steps_dir}: {', '.join(missing)}")
        self.out = out or sys.stdout
        self.printer = StepPrinter(self.out)
        self.verbose = verbose  # False: library output on stderr goes to the step logs only
        self.preprocess_options = {k: str(v) for k, v in (preprocess_options or {}).items() if v}
        self.on_event = on_event
        self.cache = StepCache(settings.cache_dir)
        self.registry = LocalModelRegistry(settings.registry_dir)
        self.run_id = run_id or new_run_id()
        self.run_dir = Path(settings.runs_dir) / self.run_id
        self.result = RunResult(self.run_id, self.run_dir, dict(self.values),
                                [StepResult(name) for name in spec.STEPS], pid=os.getpid(),
                                pid_started=started_at(os.getpid()))
        self.mlflow: tracking.Run | None = None  # this execution's MLflow run (settings.tracking)

    # ----- plumbing
    def _dir(self, step: str) -> Path:
        return self.run_dir / step

    def _env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in TRACKING_VARIABLES}
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        env.update(self.mlflow.environment() if self.mlflow else {})  # the steps log into this execution's run
        env.update(extra or {})
        return env

    def _start_tracking(self) -> None:
        """One MLflow run per execution: the pipeline parameters, then what each step logs (see mlcore.tracking)."""
        if not self.settings.tracking:
            return
        self.mlflow = tracking.Run.start(self.settings.tracking_uri, spec.PIPELINE_NAME, self.run_id,
                                         self.settings.artifacts_dir.as_uri(), tags={"pipeline_run_id": self.run_id})
        if self.mlflow:
            self.mlflow.log_params(self.values)
            self.out.write(f"MLflow run {self.mlflow.run_id} ({self.settings.tracking_uri}; `mlops ui` shows it)\n")

    def _code(self, script: str, *packages: str) -> dict[str, Path]:
        code = {script: self.steps_dir / script, "mlcore": Path(mlcore.__file__).parent}
        for package in packages:
            if (REPO_ROOT / package).is_dir():
                code[package] = REPO_ROOT / package
        return code

    def _save(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.run_dir / RUN_FILE, self.result.to_json())

    def _execute(self, name: str, signature: StepSignature, outputs: dict[str, Path],
                 run: Callable[[Path], None]) -> StepResult:
        """Run one step (or restore it from the cache); failures raise StepFailed."""
        step = self.result.step(name)
        step_dir = self._dir(name)
        step_dir.mkdir(parents=True, exist_ok=True)
        log_path = step_dir / LOG_FILE
        step.log = str(log_path)
        started = time.monotonic()
        components = signature.components()
        key = signature.key(components)
        step.cache_key = key
        hit = self.cache.lookup(signature, key) if self.use_cache else None
        if hit is not None:
            self.cache.restore(hit, outputs)
            note = f"cache hit {key}: reused the outputs of run {hit.meta.get('run_id')} (no code, argument or input changed)"
            log_path.write_text(note + "\n" + (hit.path / LOG_FILE).read_text(errors="replace")
                                if (hit.path / LOG_FILE).exists() else note + "\n")
            self.printer.line(name, note)
            step.status = CACHED
        else:
            self.printer.line(name, "running" + ("" if self.use_cache else " (cache disabled)"))
            try:
                run(log_path)
            except StepFailed as exc:
                step.status, step.message, step.summary = FAILED, str(exc), exc.short
                step.exit_status = exc.exit_status
                step.duration_s = round(time.monotonic() - started, 2)
                raise
            step.status = SUCCEEDED
            # Stored even with cache=False (--no-cache), so the next cached run can reuse it.
            self.cache.store(signature, outputs, key=key, components=components,
                             attachments={LOG_FILE: log_path}, run_id=self.run_id,
                             created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        step.duration_s = round(time.monotonic() - started, 2)
        step.outputs = {k: str(v) for k, v in outputs.items()}
        return step

    def _subprocess(self, name: str, argv: list[str], env_extra: Mapping[str, str] | None = None):
        def run(log_path: Path) -> None:
            self.printer.hidden = 0
            rc = run_script(argv, self._env(env_extra), log_path, name, self.printer, cwd=self._dir(name),
                            quiet=not self.verbose)
            if rc != 0:
                tail = log_tail(log_path)
                raise StepFailed(
                    f"{name} failed (exit status {rc}). Last lines of its log:\n"
                    + "\n".join(f"    {line}" for line in tail)
                    + f"\nFull log: {log_path}",
                    short=f"{name} failed: exit status {rc}, last line: {tail[-1] if tail else '(no output)'}",
                    exit_status=rc,
                )
            if self.printer.hidden:
                self.printer.line(name, f"({self.printer.hidden} line(s) of library output in {log_path}; "
                                        "--verbose shows them here)")
        return run

    # ----- the steps
    def preprocess(self) -> None:
        name, out_dir = spec.PREPROCESS, self._dir(spec.PREPROCESS) / "output"
        argv = [self.settings.python, str(self.steps_dir / "preprocess.py"), "--input", self.input_arg,
                "--output-dir", str(out_dir), "--data-version", str(self.values["DataVersion"])]
        for option, value in sorted(self.preprocess_options.items()):  # e.g. text-column: --text-column body
            argv += [f"--{option}", value]
        signature = StepSignature(
            name, code=self._code("preprocess.py"),
            arguments={"input": "<local path>" if self.input_path else self.input_arg,
                       "data-version": self.values["DataVersion"], **self.preprocess_options},
            inputs={"input": self.input_path} if self.input_path else {},
        )

        def run(log_path: Path) -> None:
            self._subprocess(name, argv)(log_path)
            for split in ("train", "validation", "test"):
                if not (out_dir / split / "data.jsonl").exists():
                    raise StepFailed(f"{name} exited 0 but wrote no {split}/data.jsonl under {out_dir}; log: {log_path}")

        step = self._execute(name, signature, {"output": out_dir}, run)
        rows = {s: _count_rows(out_dir / s / "data.jsonl") for s in ("train", "validation", "test")}
        step.summary = " ".join(f"{s}={n}" for s, n in rows.items()) + " rows"

    def train(self) -> None:
        name, step_dir = spec.TRAIN, self._dir(spec.TRAIN)
        data = self._dir(spec.PREPROCESS) / "output"
        model_dir, output_dir = step_dir / "model", step_dir / "output"
        tarball = output_dir / "model.tar.gz"
        hps = {name: str(value) for name, value in training_hyperparameters(self.values).items()}
        hps.update(self.extra_hps)
        base = Path(str(self.values["BaseModel"])).expanduser()
        base_is_path = base.is_dir()
        if base_is_path:
            hps["base-model"] = str(base.resolve())
        env = {
            "SM_CHANNEL_TRAIN": str(data / "train"),
            "SM_CHANNEL_VALIDATION": str(data / "validation"),
            "SM_MODEL_DIR": str(model_dir),
            "SM_OUTPUT_DATA_DIR": str(output_dir / "data"),
            "SM_CHANNELS": json.dumps(["train", "validation"]),
            "SM_HPS": json.dumps(hps),
            "SM_NUM_GPUS": "0",
            "SM_NUM_CPUS": str(os.cpu_count() or 1),
            "SM_CURRENT_HOST": "algo-1",
            "SM_HOSTS": json.dumps(["algo-1"]),
            **{f"SM_HP_{k.replace('-', '_').upper()}": v for k, v in hps.items()},
        }
        argv = [self.settings.python, str(self.steps_dir / "train.py")]
        for key, value in hps.items():
            argv += [f"--{key}", value]
        arguments = dict(hps)
        inputs: dict[str, Path] = {"train": data / "train", "validation": data / "validation"}
        if base_is_path:
            arguments["base-model"] = "<local path>"
            inputs["base_model"] = base.resolve()
        signature = StepSignature(name, code=self._code("train.py", "inference"), arguments=arguments, inputs=inputs)

        def run(log_path: Path) -> None:
            for d in (model_dir, output_dir):
                d.mkdir(parents=True, exist_ok=True)
            self._subprocess(name, argv, env)(log_path)
            if not any(model_dir.iterdir()):
                raise StepFailed(f"{name} exited 0 but SM_MODEL_DIR {model_dir} is empty; log: {log_path}")
            make_model_tarball(model_dir, tarball)

        step = self._execute(name, signature, {"model": model_dir, "output": output_dir}, run)
        if step.status == CACHED:  # the step did not run, so did not log: what it produced then goes to this run
            self._track_cached_training(output_dir / "data")
        step.outputs["model_tarball"] = str(tarball)
        step.summary = _training_summary_line(tarball, model_dir / "training_summary.json")

    def evaluate(self) -> None:
        name, eval_dir = spec.EVALUATE, self._dir(spec.EVALUATE) / "evaluation"
        tarball = self._dir(spec.TRAIN) / "output" / "model.tar.gz"
        test_dir = self._dir(spec.PREPROCESS) / "output" / "test"
        argv = [self.settings.python, str(self.steps_dir / "evaluate.py"), "--model-path", str(tarball),
                "--test-dir", str(test_dir), "--output-dir", str(eval_dir)]
        inputs = {"model": tarball, "test": test_dir}
        reference = self._dir(spec.TRAIN) / "output" / "data" / "model"  # the complete model: the torch reference
        if reference.is_dir():
            argv += ["--reference-model-path", str(reference)]
            inputs["reference"] = reference
        signature = StepSignature(name, code=self._code("evaluate.py"), arguments={}, inputs=inputs)

        def run(log_path: Path) -> None:
            eval_dir.mkdir(parents=True, exist_ok=True)
            self._subprocess(name, argv)(log_path)
            if not (eval_dir / spec.EVALUATION_FILE).exists():
                raise StepFailed(f"{name} exited 0 but wrote no {spec.EVALUATION_FILE} in {eval_dir}; log: {log_path}")

        step = self._execute(name, signature, {"evaluation": eval_dir}, run)
        if step.status == CACHED:
            tracking.log_evaluation(self.mlflow, eval_dir)
        report = json.loads((eval_dir / spec.EVALUATION_FILE).read_text())
        step.summary = f"{report.get('backend', 'torch')}: " + ", ".join(
            f"{path.split('.')[-2]}={_fmt(self._metric(report, path))}" for path, _ in spec.QUALITY_GATE
        )
        if report.get("reference"):
            step.summary += f" (torch reference f1_macro={_fmt(report['reference'].get('f1_macro'))})"

    def _track_cached_training(self, output_data_dir: Path) -> None:
        summary_file = output_data_dir / "model" / "training_summary.json"
        if not (self.mlflow and summary_file.is_file()):
            return
        summary = json.loads(summary_file.read_text())
        history = json.loads((output_data_dir / "history.json").read_text()) \
            if (output_data_dir / "history.json").is_file() else []
        self.mlflow.log_params(tracking.config_params(summary.get("config", {})))
        tracking.log_training(self.mlflow, summary, history)

    @staticmethod
    def _metric(report: dict, path: str) -> Any:
        try:
            return spec.json_path_get(report, path)
        except KeyError:
            return None

    def check(self) -> tuple[bool, str]:
        """The ConditionStep: every QUALITY_GATE metric >= its threshold parameter."""
        name = spec.CHECK
        step = self.result.step(name)
        step_dir = self._dir(name)
        step_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        report_path = self._dir(spec.EVALUATE) / "evaluation" / spec.EVALUATION_FILE
        report = json.loads(report_path.read_text())
        try:
            checks = spec.gate_checks(report, self.values)
        except KeyError as exc:
            step.status = FAILED
            step.message = f"{name}: {report_path} lacks {exc}"
            raise StepFailed(step.message) from None
        lines = [f"{c['path'].split('.')[-2]}={_fmt(c['value'])} {'>=' if c['passed'] else '<'} "
                 f"{c['parameter']}={c['threshold']}" for c in checks]
        passed = all(c["passed"] for c in checks)
        verdict = "; ".join(lines)
        atomic_write_json(step_dir / "condition.json", {"passed": passed, "checks": checks})
        (step_dir / LOG_FILE).write_text(f"{'passed' if passed else 'failed'}: {verdict}\n")
        self.printer.line(name, f"{'passed' if passed else 'failed'}: {verdict}")
        step.status, step.log = SUCCEEDED, str(step_dir / LOG_FILE)
        step.summary = ("passed: " if passed else "failed: ") + verdict
        step.outputs = {"condition": str(step_dir / "condition.json")}
        step.duration_s = round(time.monotonic() - started, 3)
        return passed, verdict

    def register(self) -> None:
        name = spec.REGISTER
        step = self.result.step(name)
        step_dir = self._dir(name)
        step_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        tarball = self._dir(spec.TRAIN) / "output" / "model.tar.gz"
        same = self.registry.find_by_model_digest(self.settings.model_package_group, file_sha256(tarball))
        if same is not None:  # e.g. a run served from the step cache: the registry keeps one copy of a model
            self._reuse(step, step_dir, same, started)
            return
        package = self.registry.register(
            self.settings.model_package_group,
            tarball,
            self._dir(spec.EVALUATE) / "evaluation" / spec.EVALUATION_FILE,
            approval_status=self.values["ModelApprovalStatus"],
            source_run_id=self.run_id,
            description=f"{spec.PIPELINE_NAME} run {self.run_id}",
            metadata={k: str(v) for k, v in self.values.items()},
        )
        atomic_write_json(step_dir / "package.json", package)
        self.result.model_package = package
        version, status = package["ModelPackageVersion"], package["ModelApprovalStatus"]
        step.status = SUCCEEDED
        step.summary = f"{package['ModelPackageGroupName']} v{version} ({status})"
        step.outputs = {"model_package_arn": package["ModelPackageArn"]}
        step.log = str(step_dir / LOG_FILE)
        (step_dir / LOG_FILE).write_text(f"registered {package['ModelPackageArn']} as {status}\n")
        self.printer.line(name, f"registered {package['ModelPackageArn']} ({status})")
        if self.mlflow:
            self.mlflow.set_tags({"model_package_group": package["ModelPackageGroupName"],
                                  "registered_version": version, "model_package_arn": package["ModelPackageArn"],
                                  "model_approval_status": status})
        step.duration_s = round(time.monotonic() - started, 3)
        if self.on_event:
            self.on_event(self.registry.state_change_event(package))

    def _reuse(self, step: StepResult, step_dir: Path, package: dict, started: float) -> None:
        """The model is byte-identical to a registered version: point at it, register nothing, emit nothing."""
        version, status = package["ModelPackageVersion"], package["ModelApprovalStatus"]
        self.result.model_package, self.result.model_package_reused = package, True
        step.status = SUCCEEDED
        step.summary = f"identical to {package['ModelPackageGroupName']} v{version} ({status}): not registered again"
        step.outputs = {"model_package_arn": package["ModelPackageArn"]}
        step.log = str(step_dir / LOG_FILE)
        (step_dir / LOG_FILE).write_text(f"model.tar.gz is byte-identical to {package['ModelPackageArn']} ({status}): "
                                         "nothing registered\n")
        self.printer.line(spec.REGISTER, step.summary)
        step.duration_s = round(time.monotonic() - started, 3)

    def fail(self, verdict: str) -> str:
        """The FailStep: ends the execution with a message naming the metric values and thresholds."""
        step = self.result.step(spec.FAIL)
        message = f"Execution failed: the model did not pass the quality gate ({verdict}); nothing was registered"
        step_dir = self._dir(spec.FAIL)
        step_dir.mkdir(parents=True, exist_ok=True)
        (step_dir / LOG_FILE).write_text(message + "\n")
        step.status, step.message, step.summary, step.log = FAILED, message, "quality gate not met", str(step_dir / LOG_FILE)
        self.printer.line(spec.FAIL, message)
        return message

    # ----- the DAG
    def run(self) -> RunResult:
        result = self.result
        result.started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ignored = [p for p in AWS_ONLY_PARAMETERS if self.values[p] != spec.PARAMETERS_BY_NAME[p].default]
        self.out.write(f"pipeline {spec.PIPELINE_NAME}: run {self.run_id} in {self.run_dir}\n")
        if ignored:
            self.out.write(f"note: {', '.join(ignored)} only matter on SageMaker; ignored locally\n")
        self._save()
        self._start_tracking()
        try:
            for step_fn in (self.preprocess, self.train, self.evaluate):
                step_fn()
                self._save()
            passed, verdict = self.check()
            if passed:
                self.register()
                result.status = "Succeeded"
            else:
                result.failure = self.fail(verdict)
                result.status = "Failed"
        except StepFailed as exc:
            result.status, result.failure = "Failed", exc.short
            self.out.write(f"\n{exc}\n")
        except KeyboardInterrupt:
            result.status, result.failure = "Stopped", "interrupted by the user"
            raise
        finally:
            result.finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
            self._save()
            if self.mlflow:
                self.mlflow.end({"Succeeded": "FINISHED", "Stopped": "KILLED"}.get(result.status, "FAILED"))
        self.out.write("\n" + format_summary(result) + "\n")
        self.out.flush()
        return result




def run_pipeline(parameters: Mapping[str, Any] | None, settings, cache: bool = True, *,
                 steps_dir: str | Path | None = None, hyperparameters: Mapping[str, Any] | None = None,
                 out: TextIO | None = None, on_event: Callable[[dict], None] | None = None,
                 verbose: bool = True, preprocess_options: Mapping[str, str] | None = None) -> RunResult:
    """Execute the pipeline locally; PipelineError for bad parameters, a Failed RunResult for a failed step."""
    runner = LocalPipelineRunner(parameters, settings, cache=cache, steps_dir=steps_dir,
                                 hyperparameters=hyperparameters, out=out, on_event=on_event, verbose=verbose,
                                 preprocess_options=preprocess_options)
    return runner.run()
