"""OpenTelemetry traces and metrics for units of work: call `uow.otel.instrument()` once.

```python
import uow.otel

uow.otel.instrument()  # the global tracer and meter providers, or pass your own
```

Needs the `otel` extra (`pip install 'uow[otel]'`), which brings `opentelemetry-api` only: the SDK,
its exporters and its configuration are the application's. Until `instrument()` is called (and after
`uninstrument()`), units pay nothing for it.

Spans (all `INTERNAL`):

- `uow.unit`: one per block of a unit, from entering it to the end of its exit (the session
  closed). It is the current span inside the block, so spans started there are its children.
- `uow.run`: one per `run()` or `attempts()` loop, with a child `uow.attempt` per attempt (each
  attempt is a block of the unit) and a `uow.retry` event per retry.
- `uow.commit`: each commit of the root transaction, from `unit.commit()` (or a commit through
  `unit.session`) until its hooks and event handlers ran; a child of the block's span.
- `uow.savepoint`: each savepoint, until it is released or rolled back.

Their attributes: `db.system.name` (from the dialect), `uow.outcome` (`committed`, `rolled_back`,
`failed` or `unknown`), `uow.attempt` and `uow.retry.reason` (the SQLSTATE, driver error number,
SQLite result code name or `disconnect`), `uow.hook.failures`, `uow.commits`, `error.type` and
`db.response.status_code`. Exceptions are recorded as span events. Values never are: a database
error is recorded by its driver class and code, without its message (which may quote the values),
the SQL or its parameters, unless `record_error_details=True`.

Metrics: `uow.unit.duration`, `db.client.connection.use_time`, `uow.transactions`,
`uow.attempts`, `uow.retries` and `uow.hook.failures`; see the documentation's Observability page.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable, Sequence
from contextvars import Token
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import exc as sa_exc

from uow import _observe
from uow._classify import reason, status_code
from uow._observe import COMMITTED, FAILED, ROLLED_BACK, UNKNOWN, BlockWatch, Observer, RunWatch

try:
    from opentelemetry import context, metrics, trace
    from opentelemetry.context import Context
    from opentelemetry.metrics import Counter, Histogram
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as _missing:  # pragma: no cover - the extra is installed wherever the tests run
    raise ImportError(
        "uow.otel needs the OpenTelemetry API: pip install 'uow[otel]' (or opentelemetry-api)"
    ) from _missing

if TYPE_CHECKING:
    from sqlalchemy import Connection
    from sqlalchemy.engine import URL
    from sqlalchemy.orm import Session

    from uow._rules import Scope

__all__ = ["instrument", "is_instrumented", "uninstrument"]

F = TypeVar("F", bound=Callable[..., Any])

# Seconds; the units of work of a web request are mostly sub-millisecond to a second.
_BUCKETS: Sequence[float] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

SYSTEM = "db.system.name"
OUTCOME = "uow.outcome"
ERROR_TYPE = "error.type"


def instrument(
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    record_error_details: bool = False,
) -> None:
    """Trace every unit of work from now on, and record its metrics.

    Calling it again replaces the providers and options of the previous call.

    Args:
        tracer_provider: Makes the spans; the global one (`opentelemetry.trace`) by default.
        meter_provider: Makes the instruments; the global one (`opentelemetry.metrics`) by default.
        record_error_details: Record database errors with their full message and traceback chain,
            which may quote the statement's SQL and its bound values. Off by default: a database
            error is recorded by its driver class and code only.
    """
    from uow import __version__

    tracer = trace.get_tracer("uow", __version__, tracer_provider)
    meter = metrics.get_meter("uow", __version__, meter_provider)
    _observe.observer = OpenTelemetry(tracer, meter, record_error_details=record_error_details)


def uninstrument() -> None:
    """Stop tracing units; units started before go on reporting until they end."""
    _observe.observer = None


def is_instrumented() -> bool:
    """Whether `instrument()` was called (and `uninstrument()` not since)."""
    return isinstance(_observe.observer, OpenTelemetry)


def _guarded(method: F) -> F:
    """Never let a failure of the instrumentation change what a unit does: log it instead."""

    @functools.wraps(method)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except Exception:
            _observe.logger.warning(
                "uow.otel: %s failed",
                method.__qualname__,
                exc_info=True,
                extra={"uow_event": "instrumentation_failed"},
            )
            return None

    return guarded  # type: ignore[return-value]  # same signature


class OpenTelemetry(Observer):
    """The observer `instrument()` installs: a tracer, the instruments, and what errors may show."""

    def __init__(self, tracer: trace.Tracer, meter: metrics.Meter, *, record_error_details: bool) -> None:
        self.tracer = tracer
        self.details = record_error_details
        self.unit_duration: Histogram = meter.create_histogram(
            "uow.unit.duration",
            unit="s",
            description="Duration of a unit of work's block, from entering it until its session closed.",
            explicit_bucket_boundaries_advisory=_BUCKETS,
        )
        self.use_time: Histogram = meter.create_histogram(
            "db.client.connection.use_time",
            unit="s",
            description="The time between borrowing a connection and returning it to the pool.",
            explicit_bucket_boundaries_advisory=_BUCKETS,
        )
        self.transactions: Counter = meter.create_counter(
            "uow.transactions",
            unit="{transaction}",
            description="Root transactions of units that ended, by outcome.",
        )
        self.attempts: Counter = meter.create_counter(
            "uow.attempts",
            unit="{attempt}",
            description="Attempts made by run() and attempts(), by outcome.",
        )
        self.retries: Counter = meter.create_counter(
            "uow.retries",
            unit="{retry}",
            description="Attempts run again after a transient failure, by reason.",
        )
        self.hook_failures: Counter = meter.create_counter(
            "uow.hook.failures",
            unit="{failure}",
            description="Hooks and domain event handlers that raised, by stage.",
        )

    @_guarded
    def block(self, session: Session, *, attempt: int | None, flavour: str, log: bool) -> BlockWatch:
        return _Block(self, session, attempt=attempt, flavour=flavour, log=log)

    @_guarded
    def run(self, *, flavour: str, log: bool) -> RunWatch:
        return _Run(self, flavour=flavour, log=log)

    def record(self, span: trace.Span, error: BaseException, *, escaped: bool) -> None:
        """Record `error` on `span` as an exception event, and make it the span's error."""
        span.set_attribute(ERROR_TYPE, error_type(error))
        if isinstance(error, sa_exc.DBAPIError):
            code = status_code(error)
            if code is not None:
                span.set_attribute("db.response.status_code", code)
        if self.details:
            span.record_exception(error, escaped=escaped)
        else:
            message = describe(error)
            span.record_exception(
                error,
                attributes={
                    "exception.type": error_type(error),
                    "exception.message": message,
                    "exception.stacktrace": stack(error, message),
                },
                escaped=escaped,
            )


