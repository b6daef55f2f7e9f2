"""Beam's introspection remembered per function, and dill's trace switch set only on a change
(pipeline/local/beam_fixed_cost.py): the same answers as Beam's own code, for every kind of
callable, and a real stateful Beam pipeline still sees its state and timers."""

from __future__ import annotations

import functools
import gc
import keyword
import logging
import weakref

import apache_beam as beam
import dill
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.internal import dill_pickler
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import core, userstate
from apache_beam.transforms.timeutil import TimeDomain
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import in_memory_beam_args
from pipeline.local import beam_fixed_cost as bfc

beams_own = bfc._beam_args_defaults  # noqa: SLF001 - the function this module stands in for


@pytest.fixture
def installed(monkeypatch):
    """install(), undone after the test (the swap is process-wide)."""
    monkeypatch.setattr(core, "get_function_args_defaults", core.get_function_args_defaults)
    monkeypatch.setattr(dill.dill, "_trace", dill.dill._trace)
    bfc.install()
    bfc.install()  # idempotent
    assert core.get_function_args_defaults is bfc.function_args_defaults
    assert dill.dill._trace is bfc.trace


class CountingDoFn(beam.DoFn):
    """Per key, how many values came before (a ReadModifyWriteState), and a timer."""

    COUNT = userstate.ReadModifyWriteStateSpec("count", VarIntCoder())
    FLUSH = userstate.TimerSpec("flush", TimeDomain.WATERMARK)

    def process(
        self,
        element,
        count=beam.DoFn.StateParam(COUNT),  # noqa: B008 - Beam's way to ask for state
        flush=beam.DoFn.TimerParam(FLUSH),  # noqa: B008
        timestamp=beam.DoFn.TimestampParam,
    ):
        key, _ = element
        seen = count.read() or 0
        count.write(seen + 1)
        flush.set(timestamp)
        yield key, seen

    @userstate.on_timer(FLUSH)
    def flushed(self, key=beam.DoFn.KeyParam, count=beam.DoFn.StateParam(COUNT)):  # noqa: B008
        yield key, -(count.read() or 0)


def plain(a, b=1, *rest, c, d=2, **more):
    return a


def _wraps(f):
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)

    return wrapper


class Callable_:
    def __call__(self, x, y=3):
        return x

    @classmethod
    def made(cls, z, w=4):
        return cls

    @staticmethod
    def static(v, u=5):
        return v


CALLABLES = {
    "function": plain,
    "lambda": lambda x, y=beam.DoFn.ElementParam: x,
    "wrapped": _wraps(plain),
    "bound method": CountingDoFn().process,
    "timer callback": CountingDoFn().flushed,
    "inherited DoFn method": CountingDoFn().start_bundle,
    "classmethod": Callable_.made,
    "staticmethod": Callable_.static,
    "callable instance": Callable_(),
    "partial": functools.partial(plain, 1, c=3),
    "class": Callable_,
    "builtin": len,
    "method descriptor": str.upper,
}


@pytest.mark.parametrize("name", CALLABLES)
def test_the_same_answer_as_beams_own_for_every_kind_of_callable(name):
    f = CALLABLES[name]
    expected = beams_own(f)
    first = bfc.function_args_defaults(f)
    assert first == expected
    first[0].append("mutated")
    first[1].append("mutated")
    assert bfc.function_args_defaults(f) == expected  # fresh lists every call


def test_a_method_is_remembered_by_its_function_whichever_instance_it_is_bound_to():
    one, other = CountingDoFn(), CountingDoFn()
    assert bfc.function_args_defaults(one.process) == beams_own(other.process)
    assert CountingDoFn.process in bfc._methods  # noqa: SLF001
    assert bfc.function_args_defaults(other.process) == beams_own(one.process)
    # The same function unbound keeps its `self`: its own entry, not the bound method's.
    unbound = bfc.function_args_defaults(CountingDoFn.process)
    assert unbound == beams_own(CountingDoFn.process) and unbound[0][0] == "self"


def test_a_function_that_is_gone_leaves_no_entry():
    f = eval("lambda q, r=7: q")  # noqa: S307 - a fresh function object, no other reference
    assert bfc.function_args_defaults(f) == (["q", "r"], [7])
    gone = weakref.ref(f)
    assert f in bfc._functions  # noqa: SLF001
    del f
    gc.collect()
    assert gone() is None


# Parameter names: not a keyword ("or" made `def f(or)` a SyntaxError) and not one of the
# names the test adds (*extra, only=0, **rest).
NAMES = st.lists(
    st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True).filter(
        lambda n: not keyword.iskeyword(n) and n not in {"extra", "only", "rest"}
    ),
    min_size=0,
    max_size=5,
    unique=True,
)


