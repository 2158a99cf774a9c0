"""Records the Python reference's schema verdict for every document of this corpus.

    /tmp/pyref/bin/pip install flatmachines==1.0.0 flatagents==1.0.0 jsonschema
    /tmp/pyref/bin/python crates/engine/tests/validate/gen_reference_verdicts.py

For each YAML file under valid/, invalid/, warnings/ and support/ that parses, writes whether
the reference's own validator (validate_flatmachine_config / validate_flatagent_config, with
jsonschema installed) finds schema errors. Profiles documents have no validator there and are
not recorded. Only the verdicts are kept (facts), not the reference's schemas.
"""
import glob
import json
import os
import warnings

import yaml

warnings.simplefilter("ignore")

from flatagents.validation import validate_flatagent_config  # noqa: E402
from flatmachines.validation import validate_flatmachine_config  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def verdict(document):
    spec = document.get("spec") if isinstance(document, dict) else None
    if spec == "flatmachine":
        errors = validate_flatmachine_config(document, warn=False)
    elif spec == "flatagent":
        errors = validate_flatagent_config(document, warn=False)
    else:
        return None
    return {"valid": not errors, "errors": len(errors)}


def main():
    verdicts = {}
    for path in sorted(glob.glob(os.path.join(HERE, "**", "*.yml"), recursive=True)):
        try:
            with open(path) as handle:
                document = yaml.safe_load(handle)
        except yaml.YAMLError:
            continue
        result = verdict(document)
        if result is not None:
            verdicts[os.path.relpath(path, HERE)] = result
    with open(os.path.join(HERE, "reference_verdicts.json"), "w") as handle:
        json.dump(verdicts, handle, indent=2, sort_keys=True)
        handle.write("\n")


main()
