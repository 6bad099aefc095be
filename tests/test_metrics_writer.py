"""Tests of pcv.metrics_writer.

The event files are read back by a small reader written here: it parses the
TFRecord framing, checks both checksums against a bitwise CRC32C (no table,
no lanes: the slow obvious definition) and decodes the protobuf fields from
the wire format, so the writer is never checked against itself.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from pcv import metrics_writer as mw
from pcv.metrics_writer import (
    EtaTimer,
    EventFileWriter,
    JsonlWriter,
    MetricWriter,
    ProgressBar,
    crc32c,
    format_duration,
    format_train_line,
    masked_crc32c,
    progress,
    read_jsonl,
    to_float,
    to_step,
)

# ----------------------------------------------------------------------------
# An independent reader: bitwise CRC32C, TFRecord framing, protobuf wire format.
# ----------------------------------------------------------------------------


def crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def mask(crc: int) -> int:
    rotated = ((crc >> 15) | (crc << 17)) & 0xFFFFFFFF
    return (rotated + 0xA282EAD8) % 2**32


def read_records(path) -> list[bytes]:
    data = open(path, "rb").read()
    records, pos = [], 0
    while pos < len(data):
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
        assert header_crc == mask(crc32c_bitwise(header))
        body = data[pos + 12 : pos + 12 + length]
        assert len(body) == length
        (body_crc,) = struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])
        assert body_crc == mask(crc32c_bitwise(body))
        records.append(body)
        pos += 16 + length
    assert pos == len(data)
    return records


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def parse_fields(buf: bytes) -> dict[int, list]:
    """field number -> list of raw values (int for varints, bytes otherwise)."""
    fields: dict[int, list] = {}
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            n, pos = read_varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        fields.setdefault(field, []).append(value)
    assert pos == len(buf)
    return fields


def decode_event(buf: bytes) -> dict:
    f = parse_fields(buf)
    assert set(f) <= {1, 2, 3, 5}
    event = {"wall_time": struct.unpack("<d", f[1][0])[0]}
    if 2 in f:
        step = f[2][0]
        event["step"] = step - 2**64 if step >= 2**63 else step  # int64
    if 3 in f:
        event["file_version"] = f[3][0].decode()
    if 5 in f:
        values = []
        for value_buf in parse_fields(f[5][0])[1]:  # Summary.value, repeated
            v = parse_fields(value_buf)
            value = {"tag": v[1][0].decode()}
            if 2 in v:
                value["simple_value"] = struct.unpack("<f", v[2][0])[0]
            if 4 in v:
                im = parse_fields(v[4][0])
                value["image"] = {
                    "height": im[1][0], "width": im[2][0], "colorspace": im[3][0],
                    "png": im[4][0],
                }
            values.append(value)
        event["values"] = values
    return event


def read_events(path) -> list[dict]:
    return [decode_event(r) for r in read_records(path)]


def event_files(logdir) -> list[str]:
    return sorted(os.path.join(logdir, n) for n in os.listdir(logdir) if "tfevents" in n)


# ----------------------------------------------------------------------------
# CRC32C and the encoders.
# ----------------------------------------------------------------------------


def test_crc32c_known_vectors():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    # RFC 3720 (iSCSI) appendix B.4.
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C
    assert crc32c_bitwise(b"123456789") == 0xE3069283


@pytest.mark.parametrize("n", [1, 3, 4, 5, 63, 255, 1000, 8191, 8192, 8193, 20_011])
def test_crc32c_matches_bitwise(n):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    assert crc32c(data) == crc32c_bitwise(data)


@pytest.mark.parametrize("n", [4, 5, 9, 17, 100, 1023, 1025, 4097])
def test_crc32c_lane_path_on_short_messages(n):
    # The lane-parallel path normally only sees long messages; its folding
    # (odd lane counts, front padding) must be exact at every size >= 4.
    data = np.random.default_rng(100 + n).integers(0, 256, n, dtype=np.uint8).tobytes()
    assert mw._crc32c_lanes(data) == crc32c_bitwise(data)


def test_crc32c_long_message_lanes_equal_loop():
    data = np.random.default_rng(7).integers(0, 256, (1 << 20) + 12_345, dtype=np.uint8).tobytes()
    assert mw._crc32c_lanes(data) == mw._crc32c_loop(data)


def test_masked_crc32c():
    assert masked_crc32c(b"123456789") == mask(0xE3069283)
    assert masked_crc32c(b"") == 0xA282EAD8


def test_varint():
    assert mw._varint(0) == b"\x00"
    assert mw._varint(1) == b"\x01"
    assert mw._varint(300) == b"\xac\x02"
    assert mw._varint(-1) == b"\xff" * 9 + b"\x01"  # int64 -1: ten bytes
    assert read_varint(mw._varint(2**40 + 3), 0) == (2**40 + 3, 6)


# ----------------------------------------------------------------------------
# Event files.
# ----------------------------------------------------------------------------


def test_event_file_scalars(tmp_path):
    with EventFileWriter(tmp_path) as writer:
        name = os.path.basename(writer.path)
        writer.add_scalars(0, {"loss": 2.5, "lr": np.float32(0.01)}, wall_time=1000.5)
        writer.add_scalars(np.int64(10), {"loss": jnp.float32(1.25)})
        writer.add_scalars(2**40, {"big": 1e40, "nan": float("nan")})
        writer.add_scalars(-3, {"neg_step": -1.0})
    assert re.fullmatch(rf"events\.out\.tfevents\.\d{{10}}\.{re.escape(socket.gethostname())}", name)
    events = read_events(writer.path)
    assert len(events) == 5
    assert events[0]["file_version"] == "brain.Event:2"
    assert "step" not in events[0] and "values" not in events[0]
    assert abs(events[0]["wall_time"] - float(name.split(".")[3])) < 2

    assert events[1]["step"] == 0 and events[1]["wall_time"] == 1000.5
    assert events[1]["values"] == [
        {"tag": "loss", "simple_value": 2.5},
        {"tag": "lr", "simple_value": pytest.approx(0.01)},
    ]
    assert events[2]["step"] == 10
    assert events[2]["values"] == [{"tag": "loss", "simple_value": 1.25}]
    assert events[3]["step"] == 2**40
    big, nan = events[3]["values"]
    assert big["simple_value"] == float("inf") and np.isnan(nan["simple_value"])
    assert events[4]["step"] == -3


def test_event_file_images(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    rgba = rng.integers(0, 256, (4, 3, 4), dtype=np.uint8)
    noise = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)  # > 8 KiB of PNG: lane CRC path
    batch = rng.integers(0, 256, (2, 6, 5, 3), dtype=np.uint8)
    with EventFileWriter(tmp_path) as writer:
        writer.add_images(7, {"val/panel": rgb, "grey": grey, "rgba": rgba, "noise": noise})
        writer.add_images(8, {"batch": batch})
    events = read_events(writer.path)
    assert [e.get("step") for e in events] == [None, 7, 8]
    values = {v["tag"]: v["image"] for e in events[1:] for v in e["values"]}
    assert list(values) == ["val/panel", "grey", "rgba", "noise", "batch/0", "batch/1"]
    assert len(values["noise"]["png"]) > mw._LANES_MIN_BYTES
    expected = {"val/panel": (rgb, 3), "grey": (grey, 1), "rgba": (rgba, 4), "noise": (noise, 3),
                "batch/0": (batch[0], 3), "batch/1": (batch[1], 3)}
    for tag, (array, colorspace) in expected.items():
        image = values[tag]
        assert (image["height"], image["width"], image["colorspace"]) == (*array.shape[:2], colorspace)
        decoded = np.asarray(Image.open(io.BytesIO(image["png"])))
        np.testing.assert_array_equal(decoded, array)


def test_event_file_rejects_bad_images(tmp_path):
    with EventFileWriter(tmp_path) as writer:
        with pytest.raises(TypeError, match="uint8"):
            writer.add_images(0, {"x": np.zeros((4, 4, 3), np.float32)})
        with pytest.raises(ValueError, match="shape"):
            writer.add_images(0, {"x": np.zeros((4, 4, 2), np.uint8)})
    assert len(read_events(writer.path)) == 1  # Nothing half-written.


def test_event_files_do_not_collide(tmp_path):
    writers = [EventFileWriter(tmp_path) for _ in range(3)]
    for i, writer in enumerate(writers):
        writer.add_scalars(i, {"x": float(i)})
        writer.close()
    files = event_files(tmp_path)
    assert len(files) == 3
    for i, writer in enumerate(writers):
        assert read_events(writer.path)[1]["values"] == [{"tag": "x", "simple_value": float(i)}]


def test_event_file_is_flushed_per_call(tmp_path):
    writer = EventFileWriter(tmp_path)
    writer.add_scalars(3, {"loss": 0.5})
    # Readable before close, as TensorBoard reads it while training runs.
    assert [e.get("step") for e in read_events(writer.path)] == [None, 3]
    writer.close()
    writer.close()  # Idempotent.
    with pytest.raises(ValueError, match="closed"):
        writer.add_scalars(4, {"loss": 0.5})


# ----------------------------------------------------------------------------
# Scalars, JSON lines, the facade.
# ----------------------------------------------------------------------------


def test_to_float_and_to_step():
    jitted = jax.jit(lambda x: x.mean())(jnp.arange(4.0))
    values = [1, 2.5, True, np.float32(0.25), np.float64(3.0), np.int64(4), np.array(5.5),
              np.array([6.0]), jnp.float32(7.5), jnp.bfloat16(1.5), jnp.array(3, jnp.int32), jitted]
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
    assert writer.path == str(path)
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
    assert np.isnan(records[2]["loss"])


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


def test_metric_writer_writes_both(tmp_path):
    image = np.full((8, 10, 3), 200, np.uint8)
    with MetricWriter(tmp_path) as writer:
        writer.write_scalars(5, {"loss": np.float32(1.5), "pq": jnp.array(0.25)})
        writer.write_images(5, {"val/panel": image})
        writer.write_scalars(10, {"loss": 1.0})
        writer.flush()
    (path,) = event_files(tmp_path)
    events = read_events(path)
    assert [e.get("step") for e in events] == [None, 5, 5, 10]
    assert events[1]["values"] == [{"tag": "loss", "simple_value": 1.5},
                                   {"tag": "pq", "simple_value": 0.25}]
    assert events[2]["values"][0]["tag"] == "val/panel"
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["loss"]) for r in records] == [(5, 1.5), (10, 1.0)]
    assert records[0]["pq"] == 0.25
    assert records[0]["time"] == events[1]["wall_time"]  # One wall time for both.


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


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (0.4, "0s"), (45, "45s"), (59.6, "1m00s"), (185, "3m05s"), (3599, "59m59s"),
    (3600, "1h00m"), (7620, "2h07m"), (86400, "1d00h"), (3 * 86400 + 4 * 3600 + 59, "3d04h"),
    (-5, "0s"), (None, "?"), (float("inf"), "?"), (float("nan"), "?"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_format_train_line():
    line = format_train_line(
        120, 2000, {"loss": np.float32(1.234), "semantic_loss": 0.5, "vote_loss": jnp.float32(0.7)},
        12.34, 185, learning_rate=0.01)
    assert line == ("step 120/2000  loss 1.234  semantic_loss 0.5  vote_loss 0.7  "
                    "lr 1.0e-02  12.3 img/s  ETA 3m05s")
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


def test_progress_tty_redraws_one_line():
    out = FakeFile(tty=True)
    clock = FakeClock()
    with ProgressBar(40, "eval", file=out, clock=clock, min_interval=1.0) as bar:
        for _ in range(40):
            clock.t += 0.25
            bar.update()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    frames = text.rstrip("\n").split("\r")[1:]
    assert len(frames) == 11  # The first update, one per simulated second, the final line.
    assert frames[0].startswith("eval  [" + "." * 30 + "]  1/40 (2%)")
    assert frames[-1].startswith("eval  [" + "#" * 30 + "]  40/40 (100%)")
    assert frames[-1].rstrip().endswith("in 10s")


def test_progress_disabled_prints_nothing():
    out = FakeFile(tty=False)
    for _ in progress(range(100), file=out, enabled=False):
        pass
    assert out.getvalue() == ""
