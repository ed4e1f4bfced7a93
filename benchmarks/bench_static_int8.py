"""Static (calibrated) int8 against the dynamic int8 the packaging ships: test macro-F1 and in-process speed.

Dynamic quantization (`mlcore/onnx_backend.py`) takes each activation's int8 range from the call itself, so a
text's scores depend on what shares its call. Static quantization fixes the ranges from calibration texts
(ONNX Runtime's `quantize_static`, QDQ, per-channel weights, MinMax ranges) and so scores a text the same in any
call. This measures whether it holds quality and speed: the fp32 graph, the shipped dynamic int8 graph and a
static graph per variant (the export without attention fusion, so every projection is a MatMul; `all` quantizes
every op ORT can, `matmul` only the MatMuls), each scored on the whole test split in calls of 64 and in calls of
32 texts in arrival order (the server's composition), and timed on 1,000 test texts sorted by length and in
arrival order (median of 3 passes after one). One more row runs the shipped int8 graph through ONNX Runtime's
IO binding (inputs bound in place, logits written into a buffer allocated once for the largest call) instead of
`session.run`: issue 16's "IO binding and pre-allocated buffers" lever.

    .venv/bin/python benchmarks/bench_static_int8.py --model-dir benchmarks/results/quality-cpudropout/current/model

Run it alone on the machine: it measures time.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
GOEMOTIONS = REPO.parent / "shared" / "datasets" / "goemotions"
VARIANTS = {"all": None, "matmul": ["MatMul"]}


def quantize_static_graph(src: Path, dest: Path, batches: list[dict], op_types) -> float:
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    names = {i.name for i in ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()}

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{k: v for k, v in b.items() if k in names} for b in batches])

        def get_next(self):
            return next(self.feeds, None)

    started = time.time()
    quantize_static(str(src), str(dest), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=op_types,
                    calibrate_method=CalibrationMethod.MinMax)
    return time.time() - started


def io_bound_predictor(work: Path, file: str, threads: int):
    """The shipped OnnxPredictor, each model call made through one IO binding into a logits buffer kept between calls."""
    from mlcore.onnx_backend import OnnxPredictor

    class IoBoundPredictor(OnnxPredictor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.binding, self.buffer = self.session.io_binding(), np.empty((0, len(self.label_names)), np.float32)

        def _logits(self, batch: dict) -> np.ndarray:
            rows = len(batch["input_ids"])
            if rows > len(self.buffer):
                self.buffer = np.empty((rows, len(self.label_names)), dtype=np.float32)
            logits = self.buffer[:rows]
            for name, value in batch.items():
                if name in self.inputs:
                    self.binding.bind_cpu_input(name, np.ascontiguousarray(value))
            self.binding.bind_output("logits", "cpu", 0, np.float32, list(logits.shape),
                                     logits.__array_interface__["data"][0])
            self.session.run_with_iobinding(self.binding)
            return logits

    return IoBoundPredictor(work, file, num_threads=threads)


def score_and_time(work: Path, file: str, test, threads: int, io_binding: bool = False) -> dict:
    from mlcore.metrics import quick_scores
    from mlcore.onnx_backend import OnnxPredictor

    predictor = io_bound_predictor(work, file, threads) if io_binding else OnnxPredictor(work, file, num_threads=threads)
    y = test.with_label_names(predictor.label_names).matrix()
    texts = list(test.texts)
    f1_64 = quick_scores(y, predictor.predict_proba(texts, 64), predictor.thresholds)["f1_macro"]
    arrival = np.concatenate([predictor.predict_proba(texts[s:s + 32], 32) for s in range(0, len(texts), 32)])
    f1_32 = quick_scores(y, arrival, predictor.thresholds)["f1_macro"]
    sample = texts[:1000]

    def rate(run) -> float:
        run()
        passes = []
        for _ in range(3):
            started = time.perf_counter()
            run()
            passes.append(time.perf_counter() - started)
        return len(sample) / float(np.median(passes))

    sorted_rate = rate(lambda: predictor.predict_proba(sample, 32))
    arrival_rate = rate(lambda: [predictor.predict_proba(sample[s:s + 32], 32) for s in range(0, len(sample), 32)])
    return {"file": file, "f1_calls_of_64": f1_64, "f1_arrival_32": f1_32, "sorted_texts_s": sorted_rate,
            "arrival_texts_s": arrival_rate}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True, help="a trained model directory")
    parser.add_argument("--data", type=Path, default=GOEMOTIONS, help="a dataset with validation and test splits")
    parser.add_argument("--calibration-texts", type=int, default=512, help="validation texts for the ranges")
    parser.add_argument("--variants", default="all,matmul", help=f"of {', '.join(VARIANTS)}; empty = none")
    parser.add_argument("--threads", type=int, default=0, help="0 = the cores available")
    args = parser.parse_args()

    from mlcore.batching import pad_batch
    from mlcore.datasets import load_source
    from mlcore.modeling import available_cores
    from mlcore.onnx_backend import FP32_FILE, INT8_FILE, OnnxPredictor, _export, _optimise, _quantise

    splits = load_source(args.data).splits
    if "validation" not in splits or "test" not in splits:
        sys.exit(f"{args.data} needs validation and test splits (has {', '.join(splits)})")
    threads = args.threads or available_cores()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "model"
        shutil.copytree(args.model_dir, work, ignore=shutil.ignore_patterns("code", "*.onnx"))
        raw = Path(tmp) / "raw.onnx"
        _export(work, raw)
        shutil.copy(raw, work / FP32_FILE)
        _optimise(work / FP32_FILE, work)
        _quantise(work / FP32_FILE, work / INT8_FILE)
        shutil.copy(raw, Path(tmp) / "unfused.onnx")
        _optimise(Path(tmp) / "unfused.onnx", work, fuse_attention=False)
        encoder = OnnxPredictor(work, FP32_FILE, num_threads=threads).encoder
        validation = splits["validation"].texts
        pick = np.random.default_rng(0).choice(len(validation), min(args.calibration_texts, len(validation)),
                                               replace=False)
        ids = sorted(encoder([validation[i] for i in pick]), key=len)
        batches = [pad_batch(ids[s:s + 32], encoder.pad_id) for s in range(0, len(ids), 32)]
        graphs = [("fp32", FP32_FILE, False), ("int8, dynamic (shipped)", INT8_FILE, False),
                  ("int8, dynamic, IO binding (same graph)", INT8_FILE, True)]
        for variant in filter(None, args.variants.split(",")):
            file = f"model.static-{variant}.onnx"
            seconds = quantize_static_graph(Path(tmp) / "unfused.onnx", work / file, batches, VARIANTS[variant])
            print(f"static int8 ({variant}) quantized in {seconds:.0f} s from {len(ids)} validation texts", flush=True)
            graphs.append((f"int8, static, {variant} ops", file, False))
        rows = []
        for name, file, io_binding in graphs:
            rows.append({"name": name, **score_and_time(work, file, splits["test"], threads, io_binding)})
            print(f"scored {name}", flush=True)
    base = rows[0]
    print(f"\n{len(splits['test'].texts)} test texts; speed on the first 1,000, {threads} threads, in process")
    print("| graph | test macro-F1, calls of 64 (delta) | calls of 32 in arrival order (delta) | texts/s sorted "
          "| texts/s, 32 in arrival order |\n| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['name']} | {r['f1_calls_of_64']:.4f} ({r['f1_calls_of_64'] - base['f1_calls_of_64']:+.4f}) | "
              f"{r['f1_arrival_32']:.4f} ({r['f1_arrival_32'] - base['f1_arrival_32']:+.4f}) | "
              f"{r['sorted_texts_s']:.0f} | {r['arrival_texts_s']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
