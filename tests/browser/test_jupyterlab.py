"""End to end: a real JupyterLab server on localhost, the explorer notebook run in headless chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import nbformat
import pytest

CELLS = [
    """import torch
from influence_widgets import InfluenceExplainer
from influence_widgets.data import LogisticRegression, cross_entropy_per_example, fit_lbfgs, load_digits
from influence_widgets.widgets import explore
torch.manual_seed(0)
split = load_digits(seed=0)
x, y = split.X_train[:200], split.y_train[:200]
model = LogisticRegression(64, 10)
fit_lbfgs(model, cross_entropy_per_example, x, y, 0.01)
ex = InfluenceExplainer(model, cross_entropy_per_example, x, y, weight_decay=0.01, progress=False)
explorer = explore(ex, split.X_test[:8], split.y_test[:8], images_train=split.images_train[:200],
                   images_test=split.images_test[:8], loo_points=3)
explorer""",
    'print(f"CURRENT={explorer.current} SELECTED={explorer.scatter.selected}")',
]

# The user's ids and hostile strings in class names, row texts and training ids (issue 12, item 1).
GEOMETRY_CELLS = [
    CELLS[0]
    .replace(
        "loo_points=3)",
        "loo_points=3, test_ids=TEST_IDS, train_ids=[H + str(i) for i in range(200)],\n"
        "                   class_names=[H + str(c) for c in range(10)], row_text=[H] * 200)",
    )
    .replace("torch.manual_seed(0)", "torch.manual_seed(0)\nH = HOSTILE\nTEST_IDS = [38, 54, 299, 7, 1160, 12, 5, 77]"),
    'print(f"CURRENT_ID={explorer.current_id} STRIP_IDS={explorer.strip.ids}")',
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory):
    pytest.importorskip("jupyterlab")
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    root.mkdir()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(notebook, root / "explorer.ipynb")
    nbformat.write(notebook, root / "explorer_nb7.ipynb")  # its own kernel session for Notebook 7
    from geometry import HOSTILE

    cells = [c.replace("HOSTILE", repr(HOSTILE)) for c in GEOMETRY_CELLS]
    geometry = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    geometry.metadata["kernelspec"] = notebook.metadata["kernelspec"]
    nbformat.write(geometry, root / "geometry_lab.ipynb")
    nbformat.write(geometry, root / "geometry_nb7.ipynb")
    settings = tmp / "settings/@jupyterlab/apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(tmp / "cfg"),
        JUPYTER_RUNTIME_DIR=str(tmp / "rt"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp / "ws"),
        IPYTHONDIR=str(tmp / "ipy"),
    )
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={root}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = open(tmp / "server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if server.poll() is not None:
            raise RuntimeError((tmp / "server.log").read_text())
        try:
            urllib.request.urlopen(url + "/api/status", timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.3)
    yield url
    server.terminate()
    try:
        server.wait(15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    log.close()
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("frontend", ["lab", "notebook7"])
def test_explorer_notebook_renders_and_clicks_reach_the_kernel(jupyter, open_page, frontend):
    from playwright.sync_api import expect

    expect.set_options(timeout=90_000)
    session = open_page(jupyter)
    page = session.page
    page.set_default_timeout(90_000)
    if frontend == "lab":
        page.goto(f"{jupyter}/lab/tree/explorer.ipynb")
        expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible()
    else:
        page.goto(f"{jupyter}/notebooks/explorer_nb7.ipynb")
        expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_be_attached()
        expect(page.locator(".jp-Notebook .jp-Cell")).to_have_count(2)
        page.locator(".jp-Notebook .jp-Cell").first.locator(".jp-InputPrompt").click()  # make it the active panel
        page.wait_for_timeout(500)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    output = page.locator(".jp-OutputArea-output")
    expect(output.locator(".iw-ranked .iw-item").first).to_be_visible()
    expect(output.locator(".iw-scatter canvas.iw-base")).to_be_visible()
    summary = output.locator(".iw-test-summary")
    expect(summary).to_contain_text("test #0")
    before = output.locator(".iw-ranked .iw-helpful .iw-item").first.get_attribute("data-index")
    output.locator(".iw-strip .iw-cell").nth(3).click()
    expect(summary).to_contain_text("test #3")  # the kernel computed test point 3 and sent it back
    after = output.locator(".iw-ranked .iw-helpful .iw-item").first.get_attribute("data-index")
    assert before != after
    output.locator(".iw-ranked .iw-helpful .iw-item").first.click()
    last = page.locator(".jp-Notebook .jp-Cell").nth(1)
    last.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+Enter")
    expect(last.locator(".jp-OutputArea-output")).to_have_text(f"CURRENT=3 SELECTED={after}")
    # the frontends' own start-up errors (their bundles, their REST calls) are theirs, not the views'
    theirs = ("/static/notebook/", "/static/lab/", "Failed to load resource")
    ours = [e for e in session.errors if not any(mark in e for mark in theirs)]
    assert ours == [], ours


PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"


def thrown_by_the_frontend(error: str) -> bool:
    """An error whose innermost frame is in the frontend's own bundle (Notebook 7 throws one on start-up)."""
    frames = [line for line in error.splitlines() if line.strip().startswith("at ")]
    return bool(frames) and ("/static/notebook/" in frames[0] or "/static/lab/" in frames[0])


