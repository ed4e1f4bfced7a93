"""`get-pipeline-definition`: print or write the SageMaker Pipeline definition JSON (AWS template interface).

Building it uploads the step source bundle (and staged InputData) to S3, as SageMaker needs them
there; nothing runs.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from pipelines.aws_session import AwsSetupError
from pipelines.run_pipeline import DEFAULT_MODULE, PipelineRunError, add_build_arguments, build_pipeline, parse_kwargs


def definition_json(region: str | None, role: str | None, bucket: str | None = None, input_data: str | None = None,
                    module_name: str = DEFAULT_MODULE, extra: dict | None = None) -> str:
    """The pipeline definition, pretty-printed JSON (`extra`: more get_pipeline arguments)."""
    pipeline = build_pipeline(region, role, bucket, input_data, module_name, extra)
    return json.dumps(json.loads(pipeline.definition()), indent=2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="get-pipeline-definition", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_build_arguments(parser)
    parser.add_argument("-f", "--file-name", type=Path, default=None, help="write here instead of stdout")
    args = parser.parse_args(argv)
    try:
        text = definition_json(args.region, args.role_arn, args.bucket, args.input_data, args.module_name,
                               parse_kwargs(args.kwargs))
    except (PipelineRunError, AwsSetupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.file_name:
        args.file_name.parent.mkdir(parents=True, exist_ok=True)
        args.file_name.write_text(text + "\n")
        print(f"wrote {args.file_name}", file=sys.stderr)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
