"""Observability: the spans and metrics of `uow.otel`, and the lifecycle lines of the `uow` logger.

Spans and metrics are read back through the OpenTelemetry SDK's in-memory span exporter and metric
reader; nothing else is installed globally.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import uow
import uow.otel
from tests.conftest import Backend
from tests.drivers import Flavour
from tests.models import User
from uow.testing import fail_commit, fail_statement

SYSTEMS = {"sqlite": "sqlite", "postgresql": "postgresql", "mariadb": "mariadb"}
"""`db.system.name` of each backend kind (MariaDB is reached through the MySQL dialect)."""

DEADLOCK_REASONS = {"sqlite": "SQLITE_BUSY", "postgresql": "40P01", "mariadb": "1213"}
"""The code each backend gives the injected deadlock, as `uow.retry.reason` names it."""

SYNC = pytest.mark.parametrize("flavour", ["sync"], indirect=True)


class Boom(Exception):
    pass


class Telemetry:
    """The SDK's in-memory exporter and reader behind `uow.otel.instrument()`."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider(shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)

    def instrument(self, **options: Any) -> None:
        uow.otel.instrument(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **options
        )

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [span for span in self.exporter.get_finished_spans() if name is None or span.name == name]

    def span(self, name: str) -> ReadableSpan:
        (span,) = self.spans(name)
        return span

    def points(self, metric: str) -> list[tuple[dict[str, Any], Any]]:
        """Each data point of `metric`: its attributes, and its value (a counter) or count (a histogram)."""
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for recorded in scope.metrics:
                    if recorded.name == metric:
                        for point in recorded.data.data_points:
                            value = getattr(point, "value", None)
                            found.append(
                                (dict(point.attributes or {}), point.count if value is None else value)
                            )
        return found

    def total(self, metric: str, **attributes: Any) -> Any:
        """The sum of the points of `metric` whose attributes include `attributes` (dots as `__`)."""
        wanted = {key.replace("__", "."): value for key, value in attributes.items()}
        return sum(
            value for found, value in self.points(metric) if all(found.get(k) == v for k, v in wanted.items())
        )


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    made = Telemetry()
    made.instrument()
    yield made
    uow.otel.uninstrument()


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def events(span: ReadableSpan, name: str) -> list[dict[str, Any]]:
    return [dict(event.attributes or {}) for event in span.events if event.name == name]


def everything_recorded(telemetry: Telemetry) -> str:
    """Every attribute value of every span and event, as one text to search."""
    texts = []
    for span in telemetry.spans():
        texts.extend(str(value) for value in (span.attributes or {}).values())
        for event in span.events:
            texts.extend(str(value) for value in (event.attributes or {}).values())
    return "\n".join(texts)


def run_with_retries(flavour: Flavour, user_id: str) -> Any:
    """Run a unit that inserts a user and commits, with retries that never wait."""
    retry = uow.Retry(attempts=3, sleep=lambda _: None, async_sleep=_no_pause)
    factory: Any = flavour.session_factory
    if flavour.is_async:

        async def work_async(unit: uow.AsyncUnitOfWork) -> None:
            await unit.repository(User).add(User(id=user_id, name="retried"))
            await unit.commit()

        return flavour.run(uow.AsyncUnitOfWork(factory).run(work_async, retry=retry))

    def work(unit: uow.UnitOfWork) -> None:
        unit.repository(User).add(User(id=user_id, name="retried"))
        unit.commit()

    return uow.UnitOfWork(factory).run(work, retry=retry)


async def _no_pause(seconds: float) -> None:
    return None


# -- traces -----------------------------------------------------------------------------------------


