"""Step caching: unchanged code + arguments + input contents hit; any change misses; entries are atomic."""
from __future__ import annotations

import json
import os

import pytest

from pipelines.caching import StepCache, StepSignature
from pipelines.digests import hash_path


@pytest.fixture
def world(tmp_path):
    """A step script, a package directory, an input directory, and a produced output directory."""
    script = tmp_path / "steps" / "train.py"
    script.parent.mkdir()
    script.write_text("print('train')\n")
    package = tmp_path / "mlcore"
    package.mkdir()
    (package / "__init__.py").write_text("VERSION = 1\n")
    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    (data / "data.jsonl").write_text('{"text": "hi", "labels": ["a"]}\n')
    out = tmp_path / "run1" / "model"
    out.mkdir(parents=True)
    (out / "weights.bin").write_bytes(b"\x00\x01\x02")
    (out / "sub").mkdir()
    (out / "sub" / "config.json").write_text("{}")
    return {"script": script, "package": package, "data": data, "out": out, "tmp": tmp_path}


def signature(w, **arguments) -> StepSignature:
    return StepSignature("TrainModel", code={"train.py": w["script"], "mlcore": w["package"]},
                         arguments=arguments or {"epochs": "1"}, inputs={"train": w["data"]})


def test_same_code_arguments_and_inputs_hit_and_restore_the_outputs(world):
    cache = StepCache(world["tmp"] / "cache")
    assert cache.lookup(signature(world)) is None
    cache.store(signature(world), {"model": world["out"]}, run_id="run-1")

    # the same content elsewhere (a new run directory) still hits: paths are not part of the key
    copy = world["tmp"] / "elsewhere" / "train"
    copy.mkdir(parents=True)
    (copy / "data.jsonl").write_bytes((world["data"] / "data.jsonl").read_bytes())
    moved = StepSignature("TrainModel", code={"train.py": world["script"], "mlcore": world["package"]},
                          arguments={"epochs": "1"}, inputs={"train": copy})
    hit = cache.lookup(moved)
    assert hit is not None and hit.meta["run_id"] == "run-1"

    dest = world["tmp"] / "run2" / "model"
    dest.mkdir(parents=True)
    (dest / "stale.txt").write_text("left over")
    cache.restore(hit, {"model": dest})
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == ["sub", "sub/config.json", "weights.bin"]
    assert (dest / "weights.bin").read_bytes() == b"\x00\x01\x02"


@pytest.mark.parametrize("change", ["input", "argument", "script", "package", "new package file"])
def test_any_change_of_code_arguments_or_inputs_misses(world, change):
    cache = StepCache(world["tmp"] / "cache")
    cache.store(signature(world), {"model": world["out"]})
    assert cache.lookup(signature(world)) is not None
    arguments = {"epochs": "1"}
    if change == "input":
        (world["data"] / "data.jsonl").write_text('{"text": "hi", "labels": ["b"]}\n')
    elif change == "argument":
        arguments = {"epochs": "2"}
    elif change == "script":
        world["script"].write_text("print('train, better')\n")
    elif change == "package":
        (world["package"] / "__init__.py").write_text("VERSION = 2\n")
    else:
        (world["package"] / "metrics.py").write_text("")
    assert cache.lookup(signature(world, **arguments)) is None


def test_bytecode_caches_do_not_change_the_key(world):
    before = signature(world).key()
    (world["package"] / "__pycache__").mkdir()
    (world["package"] / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"junk")
    assert signature(world).key() == before


def test_entry_records_why_and_is_complete_or_absent(world):
    cache = StepCache(world["tmp"] / "cache")
    sig = signature(world)
    with pytest.raises(FileNotFoundError, match="output 'metrics' missing"):
        cache.store(sig, {"model": world["out"], "metrics": world["tmp"] / "nope"})
    step_dir = world["tmp"] / "cache" / "TrainModel"
    assert os.listdir(step_dir) == []  # no half-written entry, no temp directory left
    assert cache.lookup(sig) is None

    log = world["tmp"] / "step.log"
    log.write_text("epoch=1 train_loss=0.5\n")
    hit = cache.store(sig, {"model": world["out"]}, attachments={"step.log": log})
    entry = json.loads((hit.path / "entry.json").read_text())
    assert entry["signature"]["inputs"]["train"] == hash_path(world["data"])
    assert entry["signature"]["arguments"] == {"epochs": "1"}
    assert (hit.path / "step.log").read_text() == "epoch=1 train_loss=0.5\n"

    # an entry whose outputs were removed is not trusted
    import shutil

    shutil.rmtree(hit.output("model"))
    assert cache.lookup(sig) is None


def test_hash_path_depends_on_names_and_contents(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "x.txt").write_text("same")
    assert hash_path(a) == hash_path(b)
    (b / "x.txt").rename(b / "y.txt")
    assert hash_path(a) != hash_path(b)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        hash_path(tmp_path / "missing")
