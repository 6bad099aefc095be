"""Tests of pcv.metrics_writer.

Event files are read back with TensorBoard's own reader (EventAccumulator,
a test-only dependency), so what TensorBoard shows is what is checked.
"""

from __future__ import annotations

import io
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pcv.runtime.console import EtaTimer, ProgressBar, format_duration, format_train_line, progress
from pcv.runtime.metrics import JsonlWriter, MetricWriter, read_jsonl, to_float, to_step


def tensorboard_events(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_to_float_and_to_step():
    jitted = jax.jit(lambda x: x.mean())(jnp.arange(4.0))
    values = [
        1,
        2.5,
        True,
        np.float32(0.25),
        np.float64(3.0),
        np.int64(4),
        np.array(5.5),
        np.array([6.0]),
        jnp.float32(7.5),
        jnp.bfloat16(1.5),
        jnp.array(3, jnp.int32),
        jitted,
    ]
    converted = [to_float(v) for v in values]
    assert converted == [1.0, 2.5, 1.0, 0.25, 3.0, 4.0, 5.5, 6.0, 7.5, 1.5, 3.0, 1.5]
    assert all(type(v) is float for v in converted)
    with pytest.raises(ValueError, match="shape"):
        to_float(np.zeros(3))
    with pytest.raises(TypeError):
        to_float("1.0")
    with pytest.raises(TypeError):
        to_float(1 + 2j)

    assert to_step(np.int32(5)) == 5 and type(to_step(jnp.array(6))) is int
    with pytest.raises(TypeError):
        to_step(1.5)


def test_jsonl_lines_parse_and_survive_reopening(tmp_path):
    with JsonlWriter(tmp_path) as writer:
        writer.write(1, {"loss": np.float32(0.5), "lr": jnp.float32(0.125)}, wall_time=10.0)
        writer.write(jnp.array(2), {"loss": jnp.array(0.25)})
        # Flushed per line: readable while still open.
        assert len(read_jsonl(writer.path)) == 2
    path = tmp_path / "metrics.jsonl"
    assert str(writer.path) == str(path)
    with JsonlWriter(tmp_path) as writer:  # A restart appends.
        writer.write(3, {"loss": float("nan")})

    lines = path.read_text().splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert first == {"step": 1, "time": 10.0, "loss": 0.5, "lr": 0.125}
    assert list(first) == ["step", "time", "loss", "lr"]
    records = read_jsonl(path)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert records[1]["loss"] == 0.25 and type(records[1]["step"]) is int
    assert records[2]["loss"] is None  # strict JSON: a non-finite value is null


def test_jsonl_repairs_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "time": 1.0, "loss": 0.5}\n{"step": 2, "ti')  # Crash mid-line.
    with JsonlWriter(tmp_path) as writer:
        writer.write(2, {"loss": 0.4})
    assert [r["step"] for r in read_jsonl(path)] == [1, 2]
    assert path.read_text().splitlines()[1] == '{"step": 2, "ti'


def test_jsonl_rejects_reserved_names(tmp_path):
    with JsonlWriter(tmp_path) as writer:
        with pytest.raises(ValueError, match="reserved"):
            writer.write(1, {"step": 3.0})
    assert read_jsonl(writer.path) == []


def test_metric_writer_writes_tensorboard_and_jsonl(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    with MetricWriter(tmp_path) as writer:
        writer.write_scalars(5, {"loss": np.float32(1.5), "pq": jnp.array(0.25), "rate": float("nan")})
        writer.write_images(5, {"val/panel": image})
        writer.write_text(0, {"config": "steps = 6"})
        writer.write_scalars(10, {"loss": 1.0})
    acc = tensorboard_events(tmp_path)
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(5, 1.5), (10, 1.0)]
    assert [(e.step, e.value) for e in acc.Scalars("pq")] == [(5, 0.25)]
    assert "rate" not in acc.Tags()["scalars"]  # not measured yet: left out, as on the console
    (panel,) = acc.Images("val/panel")
    assert panel.step == 5 and (panel.width, panel.height) == (10, 8)
    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(panel.encoded_image_string)).convert("RGB")), image)
    assert "config/text_summary" in acc.Tags()["tensors"]
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["loss"]) for r in records] == [(5, 1.5), (10, 1.0)]
    assert records[0]["pq"] == 0.25 and records[0]["rate"] is None
    assert records[0]["time"] == pytest.approx(acc.Scalars("loss")[0].wall_time)  # one wall time for both


def test_metric_writer_disabled_writes_nothing(tmp_path):
    workdir = tmp_path / "work"
    with MetricWriter(workdir, enabled=False) as writer:
        writer.write_scalars(1, {"loss": 1.0})
        writer.write_images(1, {"x": np.zeros((2, 2, 3), np.uint8)})
        writer.flush()
    assert not workdir.exists()


def test_metric_writer_jsonl_only(tmp_path):
    with MetricWriter(tmp_path, tensorboard=False) as writer:
        writer.write_scalars(1, {"loss": 1.0})
        writer.write_images(1, {"x": np.zeros((2, 2, 3), np.uint8)})  # No-op without TensorBoard.
    assert os.listdir(tmp_path) == ["metrics.jsonl"]


# ----------------------------------------------------------------------------
# Console.
# ----------------------------------------------------------------------------


