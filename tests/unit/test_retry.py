import random

from hub.config.files import RetryPolicy
from hub.delivery.retry import backoff_seconds, decide
from hub.errors import MappingError, PermanentError, TransientError

POLICY = RetryPolicy(max_attempts=4, base_seconds=2, cap_seconds=10)


def test_a_transient_failure_is_retried_until_the_last_attempt_then_parked() -> None:
    error = TransientError("HTTP 503")
    assert [decide(error, POLICY, n).park for n in (1, 2, 3, 4)] == [False, False, False, True]


def test_a_permanent_failure_parks_at_once() -> None:
    assert decide(PermanentError("HTTP 400"), POLICY, 1).park
    assert decide(MappingError("no such code"), POLICY, 1).park


def test_backoff_grows_exponentially_with_full_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    for attempt, ceiling in ((1, 2), (2, 4), (3, 8), (4, 10), (9, 10)):
        waits = [backoff_seconds(POLICY, attempt, rng) for _ in range(500)]
        assert min(waits) >= 0 and max(waits) <= ceiling
        # full jitter spreads waits over the whole range, not just near the ceiling
        assert min(waits) < ceiling * 0.1 and max(waits) > ceiling * 0.9
