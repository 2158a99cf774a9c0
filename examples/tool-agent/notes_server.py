"""An MCP server of notes, for the tool-agent example: `search_notes` finds notes by word.

It needs the `mcp` package (`python3 -m pip install mcp`) and speaks over stdio.
"""

from mcp.server.fastmcp import FastMCP

NOTES = [
    "Checkpoints are written after every step, so a resumed run goes on where it stopped.",
    "A tool loop asks the model, runs the tools it asks for, and asks again.",
    "MCP servers start once per run and stop when the run ends.",
]

server = FastMCP("notes")


@server.tool()
def search_notes(query: str) -> str:
    """Returns the notes that contain `query` (any case), one per line."""
    found = [note for note in NOTES if query.lower() in note.lower()]
    return "\n".join(found) if found else "no note mentions " + query


if __name__ == "__main__":
    server.run("stdio")