def error_type(error: BaseException) -> str:
    """The fully qualified class name of `error` (uow's own errors by their public name)."""
    cls = type(error)
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    if module.startswith("uow."):
        module = "uow"
    return f"{module}.{cls.__qualname__}"


def describe(error: BaseException) -> str:
    """A message for `error` that quotes no value: a statement's error names the driver's error and code."""
    if not isinstance(error, sa_exc.StatementError):
        return str(error)
    orig = error.orig
    described = error_type(orig) if orig is not None else type(error).__name__
    code = status_code(error) if isinstance(error, sa_exc.DBAPIError) else None
    if code is not None:
        described += f" [{code}]"
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        described += " (connection invalidated)"
    return described + " (message, SQL and parameters withheld)"


def stack(error: BaseException, message: str) -> str:
    """The traceback of `error` alone (no chained errors), ending in `message` instead of its own."""
    frames = traceback.format_list(traceback.extract_tb(error.__traceback__))
    return "".join(["Traceback (most recent call last):\n", *frames, f"{error_type(error)}: {message}\n"])


_pools: dict[URL, str] = {}


def pool_name(connection: Connection) -> str:
    """`db.client.connection.pool.name` as the conventions say when a pool has no name of its own:
    `host:port/database` (never the user or the password)."""
    url = connection.engine.url
    name = _pools.get(url)
    if name is None:
        if url.host:
            name = url.host + (f":{url.port}" if url.port else "") + f"/{url.database or ''}"
        else:
            name = url.database or f"{url.get_backend_name()}:memory"
        if len(_pools) < 256:
            _pools[url] = name
    return name


def _same(error: BaseException, recorded: BaseException) -> bool:
    """Whether `error` is, or translates, the statement error `recorded`."""
    if error is recorded or error.__cause__ is recorded:
        return True
    orig = getattr(error, "orig", None)
    return orig is not None and orig is getattr(recorded, "orig", None)


