"""Serving benchmark: the transformers pipeline baseline vs our model server, per backend, over HTTP.

In one run on the same texts (GoEmotions test texts when ../shared has them, else demo texts):
batch-1 latency p50/p99, throughput (texts/s) at concurrency 1, 8 and 32 (one text per
request, so batching is the server's job), peak RSS of the server process, macro-F1 of each
backend with the model's thresholds, and ratios against the baseline.

    .venv/bin/python benchmarks/bench_server.py --model-dir MODEL_DIR [--data DIR] [--limit 2000]
    .venv/bin/python benchmarks/bench_server.py --model-dir MODEL_DIR --backends onnx-int8 \
        --server-variant "int8, no length planning, no inline calls:onnx-int8:MLOPS_CALL_COST_TOKENS=1e9,MLOPS_INLINE_TEXTS=0"

The baseline is what a plain Hugging Face setup serves: `pipeline("text-classification",
top_k=None)` behind a minimal HTTP app, one request at a time, no batching, no ONNX.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from pipelines.bertmlc.pipeline import MODEL_ENVIRONMENT  # noqa: E402  (the registered model's container env)

# issue 16's serving targets, printed next to what was measured
TARGET_C32, TARGET_P50, TARGET_INPROCESS, F1_TOLERANCE = 10.0, 0.15, 0.5, 0.005
GOEMOTIONS = REPO.parent / "shared" / "datasets" / "goemotions"

from mlops.ports import free_port  # noqa: E402  (after the repository is on sys.path)

BASELINE_APP = r'''
import json, sys
import numpy as np
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from transformers import pipeline
import uvicorn
clf = pipeline("text-classification", model=sys.argv[1], top_k=None, function_to_apply="sigmoid", device=-1)
clf(["warm up"])
async def ping(request): return JSONResponse({"status": "ready"})
def invocations_sync(body):
    texts = body["inputs"] if isinstance(body["inputs"], list) else [body["inputs"]]
    out = clf(texts, truncation=True)
    return [{"scores": {d["label"]: d["score"] for d in row}} for row in out]
async def invocations(request):
    return JSONResponse(invocations_sync(json.loads(await request.body())))
app = Starlette(routes=[Route("/ping", ping), Route("/invocations", invocations, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
'''

# The harness's floor: the same HTTP stack answering a constant (a prediction's shape for 28 labels), no model.
FLOOR_APP = r'''
import json, sys
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
import uvicorn
ANSWER = [{"scores": {f"label_{i}": 0.5 for i in range(28)}}]
async def ping(request): return JSONResponse({"status": "ready"})
async def invocations(request):
    json.loads(await request.body())
    return JSONResponse(ANSWER)
app = Starlette(routes=[Route("/ping", ping), Route("/invocations", invocations, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
'''


def load_texts(limit: int, data_dir: Path | None = None):
    """The texts to serve: `data_dir`'s test split (any dataset the loader accepts), else GoEmotions' test split
    when ../shared has it, else the demo data; the first `limit` (0 = all)."""
    from mlcore.datasets import LabeledTexts, load_source

    if data_dir is not None:
        result = load_source(data_dir)
        data = result.splits.get("test") or next(iter(result.splits.values()))
        source = f"{data_dir} ({'test' if 'test' in result.splits else next(iter(result.splits))})"
    elif (GOEMOTIONS / "test.tsv").exists():
        data = load_source(GOEMOTIONS).splits["test"]
        source = "GoEmotions test"
    else:
        from mlcore.datasets.demo import generate_demo

        data, source = generate_demo(), "demo data"
    n = min(limit, len(data)) if limit else len(data)
    return LabeledTexts(data.texts[:n], data.labels[:n], data.label_names), source


PORTS = range(18050, 18100)  # this project's benchmark ports


class Server:
    """A running server: its URL, its process tree's peak RSS (sampled in the background), and how to stop it."""

    def __init__(self, proc: subprocess.Popen, url: str, stop=None):
        self.proc, self.url, self.peak = proc, url, 0
        self._stop_fn = stop or (lambda: (proc.terminate(), proc.wait(30)))
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    @classmethod
    def start(cls, argv: list[str], port: int, env: dict | None = None) -> "Server":
        """A server subprocess (with `env` added to this process's environment), once its /ping answers 200."""
        import tempfile

        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})}
        log = tempfile.TemporaryFile()  # a file, not a pipe: a full pipe would stall the server
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 300
        while time.time() < deadline:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"server exited: {log.read().decode(errors='replace')[-2000:]}")
            try:
                ping = requests.get(url + "/ping", timeout=2)
                if ping.status_code == 200:
                    break
                if ping.status_code == 503 and '"failed"' in ping.text:  # our server: the model will not load
                    proc.terminate()
                    raise RuntimeError(f"server cannot serve: {ping.text[:1000]}")
            except requests.RequestException:
                pass
            time.sleep(0.2)
        else:
            proc.terminate()
            log.seek(0)
            raise RuntimeError(f"server not ready after 300 s: {log.read().decode(errors='replace')[-2000:]}")
        return cls(proc, url)

    @classmethod
    def start_image_stack(cls, model_dir: Path, backend: str, workers: int, port: int, workdir: Path) -> "Server":
        """The model packaged as steps/train.py packages it, served by the HF inference image's stack
        (toolkit + multi-model-server, .venv-dlc) with `workers` model workers."""
        from mlcore.packaging import package_serving_model
        from pipelines.tarball import make_model_tarball
        from tests.helpers.aws_runtime import missing_runtime, start_dlc_endpoint

        reason = missing_runtime()
        if reason:
            raise RuntimeError(reason)
        package_serving_model(model_dir, workdir / "artifact", backend=backend)
        tarball = make_model_tarball(workdir / "artifact", workdir / "model.tar.gz")
        env = {**MODEL_ENVIRONMENT, "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers)}
        endpoint = start_dlc_endpoint(tarball, workdir / "container", port, env)
        print(f"  cold start {endpoint.cold_start_s:.1f} s", flush=True)
        return cls(endpoint.proc, endpoint.url, stop=endpoint.stop)

    def _sample(self):
        process = psutil.Process(self.proc.pid)
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, sum(p.memory_info().rss for p in [process, *process.children(True)]))
            except psutil.Error:
                return
            time.sleep(0.05)

    def stop(self):
        self._stop.set()
        self._stop_fn()