def test_a_committed_unit_has_a_span_with_a_commit_span_inside(
    flavour: Flavour, backend: Backend, telemetry: Telemetry
) -> None:
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.commit()

    block, commit = telemetry.span("uow.unit"), telemetry.span("uow.commit")
    assert parent_of(commit) == span_id(block)
    assert block.attributes is not None
    assert dict(block.attributes) == {
        "uow.flavour": flavour.name,
        "db.system.name": SYSTEMS[backend.kind],
        "uow.outcome": "committed",
        "uow.commits": 1,
        "uow.hook.failures": 0,
    }
    assert commit.attributes is not None
    assert commit.attributes["uow.outcome"] == "committed"
    assert commit.attributes["db.system.name"] == SYSTEMS[backend.kind]
    assert block.status.status_code is StatusCode.UNSET
    assert backend.users() == [("1", "ann")]


def test_a_rolled_back_unit_says_so_and_has_no_commit_span(
    flavour: Flavour, backend: Backend, telemetry: Telemetry
) -> None:
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.flush()
        unit.rollback()

    block = telemetry.span("uow.unit")
    assert block.attributes is not None
    assert block.attributes["uow.outcome"] == "rolled_back"
    assert block.attributes["uow.commits"] == 0
    assert telemetry.spans("uow.commit") == []
    assert telemetry.total("uow.transactions", uow__outcome="rolled_back") == 1
    assert backend.users() == []


def test_the_span_of_a_unit_left_by_an_exception_records_it(
    flavour: Flavour, backend: Backend, telemetry: Telemetry
) -> None:
    with pytest.raises(Boom), flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        raise Boom("from the block")

    block = telemetry.span("uow.unit")
    assert block.attributes is not None
    assert block.attributes["uow.outcome"] == "failed"
    assert block.attributes["error.type"] == f"{__name__}.Boom"
    assert block.status.status_code is StatusCode.ERROR
    (exception,) = events(block, "exception")
    assert exception["exception.message"] == "from the block"