@settings(max_examples=60, deadline=None)
@given(
    names=NAMES,
    defaults=st.integers(min_value=0, max_value=5),
    star=st.booleans(),
    kwonly=st.booleans(),
    kwargs=st.booleans(),
)
def test_any_signature_gives_beams_answer_as_a_function_and_as_a_method(
    names, defaults, star, kwonly, kwargs
):
    """Generated signatures (positional names, some with defaults, *args, keyword-only and
    **kwargs), as a plain function and as a method bound to an instance."""
    params = [n if i < len(names) - defaults else f"{n}={i}" for i, n in enumerate(names)]
    params += ["*extra"] if star else []
    params += ([] if star else ["*"]) + ["only=0"] if kwonly else []
    params += ["**rest"] if kwargs else []
    namespace: dict = {}
    exec(f"def f({', '.join(params)}): pass", namespace)  # noqa: S102 - generated test signatures
    exec(f"def m(self, {', '.join(params)}): pass", namespace)  # noqa: S102
    function = namespace["f"]
    method = type("Holder", (), {"m": namespace["m"]})().m
    for f in (function, method):
        assert bfc.function_args_defaults(f) == beams_own(f)
        assert bfc.function_args_defaults(f) == beams_own(f)  # remembered: still the same


def test_beam_still_finds_a_dofns_state_and_timers(monkeypatch):
    monkeypatch.setattr(core, "get_function_args_defaults", beams_own)
    expected = userstate.get_dofn_specs(CountingDoFn())
    bfc.install()
    assert userstate.get_dofn_specs(CountingDoFn()) == expected
    assert userstate.is_stateful_dofn(CountingDoFn())
    states, timers = expected
    assert {s.name for s in states} == {"count"} and {t.name for t in timers} == {"ts-flush"}


def test_a_stateful_pipeline_runs_as_before(installed):
    """A real DirectRunner pipeline (in memory, as small local runs use) with state, a timer and
    the timestamp and key parameters: per key the counts 0..n-1, then the timer's -n."""
    data = [("a", 1), ("b", 2), ("a", 3), ("a", 4), ("b", 5)]
    with beam.Pipeline(options=PipelineOptions(in_memory_beam_args())) as p:
        out = p | beam.Create(data) | beam.ParDo(CountingDoFn())
        assert_that(
            out, equal_to([("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("a", -3), ("b", -2)])
        )


def test_pickling_no_longer_flushes_every_loggers_cache(installed, monkeypatch):
    """Beam's dill pickler switches dill's trace off after every dumps and loads; with trace()
    that sets the level only when it changes, no logger cache is cleared (Beam's own dill
    switch cleared them all on each of the 40 calls below)."""
    manager = logging.Logger.manager
    flushes = []
    original = manager._clear_cache
    monkeypatch.setattr(manager, "_clear_cache", lambda: (flushes.append(1), original()))
    dill_log = logging.getLogger("dill")
    bfc.trace(False)
    flushes.clear()
    payload = {"fn": plain, "dofn": CountingDoFn()}
    for _ in range(20):
        assert dill_pickler.loads(dill_pickler.dumps(payload))["fn"](9, c=0) == 9
    assert flushes == []
    assert dill_log.level == logging.WARN
    bfc.trace(True)
    assert dill_log.level == logging.INFO and len(flushes) == 1
    bfc.trace(False)
    assert dill_log.level == logging.WARN and len(flushes) == 2


def test_beams_own_switch_flushes_on_every_pickle(monkeypatch):
    """The cost the test above removes, measured on Beam's own code: the control."""
    monkeypatch.setattr(dill.dill, "_trace", bfc._dills_own_trace)  # noqa: SLF001
    manager = logging.Logger.manager
    flushes = []
    original = manager._clear_cache
    monkeypatch.setattr(manager, "_clear_cache", lambda: (flushes.append(1), original()))
    for _ in range(20):
        dill_pickler.loads(dill_pickler.dumps(plain))
    assert len(flushes) == 40


def test_a_local_run_installs_it(monkeypatch):
    """pipeline/local/run.py installs both in the process that runs the in-memory DirectRunner
    (run_pipeline calls install_local_fixes before building the pipeline)."""
    from tensorflow_data_validation.utils import quantiles_util
    from tfx.orchestration.portable import cache_utils
    from tfx.utils import dependency_utils

    from pipeline.local import run

    # The other fixes it installs are put back after the test, as they were.
    for module, name in (
        (cache_utils, "_get_outputs_of_execution"),
        (dependency_utils, "make_beam_dependency_flags"),
        (quantiles_util, "generate_equi_width_histogram"),
    ):
        monkeypatch.setattr(module, name, getattr(module, name))
    monkeypatch.setattr(core, "get_function_args_defaults", beams_own)
    monkeypatch.setattr(dill.dill, "_trace", bfc._dills_own_trace)  # noqa: SLF001
    run.install_local_fixes()
    assert core.get_function_args_defaults is bfc.function_args_defaults
    assert dill.dill._trace is bfc.trace
