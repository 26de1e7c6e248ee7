"""dr.background: one call in a daemon thread, its value or its error handed back."""

from __future__ import annotations

import threading

import pytest

from dr.background import Background


def test_the_value_comes_back_from_a_daemon_thread_of_that_name() -> None:
    seen: list[threading.Thread] = []

    def work() -> int:
        seen.append(threading.current_thread())
        return 42

    assert Background(work, "dr-test").start().result() == 42
    assert seen[0].name == "dr-test" and seen[0].daemon
    assert seen[0] is not threading.current_thread()


def test_the_same_exception_is_raised_in_the_callers_thread() -> None:
    boom = KeyError("x")

    def work() -> None:
        raise boom

    with pytest.raises(KeyError) as exc:
        Background(work, "dr-test").start().result()
    assert exc.value is boom


def test_a_result_never_started_is_an_error_not_none() -> None:
    with pytest.raises(RuntimeError, match="never started"):
        Background(lambda: 1, "dr-test").result()
