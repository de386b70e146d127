"""Leave-one-out figures of the paper's Figure 2 and 3 on the built-in digits, with their timings.

    python bench/loo.py [--only logreg cnn hinge]

* L2 logistic regression (lambda = 0.01) on digits 1 vs 7 and on all ten digits: the 40 most
  influential points of each of the 3 highest-loss test points, retrained with L-BFGS; first-order
  Pearson per solver, and the Newton-refined Pearson and slope.
* The small CNN on all ten digits (Adam then L-BFGS to a small gradient norm), damping from the
  non-convexity check, the 30 most influential points of the highest-loss test point.
* A linear SVM (hinge loss, fit exactly by liblinear) on 1 vs 7: influence through the smooth hinge
  with t = 0.001 against t = 0, both checked against retraining the hinge model.
"""

from __future__ import annotations

import argparse
import time

import torch
from sklearn.svm import LinearSVC

from influence_widgets import InfluenceExplainer, LBFGSRetrain, SmoothHinge
from influence_widgets.data import (
    LogisticRegression,
    binary_logistic_per_example,
    cross_entropy_per_example,
    fit_lbfgs,
    gradient_norm,
    load_digits,
)
from influence_widgets.data.zoo import train_digits_model


def highest_loss(model, loss_fn, x, y, k):
    with torch.no_grad():
        return torch.argsort(loss_fn(model(x), y), descending=True)[:k]


def logreg(classes, label):
    split = load_digits(classes, dtype=torch.float64)
    binary = classes is not None
    loss_fn = binary_logistic_per_example if binary else cross_entropy_per_example
    model = LogisticRegression(64, 2 if binary else 10).double()
    fit_lbfgs(model, loss_fn, split.X_train, split.y_train, 0.01)
    rows = highest_loss(model, loss_fn, split.X_test, split.y_test, 3)
    for solver in ("exact", "cg", "lissa"):
        ex = InfluenceExplainer(
            model, loss_fn, split.X_train, split.y_train, weight_decay=0.01, solver=solver, progress=False
        )
        start = time.perf_counter()
        result = ex.validate_loo(split.X_test[rows], split.y_test[rows], n_points=40, refine=solver == "exact")
        print(f"{label:<22}{solver:<7}{result.summary()} [{time.perf_counter() - start:.1f} s]")


def cnn():
    trained = train_digits_model("cnn", weight_decay=0.001)
    split = trained.split
    fit_lbfgs(trained.model, trained.loss_fn, split.X_train, split.y_train, trained.weight_decay, max_iter=2000)
    norm = gradient_norm(trained.model, trained.loss_fn, split.X_train, split.y_train, trained.weight_decay)
    # exact is the reference here: CG to rtol 1e-8 on this nearly singular H is slow
    ex, report = InfluenceExplainer(
        trained.model,
        trained.loss_fn,
        split.X_train,
        split.y_train,
        weight_decay=trained.weight_decay,
        solver="exact",
        progress=False,
    ).positive_definite()
    rows = highest_loss(trained.model, trained.loss_fn, split.X_test, split.y_test, 1)
    lam_min = report.eigenvalues.lambda_min
    print(f"small CNN: gradient norm {norm:.1e}, lambda_min {lam_min:.2e}, damping {ex.damping:.2e}")
    start = time.perf_counter()
    result = ex.validate_loo(
        split.X_test[rows], split.y_test[rows], n_points=30, retrain=LBFGSRetrain(max_iter=500, tolerance=1e-9)
    )
    print(f"{'CNN, all digits':<22}{'exact':<7}{result.summary()} [{time.perf_counter() - start:.1f} s]")


def hinge():
    split = load_digits((1, 7), dtype=torch.float64)
    lam, n = 0.01, len(split.y_train)
    x_np, y_np = split.X_train.numpy(), split.y_train.numpy()

    def fit_svm(model, x, y):
        # liblinear: 1/2 ||w||^2 + C sum hinge with the bias as a regularised feature; C = 1/(lambda n), n fixed
        svm = LinearSVC(
            C=1.0 / (lam * n), loss="hinge", dual=True, tol=1e-10, max_iter=1_000_000, intercept_scaling=1.0
        )
        svm.fit(x.numpy(), y.numpy())
        with torch.no_grad():
            model.linear.weight.copy_(torch.as_tensor(svm.coef_))
            model.linear.bias.copy_(torch.as_tensor(svm.intercept_))
        return model

    model = fit_svm(LogisticRegression(64, 2).double(), split.X_train, split.y_train)
    del x_np, y_np
    scores = model(split.X_test).squeeze(-1).detach()
    margin = 1 - torch.where(split.y_test > 0, 1.0, -1.0).double() * scores
    rows = torch.argsort(margin, descending=True)[:3]
    for t in (0.0, 0.001):
        ex = InfluenceExplainer(
            model, SmoothHinge(t), split.X_train, split.y_train, weight_decay=lam, solver="exact", progress=False
        )
        start = time.perf_counter()
        result = ex.validate_loo(split.X_test[rows], split.y_test[rows], n_points=40, retrain=fit_svm, refine=False)
        print(f"{'SVM 1v7, t=' + str(t):<22}{'exact':<7}{result.summary()} [{time.perf_counter() - start:.1f} s]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=["logreg", "cnn", "hinge"])
    args = parser.parse_args()
    torch.manual_seed(0)
    if "logreg" in args.only:
        logreg((1, 7), "logreg, 1 vs 7")
        logreg(None, "logreg, all digits")
    if "cnn" in args.only:
        cnn()
    if "hinge" in args.only:
        hinge()


if __name__ == "__main__":
    main()
