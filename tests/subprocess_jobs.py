"""Running child processes side by side in tests, with their output in files."""

import os
import subprocess
from pathlib import Path
from types import SimpleNamespace


def child_env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def start(cmd, log_dir: Path, name: str, cwd: Path, env=None):
    """Popen with stdout/stderr in files (no pipe deadlocks); returns (process, stdout, stderr).

    ``env``: variables to add to the child's environment."""
    out, err = log_dir / f"{name}.stdout", log_dir / f"{name}.stderr"
    with open(out, "w") as fo, open(err, "w") as fe:
        process = subprocess.Popen(cmd, stdout=fo, stderr=fe, cwd=cwd, env={**child_env(), **(env or {})})
    return process, out, err


def finish(job, timeout=420):
    process, out, err = job
    try:
        rc = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        rc = "timeout"
    return SimpleNamespace(rc=rc, stdout=out.read_text(), stderr=err.read_text())


def start_all(named_cmds, log_dir, cwd, envs=None):
    """Start commands side by side; {name: job} for finish_all."""
    return {name: start(cmd, log_dir, name, cwd, (envs or {}).get(name)) for name, cmd in named_cmds.items()}


def finish_all(jobs, timeout=420):
    """Wait for every job of start_all; {name: result}."""
    return {name: finish(job, timeout) for name, job in jobs.items()}


def run_all(named_cmds, log_dir, cwd, envs=None, timeout=420):
    """Run commands side by side (each mostly waits on TensorFlow's import); {name: result}.

    ``envs``: {name: extra environment variables} for some of the commands."""
    return finish_all(start_all(named_cmds, log_dir, cwd, envs), timeout)


def explain(result):
    return f"rc={result.rc}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"


# Start of a child script that serves an export: any import of keras_gen fails (and is recorded in
# RefuseKerasGen.attempts), so the export is shown to need only TensorFlow.
REFUSE_KERAS_GEN = r'''
import json, sys

class RefuseKerasGen:
    """keras_gen must not be needed to load or run an export: refuse (and record) any import."""
    attempts = []
    def find_spec(self, name, path=None, target=None):
        if name == "keras_gen" or name.startswith("keras_gen."):
            self.attempts.append(name)
            raise ImportError(f"{name} may not be imported when serving an export")
        return None

sys.meta_path.insert(0, RefuseKerasGen())

import numpy as np
import tensorflow as tf
'''
