"""`code/inference.py` of the model artifact: the module the Hugging Face inference toolkit imports.

The toolkit (SAGEMAKER_PROGRAM=inference.py) puts `code/` on sys.path and imports this file; the
handlers themselves live in `mlcore.handler` (carried as `code/mlcore/`). The ONNX Runtime the
artifact carries in `code/vendor/` comes first on sys.path, so the endpoint needs no pip install
and no network at start.
"""
import sys
from pathlib import Path

_VENDOR = Path(__file__).resolve().with_name("vendor")
if _VENDOR.is_dir() and str(_VENDOR) not in sys.path:
    sys.path.insert(0, str(_VENDOR))

from mlcore.handler import input_fn, model_fn, output_fn, predict_fn  # noqa: E402,F401
