#!/usr/bin/env python3
"""Run the tool-loop scenarios on the Python reference (flatmachines/flatagents 4.2.1).

Reads tool_loop_scenarios.json next to this file, runs every scenario on a
FlatMachine whose agent talks to a scripted OpenAI-compatible chat-completions
server on 127.0.0.1, and writes tool_loop_421.json next to this file.

Setup (Python >= 3.11):
    python3 -m venv venv
    venv/bin/pip install flatmachines==4.2.1 flatagents==4.2.1 litellm
    venv/bin/python tool_loop_421.py

The agent uses the 4.2.1 bundle shape (data.prompt + data.profile).  Because
the 4.2.1 machine reads YAML tool declarations from the agent's `data.tools`
(not `data.prompt.tools`) when it drives a tool loop, the tools are declared in
both places; the variant `bundle_prompt_tools_only` records what happens when
they are declared only under `data.prompt.tools`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Mapping
from importlib import metadata as importlib_metadata

# Keep litellm offline and quiet.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")

import yaml  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS_PATH = os.path.join(HERE, "tool_loop_scenarios.json")
OUTPUT_PATH = os.path.join(HERE, "tool_loop_421.json")

CONTEXT_KEYS = [
    "_tool_calls_count",
    "_tool_loop_turns",
    "_tool_loop_cost",
    "_tool_loop_stop",
    "_tool_loop_content",
]

TOOL_DEFS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": desc,
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    for name, desc in (
        ("weather", "Current weather for a city."),
        ("hotels", "Hotels in a city."),
    )
]


# ---------------------------------------------------------------------------
# Scripted OpenAI-compatible server
# ---------------------------------------------------------------------------

class Script:
    """Scripted turns for one run; records every request body."""

    def __init__(self, turns):
        self.turns = turns
        self.requests = []
        self.lock = threading.Lock()

    def next_response(self, body):
        with self.lock:
            index = len(self.requests)
            self.requests.append(body)
        turn = self.turns[min(index, len(self.turns) - 1)]
        if "calls" in turn:
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": tool, "arguments": json.dumps(args)},
                    }
                    for call_id, tool, args in turn["calls"]
                ],
            }
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": turn["text"]}
            finish = "stop"
        return {
            "id": f"chatcmpl-{index + 1}",
            "object": "chat.completion",
            "created": 1700000000,
            "model": body.get("model", "test-model"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }


SCRIPTS: dict[str, Script] = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # silence
        pass

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        # Path: /<run-key>/v1/chat/completions
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        key = parts[0] if parts else ""
        script = SCRIPTS.get(key)
        if script is None or not self.path.split("?")[0].endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"unknown path {self.path}"}})
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send(400, {"error": {"message": "bad json"}})
            return
        if body.get("stream"):
            self._send(400, {"error": {"message": "streaming not scripted"}})
            return
        self._send(200, script.next_response(body))

    def do_GET(self):
        self._send(404, {"error": {"message": "not found"}})


def start_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


# ---------------------------------------------------------------------------
# Tool provider (implements flatagents.tools.ToolProvider)
# ---------------------------------------------------------------------------

class TripTools:
    """weather -> 'sunny in <city>'; hotels -> '{"hotels": ["Tivoli"]}' or an error."""

    def __init__(self, hotels_error_mode="raise"):
        self.hotels_error_mode = hotels_error_mode
        self.executed = []

    def get_tool_definitions(self):
        # Tools come from the agent YAML.
        return []

    async def execute_tool(self, name, tool_call_id, arguments):
        from flatagents.tools import ToolResult

        self.executed.append([tool_call_id, name, arguments])
        city = (arguments or {}).get("city", "")
        if name == "weather":
            return ToolResult(content=f"sunny in {city}")
        if name == "hotels":
            if city == "Nowhere":
                if self.hotels_error_mode == "raise":
                    raise RuntimeError("no such city")
                return ToolResult(content="no such city", is_error=True)
            return ToolResult(content=json.dumps({"hotels": ["Tivoli"]}))
        return ToolResult(content=f"unknown tool {name}", is_error=True)


# ---------------------------------------------------------------------------
# YAML configs
# ---------------------------------------------------------------------------

def agent_config(base_url, shape):
    model = {
        "provider": "openai",
        "name": "test-model",
        "base_url": base_url,
        "api_key": "sk-test",  # passed through to litellm as an extra model field
    }
    prompt = {"name": "planner", "user": "Plan a trip to {{ input.city }}."}
    if shape == "legacy":
        data = {"name": "planner", "model": model, "user": prompt["user"], "tools": TOOL_DEFS}
    else:
        prompt["tools"] = TOOL_DEFS
        data = {
            "prompt": prompt,
            "profile": {
                "spec": "flatprofile",
                "spec_version": "4.2.1",
                "data": {
                    "model_profiles": {"test": {"type": "llm", "model": model}},
                    "default": "test",
                },
            },
        }
        if shape == "bundle":
            # The machine's tool loop reads declarations from data.tools.
            data["tools"] = TOOL_DEFS
    return {"spec": "flatagent", "spec_version": "4.2.1", "data": data}


def machine_config(scenario, escalate_output=None):
    transitions = []
    if scenario.get("condition"):
        transitions.append({"condition": scenario["condition"], "to": "escalate"})
    transitions.append({"to": "done"})
    return {
        "spec": "flatmachine",
        "spec_version": "4.2.1",
        "data": {
            "name": f"tool-loop-{scenario['name']}",
            "agents": {"planner": "./planner.yml"},
            "persistence": {"enabled": False, "backend": "memory"},
            "states": {
                "plan": {
                    "type": "initial",
                    "agent": "planner",
                    "input": {"city": "Lisbon"},
                    "tool_loop": scenario["tool_loop"],
                    "output_to_context": {"result": "{{ output }}"},
                    "transitions": transitions,
                },
                "escalate": {
                    "type": "final",
                    "output": escalate_output or {"result": "{{ context }}", "via": "escalate"},
                },
                "done": {
                    "type": "final",
                    "output": {"result": "{{ context.result }}"},
                },
            },
        },
    }


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------

def summarize_request(body):
    tools = body.get("tools")
    summary = {
        "tools": None if tools is None else [t.get("function", {}).get("name") for t in tools],
        "tool_messages": [
            [m.get("tool_call_id"), m.get("content")]
            for m in body.get("messages", [])
            if m.get("role") == "tool"
        ],
        "roles": [m.get("role") for m in body.get("messages", [])],
        "body_keys": sorted(body.keys()),
        "assistant_messages": [
            {
                "content": m.get("content"),
                "tool_calls": [
                    [tc.get("id"), tc.get("function", {}).get("name"), tc.get("function", {}).get("arguments")]
                    for tc in (m.get("tool_calls") or [])
                ],
            }
            for m in body.get("messages", [])
            if m.get("role") == "assistant"
        ],
    }
    if "tool_choice" in body:
        summary["tool_choice"] = body["tool_choice"]
    return summary


def plain(value):
    """Deep copy into plain JSON-able data (context.machine is a mappingproxy)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def normalize(value, execution_id):
    """Replace the random execution id so the JSON is stable."""
    if execution_id is None:
        return value
    text = json.dumps(plain(value), sort_keys=True)
    return json.loads(text.replace(execution_id, "<execution_id>"))


