#!/usr/bin/env python3
r"""Start N copies of a pcv command on this machine as N hosts of one run.

    python launch/local.py -n 2 -- --config=synthetic:smoke --workdir=/tmp/run
    python launch/local.py -n 2 --devices-per-process 2 -- --config=synthetic:smoke --workdir=/tmp/run
    python launch/local.py -n 2 --module pcv.evaluate -- --workdir=/tmp/run
    python launch/local.py -n 4 --dry-run -- --config=coco_r50 ...

Each copy gets the explicit coordinator variables pcv reads
(``JAX_COORDINATOR_ADDRESS`` = 127.0.0.1 and a free port,
``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``) and, with ``--devices-per-process
D``, runs on the CPU with D fake devices (``JAX_PLATFORMS=cpu`` and XLA's
host device count). The copies' output lines are prefixed ``[host i]``.

Signals: SIGTERM and SIGINT to this launcher are passed on to every copy;
copies still running ``--grace`` seconds after a signal, or after another
copy failed, are killed. The exit code is the copies': 0 when all finished,
42 when they were preempted (a checkpoint was saved: relaunch), else the
first failure's.

This is how the tests run multi-host code, and a way to try a pod's setup
on one machine. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

EXIT_PREEMPTED = 42


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_environments(n: int, port: int, devices_per_process: int | None, base: dict) -> list[dict]:
    """The environment of each of the n copies."""
    envs = []
    for i in range(n):
        env = dict(base)
        env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(n), JAX_PROCESS_ID=str(i))
        if devices_per_process:
            flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
            flags.append(f"--xla_force_host_platform_device_count={devices_per_process}")
            env["XLA_FLAGS"] = " ".join(flags)
            env["JAX_PLATFORMS"] = "cpu"
        envs.append(env)
    return envs


def parse_args(argv):
    p = argparse.ArgumentParser(prog="launch/local.py", description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--num-processes", type=int, required=True, help="copies (hosts) to start")
    p.add_argument("--devices-per-process", type=int, default=None, help="CPU: fake devices per copy")
    p.add_argument("--module", default="pcv.train", help="the command to run (default pcv.train)")
    p.add_argument("--grace", type=float, default=60.0, help="seconds before stragglers are killed")
    p.add_argument("--port", type=int, default=None, help="coordinator port (default: a free one)")
    p.add_argument("--dry-run", action="store_true", help="print what would run, start nothing")
    p.add_argument("args", nargs=argparse.REMAINDER, help="-- then the command's arguments")
    args = p.parse_args(argv)
    if args.args and args.args[0] == "--":
        args.args = args.args[1:]
    if args.num_processes < 1:
        p.error("-n must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    port = args.port or free_port()
    command = [sys.executable, "-m", args.module, *args.args]
    envs = host_environments(args.num_processes, port, args.devices_per_process, dict(os.environ))
    if args.dry_run:
        for i, env in enumerate(envs):
            changed = {k: v for k, v in env.items() if os.environ.get(k) != v}
            assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(changed.items()))
            print(f"[host {i}] {assignments} {shlex.join(command)}")
        return 0

    procs = [
        subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        for env in envs
    ]
    lock = threading.Lock()

    def relay(i, proc):
        for line in proc.stdout:
            with lock:
                sys.stdout.write(f"[host {i}] {line}")
                sys.stdout.flush()

    relays = [threading.Thread(target=relay, args=(i, p), daemon=True) for i, p in enumerate(procs)]
    for t in relays:
        t.start()

    deadline = [None]  # when stragglers get killed

    def forward(signum, frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)
        if deadline[0] is None:
            deadline[0] = time.monotonic() + args.grace

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while any(p.poll() is None for p in procs):
            if deadline[0] is None and any(p.poll() not in (None, 0, EXIT_PREEMPTED) for p in procs):
                deadline[0] = time.monotonic() + args.grace  # one failed: the others may wait for it forever
            if deadline[0] is not None and time.monotonic() > deadline[0]:
                for i, p in enumerate(procs):
                    if p.poll() is None:
                        with lock:
                            print(f"[launch] host {i} still running {args.grace:.0f} s later: killing it", flush=True)
                        os.killpg(p.pid, signal.SIGKILL)
            time.sleep(0.1)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for t in relays:
            t.join(timeout=5)
    codes = [128 - p.returncode if p.returncode < 0 else p.returncode for p in procs]  # -9 -> 137
    with lock:
        print(f"[launch] exit codes: {codes}", flush=True)
    if all(c == 0 for c in codes):
        return 0
    if all(c in (0, EXIT_PREEMPTED) for c in codes):
        return EXIT_PREEMPTED
    return next(c for c in codes if c not in (0, EXIT_PREEMPTED))


if __name__ == "__main__":
    sys.exit(main())
