"""`mlops serve`: one model server (SageMaker container contract) for a model dir, tarball or registry version."""
from __future__ import annotations

from pathlib import Path

from mlops.cli import CliError
from mlops.settings import Settings

ORDER = 25


def resolve_model(spec_text: str, settings: Settings) -> Path:
    """A path, or `registry:N` for version N's model.tar.gz in the local registry."""
    if spec_text.startswith("registry:"):
        from pipelines.registry import LocalModelRegistry, RegistryError

        try:
            return LocalModelRegistry(settings.registry_dir).model_path(settings.model_package_group,
                                                                         spec_text.split(":", 1)[1])
        except (RegistryError, ValueError) as exc:
            raise CliError(str(exc)) from None
    path = Path(spec_text).expanduser()
    if not path.exists():
        raise CliError(f"model not found: {path} (a model directory, a model.tar.gz or registry:N)")
    return path


def cmd_serve(args) -> int:
    from inference.server import ServerConfig, serve

    model = resolve_model(args.model, Settings.from_env())
    overrides = {"model_dir": str(model), "port": args.port, "host": args.host, "backend": args.backend,
                 "capture_dir": args.capture_dir}
    serve(ServerConfig.from_env(**overrides))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="run the model server (/ping, /invocations, /metrics) for one model",
                                   description=__doc__)
    parser.add_argument("--model", required=True, help="model directory, model.tar.gz, or registry:N")
    parser.add_argument("--port", type=int, help="default: $SAGEMAKER_BIND_TO_PORT or 8080")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--backend", help="auto (what packaging chose) | torch | torch-bf16 | onnx | onnx-int8")
    parser.add_argument("--capture-dir", help="write SageMaker data capture here")
    parser.set_defaults(func=cmd_serve)
