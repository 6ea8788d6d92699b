"""What an erasure step is, and the points at which a fault can be injected into one.

A step is a named object with :meth:`Step.run` and :meth:`Step.describe`, listed in order
by :mod:`disgorge.erasure.steps`. It is an object rather than a method the runner finds by
name so that tests and benchmarks reach it through a documented hook
(:func:`disgorge.erasure.steps.inject`) instead of patching private methods: crash-safety
is the engine's main promise, and the tests that SIGKILL a run inside each step are what
keep it, so their way in must survive refactoring.

The runner fires the points every step has (:data:`RUNNER_POINTS`); a step fires its own
inner points with :func:`fire` where a crash matters most (inside its transaction, between
committing its result and dropping what it no longer needs). Firing a point no fault is
armed at costs one dictionary lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..catalog.models import ErasureRequest
from ..context import Context

__all__ = ["RUNNER_POINTS", "AwaitingRecipients", "Execution", "Fault", "Step", "fire", "step"]

#: a fault: called at its point; it may raise (the step fails), kill the process (a crash),
#: or only observe (a benchmark's timer)
Fault = Callable[[], object]

#: the points the runner fires for every step:
#: ``before`` (the step is about to run; a fault that raises fails the step as its own error
#: would), ``after`` (the step's work is done, its journal row not yet marked: a crash here
#: runs the step again on resume), ``marked`` (its journal row is committed as done)
RUNNER_POINTS = ("before", "after", "marked")


@dataclass(frozen=True)
class Execution:
    """What the steps of one run read: the workspace's context and the run's settings."""

    ctx: Context
    #: seconds ``await_recipients`` keeps delivering to and polling recipients before the
    #: request rests in ``awaiting_recipients``
    wait: float = 30.0
    #: the deadline given to recipients, in days from now
    deadline_days: float = 30.0


StepFunction = Callable[[Execution, ErasureRequest], dict[str, Any]]


@dataclass(frozen=True)
class Step:
    """One idempotent step of an erasure: its name in the journal, what it does, and the
    inner points it fires beyond :data:`RUNNER_POINTS`."""

    name: str
    function: StepFunction
    inner_points: tuple[str, ...] = ()

    def run(self, execution: Execution, request: ErasureRequest) -> dict[str, Any]:
        """Do the step for ``request``; the summary returned goes into the journal."""
        return self.function(execution, request)

    def describe(self) -> str:
        """What the step does: the first paragraph of its function's docstring."""
        doc = (self.function.__doc__ or "").strip()
        return " ".join(doc.split("\n\n")[0].split())

    @property
    def points(self) -> tuple[str, ...]:
        """Every point a fault can be injected at in this step."""
        return RUNNER_POINTS + self.inner_points


def step(name: str, *, points: tuple[str, ...] = ()) -> Callable[[StepFunction], Step]:
    """Make a step of a function ``(execution, request) -> summary``; ``points`` are the
    inner points it fires with :func:`fire`."""

    def make(function: StepFunction) -> Step:
        return Step(name, function, points)

    return make


#: (step, point) -> the faults armed there (see :func:`disgorge.erasure.steps.inject`)
FAULTS: dict[tuple[str, str], list[Fault]] = {}


def fire(step_name: str, point: str) -> None:
    """Run the faults armed at this point of this step, if any."""
    for fault in FAULTS.get((step_name, point), ()):
        fault()


class AwaitingRecipients(Exception):
    """Raised by the ``await_recipients`` step when some recipient has not answered yet:
    the request rests in ``awaiting_recipients`` (not failed) until resumed or acked."""