def maybe_json(value):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, ValueError):
            return value
    return value


async def run_one(server, scenario, run_key, shape="bundle", hotels_error_mode="raise", escalate_output=None):
    from flatmachines import FlatMachine
    from flatmachines.hooks import MachineHooks

    script = Script(scenario["turns"])
    SCRIPTS[run_key] = script
    host, port = server.server_address[:2]
    base_url = f"http://{host}:{port}/{run_key}/v1"

    captured = {}

    class Capture(MachineHooks):
        def on_state_exit(self, state_name, context, output):
            if state_name == "plan":
                captured["context_after_plan"] = plain(context)
                captured["plan_output"] = plain(output)
            return output

        def on_machine_end(self, context, final_output):
            captured["context"] = plain(context)
            return final_output

    tools = TripTools(hotels_error_mode)
    record = {}
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "planner.yml"), "w") as f:
            yaml.safe_dump(agent_config(base_url, shape), f, sort_keys=False)
        machine_path = os.path.join(tmp, "machine.yml")
        with open(machine_path, "w") as f:
            yaml.safe_dump(machine_config(scenario, escalate_output), f, sort_keys=False)
        execution_id = None
        try:
            # `hooks=` serves as both lifecycle hooks and every state's hooks.
            machine = FlatMachine(
                config_file=machine_path,
                hooks=Capture(),
                tool_provider=tools,
            )
            execution_id = machine.execution_id
            output = await asyncio.wait_for(machine.execute(input={}), timeout=120)
            record["output"] = normalize(output, execution_id)
            if isinstance(output, dict):
                record["output_result_parsed"] = normalize(maybe_json(output.get("result")), execution_id)
        except Exception as exc:  # record instead of failing
            record["error"] = {"type": type(exc).__name__, "message": str(exc)}
            record["error_frames"] = [
                f"{frame.filename.split('site-packages/')[-1]}:{frame.lineno} {frame.name}"
                for frame in traceback.extract_tb(exc.__traceback__)
                if "site-packages/flat" in frame.filename
            ]

    if "plan_output" in captured:
        record["plan_state_output"] = normalize(captured["plan_output"], execution_id)
    for label in ("context_after_plan", "context"):
        context = captured.get(label)
        if context is None:
            continue
        ctx = normalize(context, execution_id)
        suffix = "" if label == "context" else "_after_plan"
        record["context" + suffix] = {k: ctx[k] for k in CONTEXT_KEYS if k in ctx}
        record["context_keys" + suffix] = sorted(ctx.keys())
        if label == "context" and "_tool_loop_chain" in ctx:
            record["context_chain"] = ctx["_tool_loop_chain"]
    record["tools_executed"] = tools.executed
    record["request_count"] = len(script.requests)
    record["requests"] = [summarize_request(b) for b in script.requests]
    if script.requests:
        last = script.requests[-1].get("messages", [])[-1]
        record["last_message_of_last_request"] = {
            "role": last.get("role"),
            "content": last.get("content"),
        }
        record["first_request_messages"] = script.requests[0].get("messages")
    return record


