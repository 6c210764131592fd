"""What every benchmark case shares: fresh-process probes, medians, peak memory, the machine.

Each measurement runs in a new Python process (`python -m bench.probe <name> <json>`), so its
imports, caches and peak memory are its own, as they are for an Airflow task. A probe prints one
JSON line last; `probe()` returns it as a dict.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024


class ProbeError(RuntimeError):
    """A probe process failed; carries the tail of its output."""


def probe(name: str, *, timeout: float = 1800, env: dict[str, str] | None = None, **args: Any):
    """Run probe `name` with `args` in a fresh Python process and return its JSON result."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench.probe", name, json.dumps(args)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not lines[-1].startswith("{"):
        tail = (proc.stderr.strip().splitlines() or lines)[-15:]
        raise ProbeError(f"probe {name}({args}) exited {proc.returncode}:\n" + "\n".join(tail))
    return json.loads(lines[-1])


def median_of(results: Iterable[dict[str, Any]], *keys: str) -> dict[str, float]:
    """Per key, the median over repeats (and the repeats themselves under `<key>_all`)."""
    results = list(results)
    out: dict[str, Any] = {}
    for key in keys:
        values = [r[key] for r in results if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
        out[f"{key}_all"] = values
    return out


def repeat(fn: Callable[[], dict[str, Any]], times: int) -> list[dict[str, Any]]:
    return [fn() for _ in range(times)]


# ------------------------------------------------------------------ inside a probe process


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (VmHWM), in MiB."""
    return _status_kb("VmHWM") / 1024


def rss_mb() -> float:
    """This process's resident memory now (VmRSS), in MiB."""
    return _status_kb("VmRSS") / 1024


def reset_peak() -> None:
    """Start a new peak: Linux resets VmHWM to the current RSS on writing 5 to clear_refs."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _status_kb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class Timer:
    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


# ------------------------------------------------------------------ the machine


def machine() -> dict[str, Any]:
    """CPU, memory and versions of the machine the run is on (and any GPU, from a probe)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            total_kb = int(next(line for line in fh if line.startswith("MemTotal")).split()[1])
    except (OSError, StopIteration):
        total_kb = 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(total_kb / MB, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
