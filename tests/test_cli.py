"""The README's main job: `influence-widgets demo` on the built-in digits."""

from __future__ import annotations

import re

from influence_widgets.cli import main


def test_demo_prints_helpful_and_harmful_points_and_writes_a_report(tmp_path, capsys):
    report = tmp_path / "report.html"
    assert main(["demo", "--no-progress", "--n-test", "2", "--top", "3", "--loo", "3", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert out.count("most helpful (removing raises the test loss)") == 2
    assert out.count("most harmful (removing lowers the test loss)") == 2
    rows = re.findall(r"^\s+(\d+)\s+(\d)\s+(-?[\d.e+-]+)\s+([+-][\d.e+-]+)$", out, re.M)
    assert len(rows) == 12
    for _, _, influence, change in rows:  # the printed change on removal is -I_up,loss / n
        assert (float(influence) > 0) == (float(change) < 0)
    assert "leave-one-out check" in out and report.exists() and 'id="iw-payload"' in report.read_text()


def test_cnn_demo_applies_the_damping_rule_and_writes_a_report(tmp_path, capsys):
    report = tmp_path / "cnn.html"
    assert (
        main(
            [
                "demo",
                "--model",
                "cnn",
                "--no-progress",
                "--n-test",
                "1",
                "--top",
                "2",
                "--loo",
                "0",
                "--report",
                str(report),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "cnn on the built-in digits" in out and "solver exact, 1626 parameters" in out
    assert report.exists()
