"""Typed row accessors: a column of the wrong type fails loudly, naming the column, never
echoing the value (a store value may be clinical)."""

from __future__ import annotations

import pytest

from bridge.store import rows
from bridge.store.base import StoreError


def test_values_of_the_declared_type_pass_through() -> None:
    row = {"n": 7, "s": "x", "b": memoryview(b"ab"), "none": None}
    assert rows.integer(row, "n") == 7
    assert rows.text(row, "s") == "x"
    assert rows.blob(row, "b") == b"ab" and isinstance(rows.blob(row, "b"), bytes)
    assert rows.integer_or_none(row, "none") is None
    assert rows.text_or_none(row, "none") is None
    assert rows.blob_or_none(row, "none") is None
    assert rows.to_int_or_none(None) is None
    assert rows.json_object('{"a": 1}') == {"a": 1}
    assert rows.json_list("[1, 2]") == [1, 2]


@pytest.mark.parametrize(
    ("read", "expected"),
    [
        (lambda: rows.integer({"due_at": "secret words"}, "due_at"), "column 'due_at'"),
        (lambda: rows.text({"label": 5}, "label"), "expected text, found int"),
        (lambda: rows.blob({"raw": "secret words"}, "raw"), "expected bytes"),
        (lambda: rows.integer({"n": None}, "n"), "found NoneType"),
        (lambda: rows.to_int("secret words"), "value: expected an integer"),
        (lambda: rows.json_object('["secret words"]', "payload"), "a JSON object"),
        (lambda: rows.json_list('{"secret": "words"}', "payload"), "a JSON array"),
    ],
)
def test_a_wrong_type_names_the_column_and_never_the_value(read, expected) -> None:
    with pytest.raises(StoreError) as err:
        read()
    assert expected in str(err.value)
    assert "secret" not in str(err.value)