def _status(span: trace.Span, outcome: str) -> None:
    span.set_attribute(OUTCOME, outcome)
    if outcome in (FAILED, UNKNOWN):
        span.set_status(Status(StatusCode.ERROR, outcome))


class _Block(BlockWatch):
    """A block's `uow.unit` (or `uow.attempt`) span, its commits' and savepoints' spans, its metrics."""

    __slots__ = ("commit", "commit_hooks", "otel", "pool", "recorded", "savepoints", "span", "token")

    def __init__(
        self, otel: OpenTelemetry, session: Session, *, attempt: int | None, flavour: str, log: bool
    ) -> None:
        super().__init__(session, attempt=attempt, flavour=flavour, log=log)
        self.otel = otel
        attributes: dict[str, Any] = {"uow.flavour": flavour}
        if self.system is not None:
            attributes[SYSTEM] = self.system
        if attempt is not None:
            attributes["uow.attempt"] = attempt
        self.span = otel.tracer.start_span(
            "uow.unit" if attempt is None else "uow.attempt", kind=SpanKind.INTERNAL, attributes=attributes
        )
        self.token: Token[Context] = context.attach(trace.set_span_in_context(self.span))
        self.commit: trace.Span | None = None
        self.commit_hooks = 0
        self.savepoints: dict[Scope, trace.Span] = {}
        self.pool: str | None = None
        self.recorded: tuple[BaseException, trace.Span] | None = None
        """The last statement error recorded, and on which span."""

    def _child(self, name: str, parent: trace.Span) -> trace.Span:
        attributes = {SYSTEM: self.system} if self.system is not None else None
        return self.otel.tracer.start_span(
            name, context=trace.set_span_in_context(parent), kind=SpanKind.INTERNAL, attributes=attributes
        )

    def _record(self, span: trace.Span, error: BaseException) -> None:
        """Record `error`, raised out of what `span` covers, unless it translates the one recorded there."""
        recorded = self.recorded
        if recorded is not None and recorded[1] is span and _same(error, recorded[0]):
            span.set_attribute(ERROR_TYPE, error_type(error))
        else:
            self.otel.record(span, error, escaped=True)

    def _innermost(self) -> trace.Span:
        if self.savepoints:
            return next(reversed(self.savepoints.values()))
        return self.commit or self.span

    @_guarded
    def transaction_began(self, connection: Connection) -> None:
        known = self.system
        super().transaction_began(connection)
        if self.system != known and self.system is not None:
            for span in (self.span, self.commit, *self.savepoints.values()):
                if span is not None:
                    span.set_attribute(SYSTEM, self.system)
        self.pool = pool_name(connection)

    @_guarded
    def commit_started(self) -> None:
        super().commit_started()
        if self.commit is None:
            self.commit = self._child("uow.commit", self.span)
            self.commit_hooks = self.hook_failures

    @_guarded
    def commit_failed(self, error: BaseException, *, unknown: bool) -> None:
        super().commit_failed(error, unknown=unknown)
        if self.commit is not None:
            self._record(self.commit, error)

    @_guarded
    def transaction_ended(self, *, committed: bool, unknown: bool, wrote: bool) -> tuple[str, float | None]:
        outcome, held = super().transaction_ended(committed=committed, unknown=unknown, wrote=wrote)
        otel = self.otel
        system = {SYSTEM: self.system} if self.system is not None else {}
        otel.transactions.add(1, {**system, OUTCOME: outcome})
        if held is not None and self.pool is not None:
            otel.use_time.record(held, {**system, "db.client.connection.pool.name": self.pool})
        commit = self.commit
        if commit is not None:
            self.commit = None
            _status(commit, outcome)
            commit.set_attribute("uow.hook.failures", self.hook_failures - self.commit_hooks)
            commit.end()
        return outcome, held

    @_guarded
    def savepoint_started(self, scope: Scope) -> None:
        super().savepoint_started(scope)
        parent = self.savepoints.get(scope.parent) if scope.parent is not None else None
        self.savepoints[scope] = self._child("uow.savepoint", parent or self.span)

    @_guarded
    def savepoint_ended(self, scope: Scope, *, committed: bool) -> str:
        outcome = super().savepoint_ended(scope, committed=committed)
        span = self.savepoints.pop(scope, None)
        if span is not None:
            _status(span, outcome)
            span.end()
        return outcome

    @_guarded
    def statement_failed(self, error: BaseException) -> None:
        span = self._innermost()
        self.otel.record(span, error, escaped=False)
        self.recorded = (error, span)

    @_guarded
    def hook_failed(self, stage: str, *, robust: bool) -> None:
        super().hook_failed(stage, robust=robust)
        self.otel.hook_failures.add(1, {"uow.hook.stage": stage, "uow.hook.robust": robust})

    @_guarded
    def exited(self, error: BaseException | None, discarded: str | None) -> tuple[str, float]:
        outcome, duration = super().exited(error, discarded)
        context.detach(self.token)
        for span in (*reversed(self.savepoints.values()), self.commit):
            if span is not None:  # left open by an interruption: ended with the block
                span.end()
        self.savepoints = {}
        self.commit = None
        span = self.span
        _status(span, outcome)
        span.set_attribute("uow.commits", self.commits)
        span.set_attribute("uow.hook.failures", self.hook_failures)
        attributes: dict[str, Any] = {OUTCOME: outcome}
        if self.system is not None:
            attributes[SYSTEM] = self.system
        if error is not None:
            self._record(span, error)
            attributes[ERROR_TYPE] = error_type(error)
        self.otel.unit_duration.record(duration, attributes)
        if not isinstance(self.run, _Run):  # an attempt's loop ends its span, knowing if it is retried
            span.end()
        return outcome, duration

    def finish(self, transient: str | None) -> None:
        """End the span of an attempt; `transient` is the reason it is retried, if it is."""
        if transient is not None:
            self.span.set_attribute("uow.retry.reason", transient)
        self.span.end()