def latency(url: str, texts: list[str], n: int) -> tuple[float, float]:
    session = requests.Session()
    times = []
    for i in range(n):
        started = time.perf_counter()
        r = session.post(url + "/invocations", json={"inputs": texts[i % len(texts)]}, timeout=30)
        times.append(time.perf_counter() - started)
        if r.status_code != 200:
            raise RuntimeError(f"{url}/invocations answered {r.status_code}: {r.text[:500]}")
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 99) * 1000)


async def _throughput(url: str, texts: list[str], concurrency: int) -> float:
    import aiohttp

    queue = list(range(len(texts)))
    async with aiohttp.ClientSession() as session:
        async def worker():
            while queue:
                i = queue.pop()
                async with session.post(url + "/invocations", json={"inputs": texts[i]}) as r:
                    await r.read()
                    assert r.status == 200
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(texts) / (time.perf_counter() - started)


def throughput(url: str, texts: list[str], concurrency: int) -> float:
    return asyncio.run(_throughput(url, texts, concurrency))


def macro_f1(url: str, data, thresholds: np.ndarray, label_names: list[str]) -> float:
    from mlcore.metrics import quick_scores

    probs = []
    session = requests.Session()
    for start in range(0, len(data), 64):
        r = session.post(url + "/invocations", json={"inputs": data.texts[start : start + 64]}, timeout=120)
        r.raise_for_status()
        probs += [[row["scores"][l] for l in label_names] for row in r.json()]
    return quick_scores(data.with_label_names(label_names).matrix(), np.array(probs), thresholds)["f1_macro"]


