"""The arithmetic limit of a BERT encoder on this CPU: measured matmul peaks and the model's work per text.

- `int8_matmul_peak(threads)`: ONNX Runtime's MatMulInteger (the op of the int8 graph) on FFN-shaped
  matrices, in GOP/s;
- `bf16_matmul_peak(threads)`: torch's bf16 matmul (what training runs under autocast), in GFLOP/s;
  `torch_matmul_peak(threads, dtype)` the same for fp32;
- `ops_per_text(config, tokens)`: multiply-adds x 2 of one forward pass over `tokens` tokens
  (projections, FFN, attention scores and mix; embeddings are lookups and cost nothing here).

A backend's texts/s divided by peak / ops_per_text is the share of the arithmetic limit it reaches.
"""
from __future__ import annotations

import time

import numpy as np


def _timed(run, min_seconds: float = 1.0) -> tuple[int, float]:
    run()  # warm up
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < min_seconds:
        run()
        n += 1
    return n, time.perf_counter() - started


def int8_matmul_peak(threads: int, m: int = 1024, k: int = 384, n: int = 1536) -> float:
    """GOP/s of MatMulInteger (uint8 x int8 -> int32) with `threads` intra-op threads."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "mm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k]),
         helper.make_tensor_value_info("b", TensorProto.INT8, [k, n])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {"a": rng.integers(0, 255, (m, k), dtype=np.uint8), "b": rng.integers(-127, 127, (k, n), dtype=np.int8)}
    count, seconds = _timed(lambda: session.run(None, feed))
    return 2.0 * m * k * n * count / seconds / 1e9


def torch_matmul_peak(threads: int, dtype: str, m: int = 1024, k: int = 384, n: int = 1536) -> float:
    """GFLOP/s of a torch matmul in `dtype` ("bf16" or "fp32") with `threads` threads."""
    import torch

    torch.set_num_threads(threads)
    kind = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    a, b = torch.randn(m, k, dtype=kind), torch.randn(k, n, dtype=kind)
    count, seconds = _timed(lambda: a @ b)
    return 2.0 * m * k * n * count / seconds / 1e9


def bf16_matmul_peak(threads: int) -> float:
    """GFLOP/s of a bf16 matmul in torch with `threads` threads."""
    return torch_matmul_peak(threads, "bf16")


def mean_tokens(tokenizer, texts: list[str], max_length: int) -> float:
    """Mean tokens per text as the model sees them (truncated at `max_length`): what a length-sorted batch pads to."""
    return float(np.mean([len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]))


def ops_per_text(config: dict, tokens: float) -> float:
    """Operations (2 x multiply-adds) of one forward pass of a BERT encoder over `tokens` tokens."""
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    inner = config["intermediate_size"]
    per_token_layer = 4 * hidden * hidden + 2 * hidden * inner + 2 * tokens * hidden  # QKVO, FFN, scores + mix
    return 2.0 * layers * tokens * per_token_layer
