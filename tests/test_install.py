"""pcv as a built package: a wheel, installed without the checkout, runs the main job from another folder.

The wheel is built from a copy of the sources (nothing is written into the
checkout) without build isolation, so no network is needed (setuptools comes
with the test extra), and installed with ``pip --target`` into a folder that
is put first on ``PYTHONPATH``: the dependencies are this environment's, pcv
is the wheel's.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from smoke_model import ROOT

pytest.importorskip("setuptools", minversion="77", reason="needs setuptools>=77: pip install -e '.[test]'")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "pcv", src / "pcv", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist)]
    proc = subprocess.run([*build, str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (wheel,) = dist.glob("pcv-*.whl")
    site = tmp_path_factory.mktemp("site")
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)]
    proc = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return wheel, site


def test_the_wheel_holds_the_package_and_its_configs(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("pcv/train.py", "pcv/configs/coco_r50.py", "pcv/configs/custom.py", "pcv/voting/grid.py"):
        assert name in names
    assert not any(n.startswith(("tests/", "configs/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "pcv-train = pcv.train:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_an_installed_pcv_trains_the_smoke_config_from_another_folder(installed, tmp_path):
    _, site = installed
    env = dict(os.environ, PYTHONPATH=str(site))
    where = subprocess.run(
        [sys.executable, "-c", "import pcv, pcv.config as c; print(pcv.__file__); c.load('coco_r50:smoke')"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert where.returncode == 0 and where.stdout.startswith(str(site)), where.stdout + where.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "pcv.train", "--config=synthetic:smoke", "--config.data.num_val=2"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "workdir" / "synthetic" / "results.json").read_text())
    assert results["step"] == 6 and "All" in results["eval"]