def inprocess(model_dir: Path, texts: list[str], backends: list[str], threads: int) -> dict:
    """In-process speed per backend (no HTTP) against the arithmetic limit of this CPU, measured in the same run."""
    from arithmetic import int8_matmul_peak, mean_tokens, ops_per_text

    from mlcore.predictor import load_predictor

    config = json.loads((model_dir / "config.json").read_text())
    peak = int8_matmul_peak(threads)
    rows = []
    for backend in backends:
        predictor = load_predictor(model_dir, backend=backend, num_threads=threads)
        predictor.predict_proba(texts, 32)  # a full pass first: ONNX Runtime sizes its buffers per new shape
        passes = []
        for _ in range(3):
            started = time.perf_counter()
            predictor.predict_proba(texts, 32)
            passes.append(time.perf_counter() - started)
        tput = len(texts) / float(np.median(passes))
        collected = {}  # 32 texts in arrival order per call, as the server's batcher hands them over
        planned_cost = predictor.call_cost_tokens
        for name, cost in (("planned", planned_cost), ("one_call", 1e12)):
            predictor.call_cost_tokens, passes = cost, []
            for _ in range(3):
                started = time.perf_counter()
                for start in range(0, len(texts), 32):
                    predictor.predict_proba(texts[start : start + 32], 32)
                passes.append(time.perf_counter() - started)
            collected[name] = len(texts) / float(np.median(passes))
        predictor.call_cost_tokens = planned_cost  # the predictor's own again, for b1 below
        single = []
        for text in texts[:200]:
            t0 = time.perf_counter()
            predictor.predict_proba([text])
            single.append(time.perf_counter() - t0)
        rows.append({"backend": backend, "b32_texts_s": tput, "b1_p50_ms": float(np.median(single) * 1000),
                     "collected_planned_texts_s": collected["planned"], "collected_one_call_texts_s": collected["one_call"],
                     "call_cost_tokens": planned_cost})
    tokens = mean_tokens(predictor.tokenizer, texts, predictor.max_length)
    limit = peak * 1e9 / ops_per_text(config, tokens)
    return {"threads": threads, "int8_peak_gops": peak, "mean_tokens": tokens, "ops_per_text": ops_per_text(config, tokens),
            "limit_texts_s": limit, "rows": [{**r, "share_of_limit": r["b32_texts_s"] / limit} for r in rows]}


def print_inprocess(result: dict) -> None:
    print(f"\nin process, {result['threads']} threads, batch 32 (length-sorted, median of 3 passes after one): int8 matmul peak measured "
          f"{result['int8_peak_gops']:.0f} GOP/s; {result['mean_tokens']:.1f} tokens/text = "
          f"{result['ops_per_text'] / 1e9:.3f} GOP/text -> arithmetic limit {result['limit_texts_s']:.0f} texts/s")
    cost = result["rows"][0]["call_cost_tokens"] if result["rows"] else 0
    print("| backend | texts/s b32 | share of the int8 limit | b1 p50 ms | texts/s, 32 in arrival order: cut by length "
          f"(call cost {cost:g} tokens) | one call |\n| --- | --- | --- | --- | --- | --- |")
    for r in result["rows"]:
        print(f"| {r['backend']} | {r['b32_texts_s']:.0f} | {r['share_of_limit']:.0%} | {r['b1_p50_ms']:.2f} "
              f"| {r['collected_planned_texts_s']:.0f} | {r['collected_one_call_texts_s']:.0f} |")


