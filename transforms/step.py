"""The one stage interface every backend's steps implement, and the one error-policy helper.

A backend (synthetic scenes, real models, ...) is an ordered list of steps: a
:class:`SourceStep` that turns a unit's item (a sample index, an input file) into a candidate,
then :class:`Step` s — plan, ground, edit, annotate, score — that each take and return
:class:`~mcie.records.EditSample` s. Loading is separated from calling (Beam
``ModelHandler`` style): :meth:`Step.setup` loads models once per worker; :meth:`Step.process`
handles one sample; :meth:`Step.process_batch` a list (model steps override it to batch).

Error policy (:func:`run_isolated`): a step that raises fails only the sample that raised, with
the step's reason code and the error text; the rest of the unit goes on. ``policy="raise"``
re-raises instead (for debugging and tests).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

from mcie.reasons import Reason, Status
from mcie.records import EditSample

#: the stage names a step may carry, in pipeline order; the stage-at-a-time commands cut a
#: backend's step list at these boundaries (generate = source..edit, annotate, score)
STAGES = ("source", "plan", "ground", "edit", "annotate", "score")
ERROR_POLICIES = ("continue", "raise")


def run_isolated(
    samples: list[EditSample], fn: Callable[[list[EditSample]], Any], reason: Reason, policy: str
) -> list[EditSample]:
    """``fn`` over the not-yet-failed ``samples`` (in place); when it raises, rerun them one by
    one so only the samples that raise fail (with ``reason`` and the error text).
    ``policy == "raise"`` re-raises instead. Returns ``samples``."""
    live = [s for s in samples if s.status != Status.FAILED]
    if not live:
        return samples
    try:
        fn(live)
    except Exception as exc:  # the policy decides; nothing is dropped silently
        if policy == "raise":
            raise
        if len(live) == 1:  # no neighbours to spare: no second try
            live[0].fail(reason, exc)
            return samples
        for s in live:
            try:
                fn([s])
            except Exception as exc:
                s.fail(reason, exc)
    return samples


class Step(abc.ABC):
    """One step of a backend: takes candidates, sets fields on them in place, returns them.

    ``stage`` is one of :data:`STAGES`; ``reason`` is the code a sample gets when the step
    raises on it."""

    stage: str = "score"
    reason: Reason = Reason.SCORE_ERROR

    def setup(self) -> None:  # noqa: B027 - a step without models has nothing to load
        """Load heavy state (models) once per worker, before the first sample."""

    @abc.abstractmethod
    def process(self, sample: EditSample) -> EditSample:
        """Apply the step to one sample (in place) and return it."""

    def process_batch(self, samples: list[EditSample]) -> list[EditSample]:
        """Apply the step to a list of samples; model steps override this to run batches."""
        return [self.process(s) for s in samples]

    def run(self, samples: list[EditSample], policy: str) -> list[EditSample]:
        """:meth:`process_batch` under the error policy (see :func:`run_isolated`)."""
        return run_isolated(samples, self.process_batch, self.reason, policy)


class SourceStep(abc.ABC):
    """The first step: one unit item → one candidate and its truth row (or None)."""

    stage = "source"
    reason: Reason = Reason.GENERATE_ERROR

    def setup(self) -> None:  # noqa: B027 - most sources load nothing
        """Load heavy state once per worker."""

    @abc.abstractmethod
    def make(self, item: Any) -> tuple[EditSample, dict[str, Any] | None]:
        """The candidate for ``item`` and its truth row (None where there is no truth)."""

    @abc.abstractmethod
    def failed(self, item: Any, exc: BaseException) -> EditSample:
        """The index row of an item whose :meth:`make` raised (keyed by where it came from)."""

    def run(self, item: Any, policy: str) -> tuple[EditSample, dict[str, Any] | None]:
        """:meth:`make` under the error policy: an exception gives a failed sample, no truth."""
        try:
            return self.make(item)
        except Exception as exc:
            if policy == "raise":
                raise
            sample = self.failed(item, exc)
            sample.fail(self.reason, exc)
            return sample, None
