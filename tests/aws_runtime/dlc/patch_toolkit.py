"""Give PyPI's sagemaker-huggingface-inference-toolkit 2.6.0 the transformers-5 change the image carries.

The huggingface-pytorch-inference images for transformers 5.x install the toolkit from git at
f0c3eb2 (aws/sagemaker-huggingface-inference-toolkit PR #141, "Update dependencies for
transformers v5": TensorFlow support removed), because 2.6.0 imports
`transformers.file_utils.is_tf_available`, which transformers 5 no longer has. This applies the
same change to the one line that breaks, and fails loudly if the installed file is not the one
expected (a new release must be looked at, not patched blindly).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

OLD = "from transformers.file_utils import is_tf_available, is_torch_available\n"
NEW = ("from transformers.utils import is_torch_available\n\n\n"
       "def is_tf_available():  # TensorFlow support removed, as in the toolkit's main branch (f0c3eb2)\n"
       "    return False\n")


def main() -> int:
    spec = importlib.util.find_spec("sagemaker_huggingface_inference_toolkit")
    if spec is None or spec.origin is None:
        print("sagemaker-huggingface-inference-toolkit is not installed", file=sys.stderr)
        return 1
    path = Path(spec.origin).with_name("transformers_utils.py")
    text = path.read_text()
    if NEW in text:
        print(f"{path}: already patched")
        return 0
    if text.count(OLD) != 1:
        print(f"{path}: the expected import line is not there; look at the new toolkit release", file=sys.stderr)
        return 1
    path.write_text(text.replace(OLD, NEW))
    print(f"{path}: patched for transformers 5 (is_tf_available -> False)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
