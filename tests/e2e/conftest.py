"""The end-to-end tier's figures (bring-up time, rollout requests and latency) at the end of
the run, so that a person and CI's log see them without digging in artifacts/."""

from __future__ import annotations

import pytest

from e2e import MEASUREMENTS


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if MEASUREMENTS:
        terminalreporter.section("end-to-end measurements")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)