async def main():
    with open(SCENARIOS_PATH) as f:
        spec = json.load(f)
    scenarios = spec["scenarios"]
    server = start_server()
    results = {}
    variants = {}
    try:
        for scenario in scenarios:
            results[scenario["name"]] = await run_one(server, scenario, scenario["name"])
        by_name = {s["name"]: s for s in scenarios}
        variants["failing_tool__returns_is_error"] = {
            "about": "failing_tool with the provider returning ToolResult(content='no such city', is_error=True) instead of raising",
            "result": await run_one(server, by_name["failing_tool"], "v_fail_return", hotels_error_mode="return"),
        }
        variants["transition_mid_loop__escalate_keys"] = {
            "about": "transition_mid_loop with escalate rendering chosen keys instead of the whole context",
            "result": await run_one(
                server, by_name["transition_mid_loop"], "v_escalate_keys",
                escalate_output={
                    "result": "{{ context.result }}",
                    "calls": "{{ context._tool_calls_count }}",
                    "turns": "{{ context._tool_loop_turns }}",
                    "stop": "{{ context._tool_loop_stop }}",
                    "via": "escalate",
                },
            ),
        }
        variants["three_turns__prompt_tools_only"] = {
            "about": "bundle agent with tools declared only under data.prompt.tools (not data.tools)",
            "result": await run_one(server, by_name["three_turns_two_calls_in_one"], "v_prompt_only", shape="bundle_prompt_tools_only"),
        }
        variants["three_turns__legacy_agent"] = {
            "about": "legacy agent shape: data.model + data.user + data.tools",
            "result": await run_one(server, by_name["three_turns_two_calls_in_one"], "v_legacy", shape="legacy"),
        }
    finally:
        server.shutdown()

    versions = {}
    for pkg in ("flatmachines", "flatagents", "litellm", "openai", "httpx", "Jinja2", "PyYAML"):
        try:
            versions[pkg] = importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            versions[pkg] = None
    versions["python"] = sys.version.split()[0]

    out = {
        "_about": (
            "Tool-loop scenarios from tool_loop_scenarios.json run on the Python reference "
            "by tool_loop_421.py against a scripted OpenAI chat-completions server. "
            "Agent: 4.2.1 bundle shape (data.prompt + inline flatprofile, litellm backend, "
            "provider openai, api_base from base_url, api_key passed through), tools declared "
            "in data.prompt.tools and data.tools; ToolProvider passed as FlatMachine(tool_provider=...). "
            "Execution ids are replaced by <execution_id>."
        ),
        "versions": versions,
        "scenarios": results,
        "variants": variants,
    }
    with open(OUTPUT_PATH, "w") as f:
        json.dump(out, f, indent=2, sort_keys=True)
        f.write("\n")
    print(f"wrote {OUTPUT_PATH}")


if __name__ == "__main__":
    asyncio.run(main())
