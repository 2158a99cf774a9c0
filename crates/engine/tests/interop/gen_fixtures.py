"""Generates the checkpoint interop fixtures with the Python reference (flatmachines 1.0.0).

    python3 -m venv /tmp/pyref && /tmp/pyref/bin/pip install flatmachines==1.0.0
    cargo test -p flatmachines-engine --test interop -- --ignored write_our_fixture
    /tmp/pyref/bin/python crates/engine/tests/interop/gen_fixtures.py

Writes, next to this file:
- reference_full/: an uninterrupted reference run (id `full`), and reference_output.json;
- reference_crash_<n>/: reference runs killed after their n-th checkpoint write;
- ours_resumed_by_reference.json: what the reference returns when it resumes the snapshots
  this project wrote into ours_crash/ (made by the ignored Rust test above).
"""
import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
INPUT = {"limit": 6}
CRASH_POINTS = [11, 12, 14]  # a snapshot without its pointer, after `execute`, after `state_exit`


def child(mode, workdir, arg):
    """Runs in a subprocess: a whole run, a run killed after `arg` saves, or a resume."""
    os.environ["FLATAGENTS_METRICS_ENABLED"] = "false"
    logging.disable(logging.CRITICAL)
    os.chdir(workdir)
    from flatmachines import FlatMachine
    from flatmachines.persistence import LocalFileBackend

    if mode == "crash":
        saves = {"n": 0}
        original = LocalFileBackend.save

        async def save(self, key, value):
            await original(self, key, value)
            saves["n"] += 1
            if saves["n"] == int(arg):
                os._exit(3)

        LocalFileBackend.save = save
    machine = FlatMachine(config_file=os.path.join(HERE, "machine.yml"))
    if mode == "resume":
        output = asyncio.run(machine.execute(resume_from=arg))
    else:
        machine.execution_id = mode if mode == "full" else "crash"
        output = asyncio.run(machine.execute(input=INPUT))
    print(json.dumps(output))


def run_child(mode, workdir, arg=""):
    return subprocess.run(
        [sys.executable, __file__, "--child", mode, workdir, str(arg)],
        capture_output=True,
        text=True,
    )


def fresh(name):
    path = os.path.join(HERE, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def main():
    full = fresh("reference_full")
    done = run_child("full", full)
    assert done.returncode == 0, done.stderr
    with open(os.path.join(HERE, "reference_output.json"), "w") as handle:
        handle.write(done.stdout)
    shutil.rmtree(os.path.join(full, ".locks"), ignore_errors=True)
    for point in CRASH_POINTS:
        crashed = fresh(f"reference_crash_{point}")
        killed = run_child("crash", crashed, point)
        assert killed.returncode == 3, killed.stderr
        shutil.rmtree(os.path.join(crashed, ".locks"), ignore_errors=True)
    ours = os.path.join(HERE, "ours_crash")
    if os.path.isdir(ours):
        scratch = fresh("scratch")
        shutil.copytree(os.path.join(ours, ".checkpoints"), os.path.join(scratch, ".checkpoints"))
        resumed = run_child("resume", scratch, "ours")
        assert resumed.returncode == 0, resumed.stderr
        with open(os.path.join(HERE, "ours_resumed_by_reference.json"), "w") as handle:
            handle.write(resumed.stdout)
        shutil.rmtree(scratch)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
