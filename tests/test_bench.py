"""The benchmark command runs end to end and reports every row."""

import json

import pytest

from pcv import bench
from pcv.benchmarks.voting import bench_memory, bench_scaling


def test_bench_voting_tiny(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["voting", "--sizes=tiny", "--repeats=2", f"--json={out}"]) == 0
    data = json.loads(out.read_text())
    whats = [r["what"] for r in data["rows"]]
    assert len(whats) == 5 and any("shift" in w for w in whats)
    assert [w for w in whats if "inference" in w] == [
        "inference, masks at the map, resized",
        "inference, masks at full resolution",
    ]
    for r in data["rows"]:
        assert 0 < r["min_ms"] <= r["ms"] and r["read_ms"] > 0
        # ms are rounded to 1 us in the JSON: at tiny sizes that alone moves the ratio by ~1 %.
        assert r["x_read"] == pytest.approx(r["ms"] / r["read_ms"], rel=0.03, abs=0.01)
    assert data["environment"]["backend"] == "cpu"
    assert "x read" in capsys.readouterr().out


def test_bench_rejects_unknown_size(capsys):
    assert bench.main(["voting", "--sizes=imagenet"]) == 1
    assert "unknown size 'imagenet'" in capsys.readouterr().err


def test_bench_train_small(tmp_path):
    out = tmp_path / "train.json"
    args = ["train", "--backbone=small", "--image_size=64", "--batch=2", "--repeats=2"]
    assert bench.main(args + [f"--json={out}"]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["images_per_second"] == pytest.approx(2 / (row["ms"] / 1e3), rel=0.01)
    assert "small" in row["what"]


def test_bench_pipeline_small(tmp_path, capsys):
    out = tmp_path / "pipeline.json"
    args = [
        "pipeline",
        "--source_size=96x128",
        "--image_size=64",
        "--base_size=64",
        "--batch=2",
        "--repeats=2",
        "--workers=0",
    ]
    assert bench.main(args + [f"--json={out}"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["what"] for r in rows] == [
        "decode JPEG + PNG only (floor, 1 thread)",
        "pipeline, in-process, 1 thread(s)",
        "pipeline, in-process, 2 thread(s)",
    ]
    for r in rows:
        assert r["images_per_second"] == pytest.approx(r["images"] / r["seconds"], rel=0.01)
        assert r["cpu_ms_per_image"] > 0
    assert "synthetic 96x128" in capsys.readouterr().out


def test_bench_scaling_and_memory_tiny():
    small = ((1, 1), (3, 1))
    rows = bench_scaling(1, sizes=((16, 24), (32, 48)), grids=(small,), at=(16, 24), size_grid=small)
    assert [(r["what"], r["map"], r["K"]) for r in rows] == [
        ("inference", "16x24", 17),
        ("aggregation", "16x24", 17),
        ("inference", "32x48", 17),
        ("aggregation", "32x48", 17),
    ]
    for r in rows:
        # Inputs, outputs and the temporaries' block; 4x the pixels cost more.
        parts = r["arguments_mib"] + r["outputs_mib"] + r["temporaries_mib"]
        assert r["peak_mib"] == pytest.approx(parts, abs=2e-3) and r["arguments_mib"] > 0 and r["ms"] > 0
    assert rows[2]["peak_mib"] > rows[0]["peak_mib"]
    plain, full = bench_memory(["tiny"], train_sizes=())
    assert (plain["what"], full["what"]) == ("inference", "inference, full resolution")
    assert full["peak_mib"] > plain["peak_mib"] > plain["arguments_mib"] > 0
