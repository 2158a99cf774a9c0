"""Runs fuzz cases on the Python reference, one JSON request per line on stdin
({"path", "input", "max_steps", "timeout"}) and one JSON answer per line on stdout:
{"output": ...} or {"error": TYPE, "message": TEXT}. Written by `cargo xtask fuzz-reference`.

Values JSON cannot hold are tagged so that the comparison can name them: a non-finite float
is {"$float": "nan" | "inf" | "-inf"}, anything else that is not JSON is {"$repr": repr(x)}.
"""
import asyncio
import json
import logging
import math
import os
import sys

os.environ.setdefault("FLATAGENTS_METRICS_ENABLED", "false")


class StepLimitSeen(logging.Handler):
    """Notes the reference's warning at its step limit, its only sign of one."""

    seen = False

    def emit(self, record):
        if "max_steps" in record.getMessage():
            StepLimitSeen.seen = True


# Answers go to the real stdout only; anything the reference prints goes to stderr.
ANSWERS = os.fdopen(os.dup(1), "w")
sys.stdout = sys.stderr

import celpy  # noqa: E402
from flatmachines import FlatMachine  # noqa: E402
from flatmachines.expressions.cel import CELExpressionEngine  # noqa: E402

# flatmachines 1.0.0 hands cel-python plain dicts, from which it cannot select a field, so
# every condition reading `context.x` fails there (docs/divergences.md, "Expressions"). The
# fuzzer compares our CEL with cel-python's as the reference means it: the context as CEL
# values.
CELExpressionEngine._to_cel_types = lambda self, value: celpy.json_to_cel(value)

# The reference's logging setup adds a stdout handler at import; only ours stays.
logging.root.handlers = [StepLimitSeen(level=logging.WARNING)]
logging.root.setLevel(logging.WARNING)


def plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return {"$repr": repr(value)}


async def run(request):
    machine = FlatMachine(config_file=request["path"])
    output = await asyncio.wait_for(
        machine.execute(input=request["input"], max_steps=request["max_steps"]),
        timeout=request["timeout"],
    )
    return {"output": plain(output), "step_limit": StepLimitSeen.seen}


def main():
    for line in sys.stdin:
        request = json.loads(line)
        StepLimitSeen.seen = False
        try:
            answer = asyncio.run(run(request))
        except asyncio.TimeoutError:
            answer = {"error": "Timeout", "message": "the case ran out of time"}
        except RecursionError as error:
            answer = {"error": "RecursionError", "message": str(error)[:500]}
        except Exception as error:  # the reference reports failures as exceptions
            answer = {"error": type(error).__name__, "message": str(error)[:500]}
        ANSWERS.write(json.dumps(answer) + "\n")
        ANSWERS.flush()


main()