class FakeClock:
    def __init__(self, t: float = 0.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0, "0s"),
        (0.4, "0s"),
        (45, "45s"),
        (59.6, "1m00s"),
        (185, "3m05s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (7620, "2h07m"),
        (86400, "1d00h"),
        (3 * 86400 + 4 * 3600 + 59, "3d04h"),
        (-5, "0s"),
        (None, "?"),
        (float("inf"), "?"),
        (float("nan"), "?"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_format_train_line():
    line = format_train_line(
        120,
        2000,
        {"loss": np.float32(1.234), "semantic_loss": 0.5, "vote_loss": jnp.float32(0.7)},
        12.34,
        185,
        learning_rate=0.01,
    )
    assert line == ("step 120/2000  loss 1.234  semantic_loss 0.5  vote_loss 0.7  lr 1.0e-02  12.3 img/s  ETA 3m05s")
    assert format_train_line(1, 2000, {"loss": 2.0}) == "step 1/2000  loss 2  ETA ?"
    assert format_train_line(1, 2000, {"loss": 2.0}, float("nan"), None) == "step 1/2000  loss 2  ETA ?"
    assert format_train_line(7, None, {"loss": 123456.0}) == "step 7  loss 1.235e+05"


def test_eta_excludes_compile_and_uses_a_recent_window():
    clock = FakeClock(100.0)
    timer = EtaTimer(1000, window=4, clock=clock)
    assert np.isnan(timer.steps_per_second()) and timer.eta_seconds() is None
    clock.t += 60.0  # Step 1 compiles for a minute, before the first update.
    timer.update(1)
    assert np.isnan(timer.steps_per_second()) and timer.eta_seconds() is None
    for step in range(2, 11):  # Then 0.5 s per step.
        clock.t += 0.5
        timer.update(step)
    assert timer.steps_per_second() == pytest.approx(2.0)
    assert timer.eta_seconds() == pytest.approx(990 / 2.0)
    for step in range(11, 15):  # Slower: 1 s per step; the window of 4 forgets the old rate.
        clock.t += 1.0
        timer.update(step)
    assert timer.steps_per_second() == pytest.approx(1.0)
    assert timer.eta_seconds() == pytest.approx(986.0)

    clock.t += 300.0  # An evaluation pause...
    timer.reset()
    timer.update(15)  # ...does not count after a reset.
    clock.t += 0.25
    timer.update(16)
    assert timer.steps_per_second() == pytest.approx(4.0)
    timer.update(1000)
    assert timer.eta_seconds() == 0.0


def test_eta_as_the_trainer_uses_it():
    # Resumed at step 500, logging every 100 steps and at the first step.
    clock = FakeClock()
    timer = EtaTimer(total_steps=2000, start_step=500, clock=clock)
    timer.update(500)  # At or before start_step: ignored, so this cannot start the clock early.
    clock.t = 30.0  # Step 501 compiles.
    timer.update(501)
    images_per_s = timer.steps_per_second() * 8  # NaN, not a TypeError, before a rate exists.
    assert np.isnan(images_per_s)
    line = format_train_line(501, 2000, {"loss": 1.5}, images_per_s, timer.eta_seconds())
    assert line == "step 501/2000  loss 1.5  ETA ?"
    clock.t = 39.9
    timer.update(600)  # 99 steps in 9.9 s.
    images_per_s = timer.steps_per_second() * 8
    assert images_per_s == pytest.approx(80.0)
    line = format_train_line(600, 2000, {"loss": 1.0}, images_per_s, timer.eta_seconds())
    assert line == "step 600/2000  loss 1  80.0 img/s  ETA 2m20s"


class FakeFile(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_progress_not_a_tty_prints_a_few_lines():
    out = FakeFile(tty=False)
    clock = FakeClock()
    items = []
    for item in progress(range(5000), desc="eval", file=out, clock=clock):
        clock.t += 0.01
        items.append(item)
    assert items == list(range(5000))
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("eval  500/5000 (10%)")
    assert "ETA 45s" in lines[0]
    assert lines[-2].startswith("eval  4500/5000 (90%)")
    assert lines[-1] == "eval  5000/5000 (100%)  100 it/s  in 50s"


def test_progress_not_a_tty_small_and_unknown_totals():
    out = FakeFile(tty=False)
    for _ in progress(range(3), desc="tiny", file=out, clock=FakeClock()):
        pass
    lines = out.getvalue().splitlines()
    assert [line.split("  ")[1] for line in lines] == ["1/3 (33%)", "2/3 (67%)", "3/3 (100%)"]

    out = FakeFile(tty=False)
    for _ in progress(iter(range(250)), file=out, clock=FakeClock()):
        pass
    counts = [int(line.split("  ")[0]) for line in out.getvalue().splitlines()]
    assert counts == [10, 20, 50, 100, 200, 250]
    assert out.getvalue().splitlines()[-1].endswith("in 0s")


def test_progress_stops_early_and_closes_once():
    out = FakeFile(tty=False)
    bar = ProgressBar(100, "eval", file=out, clock=FakeClock())
    for _ in range(25):
        bar.update()
    bar.close()
    bar.close()
    bar.update()  # Ignored after close.
    lines = out.getvalue().splitlines()
    assert [line.split("  ")[1] for line in lines] == ["10/100 (10%)", "20/100 (20%)", "25/100 (25%)"]


def test_progress_on_a_terminal_is_a_live_bar():
    out = FakeFile(tty=True)
    with ProgressBar(40, "eval", file=out, min_interval=0) as bar:
        for _ in range(40):
            bar.update()
    text = out.getvalue()
    frames = [f for f in text.split("\r") if f.strip()]
    assert len(frames) >= 2 and text.endswith("\n")  # redrawn in place, one line left at the end
    assert frames[0].startswith("eval:   0%") and "40/40" in frames[-1] and frames[-1].startswith("eval: 100%")
    assert "\n" not in text.rstrip("\n")


def test_progress_disabled_prints_nothing():
    out = FakeFile(tty=False)
    for _ in progress(range(100), file=out, enabled=False):
        pass
    assert out.getvalue() == ""