def start_server(backend: str, model_dir: Path, port: int, image_backend: str, env: dict | None = None) -> Server:
    """The server of one row: the baseline, the floor, the image stack (`image:<workers>`) or ours with `backend`
    (and the settings in `env`)."""
    if backend == "baseline":
        return Server.start([sys.executable, "-c", BASELINE_APP, str(model_dir), str(port)], port)
    if backend == "floor":
        return Server.start([sys.executable, "-c", FLOOR_APP, str(port)], port)
    if backend.startswith("image:"):
        return Server.start_image_stack(model_dir, image_backend, int(backend.split(":")[1]), port,
                                        Path(tempfile.mkdtemp(prefix="bench-image-")))
    return Server.start([sys.executable, "-m", "inference.server", "--model-dir", str(model_dir), "--host",
                         "127.0.0.1", "--port", str(port), "--backend", backend], port, env)


def print_rows(rows: list[dict], what: str) -> None:
    """The table, ratios against the baseline (the first row), and issue 16's serving targets."""
    base = rows[0]
    for r in rows:
        r.update({"p50_ratio": r["p50_ms"] / base["p50_ms"], "c32_speedup": r["c32"] / base["c32"],
                  "rss_ratio": r["peak_rss_mb"] / base["peak_rss_mb"],
                  "f1_delta": None if r["f1_macro"] is None else r["f1_macro"] - base["f1_macro"]})
    print(f"\n{what}; ratios are against the baseline (first row)")
    print("| server | b1 p50 ms | b1 p99 ms | texts/s c=1 | c=8 | c=32 | p50 vs baseline | c=32 vs baseline | peak RSS MB "
          "(ratio) | macro-F1 (delta) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['server']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['c1']:.0f} | {r['c8']:.0f} | {r['c32']:.0f} "
              f"| {r['p50_ratio']:.2f}x | {r['c32_speedup']:.2f}x | {r['peak_rss_mb']:.0f} ({r['rss_ratio']:.2f}x) "
              f"| {'-' if r['f1_macro'] is None else format(r['f1_macro'], '.4f')} "
              f"({'-' if r['f1_delta'] is None else format(r['f1_delta'], '+.4f')}) |")
    models = [r for r in rows[1:] if r["f1_macro"] is not None and abs(r["f1_delta"]) <= F1_TOLERANCE]
    if models:
        best_tput, best_p50 = max(models, key=lambda r: r["c32"]), min(models, key=lambda r: r["p50_ms"])
        print(f"targets (issue 16), among servers within {F1_TOLERANCE} macro-F1 of the baseline: c=32 "
              f"{best_tput['c32_speedup']:.2f}x (target >= {TARGET_C32}x, {best_tput['server']}); b1 p50 "
              f"{best_p50['p50_ratio']:.2f}x (target <= {TARGET_P50}x, {best_p50['server']})")


