"""Timing a compiled function, its compiled peak memory, and the machine it ran on."""

from __future__ import annotations

import platform
import statistics
import time
from datetime import date

import jax


def time_fn(fn, *args, repeats: int) -> tuple[float, float]:
    """(median, min) wall time in ms of ``fn(*args)`` after one compiling call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times), 1e3 * min(times)


def compiled_memory(fn, *args) -> dict:
    """Memory of one call of ``jax.jit(fn)`` by the compiler's buffer assignment, in MiB.

    ``peak``: arguments + outputs + temporaries - aliased. XLA allocates a
    program's temporaries as one block (``temp_size``, in which buffers
    already share space by their live ranges), so this is what a call
    holds, found without running it. (``peak_memory_in_bytes`` of XLA:CPU
    leaves the temporaries out, so it is not used.)
    """
    stats = jax.jit(fn).lower(*args).compile().memory_analysis()
    mib = 2**20
    args_b, out_b = stats.argument_size_in_bytes, stats.output_size_in_bytes
    temp_b, alias_b = stats.temp_size_in_bytes, stats.alias_size_in_bytes
    peak = args_b + out_b + temp_b - alias_b
    return {
        "peak_mib": round(peak / mib, 3),
        "arguments_mib": round(args_b / mib, 3),
        "outputs_mib": round(out_b / mib, 3),
        "temporaries_mib": round(temp_b / mib, 3),
    }


def environment() -> dict:
    dev = jax.devices()[0]
    return {
        "date": date.today().isoformat(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": getattr(dev, "device_kind", str(dev)),
        "device_count": jax.device_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
