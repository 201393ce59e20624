"""examples/prometheus/ is what Prometheus itself accepts: promtool checks and unit-tests it."""

from __future__ import annotations

import subprocess
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], cwd=EXAMPLES, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_alert_rules_pass_promtool_check_rules() -> None:
    result = promtool("check", "rules", "pullnix-alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout


def test_the_scrape_config_passes_promtool_check_config() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_rules_fire_as_their_unit_tests_say() -> None:
    result = promtool("test", "rules", "pullnix-alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