def test_spans_started_inside_the_block_are_children_of_the_units_span(
    flavour: Flavour, backend: Backend, telemetry: Telemetry
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("test")

    def child() -> None:
        with tracer.start_as_current_span("work"):
            pass

    async def child_async() -> None:
        child()

    with flavour.unit():
        flavour.run(child_async()) if flavour.is_async else child()

    assert parent_of(telemetry.span("work")) == span_id(telemetry.span("uow.unit"))


def test_savepoints_have_spans_of_their_own_inside_the_units_span(
    flavour: Flavour, backend: Backend, telemetry: Telemetry
) -> None:
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        with pytest.raises(Boom), unit.savepoint():
            unit.repository(User).add(User(id="2", name="ben"))
            unit.flush()
            raise Boom
        with unit.savepoint():
            unit.repository(User).add(User(id="3", name="cid"))
        unit.commit()

    block = telemetry.span("uow.unit")
    savepoints = telemetry.spans("uow.savepoint")
    assert [span.attributes["uow.outcome"] for span in savepoints if span.attributes] == [
        "rolled_back",
        "committed",
    ]
    assert {parent_of(span) for span in savepoints} == {span_id(block)}
    assert backend.users() == [("1", "ann"), ("3", "cid")]


def test_a_retried_unit_has_a_run_span_with_a_span_per_attempt_and_the_transient_reason(
    flavour: Flavour, backend: Backend, telemetry: Telemetry
) -> None:
    with fail_statement(flavour.engine, "deadlock", matching="INSERT") as fault:
        run_with_retries(flavour, "1")

    assert fault.fired == 1
    run = telemetry.span("uow.run")
    first, second = telemetry.spans("uow.attempt")
    assert {parent_of(first), parent_of(second)} == {span_id(run)}
    reason = DEADLOCK_REASONS[backend.kind]
    assert first.attributes is not None
    assert second.attributes is not None
    assert (first.attributes["uow.attempt"], first.attributes["uow.outcome"]) == (1, "failed")
    assert first.attributes["uow.retry.reason"] == reason
    assert first.attributes["error.type"] == "uow.TransientError"
    assert (second.attributes["uow.attempt"], second.attributes["uow.outcome"]) == (2, "committed")
    assert "uow.retry.reason" not in second.attributes
    assert run.attributes is not None
    assert (run.attributes["uow.attempts"], run.attributes["uow.outcome"]) == (2, "committed")
    (retry,) = events(run, "uow.retry")
    assert (retry["uow.attempt"], retry["uow.retry.reason"]) == (1, reason)
    assert backend.users() == [("1", "retried")]


def test_a_run_that_runs_out_of_attempts_ends_its_span_with_the_error(
    flavour: Flavour, backend: Backend, telemetry: Telemetry
) -> None:
    with (
        fail_statement(flavour.engine, "deadlock", matching="INSERT", times=3),
        pytest.raises(uow.TransientError),
    ):
        run_with_retries(flavour, "1")

    run = telemetry.span("uow.run")
    assert run.attributes is not None
    assert (run.attributes["uow.attempts"], run.attributes["uow.outcome"]) == (3, "failed")
    assert run.status.status_code is StatusCode.ERROR
    assert len(telemetry.spans("uow.attempt")) == 3
    assert len(events(run, "uow.retry")) == 2


def test_an_unknown_commit_outcome_is_the_outcome_of_the_commit_and_of_the_unit(
    flavour: Flavour, backend: Backend, telemetry: Telemetry
) -> None:
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        with fail_commit(flavour.engine, "disconnect"), pytest.raises(uow.CommitOutcomeUnknownError):
            unit.commit()

    commit, block = telemetry.span("uow.commit"), telemetry.span("uow.unit")
    assert commit.attributes is not None
    assert block.attributes is not None
    assert commit.attributes["uow.outcome"] == "unknown"
    assert commit.attributes["error.type"] == "uow.CommitOutcomeUnknownError"
    assert commit.status.status_code is StatusCode.ERROR
    assert events(commit, "exception") != []
    assert block.attributes["uow.outcome"] == "unknown"
    assert telemetry.total("uow.transactions", uow__outcome="unknown") == 1
    assert flavour.checked_out() == 0


def test_a_failed_commit_records_its_error_on_the_commit_span(
    flavour: Flavour, backend: Backend, telemetry: Telemetry
) -> None:
    backend.insert(User(id="1", name="ann"))
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="again"))
        with pytest.raises(uow.DuplicateKeyError):
            unit.commit()

    commit = telemetry.span("uow.commit")
    assert commit.attributes is not None
    assert commit.attributes["uow.outcome"] == "failed"
    assert commit.attributes["error.type"] == "uow.DuplicateKeyError"
    assert "db.response.status_code" in commit.attributes
    assert telemetry.total("uow.transactions", uow__outcome="failed") == 1


def test_a_failing_hook_is_counted_on_the_commit_the_unit_and_the_metric(
    flavour: Flavour, backend: Backend, telemetry: Telemetry
) -> None:
    def fail() -> None:
        raise Boom

    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.on_commit(flavour.hook(fail))
        unit.on_commit(flavour.hook(lambda: None))
        with pytest.raises(uow.HookError):
            unit.commit()

    commit, block = telemetry.span("uow.commit"), telemetry.span("uow.unit")
    assert commit.attributes is not None
    assert block.attributes is not None
    assert commit.attributes["uow.hook.failures"] == 1
    assert commit.attributes["uow.outcome"] == "committed"
    assert block.attributes["uow.hook.failures"] == 1
    assert block.attributes["uow.outcome"] == "committed"
    assert telemetry.points("uow.hook.failures") == [
        ({"uow.hook.stage": "after-commit", "uow.hook.robust": False}, 1)
    ]
    assert backend.users() == [("1", "ann")]


def test_database_errors_are_recorded_without_their_values_unless_asked(
    flavour: Flavour, backend: Backend, telemetry: Telemetry
) -> None:
    backend.insert(User(id="1", name="ann"))

    def duplicate() -> None:
        with flavour.unit() as unit:
            unit.repository(User).add(User(id="1", name="secret-value"))
            with pytest.raises(uow.DuplicateKeyError):
                unit.commit()

    duplicate()
    withheld = everything_recorded(telemetry)
    telemetry.exporter.clear()
    telemetry.instrument(record_error_details=True)
    duplicate()

    assert "secret-value" not in withheld
    assert "INSERT" not in withheld
    assert "withheld" in withheld
    assert "secret-value" in everything_recorded(telemetry)


