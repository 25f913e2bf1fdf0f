"""lifecycle/management/simulation.py: the scenario runner of connect_simulate."""

from lifecycle.management.simulation import StepResult


def test_step_lines_say_what_was_expected():
    ok = StepResult("happy", "installed", "POST /x", (204, None), 204, None, None)
    bad = StepResult(
        "happy", "installed", "POST /x", (204, None), 401, "unknown_kid", "No key server knows kid"
    )
    assert ok.ok and ok.line().startswith("[ok  ]")
    assert not bad.ok
    assert "-> 401 unknown_kid  (expected 204)" in bad.line()
    assert "detail: No key server knows kid" in bad.line()
