"""edvis.run.tables: spreadsheet-safe CSV. Expected texts are written out by hand."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import numpy as np
import pytest

from edvis.errors import UsageError
from edvis.run.tables import FORMULA_STARTS, csv_cell, csv_text, spreadsheet_safe


@pytest.mark.parametrize("text, expected", [
    ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
    ("+1", "'+1"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"),
    ("\rx", "'\rx"),
    ("=", "'="),
    ("'=x", "'=x"),  # already starts with a quote: left alone
    ("", ""),
    ("n01443537", "n01443537"),
    ("goldfish, Carassius auratus", "goldfish, Carassius auratus"),
    ("a=b", "a=b"),  # only the first character counts
    (" =x", " =x"),
    ("gaussian_noise-3", "gaussian_noise-3"),
])
def test_spreadsheet_safe(text, expected):
    assert spreadsheet_safe(text) == expected


def test_formula_starts_are_owasps():
    assert FORMULA_STARTS == ("=", "+", "-", "@", "\t", "\r")


@pytest.mark.parametrize("bad", [1, -2.5, None, b"=x", ["=x"]])
def test_spreadsheet_safe_takes_text_only(bad):
    with pytest.raises(UsageError, match="text must be a str"):
        spreadsheet_safe(bad)


@pytest.mark.parametrize("value, expected", [
    (None, ""),
    ("cat", '"cat"'),
    ("-2+3", '"\'-2+3"'),
    ('say "hi", x', '"say ""hi"", x"'),
    ("", '""'),
    (3, "3"),
    (-3, "-3"),  # a number: no quote, no prefix
    (np.int16(-7), "-7"),
    (-0.25, "-0.25"),
    (np.float32(0.5), "0.5"),
    (float("nan"), ""),
    (float("-inf"), ""),
    (True, "True"),
    (np.bool_(False), "False"),
    ([1, 2, 3], "1 2 3"),
    ((), ""),
])
def test_csv_cell(value, expected):
    assert csv_cell(value) == expected


def test_csv_cell_number_format_applies_to_floats_only():
    four = lambda x: f"{x:.4f}"
    assert csv_cell(-0.123456, four) == "-0.1235"
    assert csv_cell(2, four) == "2"
    assert csv_cell("-0.5", four) == '"\'-0.5"'  # text that looks like a number is still text


@pytest.mark.parametrize("bad", [{"a": 1}, b"x", object(), ["=x"], [[1]]])
def test_csv_cell_refuses_other_values(bad):
    with pytest.raises(UsageError, match="value must be"):
        csv_cell(bad)


def test_csv_text_by_hand():
    text = csv_text(["name", "score", "ids"], [
        ["=1+2", -0.5, [4, 5]],
        ['eel, "moray"', None, []],
        ["\rx", float("nan"), [1]],
    ])
    assert text == ('"name","score","ids"\n'
                    '"\'=1+2",-0.5,4 5\n'
                    '"eel, ""moray""",,\n'
                    '"\'\rx",,1\n')


def test_csv_text_reads_back_with_the_csv_module():
    names = ['=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx", 'a, "b"', "a;=b", "x\ny"]
    text = csv_text(["name", "value"], [[n, -i] for i, n in enumerate(names)])
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["name", "value"]
    assert rows[1:] == [[("'" + n) if n[0] in "=+-@\t\r" else n, str(-i)] for i, n in enumerate(names)]


def test_csv_text_lone_empty_cell_is_still_a_row():
    text = csv_text(["a"], [[None], [1]])
    assert text == '"a"\n""\n1\n'
    assert list(csv.reader(io.StringIO(text, newline=""))) == [["a"], [""], ["1"]]


def test_csv_text_header_is_made_safe_too():
    assert csv_text(["-x"], []) == '"\'-x"\n'


def test_csv_text_validates_its_arguments():
    with pytest.raises(UsageError, match=r"rows\[1\] has 1 cells, columns has 2"):
        csv_text(["a", "b"], [[1, 2], [1]])
    with pytest.raises(UsageError, match=r"rows\[0\]: value must be"):
        csv_text(["a"], [[{"x": 1}]])
    with pytest.raises(UsageError, match="columns must be strings"):
        csv_text(["a", 2], [])


def test_import_does_not_import_torch():
    code = "import sys, edvis.run.tables; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
