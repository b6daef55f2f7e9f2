"""Two fixed costs Beam 2.60 pays per transform and per pickle, whatever the data's size.

On a small span most of a Beam component's seconds are not rows: they are Beam building,
pickling and starting its transforms. A cProfile of Transform alone on the 400-row test sample
(docs/performance.md, "Beam's fixed costs") found two costs that buy nothing:

1. **Signature introspection, again and again.** `userstate.get_dofn_specs(dofn)` wraps every
   method of a DoFn (about 30, most inherited from `DoFn`) in a `MethodWrapper`, which calls
   `core.get_function_args_defaults`, i.e. `inspect.signature`. Beam does this when a ParDo is
   built, when the pipeline is turned into its runner proto, and again for every bundle
   processor: about 98,000 signatures for that one Transform, 8 of its 52 profiled seconds.
   A function's signature is fixed by its code, so `function_args_defaults` remembers Beam's
   answer per function (a bound method by its function: the bound `self` is dropped, whichever
   it is). Only plain Python functions and methods are remembered, weakly (a lambda's entry goes
   with the lambda); any other callable goes to Beam's code as before. Each call returns fresh
   lists, as Beam's does. (A function whose `__defaults__` are reassigned after Beam first
   inspected it would keep its old defaults here; nothing in Beam, TFX or this project does so.)
2. **A logging cache flush per pickle.** Beam's dill pickler calls `dill._trace(False)` after
   every `dumps` and `loads` (2,255 and 3,010 in that Transform); dill 0.3.1.1's `_trace` calls
   `Logger.setLevel`, and every `setLevel` clears the level cache of every logger in the process
   (a few hundred once TensorFlow and TFX are imported). `trace` sets the same level only when
   it is not already the level.

`install()` swaps both in (idempotent). The local run calls it in the orchestrator, where the
in-memory DirectRunner runs every transform and where the multi-processing mode builds them
(pipeline/local/run.py), and the warm worker pool calls it before forking Beam's workers
(pipeline/local/warm_workers.py). The Kubeflow runner's component containers do not.
"""

from __future__ import annotations

import logging
import types
import weakref
from collections.abc import Callable
from typing import Any

import dill
from apache_beam.internal import dill_pickler  # noqa: F401 - makes `dill.dill` the module Beam calls
from apache_beam.transforms import core

ArgsDefaults = tuple[list[str], list[Any]]

_beam_args_defaults: Callable[[Any], ArgsDefaults] = core.get_function_args_defaults
# Beam's answers, by function object: one table for functions, one for methods (by __func__),
# since a bound method's signature drops the first parameter.
_functions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_methods: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_dills_own_trace: Callable[[bool], None] = dill.dill._trace
_dill_log = logging.getLogger("dill")


def function_args_defaults(f: Any) -> ArgsDefaults:
    """Beam's `core.get_function_args_defaults(f)`, remembered per Python function."""
    if type(f) is types.MethodType and type(f.__func__) is types.FunctionType:
        table, key = _methods, f.__func__
    elif type(f) is types.FunctionType:
        table, key = _functions, f
    else:
        return _beam_args_defaults(f)
    known = table.get(key)
    if known is None:
        args, defaults = _beam_args_defaults(f)
        known = table[key] = (tuple(args), tuple(defaults))
    return list(known[0]), list(known[1])


def trace(boolean: bool) -> None:
    """dill's `_trace`: the "dill" logger at INFO to trace, WARN not to; set only on a change."""
    level = logging.INFO if boolean else logging.WARN
    if _dill_log.level != level:
        _dill_log.setLevel(level)


def install() -> None:
    """Route Beam's introspection and dill's trace switch through this module (idempotent)."""
    core.get_function_args_defaults = function_args_defaults
    dill.dill._trace = trace