def open_and_run(page, jupyter, frontend, name):
    from playwright.sync_api import expect

    if frontend == "lab":
        page.goto(f"{jupyter}/lab/tree/{name}_lab.ipynb?reset")  # only this notebook: no tabs restored
        expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible()
    else:
        page.goto(f"{jupyter}/notebooks/{name}_nb7.ipynb")
        expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_be_attached()
        expect(page.locator(".jp-Notebook .jp-Cell")).to_have_count(2)
        page.locator(".jp-Notebook .jp-Cell").first.locator(".jp-InputPrompt").click()
        page.wait_for_timeout(500)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


@pytest.mark.parametrize(("frontend", "first", "then"), [("lab", 1100, (700, 1600)), ("notebook7", 700, (1600, 1000))])
def test_views_lay_out_from_their_container_at_every_width(jupyter, browser, frontend, first, then):
    """First display at one output width, then two resizes: every view sized, inside, crisp at 2x, ids shown."""
    from geometry import HOSTILE, MEASURE, check_layout, check_tooltip
    from playwright.sync_api import expect

    expect.set_options(timeout=90_000)
    offset = 150 if frontend == "lab" else 130  # the frontend's chrome around the output area, corrected below
    context = browser.new_context(viewport={"width": first + offset, "height": 1000}, device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(90_000)
    dialogs, errors = [], []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: errors.append(f"{e} {e.stack}"))
    try:
        open_and_run(page, jupyter, frontend, "geometry")
        panel = page.locator(PANEL)  # Lab restores the notebooks opened by earlier tests in hidden tabs
        output = panel.locator(".jp-OutputArea-output").first
        expect(output.locator(".iw-ranked .iw-item").first).to_be_visible()
        expect(output.locator(".iw-loo .iw-empty")).to_be_visible()
        area = PANEL + " .jp-Cell:first-child .jp-OutputArea-output"
        test_ids = ["38", "54", "299", "7", "1160", "12", "5", "77"]
        chrome = None
        for width in (first, *then):
            if chrome is None:  # the frontend's chrome around the output area, measured where it is not capped
                chrome = page.viewport_size["width"] - page.evaluate(MEASURE, area)["area"]["w"]
            page.set_viewport_size({"width": int(width + chrome), "height": 1000})
            page.wait_for_timeout(200)
            m = page.evaluate(MEASURE, area)
            capped = frontend == "notebook7" and m["area"]["w"] < width  # Notebook 7 caps its column (~1100 px)
            assert abs(m["area"]["w"] - width) <= 4 or capped, m["area"]
            check_layout(m, {"iw-strip", "iw-ranked", "iw-scatter", "iw-loo"})
            if SHOTS:
                page.screenshot(path=f"/work/notes/shots/views/{frontend}-{width}.png")
        assert output.locator(".iw-strip .iw-cell").evaluate_all("cs => cs.map(c => c.dataset.id)") == test_ids
        expect(output.locator(".iw-test-summary")).to_contain_text("test #38")
        first_item = output.locator(".iw-ranked .iw-helpful .iw-item").first
        index = int(first_item.get_attribute("data-index"))
        assert first_item.get_attribute("data-id") == HOSTILE + str(index)
        expect(first_item.locator(".iw-item-title")).to_contain_text(f"train #{HOSTILE}{index}")
        text = check_tooltip(page, area + " .iw-scatter")
        assert "train #" + HOSTILE in text and "label " + HOSTILE in text  # hostile text shown as text
        output.locator(".iw-strip .iw-cell").nth(2).click()
        expect(output.locator(".iw-test-summary")).to_contain_text("test #299")  # the kernel answered
        page.keyboard.press("ArrowRight")
        expect(output.locator(".iw-test-summary")).to_contain_text("test #7")
        last = panel.locator(".jp-Notebook .jp-Cell").nth(1)
        last.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Control+Enter")
        expect(last.locator(".jp-OutputArea-output")).to_contain_text(f"CURRENT_ID=7 STRIP_IDS={test_ids}")
        ours = [e for e in errors if not thrown_by_the_frontend(e)]
        assert dialogs == [] and ours == [], (dialogs, ours)
    finally:
        context.close()


SHOTS = os.environ.get("IW_SHOTS") == "1"  # save screenshots under /work/notes/shots/views for review
