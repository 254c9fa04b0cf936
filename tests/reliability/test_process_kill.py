from __future__ import annotations

import pytest

from tests.reliability.kills import run_kills


@pytest.mark.slow
def test_five_random_sigkills_lose_nothing_and_never_double_run(tmp_path):
    report = run_kills(tmp_path, kills=5)
    assert report.problems == []
    assert report.kills == 5
    assert report.restored == 5 * 5
    assert (report.duplicates, report.snapshots_lost, report.corrupt) == (0, 0, 0)
    assert report.slowest_restart < 5.0
