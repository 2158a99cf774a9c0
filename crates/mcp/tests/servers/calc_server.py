"""A small MCP server for the tests, on the `mcp` package from PyPI.

    python calc_server.py stdio
    python calc_server.py http PORT

Every call is appended to the file named by CALC_SERVER_LOG as one JSON line,
{"tool", "arguments", "call_id", "pid"}, so a test can count the calls the server saw.
"""

import asyncio
import json
import os
import sys

from mcp.server.fastmcp import Context, FastMCP

server = FastMCP("calc", host="127.0.0.1", port=int(sys.argv[2]) if len(sys.argv) > 2 else 8000)


def record(ctx: Context, tool: str, arguments: dict) -> None:
    path = os.environ.get("CALC_SERVER_LOG")
    if not path:
        return
    meta = ctx.request_context.meta
    call_id = None
    if meta is not None:
        call_id = (meta.model_extra or {}).get("io.github.flatmachines/call_id")
    with open(path, "a", encoding="utf-8") as log:
        entry = {"tool": tool, "arguments": arguments, "call_id": call_id, "pid": os.getpid()}
        log.write(json.dumps(entry) + "\n")


@server.tool()
def add(a: int, b: int, ctx: Context) -> int:
    """Adds two whole numbers."""
    record(ctx, "add", {"a": a, "b": b})
    return a + b


@server.tool()
def shout(text: str, ctx: Context) -> str:
    """Returns the text in capitals."""
    record(ctx, "shout", {"text": text})
    return text.upper()


@server.tool()
def big(size: int, ctx: Context) -> str:
    """Returns `size` bytes of text."""
    record(ctx, "big", {"size": size})
    return "x" * size


@server.tool()
def broken(ctx: Context) -> str:
    """Always fails."""
    record(ctx, "broken", {})
    raise ValueError("the broken tool is broken")


@server.tool()
async def nap(seconds: float, ctx: Context) -> str:
    """Sleeps, then answers."""
    record(ctx, "nap", {"seconds": seconds})
    print(f"calc server: napping for {seconds:g} seconds", file=sys.stderr, flush=True)
    await asyncio.sleep(seconds)
    return "rested"


@server.tool()
def quit(ctx: Context) -> str:
    """Exits the server process in the middle of the call."""
    record(ctx, "quit", {})
    print("calc server: quitting as asked", file=sys.stderr, flush=True)
    os._exit(7)


if __name__ == "__main__":
    transport = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    print(f"calc server: starting ({transport})", file=sys.stderr, flush=True)
    if transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http")
