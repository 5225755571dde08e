"""``experiments/gpu_check.py``: the quick CPU run writes a complete section; the time guard."""

import math
import os
import re
import subprocess
import sys

import pytest

from tests.models.conftest import load_experiment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "experiments", "gpu_check.py")


def _tables(text: str) -> dict[str, list[list[str]]]:
    """``### heading`` -> the rows (cells) of the first Markdown table under it."""
    tables: dict[str, list[list[str]]] = {}
    heading = None
    for line in text.splitlines():
        if line.startswith("### "):
            heading = line[4:]
        elif heading and line.startswith("|") and not line.startswith("|---"):
            tables.setdefault(heading, []).append([c.strip() for c in line.strip("|").split("|")])
    return {h: rows[1:] for h, rows in tables.items()}  # drop the header row


def _numbers(cell: str) -> list[float]:
    return [float(x) for x in re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|nan|inf", cell)]


@pytest.fixture(scope="module")
def quick_section(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "benchmarks.md"
    out.write_text("# Benchmarks\n\n<!-- begin other -->\nkept\n<!-- end other -->\n")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, SCRIPT, "--quick", "--out", str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    text = out.read_text()
    assert "<!-- begin other -->\nkept\n<!-- end other -->" in text  # other sections untouched
    match = re.search(r"<!-- begin gpu_check -->\n(.*?)<!-- end gpu_check -->", text, re.DOTALL)
    assert match, text
    return match.group(1), proc.stdout


def test_quick_run_writes_every_part_with_finite_numbers(quick_section):
    section, stdout = quick_section
    assert section.strip() in stdout  # printed as written
    assert section.startswith("## GPU check")
    assert "Device: **cpu**" in section and "JAX " in section and "jaxlib " in section
    tables = _tables(section)
    parts = {
        "Chamfer and Sinkhorn EMD, forward + backward": 4,  # 2 losses x (map, vmap)
        "Exact EMD, 64-point pairs": 2,  # jax, scipy
        "Training step, `experiments/configs/tiny.py`, batch 2": 2,  # float32, bfloat16
        "Evaluation views/s": 5,
    }
    assert set(tables) == set(parts), tables.keys()
    for heading, count in parts.items():
        assert len(tables[heading]) == count, (heading, tables[heading])
        for row in tables[heading]:
            for cell in row[1:]:
                for value in _numbers(cell):
                    assert math.isfinite(value), (heading, row)
    losses = tables["Chamfer and Sinkhorn EMD, forward + backward"]
    assert [r[1] for r in losses] == ["map", "vmap", "map", "vmap"]
    assert [r[0] for r in tables["Training step, `experiments/configs/tiny.py`, batch 2"]] == [
        "float32", "bfloat16"]
    assert "Time guard" not in section and "skipped" not in section
    assert "Checks: all passed." in section


def test_quick_run_checks_the_exact_emd_against_scipy(quick_section):
    section, _ = quick_section
    match = re.search(r"JAX solver against SciPy: max relative difference (\S+) over 2 pairs.*"
                      r"\*\*passed\*\* \(required: <= 1e-05\)", section)
    assert match, section
    assert float(match.group(1)) <= 1e-5


class _Clock:
    """A fake ``time`` module: ``fn`` advances it by ``cost`` seconds per call."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def test_budget_skips_and_stops_when_time_runs_out(monkeypatch):
    gpu_check = load_experiment("gpu_check")
    clock = _Clock()
    monkeypatch.setattr(gpu_check, "time", clock)
    calls = []

    def work(cost):
        def fn():
            calls.append(cost)
            clock.now += cost
        return fn

    notes = []
    # Enough budget: warm-up + every repetition.
    budget = gpu_check.Budget("s", 100.0, deadline=1000.0, notes=notes)
    assert budget.measure("a", work(1.0), 3) == (1.0, [1.0, 1.0, 1.0])
    assert notes == []
    # 10 s left: warm-up (4 s), one repetition (4 s), then 2 s left < 4 s: stop with a note.
    budget = gpu_check.Budget("s", 10.0, deadline=1000.0, notes=notes)
    calls.clear()
    assert budget.measure("b", work(4.0), 5) == (4.0, [4.0])
    assert len(calls) == 2 and "b timed 1 of 5" in notes[-1]
    # Nothing left: skipped without a call.
    clock.now += 2.0
    calls.clear()
    assert budget.measure("c", work(1.0), 3) is None
    assert calls == [] and "c skipped" in notes[-1]
    # The first repetition runs past the section budget, not past the run's deadline.
    budget = gpu_check.Budget("s", 5.0, deadline=clock.now + 7.0, notes=notes)
    assert budget.measure("d", work(4.0), 3) is None  # 3 s to the deadline < 4 s
    assert "d timed 0 of 3" in notes[-1]
