"""CPU seconds per test file, child processes included: a pytest plugin and its summary.

Wall times of the suite say little on a machine that also trains; CPU time does (within the
noise of contention, which inflates it). Each test is charged the CPU time its worker and every
descendant used while it ran: the worker's own and reaped children's (getrusage), plus utime,
stime, cutime and cstime from /proc of every descendant not reaped yet (zombies keep them).
Work a test leaves running in the background is charged to the tests that follow on that worker.

    PYTHONPATH=tools CPU_PER_TEST=/tmp/cpu python -m pytest -p cpu_per_test -n 2 --dist loadfile ...
    python tools/cpu_per_test.py /tmp/cpu [N]     # per file, largest first, then the N largest tests

Each worker writes <CPU_PER_TEST>/<worker>.json: {"files": {file: s}, "tests": {nodeid: s}}.
Linux only (/proc).
"""

from __future__ import annotations

import json
import os
import resource
import sys
from collections import Counter, defaultdict
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
FILES, TESTS = Counter(), {}


def tree_cpu_seconds() -> float:
    """CPU seconds used so far by this process and all its descendants (see the docstring)."""
    seconds, children = {}, defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            seconds[int(entry)] = sum(int(x) for x in fields[11:15]) / TICKS
            children[int(fields[1])].append(int(entry))
    total, stack = 0.0, list(children[os.getpid()])
    while stack:
        pid = stack.pop()
        total += seconds.get(pid, 0.0)
        stack.extend(children[pid])
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _pytest_hooks():
    import pytest

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        start = tree_cpu_seconds()
        yield
        TESTS[item.nodeid] = spent = tree_cpu_seconds() - start
        FILES[item.nodeid.split("::", 1)[0]] += spent

    def pytest_sessionfinish(session):
        folder = os.environ.get("CPU_PER_TEST")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            (Path(folder) / f"{worker}.json").write_text(json.dumps({"files": FILES, "tests": TESTS}, indent=1))

    return pytest_runtest_protocol, pytest_sessionfinish


def summary(folder, most: int = 25) -> str:
    files, tests = Counter(), {}
    for path in Path(folder).glob("*.json"):
        data = json.loads(path.read_text())
        files.update(data["files"])
        tests.update(data["tests"])
    lines = [f"{s:8.1f}  {name}" for name, s in files.most_common()]
    lines.append(f"{sum(files.values()):8.1f}  total")
    lines += [f"   {s:7.1f}  {name}" for name, s in sorted(tests.items(), key=lambda kv: -kv[1])[:most]]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(sys.argv[1], *(int(a) for a in sys.argv[2:3])))
else:
    pytest_runtest_protocol, pytest_sessionfinish = _pytest_hooks()
