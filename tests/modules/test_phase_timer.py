"""The Trainer's seconds by phase (modules/trainer.py's PhaseTimer), logged at the end of run_fn:
each interval belongs to the phase that ended it."""

from __future__ import annotations

from modules.trainer import PhaseTimer


def test_each_interval_goes_to_the_phase_that_ended_it():
    ticks = iter([10.0, 11.5, 11.5, 14.25])
    timer = PhaseTimer(clock=lambda: next(ticks))
    timer.done("read splits")
    timer.done("fit linear")
    timer.done("train candidate")
    assert timer.seconds == {"read splits": 1.5, "fit linear": 0.0, "train candidate": 2.75}
    assert timer.summary() == "read splits 1.5 s, fit linear 0.0 s, train candidate 2.8 s"
