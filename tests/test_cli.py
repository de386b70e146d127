"""The README's main job: `influence-widgets demo` on the built-in digits."""

from __future__ import annotations

import os
import re
import stat

import pytest

from influence_widgets.cli import build_parser, main

ROW = re.compile(r"^\s+(\d+)\s+(\d)\s+([+-]\d+\.\d{4})$", re.M)


def test_demo_prints_one_fixed_precision_change_column_and_the_leave_one_out_verdict(tmp_path, capsys):
    report = tmp_path / "report.html"
    assert main(["demo", "--quiet", "--n-test", "2", "--top", "3", "--loo", "3", "--out", str(report)]) == 0
    out = capsys.readouterr().out
    assert out.count("most helpful (removing it raises the test loss)") == 2
    assert out.count("most harmful (removing it lowers the test loss)") == 2
    rows = [(int(i), float(change)) for i, _, change in ROW.findall(out)]
    assert len(rows) == 12
    for block in range(4):  # helpful rows raise the loss when removed (> 0), harmful rows lower it
        changes = [c for _, c in rows[3 * block : 3 * block + 3]]
        assert all((c > 0) if block % 2 == 0 else (c < 0) for c in changes)
        assert changes == sorted(changes, key=abs, reverse=True)
    verdict = re.search(r"leave-one-out check: (agrees|does NOT agree) with retraining .*Pearson (-?[\d.]+)", out)
    assert verdict is not None and (verdict.group(1) == "agrees") == (float(verdict.group(2)) >= 0.9)
    assert "Spearman" in out and "drift" in out
    assert "Retrain(" not in out and "Options(" not in out  # no Python repr
    assert f"report: {report}" in out and report.exists() and 'id="iw-payload"' in report.read_text()


def test_the_terminal_and_the_report_name_the_same_test_points(tmp_path, capsys):
    report = tmp_path / "report.html"
    assert main(["demo", "--quiet", "--n-test", "1", "--top", "1", "--loo", "0", "--out", str(report)]) == 0
    worst = int(re.search(r"^test #(\d+):", capsys.readouterr().out, re.M).group(1))
    import inspect

    from influence_widgets.widgets.explorer import Explorer

    if "test_ids" not in inspect.signature(Explorer.__init__).parameters:
        pytest.skip("the explorer does not take test_ids yet (views branch)")
    assert f"#{worst}" in report.read_text()


@pytest.mark.parametrize("kind", ["missing folder", "a directory", "read-only folder"])
def test_an_unwritable_report_path_fails_at_once_with_exit_code_2_and_the_fix(tmp_path, capsys, kind):
    if kind == "missing folder":
        path = tmp_path / "no" / "such" / "report.html"
    elif kind == "a directory":
        path = tmp_path
    else:
        if os.geteuid() == 0:
            pytest.skip("root can write a read-only folder")
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
        path = folder / "report.html"
    assert main(["demo", "--quiet", "--out", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing ran
    assert str(path) in captured.err and "--out" in captured.err and "--no-report" in captured.err
    assert not (path.exists() and path.is_file())


def test_a_writable_report_path_is_left_as_it_was_if_the_check_passes(tmp_path):
    from influence_widgets.cli import check_writable

    path = tmp_path / "r.html"
    check_writable(str(path))
    assert not path.exists()
    path.write_text("old")
    check_writable(str(path))
    assert path.read_text() == "old"


def test_help_names_every_option_and_the_default_report_path(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--help"])
    text = capsys.readouterr().out
    for option in ("--model", "--out", "--no-report", "--quiet", "--loo", "--n-test", "--top"):
        assert option in text
    assert "influence-report.html" in text


@pytest.mark.slow
def test_cnn_demo_is_trained_to_a_minimum_and_its_leave_one_out_check_agrees(tmp_path, capsys):
    report = tmp_path / "cnn.html"
    assert main(["demo", "--model", "cnn", "--quiet", "--n-test", "1", "--top", "2", "--out", str(report)]) == 0
    out = capsys.readouterr().out
    assert "cnn on the built-in digits" in out and "1626 parameters" in out and "solver exact" in out
    norm = float(re.search(r"trained to gradient norm ([\d.e+-]+)", out).group(1))
    assert norm <= 1e-6
    pearson = float(re.search(r"leave-one-out check: agrees with retraining .*?Pearson ([\d.]+)", out).group(1))
    assert pearson >= 0.9
    assert report.exists()
