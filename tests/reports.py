"""Report validation against the committed JSON Schema (used by every test that sees one)."""

import json

import jsonschema

from projections.report import SCHEMA_PATH

_validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


def validate_report(report: dict) -> dict:
    _validator.validate(report)
    return report
