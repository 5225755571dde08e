"""Benchmark tables for ``docs/benchmarks.md``: machine, versions and date, one section per bench.

Every benchmark script (``experiments/bench_*.py``, which import this module by name: their
directory is on ``sys.path`` when they run) prints its table and calls :func:`write_section`,
which replaces only its own section of the markdown file, delimited by ``<!-- begin NAME -->`` /
``<!-- end NAME -->`` markers, so benches can be re-run independently.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax

__all__ = ["machine_info", "markdown_table", "median_seconds", "write_section"]

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "ott-jax", "numpy", "scipy", "pot", "torch")


def machine_info() -> str:
    """One markdown paragraph: date (UTC), CPU, cores, memory, JAX backend and package versions."""
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        mem = f", {pages * page_size / 2**30:.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        pass
    versions = []
    for pkg in _PACKAGES:
        try:
            versions.append(f"{pkg} {importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    devices = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Measured {now} on {cpu}, {os.cpu_count()} cores{mem}; JAX backend "
        f"{jax.default_backend()} ({len(jax.devices())} x {devices}); Python "
        f"{platform.python_version()}; {', '.join(versions)}."
    )


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    """A GitHub markdown table; floats are printed as given (format them before)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(path: str, name: str, markdown: str) -> None:
    """Replace (or append) the section ``name`` of the markdown file at ``path``.

    Args:
      path: markdown file, created with a title if absent.
      name: section key, e.g. ``"losses"``; used in the begin/end markers.
      markdown: the section's body, including its own heading.
    """
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{markdown.rstrip()}\n{end}"
    text = "# Benchmarks\n\nWritten by the benchmark scripts; each section says how to re-run it.\n"
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``fn()`` (its outputs waited for) over ``repeats`` runs after one
    warm-up run."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)

