"""Make the README's screenshot of the explorer from the real views, rendered by Chromium.

Builds the logistic-regression demo on the built-in digits, writes the explorer's offline HTML export
(which mounts the same JavaScript views as the notebook), opens it in headless Chromium and saves a PNG.

    python scripts/screenshot.py                  # writes docs/images/explorer.png
    python scripts/screenshot.py --out shot.png --width 1280 --chromium /usr/bin/chromium
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def write_report(path: Path) -> int:
    """The explorer of the demo's 12 highest-loss test points, as one offline HTML file; returns the first id."""
    from influence_widgets import InfluenceExplainer
    from influence_widgets.data.zoo import train_digits_model
    from influence_widgets.widgets import explore

    trained = train_digits_model("logreg", seed=0)
    split = trained.split
    explainer = InfluenceExplainer(
        trained.model, trained.loss_fn, split.X_train, split.y_train, weight_decay=trained.weight_decay, progress=False
    )
    with torch.no_grad():
        losses = trained.loss_fn(trained.model(split.X_test), split.y_test)
    shown = torch.argsort(losses, descending=True)[:12]
    explorer = explore(
        explainer,
        split.X_test[shown],
        split.y_test[shown],
        images_train=split.images_train,
        images_test=split.images_test[shown.numpy()],
        class_names=split.class_names,
        loo_points=10,
        test_ids=shown.tolist(),
    )
    explorer.loo.run(background=False)
    explorer.save_html(path, test_indices=range(len(shown)), title="influence_widgets: logistic regression on digits")
    return int(shown[0])


def screenshot(html: Path, out: Path, width: int, height: int, chromium: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
            page.route("http*://**", lambda route: route.abort())  # offline, as the report promises
            page.goto(html.as_uri())
            page.wait_for_timeout(1500)  # views measure their container and draw
            page.screenshot(path=str(out), full_page=False)
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "images" / "explorer.png"))
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        html = Path(folder) / "influence-report.html"
        first = write_report(html)
        screenshot(html, out, args.width, args.height, args.chromium)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB), explorer opened on test #{first}")


if __name__ == "__main__":
    main()
