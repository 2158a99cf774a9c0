"""Times flatmachines 4.2.1's tool loop for `cargo xtask bench`, against the same scripted model
server as our `fm-bench tools` workload (`fm-bench serve-tools`, started here).

    py_tools.py FM_BENCH CALLS RUNS SAMPLES

A `tool_loop` state whose agent asks for one call of an in-process Python tool (`echo`) per
model turn, CALLS times, then answers; persistence is on (the memory backend), so 4.2.1 writes
its `tool_call` checkpoint after every call. Each sample times RUNS executions, their machines
built beforehand (so parsing the config stays out, as our prepared runner keeps it out), and
takes the server's busy time out of the wall time; then as many bare posts of a final-turn
body through httpx (the client under litellm's OpenAI provider) give the HTTP floor.

Needs flatmachines==4.2.1, flatagents==4.2.1 and litellm. Prints one JSON line.
"""

import asyncio
import http.client
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from importlib import metadata

os.environ.setdefault("FLATAGENTS_METRICS_ENABLED", "false")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")
logging.disable(logging.CRITICAL)

PAYLOAD = {f"k{i}": "v" * 20 for i in range(50)}

ECHO = {
    "type": "function",
    "function": {
        "name": "echo",
        "description": "Returns its argument",
        "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}},
    },
}


def agent_config(base_url):
    model = {"provider": "openai", "name": "gpt-4o-mini", "base_url": base_url, "api_key": "bench"}
    return {
        "spec": "flatagent",
        "spec_version": "4.2.1",
        "data": {
            "prompt": {"name": "worker", "user": "Work on {{ input.task }}", "tools": [ECHO]},
            # 4.2.1's machine tool loop reads the declarations from data.tools.
            "tools": [ECHO],
            "profile": {
                "spec": "flatprofile",
                "spec_version": "4.2.1",
                "data": {"model_profiles": {"mock": {"type": "llm", "model": model}}, "default": "mock"},
            },
        },
    }


def machine_config(calls):
    limit = calls + 1
    return {
        "spec": "flatmachine",
        "spec_version": "4.2.1",
        "data": {
            "name": "tool-bench",
            "persistence": {"enabled": True, "backend": "memory"},
            "agents": {"worker": "./agent.json"},
            "context": {"target": "{{ input.target }}", "payload": "{{ input.payload }}"},
            "states": {
                "work": {
                    "type": "initial",
                    "agent": "worker",
                    "input": {"task": "{{ context.target }}"},
                    "tool_loop": {"max_tool_calls": limit, "max_turns": limit},
                    "output_to_context": {
                        "calls": "{{ output._tool_calls_count }}",
                        "stop": "{{ output._tool_loop_stop }}",
                    },
                    "transitions": [{"to": "done"}],
                },
                "done": {
                    "type": "final",
                    "output": {"calls": "{{ context.calls }}", "stop": "{{ context.stop }}"},
                },
            },
        },
    }


class EchoTools:
    """The in-process tool: returns its argument, counting its calls."""

    def __init__(self):
        self.executed = 0

    def get_tool_definitions(self):
        return []  # declared in the agent config

    async def execute_tool(self, name, tool_call_id, arguments):
        from flatagents.tools import ToolResult

        self.executed += 1
        return ToolResult(content=json.dumps({"echo": (arguments or {}).get("n")}))


def server_clock(host, port):
    """The model server's busy nanoseconds and answered requests (not timed)."""
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("GET", "/clock")
        clock = json.loads(connection.getresponse().read())
    finally:
        connection.close()
    return clock["busy_ns"], clock["requests"]


async def measure(base_url, calls, runs, samples):
    import httpx
    from flatmachines import FlatMachine

    host, port = base_url.removeprefix("http://").split(":")
    port = int(port)
    tools = EchoTools()
    turns = runs * (calls + 1)
    engine, wall_samples = [], []
    with tempfile.TemporaryDirectory() as tmp:
        # JSON is YAML: the configs need no YAML writer.
        with open(os.path.join(tmp, "agent.json"), "w") as f:
            json.dump(agent_config(base_url), f)
        machine_path = os.path.join(tmp, "machine.json")
        with open(machine_path, "w") as f:
            json.dump(machine_config(calls), f)
        for _ in range(samples):
            machines = [FlatMachine(config_file=machine_path, tool_provider=tools) for _ in range(runs)]
            busy, served = server_clock(host, port)
            before = tools.executed
            started = time.perf_counter()
            for machine in machines:
                output = await machine.execute(input={"target": "x", "payload": PAYLOAD})
                if str(output.get("stop")) != "complete" or int(output.get("calls") or -1) != calls:
                    raise SystemExit(f"expected a complete loop of {calls} tool calls, got {output!r}")
            wall = time.perf_counter() - started
            busy_after, served_after = server_clock(host, port)
            if served_after - served != turns or tools.executed - before != runs * calls:
                raise SystemExit(
                    f"expected {turns} model turns and {runs * calls} tool calls, the server answered "
                    f"{served_after - served} and the tool ran {tools.executed - before} times"
                )
            wall_samples.append(wall)
            engine.append(wall - (busy_after - busy) / 1e9)
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Work on x"},
    ] + [{"role": "tool", "tool_call_id": f"call_{n}", "content": "{}"} for n in range(calls)]
    body = {"model": "bench-model", "messages": messages}
    bare = []
    async with httpx.AsyncClient(base_url=base_url, headers={"authorization": "Bearer bench"}) as client:
        for _ in range(samples):
            busy, _ = server_clock(host, port)
            started = time.perf_counter()
            for _ in range(turns):
                response = await client.post("/chat/completions", json=body)
                response.read()
            wall = time.perf_counter() - started
            busy_after, _ = server_clock(host, port)
            bare.append(wall - (busy_after - busy) / 1e9)
    return engine, wall_samples, bare


def main():
    fm_bench, calls, runs, samples = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    # The server reads its standard input until it closes: it stops when this process does.
    server = subprocess.Popen(
        [fm_bench, "serve-tools", "--calls", str(calls)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        line = server.stdout.readline()
        if not line:
            raise SystemExit(f"fm-bench serve-tools did not start (exit {server.wait()})")
        base_url = json.loads(line)["base_url"]
        engine, wall, bare = asyncio.run(measure(base_url, calls, runs, samples))
    finally:
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    versions = {p: metadata.version(p) for p in ("flatmachines", "flatagents", "litellm")}
    print(json.dumps({
        "workload": "tools",
        "calls": calls,
        "runs": runs,
        "turns": runs * (calls + 1),
        "samples_s": engine,
        "wall_samples_s": wall,
        "bare_http_samples_s": bare,
        "versions": versions,
    }))


if __name__ == "__main__":
    main()
