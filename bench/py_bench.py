"""Times the Python side of `cargo xtask bench`: the reference (flatmachines 1.0.0) on the YAML
workloads of this directory, or LangGraph on the same two-node loop.

    py_bench.py reference loop.yml|loop_local.yml STEPS SAMPLES
    py_bench.py reference fanout.yml CHILDREN SAMPLES
    py_bench.py langgraph none|memory|sqlite STEPS SAMPLES

Prints one JSON line: the wall time of each sample in seconds (imports and setup excluded) and
the process's peak RSS. Run it in a scratch directory: checkpoints and the SQLite file land in
the working directory.
"""

import asyncio
import json
import logging
import os
import resource
import sqlite3
import sys
import time

os.environ.setdefault("FLATAGENTS_METRICS_ENABLED", "false")
logging.disable(logging.CRITICAL)

PAYLOAD = {f"k{i}": "v" * 20 for i in range(50)}


def reference(config, n, samples):
    from flatmachines import FlatMachine

    async def once():
        machine = FlatMachine(config_file=config)
        if config.startswith("fanout"):
            kwargs = {"input": {"xs": list(range(n))}}
        else:
            kwargs = {"input": {"target": "x", "payload": PAYLOAD}, "max_steps": n}
        started = time.perf_counter()
        await machine.execute(**kwargs)
        return time.perf_counter() - started

    return [asyncio.run(once()) for _ in range(samples)]


def langgraph(mode, n, samples):
    from typing import TypedDict

    from langgraph.graph import END, StateGraph

    class State(TypedDict):
        count: int
        target: str
        payload: dict

    def step(state):
        return {"count": state["count"] + 1}

    def next_of(other):
        return lambda state: END if state["count"] >= n else other

    graph = StateGraph(State)
    graph.add_node("ping", step)
    graph.add_node("pong", step)
    graph.set_entry_point("ping")
    graph.add_conditional_edges("ping", next_of("pong"))
    graph.add_conditional_edges("pong", next_of("ping"))
    seconds = []
    for sample in range(samples):
        if mode == "memory":
            from langgraph.checkpoint.memory import InMemorySaver

            saver = InMemorySaver()
        elif mode == "sqlite":
            from langgraph.checkpoint.sqlite import SqliteSaver

            path = f"langgraph-{sample}.sqlite"
            if os.path.exists(path):
                os.remove(path)
            saver = SqliteSaver(sqlite3.connect(path, check_same_thread=False))
        else:
            saver = None
        app = graph.compile(checkpointer=saver)
        config = {"recursion_limit": n + 10, "configurable": {"thread_id": f"t{sample}"}}
        started = time.perf_counter()
        out = app.invoke({"count": 0, "target": "x", "payload": PAYLOAD}, config)
        seconds.append(time.perf_counter() - started)
        assert out["count"] == n, out["count"]
    return seconds


def main():
    which, what, n, samples = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if which == "reference":
        seconds = reference(what, n, samples)
    else:
        seconds = langgraph(what, n, samples)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"which": which, "what": what, "n": n, "samples_s": seconds, "peak_rss_kib": peak}))


if __name__ == "__main__":
    main()
