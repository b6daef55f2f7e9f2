"""bench/_argtypes.py: what each argparse type takes and what it refuses, over generated
values (the benchmarks' flags rely on these; tests/bench/test_scripts.py runs the scripts)."""

import argparse
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench import _argtypes as argtypes


@given(st.integers(min_value=1, max_value=10**9))
def test_whole_takes_every_number_in_range(n):
    assert argtypes.whole(1)(str(n)) == n


@given(st.one_of(st.integers(max_value=0), st.integers(min_value=65)))
def test_whole_refuses_every_number_out_of_range(n):
    with pytest.raises(argparse.ArgumentTypeError, match="between 1 and 64"):
        argtypes.whole(1, 64)(str(n))


@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=8))
def test_wholes_round_trips_a_comma_list(values):
    assert argtypes.wholes(0)(",".join(map(str, values))) == values


@given(st.lists(st.integers(), min_size=1, max_size=8).filter(lambda v: min(v) < 1))
def test_row_counts_refuse_any_list_holding_a_count_below_one(values):
    with pytest.raises(argparse.ArgumentTypeError, match="at least 1"):
        argtypes.row_counts(",".join(map(str, values)))


@pytest.mark.parametrize("text", ["", ",", "1,,2", "1.5", "abc", "1;2", "0x10", "1e3"])
def test_wholes_refuse_text_that_is_not_a_comma_list_of_whole_numbers(text):
    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated whole numbers"):
        argtypes.wholes(0)(text)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_seconds_take_exactly_the_finite_positive_numbers(x):
    parse = argtypes.seconds()
    if math.isfinite(x) and x > 0:
        assert parse(repr(x)) == x
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(repr(x))


def test_seconds_may_allow_zero_but_never_a_negative():
    assert argtypes.seconds(allow_zero=True)("0") == 0.0
    for text in ("-0.001", "nan", "-inf", "inf", "soon"):
        with pytest.raises(argparse.ArgumentTypeError):
            argtypes.seconds(allow_zero=True)(text)
    with pytest.raises(argparse.ArgumentTypeError):
        argtypes.seconds()("0")


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_fraction_takes_exactly_zero_up_to_one(x):
    if 0 <= x < 1:
        assert argtypes.fraction(repr(x)) == x
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            argtypes.fraction(repr(x))


def test_names_refuse_unknown_and_empty_names_unless_empty_is_allowed():
    parse = argtypes.names(("grpc", "rest"))
    assert parse("rest,grpc") == ["rest", "grpc"]
    for text in ("ftp", "grpc,", "", "GRPC"):
        with pytest.raises(argparse.ArgumentTypeError, match="choose from grpc,rest"):
            parse(text)
    assert argtypes.names(("a b",), allow_empty=True)("  ") == []
    assert argtypes.names(("a b",), allow_empty=True)(" a b ") == ["a b"]


def test_cpus_are_the_ones_this_machine_has():
    import os

    last = (os.cpu_count() or 1) - 1
    assert argtypes.cpus(f"0,{last}") == [0, last]
    with pytest.raises(argparse.ArgumentTypeError):
        argtypes.cpus(str(last + 1))


def test_an_argparse_parser_turns_a_refusal_into_one_usage_line_and_exit_2(capsys):
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--rounds", type=argtypes.whole(1))
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["--rounds", "0"])
    assert stop.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == "bench: error: argument --rounds: must be at least 1, got 0"