# -- metrics ----------------------------------------------------------------------------------------


def test_a_committed_unit_records_its_duration_connection_use_and_outcome(
    flavour: Flavour, backend: Backend, telemetry: Telemetry
) -> None:
    for user_id in ("1", "2"):
        with flavour.unit() as unit:
            unit.repository(User).add(User(id=user_id, name="ann"))
            unit.commit()

    system = SYSTEMS[backend.kind]
    assert telemetry.points("uow.unit.duration") == [
        ({"uow.outcome": "committed", "db.system.name": system}, 2)
    ]
    (use,) = telemetry.points("db.client.connection.use_time")
    assert use[0]["db.system.name"] == system
    assert use[0]["db.client.connection.pool.name"]
    assert use[1] == 2
    assert telemetry.points("uow.transactions") == [
        ({"db.system.name": system, "uow.outcome": "committed"}, 2)
    ]


def test_a_retried_unit_counts_its_attempts_and_its_retries_by_reason(
    flavour: Flavour, backend: Backend, telemetry: Telemetry
) -> None:
    with fail_statement(flavour.engine, "deadlock", matching="INSERT"):
        run_with_retries(flavour, "1")

    system = SYSTEMS[backend.kind]
    assert telemetry.total("uow.attempts", uow__outcome="failed") == 1
    assert telemetry.total("uow.attempts", uow__outcome="committed") == 1
    assert telemetry.points("uow.retries") == [
        (
            {
                "uow.retry.reason": DEADLOCK_REASONS[backend.kind],
                "error.type": "uow.TransientError",
                "db.system.name": system,
            },
            1,
        )
    ]


def test_nothing_is_recorded_when_uninstrumented(flavour: Flavour, backend: Backend) -> None:
    telemetry = Telemetry()  # providers, but no instrument()
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.commit()
    with fail_statement(flavour.engine, "deadlock", matching="INSERT"):
        run_with_retries(flavour, "2")

    assert telemetry.spans() == []
    assert telemetry.reader.get_metrics_data() is None or telemetry.points("uow.unit.duration") == []
    assert not uow.otel.is_instrumented()


def test_uninstrument_stops_the_recording(flavour: Flavour, backend: Backend, telemetry: Telemetry) -> None:
    uow.otel.uninstrument()
    with flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.commit()

    assert telemetry.spans() == []


class BrokenTracerProvider(trace.TracerProvider):
    """Its tracers fail to start any span."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        tracer = trace.NoOpTracer()

        def start_span(*args: Any, **kwargs: Any) -> trace.Span:
            raise RuntimeError("broken tracer")

        tracer.start_span = start_span  # type: ignore[method-assign]
        return tracer


def test_a_failing_instrumentation_never_changes_what_a_unit_does(
    flavour: Flavour, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    uow.otel.instrument(tracer_provider=BrokenTracerProvider(), meter_provider=Telemetry().meter_provider)
    try:
        with caplog.at_level(logging.WARNING, logger="uow"), flavour.unit() as unit:
            unit.repository(User).add(User(id="1", name="ann"))
            unit.commit()
    finally:
        uow.otel.uninstrument()

    assert backend.users() == [("1", "ann")]
    assert [getattr(record, "uow_event", None) for record in caplog.records] == ["instrumentation_failed"]


def test_the_core_never_imports_opentelemetry() -> None:
    probe = (
        "import sys; from sqlalchemy import create_engine; from sqlalchemy.orm import sessionmaker; "
        "import uow; "
        "unit = uow.UnitOfWork(sessionmaker(create_engine('sqlite://'))); "
        "unit.__enter__(); unit.commit(); unit.__exit__(None, None, None); "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# -- logging ----------------------------------------------------------------------------------------


def lifecycle(records: list[logging.LogRecord]) -> list[tuple[str, Any]]:
    """The uow lines among `records`: each one's event and unit number."""
    return [
        (record.uow_event, getattr(record, "uow_unit_id", None))
        for record in records
        if hasattr(record, "uow_event")
    ]


