"""steps/preprocess.py run as SageMaker runs it: a subprocess with its flags, on tiny data and real GoEmotions."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlcore.datasets import load_source, read_split

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "steps" / "preprocess.py"
FIXTURES = REPO / "tests" / "fixtures" / "datasets"
SPLITS = ("train", "validation", "test")


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def outputs(out: Path) -> dict[str, object]:
    return {split: read_split(out / split) for split in SPLITS}


def statistics(out: Path) -> dict:
    return json.loads((out / "statistics" / "statistics.json").read_text())


def test_demo_is_split_with_stratification_and_described(tmp_path):
    proc = run("--input", "demo", "--output-dir", tmp_path / "out", "--seed", "5")
    assert proc.returncode == 0, proc.stderr
    splits = outputs(tmp_path / "out")
    assert [len(splits[s]) for s in SPLITS] == [1920, 240, 240]
    assert len({tuple(s.label_names) for s in splits.values()}) == 1 and len(splits["train"].label_names) == 8
    stats = statistics(tmp_path / "out")
    assert {s: stats["splits"][s]["rows"] for s in SPLITS} == {"train": 1920, "validation": 240, "test": 240}
    for split in SPLITS:  # per-label counts match the written files, lengths are described
        counts = dict(zip(splits[split].label_names, splits[split].matrix().sum(axis=0).astype(int).tolist()))
        assert stats["splits"][split]["label_counts"] == counts
        chars = stats["splits"][split]["length"]["chars"]
        assert 0 < chars["p50"] <= chars["p95"] <= chars["max"]
        assert set(stats["splits"][split]["length"]["tokens"]) == {"mean", "p50", "p95", "max"}
    assert stats["dropped"] == {} and stats["seed"] == 5 and stats["data_version"] is None
    rare = min(stats["splits"]["train"]["label_counts"], key=stats["splits"]["train"]["label_counts"].get)
    assert all(stats["splits"][s]["label_counts"][rare] > 0 for s in SPLITS)
    assert "multi-label stratification" in proc.stdout and "label counts per split" in proc.stdout
    # same seed, same bytes; the pipeline's DataVersion is recorded with what it labels
    assert run("--input", "demo", "--output-dir", tmp_path / "again", "--seed", "5",
               "--data-version", "2026-11-30T03:00:00Z").returncode == 0
    assert statistics(tmp_path / "again")["data_version"] == "2026-11-30T03:00:00Z"
    for split in SPLITS:
        assert (tmp_path / "out" / split / "data.jsonl").read_bytes() == \
            (tmp_path / "again" / split / "data.jsonl").read_bytes()


def test_sagemaker_flags_single_file_with_labels_file_and_fractions(tmp_path):
    data = tmp_path / "input" / "data"
    data.mkdir(parents=True)
    rows = [f"message number {i} about {'x' if i % 3 else 'y'}\t{i % 3 and 1},{2 if i % 5 == 0 else 1}"
            for i in range(100)]
    (data / "messages.tsv").write_text("\n".join(rows) + "\n")
    labels = tmp_path / "input" / "labels" / "labels.txt"
    labels.parent.mkdir(parents=True)
    labels.write_text("zero\none\ntwo\n")
    proc = run("--input-dir", data, "--labels-file", labels, "--output-dir", tmp_path / "output",
               "--validation-fraction", "0.2", "--test-fraction", "0.3", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    splits = outputs(tmp_path / "output")
    assert [len(splits[s]) for s in SPLITS] == [50, 20, 30]
    assert splits["train"].label_names == ["zero", "one", "two"]
    everything = sorted(t for s in splits.values() for t in s.texts)
    assert everything == sorted(r.split("\t")[0] for r in rows)


def test_given_splits_are_kept_dev_becomes_validation(tmp_path):
    proc = run("--input-dir", FIXTURES / "goemotions_like", "--output-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr
    loaded = load_source(FIXTURES / "goemotions_like").splits
    splits = outputs(tmp_path)
    for split in SPLITS:
        assert splits[split] == loaded[split]
    assert "carved" not in proc.stdout


def test_missing_validation_is_carved_from_train_and_said(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.jsonl").write_text("".join(
        json.dumps({"text": f"train text {i}", "labels": ["a"] if i % 2 else ["a", "b"]}) + "\n" for i in range(40)))
    (source / "test.jsonl").write_text(json.dumps({"text": "held out", "labels": ["b"]}) + "\n")
    proc = run("--input", source, "--output-dir", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    splits = outputs(tmp_path / "out")
    assert [len(splits[s]) for s in SPLITS] == [36, 4, 1]
    assert "no validation rows given: carved 4 rows out of train" in proc.stdout
    assert set(splits["validation"].texts) <= {f"train text {i}" for i in range(40)}
    assert not set(splits["validation"].texts) & set(splits["train"].texts)
    assert statistics(tmp_path / "out")["notes"][0].startswith("no validation rows given")


def test_dropped_rows_are_reported(tmp_path):
    (tmp_path / "d.tsv").write_text("".join(f"text {i}\t{i % 2}\n" for i in range(30)) + "\t1\ntext 0\t0\n")
    proc = run("--input", tmp_path / "d.tsv", "--output-dir", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "30 of 32 rows kept" in proc.stdout and "1 empty text (e.g. d.tsv:31)" in proc.stdout
    assert "1 duplicate row (e.g. d.tsv:32)" in proc.stdout
    stats = statistics(tmp_path / "out")
    assert stats["dropped"] == {"empty text": 1, "duplicate row": 1}
    assert sum(stats["splits"][s]["rows"] for s in SPLITS) == 30


def test_max_rows_samples_each_split(tmp_path):
    proc = run("--input", "demo", "--output-dir", tmp_path, "--max-rows", "100")
    assert proc.returncode == 0, proc.stderr
    assert [len(read_split(tmp_path / s)) for s in SPLITS] == [100, 100, 100]
    assert "kept 100 of 1920 train rows" in proc.stdout


@pytest.mark.parametrize("content, expected", [
    ("good\t0\nbad\t7\n", "d.tsv, line 2: label id 7 is out of range"),
    ("good\t0\n\xe9t\xe9\t1\n", "d.tsv, line 2: not valid UTF-8"),
    ("a\tb\tc\t0\nd\t1\n", "d.tsv, line 2: 2 columns where the first row has 4"),
])
def test_bad_input_exits_2_with_the_message_and_no_traceback(tmp_path, content, expected):
    path = tmp_path / "d.tsv"
    path.write_bytes(content.encode("latin-1") if "\xe9" in content else content.encode())
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    proc = run("--input", path, "--labels-file", labels, "--output-dir", tmp_path / "out")
    assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out" / "train").exists()


def test_bad_flags_exit_2(tmp_path):
    proc = run("--input", "demo", "--output-dir", tmp_path, "--test-fraction", "0.7")
    assert proc.returncode == 2 and "--test-fraction must be > 0 and < 0.5" in proc.stderr
    proc = run("--input", tmp_path / "missing", "--output-dir", tmp_path)
    assert proc.returncode == 2 and "dataset not found" in proc.stderr and "Traceback" not in proc.stderr


def test_runs_from_a_step_source_bundle(tmp_path):
    """As in a SageMaker Processing container: `python preprocess.py` in the source dir, mlcore/ beside it."""
    from pipelines.source_bundle import step_source_bundle

    bundle = step_source_bundle(tmp_path / "code")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    proc = subprocess.run([sys.executable, "preprocess.py", "--input", "demo", "--output-dir", str(tmp_path / "out"),
                           "--max-rows", "20"], capture_output=True, text=True, cwd=bundle, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(read_split(tmp_path / "out" / "train")) == 20
    assert list((bundle / "mlcore" / "datasets" / "__pycache__").glob("loader.*.pyc"))  # imported from the bundle


@pytest.mark.goemotions
def test_real_goemotions_keeps_its_splits(goemotions_dir, tmp_path):
    proc = run("--input-dir", goemotions_dir, "--output-dir", tmp_path, "--max-rows", "300")
    assert proc.returncode == 0, proc.stderr
    assert "54263 of 54263 rows kept; nothing dropped" in proc.stdout
    stats = statistics(tmp_path)
    assert len(stats["labels"]) == 28 and stats["labels"][:2] == ["admiration", "amusement"]
    assert {s: stats["splits"][s]["rows"] for s in SPLITS} == {"train": 300, "validation": 300, "test": 300}
    assert stats["load_report"]["files"][str(goemotions_dir / "train.tsv")]["rows_read"] == 43410
