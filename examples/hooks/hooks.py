#!/usr/bin/env python3
"""Command hooks for examples/hooks/machine.yml, in plain Python (no packages needed).

The runtime starts this program once per machine and talks to it in JSON lines:

- it writes one request per line to our stdin: {"id": 1, "event": "state_enter", ...};
- we answer each with one line on stdout: a JSON object of overrides ({} for none), carrying
  the same "id";
- when the runtime is done it closes our stdin, and we exit.

stdout is reserved for replies: anything else we want to say goes to stderr, which the runtime
logs. `receiver.py` serves this same `OrderHooks` class as a webhook.
"""

import json
import sys


class OrderHooks:
    """One method per event; each returns the overrides it wants, or None for none."""

    def on_machine_start(self, event):
        context = event["context"]
        context["trail"] = []
        return {"context": context}

    def on_state_enter(self, event):
        context = event["context"]
        context["trail"].append(event["state"])
        return {"context": context}

    def on_action(self, event):
        context = event["context"]
        order = context["order"]
        if event["action"] == "check_stock":
            context["in_stock"] = True
            return {"context": context}
        if event["action"] == "charge_card":
            if order.get("card") == "declined":
                # Fails the state with HookError; `on_error` below decides what happens next.
                raise RuntimeError(f"card of order {order['id']} was declined")
            context["charged"] = True
            return {"context": context}
        # Not ours: the runtime logs that no hook handled it.
        return {"handled": False}

    def on_error(self, event):
        if event["state"] == "charge":
            context = event["context"]
            context["review_reason"] = event["error"]
            return {"context": context, "recovery_state": "manual_review"}
        return None

    def on_transition(self, event):
        order = event["context"]["order"]
        if event["to"] == "ship" and order.get("gift"):
            return {"to_state": "gift_wrap"}
        return None

    def on_machine_end(self, event):
        output = dict(event["output"])
        output["audited_by"] = "hooks.py"
        return {"output": output}


def serve(hooks, requests, replies, log):
    """Answers each request line from `requests` with one reply line on `replies`."""
    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        handler = getattr(hooks, "on_" + request["event"], None)
        try:
            reply = (handler(request) if handler else None) or {}
        except Exception as exc:  # the hook's own failure becomes the state's HookError
            reply = {"hook_error": f"{type(exc).__name__}: {exc}"}
        reply["id"] = request["id"]
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
    print("hooks.py: stdin closed, exiting", file=log)


if __name__ == "__main__":
    print("hooks.py: ready", file=sys.stderr)
    serve(OrderHooks(), sys.stdin, sys.stdout, sys.stderr)
