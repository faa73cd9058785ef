from projections.report import SCHEMA_PATH, schema_text


def test_committed_schema_is_generated_from_the_code():
    assert SCHEMA_PATH.read_text() == schema_text(), "run `context8 schema` and commit"
