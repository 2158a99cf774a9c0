"""Runs the corpus cases marked `reference: same` or `differs` on the Python reference
(flatmachines 1.0.0) and writes their outputs to reference_outputs.json.

    python3 -m venv /tmp/pyref && /tmp/pyref/bin/pip install flatmachines==1.0.0
    /tmp/pyref/bin/python crates/engine/tests/corpus/run_reference.py
"""
import asyncio
import glob
import json
import logging
import os

import yaml

os.environ.setdefault("FLATAGENTS_METRICS_ENABLED", "false")
logging.disable(logging.CRITICAL)

from flatmachines import FlatMachine  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


async def run_case(path, test):
    machine = FlatMachine(config_file=path)
    try:
        output = await machine.execute(input=test.get("input") or {}, max_steps=test.get("max_steps", 1000))
        return {"output": output}
    except Exception as error:  # the reference reports failures as exceptions
        return {"error": type(error).__name__, "message": str(error)}


async def main():
    results = {}
    for path in sorted(glob.glob(os.path.join(HERE, "*.yml"))):
        with open(path) as handle:
            config = yaml.safe_load(handle)
        test = (config.get("metadata") or {}).get("test") or {}
        if test.get("reference") not in ("same", "differs"):
            continue
        results[os.path.basename(path)] = await run_case(path, test)
    with open(os.path.join(HERE, "reference_outputs.json"), "w") as handle:
        json.dump(results, handle, indent=2, sort_keys=True)
        handle.write("\n")


asyncio.run(main())
