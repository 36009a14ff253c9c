"""Exit statuses come from one table: every error class has its code."""

from __future__ import annotations

import inspect

import pytest

from notifier import errors
from notifier.errors import (
    EXIT_BAD_INPUT,
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_HELD_BACK,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    NotifierError,
    exit_code,
)


def error_classes() -> list[type[NotifierError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, NotifierError)
    ]


def test_every_error_class_has_its_code() -> None:
    """A new error class without a row in EXIT_CODES fails here, not at a user's terminal."""
    assert set(error_classes()) == set(EXIT_CODES)
    assert set(errors.__all__) >= {cls.__name__ for cls in error_classes()}


@pytest.mark.parametrize("cls", error_classes(), ids=lambda c: c.__name__)
def test_an_error_exits_with_its_code(cls: type[NotifierError]) -> None:
    args = {"line": 1} if cls is errors.AuditIntegrityError else {}
    assert exit_code(cls("x", **args)) == EXIT_CODES[cls]


def test_the_contract_codes() -> None:
    """interfaces.md: 2 bad input, 1 failure, 3 held back; a bug is none of those."""
    assert exit_code(errors.ConfigError("x")) == EXIT_BAD_INPUT == 2
    assert exit_code(errors.TargetRefused("x")) == EXIT_BAD_INPUT
    assert exit_code(errors.PermanentDeliveryError("x")) == EXIT_FAILED == 1
    assert EXIT_HELD_BACK == 3
    assert exit_code(RuntimeError("bug")) == EXIT_INTERNAL not in (0, 1, 2, 3)
    assert exit_code(KeyboardInterrupt()) == EXIT_INTERRUPTED