def test_each_step_of_a_unit_is_a_debug_line_with_structured_fields(
    flavour: Flavour, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="uow"), flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="secret-value"))
        unit.commit()

    steps = lifecycle(caplog.records)
    assert [event for event, _ in steps] == ["enter", "begin", "commit", "exit"]
    assert len({unit_id for _, unit_id in steps}) == 1
    commit, exit_ = (
        record for record in caplog.records if getattr(record, "uow_event", "") in ("commit", "exit")
    )
    assert (commit.levelno, commit.uow_outcome, commit.uow_db_system) == (
        logging.DEBUG,
        "committed",
        SYSTEMS[backend.kind],
    )
    assert exit_.uow_outcome == "committed"
    assert exit_.uow_duration > 0
    assert "secret-value" not in caplog.text


def test_a_rollback_and_a_savepoint_are_debug_lines_too(
    flavour: Flavour, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="uow"), flavour.unit() as unit:
        with unit.savepoint():
            unit.repository(User).add(User(id="1", name="ann"))
        unit.rollback()

    steps = [event for event, _ in lifecycle(caplog.records)]
    assert steps.count("begin") == 1  # before or after the savepoint's, as the driver begins
    assert [step for step in steps if step != "begin"] == [
        "enter",
        "savepoint",
        "savepoint",
        "rollback",
        "exit",
    ]
    exit_ = caplog.records[-1]
    assert (exit_.uow_event, exit_.uow_outcome) == ("exit", "rolled_back")


def test_a_retry_is_an_info_line_and_each_attempt_a_debug_line(
    flavour: Flavour, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.DEBUG, logger="uow"),
        fail_statement(flavour.engine, "deadlock", matching="INSERT"),
    ):
        run_with_retries(flavour, "1")

    reason = DEADLOCK_REASONS[backend.kind]
    (retry,) = (record for record in caplog.records if getattr(record, "uow_event", "") == "retry")
    assert (retry.levelno, retry.uow_attempt, retry.uow_reason) == (logging.INFO, 1, reason)
    attempts = [record for record in caplog.records if getattr(record, "uow_event", "") == "attempt"]
    assert [(r.uow_attempt, r.uow_outcome, r.uow_retried) for r in attempts] == [
        (1, "failed", True),
        (2, "committed", False),
    ]
    assert attempts[0].uow_reason == reason


def test_a_robust_hooks_failure_is_an_error_line_with_its_stage(
    flavour: Flavour, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    def fail() -> None:
        raise Boom

    with caplog.at_level(logging.ERROR, logger="uow"), flavour.unit() as unit:
        unit.on_commit(flavour.hook(fail), robust=True)
        unit.commit()

    (line,) = (record for record in caplog.records if getattr(record, "uow_event", "") == "hook_failed")
    assert (line.levelno, line.uow_hook_stage) == (logging.ERROR, "after-commit")


def test_no_debug_line_is_written_while_debug_is_off(
    flavour: Flavour, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="uow"), flavour.unit() as unit:
        unit.repository(User).add(User(id="1", name="ann"))
        unit.commit()

    assert lifecycle(caplog.records) == []


@SYNC
def test_turning_debug_on_between_units_is_seen_by_the_next_unit(
    flavour: Flavour, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("uow")

    def one() -> None:
        with flavour.unit() as unit:
            unit.commit()

    with caplog.at_level(logging.DEBUG, logger="uow"):
        logger.setLevel(logging.INFO)
        one()
        assert lifecycle(caplog.records) == []
        logger.setLevel(logging.DEBUG)
        one()

    assert [event for event, _ in lifecycle(caplog.records)] == ["enter", "commit", "exit"]
