"""Config checks that complement the JSON schema: short messages a user can act on."""

from __future__ import annotations

import jsonschema
import yaml


def schema_problem(config: dict, schema_path) -> str | None:
    """The most relevant schema violation of ``config`` in one line, or None."""
    with open(schema_path) as handle:
        schema = yaml.safe_load(handle)
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return None
    key = ".".join(map(str, error.absolute_path)) or "(top level)"
    return f"config key {key}: {error.message}"