class _Run(RunWatch):
    """A loop's `uow.run` span, current while each attempt runs, and the attempts' metrics."""

    __slots__ = ("otel", "span", "token")

    def __init__(self, otel: OpenTelemetry, *, flavour: str, log: bool) -> None:
        super().__init__(flavour=flavour, log=log)
        self.otel = otel
        self.span = otel.tracer.start_span(
            "uow.run", kind=SpanKind.INTERNAL, attributes={"uow.flavour": flavour}
        )
        self.token: Token[Context] | None = None

    @_guarded
    def attempt_entering(self, number: int) -> None:
        super().attempt_entering(number)
        self.token = context.attach(trace.set_span_in_context(self.span))

    @_guarded
    def attempt_ended(self, error: BaseException | None, *, retried: bool) -> None:
        super().attempt_ended(error, retried=retried)
        block = self.block
        if self.token is not None:
            context.detach(self.token)
            self.token = None
        outcome = FAILED if error is not None else COMMITTED
        if isinstance(block, _Block):
            outcome = block.outcome
            block.finish(reason(error) if retried and error is not None else None)
            attributes: dict[str, Any] = {OUTCOME: outcome}
            if block.system is not None:
                attributes[SYSTEM] = block.system
                self.span.set_attribute(SYSTEM, block.system)
            self.otel.attempts.add(1, attributes)
        if not retried:
            self._end(error, outcome)

    @_guarded
    def retrying(self, number: int, failure: BaseException | None, delay: float) -> None:
        super().retrying(number, failure, delay)
        why = reason(failure) if failure is not None else "unknown"
        self.span.add_event(
            "uow.retry", {"uow.attempt": number, "uow.retry.reason": why, "uow.retry.delay": delay}
        )
        attributes: dict[str, Any] = {"uow.retry.reason": why}
        if failure is not None:
            attributes[ERROR_TYPE] = error_type(failure)
        if self.block is not None and self.block.system is not None:
            attributes[SYSTEM] = self.block.system
        self.otel.retries.add(1, attributes)

    @_guarded
    def exhausted(self, error: BaseException) -> None:
        super().exhausted(error)
        self._end(error, UNKNOWN if self.block is not None and self.block.outcome == UNKNOWN else FAILED)

    def _end(self, error: BaseException | None, outcome: str) -> None:
        span = self.span
        if not span.is_recording():
            return
        span.set_attribute("uow.attempts", self.attempts)
        if error is not None:
            if outcome not in (FAILED, UNKNOWN):
                outcome = FAILED
            self.otel.record(span, error, escaped=True)
        elif outcome not in (COMMITTED, ROLLED_BACK):
            outcome = COMMITTED
        _status(span, outcome)
        span.end()