def parse_server_variant(text: str) -> tuple[str, str, dict]:
    """`NAME:BACKEND:VAR=VALUE[,VAR=VALUE]` -> (row title, backend, env)."""
    name, backend, settings = (["", ""] + text.rsplit(":", 2))[-3:]  # the name may hold a colon
    pairs = [p.strip().partition("=") for p in settings.split(",") if p.strip()]
    if not name.strip() or not backend.strip() or not pairs or any(not k or not sep for k, sep, _ in pairs):
        sys.exit(f"--server-variant {text!r}: expected NAME:BACKEND:VAR=VALUE[,VAR=VALUE], e.g. "
                 "'int8, no inline calls:onnx-int8:MLOPS_INLINE_TEXTS=0'")
    return f"our server, {name.strip()}", backend.strip(), {k.strip(): v.strip() for k, _, v in pairs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True,
                        help="a complete model directory (steps/train.py's SM_OUTPUT_DATA_DIR/model)")
    parser.add_argument("--data", type=Path, default=None,
                        help="a dataset (file or directory the loader accepts); its test split is served "
                             "(default: GoEmotions test when present, else demo data)")
    parser.add_argument("--limit", type=int, default=2000, help="texts for latency and throughput (0 = all)")
    parser.add_argument("--f1-limit", type=int, default=0,
                        help="texts for macro-F1 (0 = the whole split: on 1,000 GoEmotions texts int8's F1 delta "
                             "read -0.0077, on all 5,427 -0.0033)")
    parser.add_argument("--latency-requests", type=int, default=300)
    parser.add_argument("--backends", default="torch,onnx,onnx-int8")
    parser.add_argument("--image-workers", default="1,2",
                        help="rows through the HF inference image's stack (toolkit + multi-model-server) with these "
                             "worker counts (threads per worker = cores / workers); empty = none")
    parser.add_argument("--image-backend", default="onnx-int8", help="what the artifact served by the image carries")
    parser.add_argument("--inprocess-backends", default="onnx,onnx-int8",
                        help="backends measured in process against the arithmetic limit; empty = none")
    parser.add_argument("--server-variant", action="append", default=[], metavar="NAME:BACKEND:VAR=VALUE[,VAR=VALUE]",
                        help="one more row of our server: BACKEND with these settings (the server's env vars, e.g. "
                             "MLOPS_INLINE_TEXTS=0); repeatable")
    parser.add_argument("--no-floor", dest="floor", action="store_false",
                        help="skip the HTTP floor row (the same HTTP stack answering a constant)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "server.json")
    args = parser.parse_args()

    from mlcore.modeling import available_cores
    from mlcore.predictor import ModelInfo

    model_dir = args.model_dir
    if not (model_dir / "thresholds.json").exists():
        parser.error(f"{model_dir} is not a packaged model directory (no thresholds.json)")
    if not (model_dir / "model.int8.onnx").exists():  # export into a copy: never rewrite the model's serving.json
        from mlcore.onnx_backend import export_onnx

        print("exporting ONNX (fp32 + int8) into a temporary copy ...", flush=True)
        copy = Path(tempfile.mkdtemp(prefix="bench-model-")) / "model"
        shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("code"))
        export_onnx(copy, quantize=True)
        model_dir = copy
    info = ModelInfo.read(model_dir)
    data, source = load_texts(args.limit, args.data)
    scored, _ = load_texts(args.f1_limit, args.data)
    print(f"{len(data)} texts from {source}; model {model_dir} ({len(info.label_names)} labels)", flush=True)

    rows = []
    cores = available_cores()
    runs = [("transformers pipeline (baseline)", "baseline", {})]
    runs += [(f"our server, {b}", b, {}) for b in filter(None, args.backends.split(","))]
    runs += [parse_server_variant(v) for v in args.server_variant]
    runs += [(f"HF toolkit + MMS (image stack), {w} worker(s) x {max(1, cores // int(w))} thread(s), "
              f"{args.image_backend}", f"image:{w}", {}) for w in filter(None, args.image_workers.split(","))]
    runs += [("HTTP floor: the same HTTP stack answering a constant, no model", "floor", {})] if args.floor else []
    for title, backend, env in runs:
        port = free_port(PORTS)
        print(f"- {title} ...", flush=True)
        server = start_server(backend, model_dir, port, args.image_backend, env)
        try:
            p50, p99 = latency(server.url, data.texts, args.latency_requests)
            tput = {c: throughput(server.url, data.texts, c) for c in (1, 8, 32)}
            f1 = None if backend == "floor" else macro_f1(server.url, scored, info.thresholds, info.label_names)
        finally:
            server.stop()
        rows.append({"server": title, "p50_ms": p50, "p99_ms": p99, **{f"c{c}": v for c, v in tput.items()},
                     "peak_rss_mb": server.peak / 2**20, "f1_macro": f1})

    print_rows(rows, f"{len(data)} texts from {source} (macro-F1 on {len(scored)})")
    local = None
    if args.inprocess_backends:
        local = inprocess(model_dir, data.texts, args.inprocess_backends.split(","), available_cores())
        print_inprocess(local)
        print(f"target (issue 16): in-process int8 >= {TARGET_INPROCESS:.0%} of the arithmetic limit")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"source": source, "texts": len(data), "f1_texts": len(scored), "rows": rows, "inprocess": local}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
