"""Running child processes side by side in tests, with their output in files."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace


def child_env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


# Children that train or run a tutorial (TensorFlow busy for tens of seconds) take one of SLOTS
# slots, shared by the session's pytest-xdist workers, and wait for one before they start: on two
# cores more of them at once only add thread-pool contention (eight tutorials side by side took
# 2.5 times the CPU time they take one after the other). Runs a test kills after a few steps take
# none (they would wait behind whole runs). SLOT_DIR (the session's folder of lock files) is set
# by tests/conftest.py; None runs every child at once.
SLOTS = 2
SLOT_DIR = None

# argv: slot folder, number of slots, command. Takes a free slot (an exclusive lock on its file)
# and becomes the command, which holds the slot until it exits (a SIGKILL frees it too).
SLOT_CHILD = r'''
import fcntl, os, sys, time
folder, slots, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
while True:
    for k in range(slots):
        fd = os.open(os.path.join(folder, "slot%d.lock" % k), os.O_CREAT | os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.set_inheritable(fd, True)
        os.execvp(cmd[0], cmd)
    time.sleep(0.2)
'''


def in_a_slot(cmd):
    """``cmd`` started once one of the SLOTS slots is free (as is when SLOT_DIR is not set)."""
    if SLOT_DIR is None:
        return [str(c) for c in cmd]
    return [sys.executable, "-c", SLOT_CHILD, str(SLOT_DIR), str(SLOTS), *map(str, cmd)]


def start(cmd, log_dir: Path, name: str, cwd: Path, env=None, new_session=False, slot=False):
    """Popen with stdout/stderr in files (no pipe deadlocks); returns (process, stdout, stderr).

    ``env``: variables to add to the child's environment; ``new_session``: the child leads its own
    process group (so that ``os.killpg`` reaches its children too); ``slot``: wait for a free slot
    (see SLOTS) first: for children that train (the process is the command itself once it runs)."""
    if slot:
        cmd = in_a_slot(cmd)
    out, err = log_dir / f"{name}.stdout", log_dir / f"{name}.stderr"
    with open(out, "w") as fo, open(err, "w") as fe:
        process = subprocess.Popen(cmd, stdout=fo, stderr=fe, cwd=cwd, env={**child_env(), **(env or {})},
                                   start_new_session=new_session)
    return process, out, err


# The exit code of a command written to a file when it ends, so that a process that did not start
# it (another pytest-xdist worker) can wait for it: sh -c SCRIPT RC_PATH CMD...
_RECORD_RC = '"$@"; echo $? > "$0.tmp" && mv "$0.tmp" "$0"'


def start_recording_rc(cmd, log_dir: Path, name: str, cwd: Path, slot=False):
    """start() in a process group of its own, with the exit code written to <log_dir>/<name>.rc
    when the command ends (a signal's death is 128 + signal, as in sh); see wait_for_rc."""
    if slot:
        cmd = in_a_slot(cmd)
    return start(["sh", "-c", _RECORD_RC, str(log_dir / f"{name}.rc"), *cmd], log_dir, name, cwd,
                 new_session=True)


def wait_for_rc(log_dir: Path, name: str, timeout=420):
    """Wait for the .rc file of a start_recording_rc job (started by this process or another);
    SimpleNamespace(rc, stdout, stderr), rc "timeout" if it did not end in time."""
    rc_path, deadline = log_dir / f"{name}.rc", time.monotonic() + timeout
    while not rc_path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    rc = int(rc_path.read_text()) if rc_path.exists() else "timeout"
    return SimpleNamespace(rc=rc, stdout=(log_dir / f"{name}.stdout").read_text(),
                           stderr=(log_dir / f"{name}.stderr").read_text())


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


# Runs several `keras-gen` commands one after the other in one interpreter (one TensorFlow import
# instead of one per command): argv: spec.json (a list of [name, argv, stdout path, stderr path]),
# result.json ({name: exit code}). Each command's stdout / stderr go to its own files; the exit code
# is what the console script would exit with (main()'s return value, or SystemExit's code), and an
# exception main() lets through is printed as a traceback on that command's stderr, exit code 1.
CLI_CHILD = r'''
import contextlib, json, sys, traceback
with open(sys.argv[1]) as f:
    spec = json.load(f)
from keras_gen.cli import main
codes = {}
for name, argv, out, err in spec:
    with open(out, "w") as fo, open(err, "w") as fe, contextlib.redirect_stdout(fo), contextlib.redirect_stderr(fe):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
            if code is None:
                code = 0
            elif not isinstance(code, int):
                print(code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
    codes[name] = code
with open(sys.argv[2], "w") as f:
    json.dump(codes, f)
'''


def cli_commands_in_one_child(named_argvs, log_dir: Path, cwd: Path, name="cli_child", env=None, slot=False):
    """Start one child that runs ``keras-gen`` commands ({name: argv without "keras-gen"}) in turn;
    the job for finish_cli_commands. ``slot``: as in `start` (for commands that train)."""
    log_dir = Path(log_dir)
    spec = [[key, [str(a) for a in argv], str(log_dir / f"{name}.{key}.stdout"),
             str(log_dir / f"{name}.{key}.stderr")] for key, argv in named_argvs.items()]
    spec_path, result_path = log_dir / f"{name}.spec.json", log_dir / f"{name}.result.json"
    spec_path.write_text(json.dumps(spec))
    if result_path.exists():
        result_path.unlink()
    job = start([sys.executable, "-c", CLI_CHILD, str(spec_path), str(result_path)], log_dir, name, cwd, env,
                slot=slot)
    return SimpleNamespace(job=job, spec=spec, result_path=result_path)


def finish_cli_commands(started, timeout=420):
    """{name: SimpleNamespace(rc, stdout, stderr)} of each command; the child itself must succeed."""
    child = finish(started.job, timeout)
    assert child.rc == 0 and started.result_path.exists(), explain(child)
    codes = json.loads(started.result_path.read_text())
    return {key: SimpleNamespace(rc=codes[key], stdout=Path(out).read_text(), stderr=Path(err).read_text())
            for key, _, out, err in started.spec}


def run_cli_commands(named_argvs, log_dir, cwd, name="cli_child", env=None, timeout=420):
    """Run ``keras-gen`` commands one after the other in one child process (see CLI_CHILD)."""
    return finish_cli_commands(cli_commands_in_one_child(named_argvs, log_dir, cwd, name, env), timeout)
