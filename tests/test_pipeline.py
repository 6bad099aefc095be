"""The grain input pipeline: determinism, host shares, resumable state, workers, fixed shapes."""

import numpy as np
import orbax.checkpoint as ocp
import pytest

from pcv.config import DataConfig
from pcv.data import SyntheticPanoptic, pipeline, segments_from_ids
from pcv.data.panoptic import LabelSpace
from pcv.data.transforms import EvalGeometry
from pcv.voting import VoteGrid

GRID = VoteGrid(((1, 1), (3, 1)))
GEOMETRY = EvalGeometry(48, 64, (64, 64))
LABELS = LabelSpace([{"id": 1, "name": "thing", "isthing": 1}, {"id": 2, "name": "stuff", "isthing": 0}])


class IndexedSource:
    """Variable-size examples whose image is the constant colour (i % 256, i // 256, 0): the index can be read back."""

    label_space = LABELS
    categories = list(LABELS.categories)

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        i = int(i)
        h, w = 40 + 8 * (i % 5), 56 - 4 * (i % 3)
        ids = np.ones((h, w), np.int32)
        ids[5:20, 10:30] = 2
        image = np.zeros((h, w, 3), np.uint8)
        image[...] = (i % 256, i // 256, 0)
        info = segments_from_ids(ids, {1: (2, 0), 2: (1, 0)})
        return {"image": image, "segment_ids": ids, "segments_info": info, "image_id": i}


def indices_of(batch):
    """The source index of each image of a batch (top-left pixel, never padding with crop 32 x 32)."""
    pixels = batch["images"][:, 0, 0].astype(int)
    return (pixels[:, 0] + 256 * pixels[:, 1]).tolist()


def loader(source, batch_size=4, seed=3, process_index=None, process_count=None, **data):
    fields = dict(crop_size=(32, 32), scale_range=(0.8, 1.25), hflip=True)
    fields.update(data)
    return pipeline.train_dataset(
        source,
        GRID,
        DataConfig(**fields),
        batch_size=batch_size,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
    )


def take(it, n):
    return [next(it) for _ in range(n)]


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_fixed_shapes_from_variable_sizes_and_determinism():
    src = IndexedSource(30)
    a = take(iter(loader(src, process_index=0, process_count=1)), 3)
    b = take(iter(loader(src, process_index=0, process_count=1)), 3)
    assert_same(a, b)
    for batch in a:
        assert batch["images"].shape == (4, 32, 32, 3) and batch["images"].dtype == np.uint8
        for k in ("semantic", "votes", "weights"):
            assert batch[k].shape == (4, 8, 8)
    c = take(iter(loader(src, seed=4, process_index=0, process_count=1)), 3)
    assert indices_of(c[0]) != indices_of(a[0])  # the seed matters


def test_one_epoch_visits_every_example_once_then_reshuffles():
    src = IndexedSource(12)
    it = iter(loader(src, scale_range=(1.0, 1.0), process_index=0, process_count=1))
    first = sum((indices_of(b) for b in take(it, 3)), [])
    second = sum((indices_of(b) for b in take(it, 3)), [])
    assert sorted(first) == sorted(second) == list(range(12))
    assert first != second


def test_host_shares_are_disjoint_and_make_up_the_global_batch():
    src = IndexedSource(64)
    one_host = take(iter(loader(src, batch_size=4, process_index=0, process_count=1)), 4)
    shares = [take(iter(loader(src, batch_size=2, process_index=h, process_count=2)), 4) for h in range(2)]
    for s in range(4):
        h0, h1 = indices_of(shares[0][s]), indices_of(shares[1][s])
        assert not set(h0) & set(h1)
        assert sorted(h0 + h1) == sorted(indices_of(one_host[s]))
        # Augmentation follows the global position: the same example is transformed identically.
        for share in shares:
            for j, idx in enumerate(indices_of(share[s])):
                k = indices_of(one_host[s]).index(idx)
                np.testing.assert_array_equal(share[s]["votes"][j], one_host[s]["votes"][k])


def test_state_restores_the_same_examples():
    src = IndexedSource(20)
    ds = loader(src, process_index=0, process_count=1)
    it = iter(ds)
    take(it, 3)
    state = it.get_state()
    expected = take(it, 4)  # crosses an epoch boundary (20 examples, batches of 4)
    fresh = iter(ds)
    fresh.set_state(state)
    assert_same(take(fresh, 4), expected)


def test_state_in_an_orbax_checkpoint_next_to_the_train_state(tmp_path):
    ds = loader(SyntheticPanoptic("train", size=(32, 32), seed=0), process_index=0, process_count=1)
    it = iter(ds)
    take(it, 2)
    mngr = ocp.CheckpointManager(tmp_path, item_names=("default", "data"))
    state = {"w": np.arange(3.0)}
    mngr.save(
        2, args=ocp.args.Composite(default=ocp.args.StandardSave(state), data=pipeline.iterator_checkpoint_args(it))
    )
    expected = take(it, 2)  # drawn while the save may still be writing
    mngr.wait_until_finished()
    mngr.close()

    restored_it = iter(ds)
    mngr = ocp.CheckpointManager(tmp_path, item_names=("default", "data"))
    out = mngr.restore(
        2,
        args=ocp.args.Composite(
            default=ocp.args.StandardRestore(state), data=pipeline.iterator_checkpoint_args(restored_it, restore=True)
        ),
    )
    mngr.close()
    np.testing.assert_array_equal(out["default"]["w"], state["w"])
    assert_same(take(restored_it, 2), expected)


def test_worker_processes_give_the_same_batches():
    src = SyntheticPanoptic("train", size=(32, 32), seed=0)
    ref = take(iter(loader(src, process_index=0, process_count=1)), 3)
    it = iter(loader(src, process_index=0, process_count=1, num_workers=1))
    try:
        assert_same(take(it, 3), ref)
    finally:
        it.close()


def test_train_errors():
    src = IndexedSource(4)
    with pytest.raises(ValueError, match="process_index 2"):
        loader(src, process_index=2, process_count=2)
    with pytest.raises(ValueError, match="empty"):
        loader(IndexedSource(0), process_index=0, process_count=1)
    with pytest.raises(ValueError, match="batch_size"):
        loader(src, batch_size=0, process_index=0, process_count=1)


# ----------------------------------------------------------------------------
# Evaluation batches.
# ----------------------------------------------------------------------------


def test_eval_batches_fixed_shape_padded_tail_and_meta():
    src = IndexedSource(7)
    batches = list(pipeline.eval_batches(src, GEOMETRY, batch_size=3, process_index=0, process_count=1))
    assert len(batches) == 3
    for b in batches:
        assert b["images"].shape == (3, 64, 64, 3) and len(b["meta"]) == len(b["examples"]) == 3
    valid = np.concatenate([b["valid"] for b in batches])
    np.testing.assert_array_equal(valid, [True] * 7 + [False] * 2)
    ids = [m["image_id"] for b in batches for m in b["meta"]]
    assert ids == [0, 1, 2, 3, 4, 5, 6, 6, 6]
    for b in batches:
        for m, ex in zip(b["meta"], b["examples"]):
            assert m["original_size"] == ex["segment_ids"].shape
            h, w = m["valid_size"]
            assert (min(h, w) == 48 and max(h, w) <= 64) or max(h, w) == 64  # shorter side 48, longer <= 64
            assert ex["image_id"] == m["image_id"]  # ground truth at the original size, untouched


def test_eval_batches_host_shares():
    src = IndexedSource(5)
    shares = [
        [
            m["image_id"]
            for b in pipeline.eval_batches(src, GEOMETRY, batch_size=4, process_index=h, process_count=2)
            for m in b["meta"]
        ]
        for h in range(2)
    ]
    assert len(shares[0]) == len(shares[1]) == 4  # same number of batches on every host
    assert sorted(set(shares[0]) | set(shares[1])) == list(range(5))


def test_eval_batches_fixed_size_source_and_errors():
    src = SyntheticPanoptic("val", size=(64, 64), num_examples=3, seed=0)
    geometry = EvalGeometry.from_config(DataConfig(image_size=(64, 64)))
    (b,) = pipeline.eval_batches(src, geometry, batch_size=4, process_index=0, process_count=1)
    assert b["images"].shape == (4, 64, 64, 3) and b["valid"].tolist() == [True, True, True, False]
    np.testing.assert_array_equal(b["images"][0], src[0]["image"])
    assert b["index"].tolist() == [0, 1, 2, 2]
    with pytest.raises(ValueError, match="multiple of the 2 hosts"):
        pipeline.eval_batches(src, geometry, batch_size=3, process_index=0, process_count=2)


def test_training_crop_defaults_to_the_image_size():
    assert DataConfig(image_size=(64, 96)).train_crop == (64, 96)
    assert DataConfig(image_size=(64, 96), crop_size=(32, 32)).train_crop == (32, 32)


WORKER_SCRIPT = """
import os, sys, time

def main():
    from pcv.config import DataConfig
    from pcv.data import SyntheticPanoptic, pipeline
    from pcv.voting import VoteGrid

    src = SyntheticPanoptic("train", size=(64, 64), seed=0)
    data = DataConfig(image_size=(64, 64), num_workers=2)
    it = iter(pipeline.train_dataset(src, VoteGrid(((1, 1), (3, 1))), data, batch_size=4, seed=0,
                                     process_index=0, process_count=1))
    for _ in range(3):
        next(it)
    print("READY", flush=True)
    if sys.argv[1] == "close":
        it.close()
        print("CLOSED", flush=True)
        return
    time.sleep(120)

if __name__ == "__main__":
    main()
"""


def _children(pid):
    import subprocess

    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid):
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def _shm():
    import os

    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


@pytest.mark.parametrize("ending", ["close", "kill -9"])
def test_worker_processes_end_with_the_trainer_and_leave_no_shared_memory(tmp_path, ending):
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "workers.py"
    script.write_text(WORKER_SCRIPT)
    before = _shm()
    proc = subprocess.Popen(
        [sys.executable, str(script), "close" if ending == "close" else "wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )
    try:
        assert proc.stdout.readline().strip() == "READY"
        workers = [p for p in _children(proc.pid)]
        assert len(workers) >= 2  # the two workers (and multiprocessing's resource tracker)
        if ending == "close":
            out, err = proc.communicate(timeout=60)
            assert "CLOSED" in out and proc.returncode == 0
            assert "leaked" not in err, err[-2000:]
        else:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        deadline = time.time() + 10
        while any(_alive(p) for p in workers) and time.time() < deadline:
            time.sleep(0.2)
        survivors = [p for p in workers if _alive(p)]
        assert not survivors, "worker processes outlived the trainer"
        assert _shm() - before == set(), "shared memory segments left behind"
    finally:
        for pid in _children(proc.pid) + [p for p in locals().get("workers", []) if _alive(p)]:
            os.kill(pid, signal.SIGKILL)  # never leave a process behind, even when the test fails
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
