"""Regenerates pyyaml_facts.json: what PyYAML's `safe_load`, which every published version
of the Python reference loads its configs with, makes of each scalar below.

    python3 -m venv venv && venv/bin/pip install pyyaml==6.0.4
    venv/bin/python pyyaml_facts.py      # writes pyyaml_facts.json next to this file

The facts it writes are what yaml/tests.rs checks the `Pyyaml` schema against.
"""
import datetime, json, math, os, sys
import yaml

PLAIN = """
yes Yes YES no No NO on On ON off Off OFF true True TRUE false False FALSE
y Y n N tRue yEs oN Yes! yes_no
~ null Null NULL nULL none None
0 -0 +0 12 +12 -7 1_000 1__0 1_ _1 017 -017 0_7 08 0o17 0x1F -0x10 0xff_ff 0XFF 0b101 0b_1 -0b11
1:30 -1:30 190:20:30 1:60 0:30 1:3:5
1e3 -1e3 1.0e3 1.0e+3 1.5E-3 12e+03 1e-3 1. 0. -.5 .5 +.5 .5e+3 .e+3 1_000.5 1.5_ 09.5 1:30.5 -1:30.5 1:30. 3.14159 -2.5
1.0e+999 .inf -.inf +.inf .Inf .INF .nan .NaN .NAN -.nan inf nan Infinity
2024-01-01 2024-1-1 <<x a-b 1-2 0x 0b +- + . .. 1.2.3 12abc
18446744073709551615 18446744073709551616 -9223372036854775808 -9223372036854775809 0x10000000000000000
""".split()
# PyYAML refuses these: they read as numbers by its patterns, with no digits.
REFUSED = ["0b_", "0x_", "="]
TAGGED = ["!!int 017", "!!int 0o17", "!!int 1e3", "!!float 1e3", "!!float 7", "!!bool yEs",
          "!!bool y", "!!str 017", "!!null ~"]


def fact(text):
    try:
        value = yaml.safe_load("v: " + text)["v"]
    except Exception as error:  # PyYAML raises ValueError for `0b_`
        return {"text": text, "error": type(error).__name__ + ": " + str(error).split("\n")[0]}
    if isinstance(value, bool):
        return {"text": text, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"text": text, "type": "int", "value": str(value)}
    if isinstance(value, float):
        if math.isfinite(value):
            return {"text": text, "type": "float", "value": value}
        return {"text": text, "type": "float", "repr": repr(value)}
    if value is None:
        return {"text": text, "type": "null"}
    if isinstance(value, (datetime.date, datetime.datetime)):
        return {"text": text, "type": "timestamp", "repr": str(value)}
    return {"text": text, "type": "str", "value": value}


facts = [fact(t) for t in PLAIN + REFUSED + TAGGED]
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyyaml_facts.json")
with open(out, "w") as f:
    f.write("[\n" + ",\n".join(json.dumps(x, ensure_ascii=False) for x in facts) + "\n]\n")
print(f"{len(facts)} scalars; PyYAML {yaml.__version__}", file=sys.stderr)
