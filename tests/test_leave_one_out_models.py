"""The paper's Figure 2 (a small CNN) and Figure 3 (smooth hinge) on small, seeded digits."""

from __future__ import annotations

import torch
from sklearn.svm import LinearSVC

from influence_widgets import InfluenceExplainer, LBFGSRetrain, SmoothHinge
from influence_widgets.data import (
    LogisticRegression,
    SmallCNN,
    cross_entropy_per_example,
    fit_adam,
    fit_lbfgs,
    gradient_norm,
    load_digits,
)


def test_small_cnn_first_order_prediction_tracks_retraining():
    torch.manual_seed(0)
    split = load_digits(dtype=torch.float64, seed=0, as_images=True)
    x, y = split.X_train[:300], split.y_train[:300]
    model = SmallCNN(10, channels=(2, 4)).double()
    wd = 0.001
    fit_adam(model, cross_entropy_per_example, x, y, wd, steps=300, lr=0.02)
    fit_lbfgs(model, cross_entropy_per_example, x, y, wd, max_iter=2000)
    assert gradient_norm(model, cross_entropy_per_example, x, y, wd) < 1e-5
    ex, _ = InfluenceExplainer(
        model, cross_entropy_per_example, x, y, weight_decay=wd, solver="exact", progress=False
    ).positive_definite()  # damped by the non-convexity check's suggestion where needed
    with torch.no_grad():
        row = cross_entropy_per_example(model(split.X_test), split.y_test).argmax()
    result = ex.validate_loo(
        split.X_test[row : row + 1],
        split.y_test[row : row + 1],
        n_points=30,
        retrain=LBFGSRetrain(max_iter=500, tolerance=1e-9),
    )
    assert result.pearson >= 0.9
    # one Newton step does not beat first order on a network (measured 0.92 here, 0.82 on all digits)
    assert result.refined_pearson > 0.8


def svm_retrainer(weight_decay: float, n: int):
    """Fit the hinge-loss SVM exactly (liblinear); C = 1/(lambda n) with n fixed, bias regularised."""

    def fit(model, x, y):
        svm = LinearSVC(C=1.0 / (weight_decay * n), loss="hinge", dual=True, tol=1e-10, max_iter=1_000_000)
        svm.fit(x.numpy(), y.numpy())
        with torch.no_grad():
            model.linear.weight.copy_(torch.as_tensor(svm.coef_))
            model.linear.bias.copy_(torch.as_tensor(svm.intercept_))
        return model

    return fit


def test_smooth_hinge_predicts_hinge_retraining_better_than_the_hinge_itself():
    split = load_digits((1, 7), dtype=torch.float64, seed=0)
    wd, n = 0.01, len(split.y_train)
    fit = svm_retrainer(wd, n)
    model = fit(LogisticRegression(64, 2).double(), split.X_train, split.y_train)
    margins = 1 - torch.where(split.y_test > 0, 1.0, -1.0) * model(split.X_test).squeeze(-1).detach()
    rows = torch.argsort(margins, descending=True)[:3]
    pearson = {}
    for t in (0.0, 0.001):
        ex = InfluenceExplainer(
            model, SmoothHinge(t), split.X_train, split.y_train, weight_decay=wd, solver="exact", progress=False
        )
        result = ex.validate_loo(split.X_test[rows], split.y_test[rows], n_points=40, retrain=fit, refine=False)
        pearson[t] = result.pearson
    assert pearson[0.001] > pearson[0.0] + 0.05
