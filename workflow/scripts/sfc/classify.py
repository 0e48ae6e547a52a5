"""TRD-vs-nTRD classification from regional SFC, without information leakage.

Per atlas and coupling method, subjects of two groups (``positive`` vs
``negative``, default TRD vs nTRD) are classified from their regional SFC
values with a list of models (linear and RBF SVM, L2 and elastic-net logistic
regression, random forest, XGBoost).

Three modes, every output row says which:

``nested`` (the default, unbiased)
    Repeated, stratified, nested cross-validation. Every data-dependent step is
    fitted on the training folds only: imputation of missing values (medians),
    site harmonisation and covariate regression (:class:`ConfoundRegressor`),
    scaling, the univariate group screen (:class:`UnivariateScreen`, the
    two-sample F = t^2 test of the study) and the hyper-parameter search
    (inner stratified folds). :func:`make_pipeline` is the reference definition
    as one scikit-learn :class:`~sklearn.pipeline.Pipeline`; the engine here
    fits exactly those steps, but shares each fold's preprocessing and screen
    across models and grid points (tested to give the same predictions as
    ``GridSearchCV(make_pipeline(...))``).
``study (optimistically biased: features selected on all subjects)``
    The simpler procedure of the study: preprocessing and the group screen are
    fitted on ALL subjects, then only the classifier is cross-validated. The
    selection has seen the test subjects, so its AUC is biased upwards (on
    null data it lies well above 0.5); it is reported only for comparison.
``leave-one-site-out``
    When a site column exists: each site in turn is the test set, the rest is
    the training set of the nested procedure (inner folds stratified).

The AUC is the mean over repeats of the AUC of the pooled out-of-fold scores;
its 95% CI is a stratified bootstrap over subjects of that mean (the repeats'
out-of-fold scores are resampled together). The permutation p-value permutes
the labels through the whole nested procedure (new stratified folds, new
preprocessing, screen and inner search for every permutation) and compares the
mean AUC over the first ``permutation_repeats`` repeats of the observed run
with the same statistic under permutation: ``p = (1 + #{null >= obs}) /
(1 + n_permutations)`` (Phipson & Smyth 2010). Using fewer outer repeats for the
permutations than for the reported AUC keeps the cost down; the compared
statistics are computed the same way, so the test stays exact.

Cost (benchmarks/bench_classify.py, 224 subjects x 246 regions, six models):
each permutation is a full nested run (with permuted labels the stratified
folds, the screen and every fit change): 0.77 CPU-second on the slow shared
development VM, 5x less than with the plain scikit-learn estimators (3.86),
plus ~26 CPU-seconds for the observed repeats, study mode and
leave-one-site-out. What makes it cheap:

* each (outer or inner) training fold is preprocessed and screened once and
  shared by all models and grid points (tested equal to the screen of
  :func:`make_pipeline` fitted on that fold);
* the models are lean estimators that solve the same problems as their
  scikit-learn counterparts, without the per-fit input checks that dominate on
  fold-sized data: :class:`BalancedSVC` (libsvm), :class:`BalancedLogisticL2`
  (exact Newton), :class:`BalancedLogisticENet` (SAGA),
  :class:`BalancedRandomForest` (the Cython tree builder),
  :class:`BalancedXGBClassifier` (XGBoost's booster); each is tested to give
  the same scores as the scikit-learn estimator, and grids and model sizes are
  unchanged;
* permutations run in parallel (``n_jobs`` loky workers, chunks of
  permutations, one BLAS/OpenMP thread per worker); the study-mode screen F
  statistics of all permutations come from one matrix product.

References
----------
Varoquaux G et al. (2017) Assessing and tuning brain decoders: cross-validation,
caveats, and guidelines. NeuroImage 145:166-179.
Cawley GC, Talbot NLC (2010) On over-fitting in model selection and subsequent
selection bias in performance evaluation. JMLR 11:2079-2107.
Ojala M, Garriga GC (2010) Permutation tests for studying classifier
performance. JMLR 11:1833-1863.
Phipson B, Smyth GK (2010) Permutation p-values should never be zero.
Stat Appl Genet Mol Biol 9:39.
Ye et al. (2026) npj Mental Health Research 5:27 (the study's procedure).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import LeaveOneGroupOut, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils import check_random_state

from . import paths
from .errors import InputError
from .participants import read_participants
from .paths import participant_of

NESTED = "nested"
STUDY = "study (optimistically biased: features selected on all subjects)"
LOSO = "leave-one-site-out"
MODE_KEYS = {"nested": NESTED, "study": STUDY, "loso": LOSO}

DEFAULT_MODELS = ("svm_linear", "svm_rbf", "logreg_l2", "logreg_enet", "random_forest", "xgboost")


# ---------------------------------------------------------------------------------------
# Transformers (fitted on training rows only)
# ---------------------------------------------------------------------------------------

def _nanmedian_or_zero(a: np.ndarray) -> np.ndarray:
    """Column medians ignoring NaN; 0 for columns without any value."""
    if a.size and not np.isnan(a).any():
        return np.median(a, axis=0)                 # same values; nanmedian is ~10x slower
    out = np.zeros(a.shape[1])
    ok = ~np.isnan(a).all(axis=0)
    if ok.any():
        out[ok] = np.nanmedian(a[:, ok], axis=0)
    return out


class ConfoundRegressor(TransformerMixin, BaseEstimator):
    """Impute, harmonise sites and regress out covariates; fitted on training rows.

    The input is ``[features | covariates | site one-hot]``: the last
    ``n_covariates + n_sites`` columns are confounds, split off here and not
    passed on. Missing values are replaced by training medians. Then one
    least-squares model per feature, ``feature ~ site one-hot + covariates``,
    is fitted on the training rows; its covariate part and its site effect
    relative to the (size-weighted) mean site are subtracted. This is the
    location part of ComBat (Johnson et al. 2007) without empirical Bayes, with
    covariate effects estimated jointly. A site absent from the training rows is
    left unadjusted (its effect is unknown without looking at test data).

    Parameters
    ----------
    n_covariates : int
        Number of covariate columns after the features.
    n_sites : int
        Number of site one-hot columns at the end (0: no harmonisation).
    """

    def __init__(self, n_covariates: int = 0, n_sites: int = 0):
        self.n_covariates = n_covariates
        self.n_sites = n_sites

    def _split(self, X):
        X = np.asarray(X, dtype=float)
        n_conf = self.n_covariates + self.n_sites
        p = X.shape[1] - n_conf
        return X[:, :p], X[:, p:p + self.n_covariates], X[:, p + self.n_covariates:]

    def fit(self, X, y=None):
        F, C, S = self._split(X)
        self.feature_median_ = _nanmedian_or_zero(F)
        self.covariate_median_ = _nanmedian_or_zero(C) if C.shape[1] else np.zeros(0)
        F = np.where(np.isnan(F), self.feature_median_, F)
        C = np.where(np.isnan(C), self.covariate_median_, C)
        if self.n_sites:
            counts = S.sum(axis=0)
            seen = counts > 0
            design = np.hstack([S[:, seen], C])
        else:
            design = np.hstack([np.ones((len(F), 1)), C])
        if design.shape[1] == 1 and not self.n_sites:
            self.covariate_coef_ = np.zeros((0, F.shape[1]))
            self.site_effect_ = np.zeros((0, F.shape[1]))
            return self
        beta = np.linalg.lstsq(design, F, rcond=None)[0]
        if self.n_sites:
            k = int(seen.sum())
            a_seen = beta[:k]
            mean_site = (counts[seen] @ a_seen) / counts[seen].sum()
            effect = np.zeros((self.n_sites, F.shape[1]))
            effect[seen] = a_seen - mean_site          # unseen sites: 0 (left unadjusted)
            self.site_effect_ = effect
            self.covariate_coef_ = beta[k:]
        else:
            self.site_effect_ = np.zeros((0, F.shape[1]))
            self.covariate_coef_ = beta[1:]
        return self

    def transform(self, X):
        F, C, S = self._split(X)
        F = np.where(np.isnan(F), self.feature_median_, F)
        C = np.where(np.isnan(C), self.covariate_median_, C)
        if self.covariate_coef_.size:
            F = F - C @ self.covariate_coef_
        if self.site_effect_.size:
            F = F - S @ self.site_effect_
        return F


def anova_f(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-group one-way ANOVA F (= Student t squared) for many label vectors at once.

    Parameters
    ----------
    X : ndarray (n, p)
        Features without NaN.
    Y : ndarray (n,) or (n, P)
        0/1 labels; each column is one labelling (e.g. one permutation).

    Returns
    -------
    F, p : ndarrays (p,) or (P, p)
        Same values as :func:`sklearn.feature_selection.f_classif` for each
        labelling, computed for all labellings with one matrix product.
    """
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    single = Y.ndim == 1
    if single:
        Y = Y[:, None]
    n = X.shape[0]
    n1 = Y.sum(axis=0)[:, None]                     # (P, 1)
    n0 = n - n1
    total = X.sum(axis=0)[None, :]                  # (1, p)
    mean = total / n
    s1 = Y.T @ X                                    # (P, p)
    m1 = s1 / n1
    m0 = (total - s1) / n0
    ss_between = n1 * (m1 - mean) ** 2 + n0 * (m0 - mean) ** 2
    ss_total = ((X - mean) ** 2).sum(axis=0)[None, :]
    ss_within = np.maximum(ss_total - ss_between, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        F = ss_between / (ss_within / (n - 2))
    F = np.where(np.isfinite(F), F, np.where(ss_between > 0, np.inf, 0.0))
    p = stats.f.sf(F, 1, n - 2)
    return (F[0], p[0]) if single else (F, p)


def _select_from_p(p: np.ndarray, F: np.ndarray, alpha, k, min_features, max_features) -> np.ndarray:
    """Boolean support from p-values: top-k, or p < alpha clipped to [min, max] features."""
    n = p.shape[-1]
    order = np.lexsort((np.arange(n), -F, p))       # by p, then larger F, then index
    if k is not None:
        n_sel = min(int(k), n)
    else:
        n_sel = int((p < alpha).sum())
        n_sel = max(n_sel, min(int(min_features), n))
        if max_features is not None:
            n_sel = min(n_sel, int(max_features))
    support = np.zeros(n, dtype=bool)
    support[order[:n_sel]] = True
    return support


class UnivariateScreen(TransformerMixin, BaseEstimator):
    """Keep the regions that differ between the groups (two-sample t / F test).

    The screen of the study: regions whose group difference has p < ``alpha``
    (F = t^2, :func:`anova_f`), at least ``min_features`` and at most
    ``max_features`` of them (by p); or exactly the ``k`` best when ``k`` is set
    (then it equals ``SelectKBest(f_classif, k)``).
    """

    def __init__(self, alpha: float = 0.05, k: int | None = None, min_features: int = 5,
                 max_features: int | None = None):
        self.alpha = alpha
        self.k = k
        self.min_features = min_features
        self.max_features = max_features

    def fit(self, X, y):
        self.scores_, self.pvalues_ = anova_f(X, np.asarray(y))
        self.support_ = _select_from_p(self.pvalues_, self.scores_, self.alpha, self.k,
                                       self.min_features, self.max_features)
        return self

    def get_support(self):
        return self.support_

    def transform(self, X):
        return np.asarray(X)[:, self.support_]


def _balanced_weights(y01: np.ndarray) -> np.ndarray:
    """Per-class weights ``n / (2 n_class)`` (scikit-learn's ``class_weight="balanced"``)."""
    counts = np.bincount(y01, minlength=2).astype(float)
    if (counts == 0).any():
        raise ValueError("training labels have one class only")
    return len(y01) / (2.0 * counts)


def _labels01(y) -> tuple[np.ndarray, np.ndarray]:
    classes, y01 = np.unique(np.asarray(y), return_inverse=True)
    if len(classes) != 2:
        raise ValueError(f"two classes needed, got {len(classes)}")
    return classes, y01.ravel()


class BalancedSVC(ClassifierMixin, BaseEstimator):
    """``SVC(kernel, C, gamma="scale", class_weight="balanced")`` without the per-fit overhead.

    Calls the same libsvm solver as :class:`sklearn.svm.SVC` with the same
    arguments (scikit-learn's own ``_libsvm`` binding), so the solution is the
    same; the decision function is computed here from the support vectors.
    scikit-learn's input checks cost ~5x the solver itself on fold-sized data
    (tested equal to ``SVC``; falls back to ``SVC`` if the binding changes).
    """

    def __init__(self, kernel: str = "linear", C: float = 1.0, tol: float = 1e-3,
                 cache_size: float = 200.0):
        self.kernel = kernel
        self.C = C
        self.tol = tol
        self.cache_size = cache_size

    def fit(self, X, y):
        X = np.ascontiguousarray(X, dtype=np.float64)
        self.classes_, y01 = _labels01(y)
        var = X.var()
        self.gamma_ = 1.0 / (X.shape[1] * var) if var != 0 else 1.0     # gamma="scale"
        cw = _balanced_weights(y01)
        try:
            if self.kernel not in ("linear", "rbf"):
                raise TypeError(f"kernel {self.kernel!r}: use SVC")
            from sklearn.svm import _libsvm
            _libsvm.set_verbosity_wrap(0)
            out = _libsvm.fit(X, y01.astype(np.float64), svm_type=0, sample_weight=np.empty(0),
                              class_weight=cw, kernel=self.kernel, C=float(self.C), nu=0.0,
                              probability=False, degree=3, shrinking=True, tol=self.tol,
                              cache_size=self.cache_size, coef0=0.0, gamma=self.gamma_,
                              epsilon=0.0, max_iter=-1, random_seed=0)
            _, sv, _, dual, intercept = out[:5]
            # binary case: scikit-learn flips the signs so that positive = classes_[1]
            self.support_vectors_ = sv
            self.dual_coef_ = -np.asarray(dual, dtype=float).reshape(1, -1)
            self.intercept_ = -np.asarray(intercept, dtype=float).ravel()
            self._svc = None
        except (ImportError, TypeError, AttributeError):              # binding changed
            self._svc = SVC(kernel=self.kernel, C=self.C, gamma="scale", tol=self.tol,
                            cache_size=self.cache_size, class_weight="balanced").fit(X, y01)
            self.support_vectors_ = self._svc.support_vectors_
            self.dual_coef_ = np.asarray(self._svc.dual_coef_)
            self.intercept_ = self._svc.intercept_
        if self.kernel == "linear":
            self.coef_ = self.dual_coef_ @ self.support_vectors_
        return self

    def decision_function(self, X):
        X = np.asarray(X, dtype=np.float64)
        if self.kernel == "linear":
            return X @ self.coef_[0] + self.intercept_[0]
        if self.kernel != "rbf":
            return self._svc.decision_function(X)
        sv = self.support_vectors_
        d2 = (X * X).sum(axis=1)[:, None] + (sv * sv).sum(axis=1)[None, :] - 2.0 * (X @ sv.T)
        K = np.exp(-self.gamma_ * np.maximum(d2, 0.0))
        return K @ self.dual_coef_[0] + self.intercept_[0]

    def predict(self, X):
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


class BalancedLogisticL2(ClassifierMixin, BaseEstimator):
    """L2 logistic regression with balanced class weights, solved exactly by Newton's method.

    The problem of ``LogisticRegression(C=C, l1_ratio=0, class_weight="balanced")``,
    ``min_w,b C sum_i s_i logloss_i + ||w||^2 / 2`` (intercept not penalised), is
    smooth and strictly convex, so its minimiser is unique: every solver that
    converges finds the same model. With few features (the screened regions),
    damped Newton steps on the full (p+1) x (p+1) Hessian reach machine
    precision in ~6-10 iterations of a few small matrix products, where lbfgs
    through scikit-learn spends most of its time in input checks. Tested equal
    to scikit-learn's ``newton-cholesky`` solver at tight tolerance.
    """

    def __init__(self, C: float = 1.0, tol: float = 1e-10, max_iter: int = 100):
        self.C = C
        self.tol = tol
        self.max_iter = max_iter

    @staticmethod
    def _objective(A, y, s, C, theta, reg):
        z = A @ theta
        loss = np.logaddexp(0.0, z) - y * z
        return C * (s @ loss) + 0.5 * (reg * theta * theta).sum(), z

    def fit(self, X, y):
        X = np.asarray(X, dtype=np.float64)
        self.classes_, y01 = _labels01(y)
        s = _balanced_weights(y01)[y01]
        yf = y01.astype(np.float64)
        n, p = X.shape
        A = np.hstack([X, np.ones((n, 1))])
        reg = np.r_[np.ones(p), 0.0]                 # intercept not penalised
        C = float(self.C)
        theta = np.zeros(p + 1)
        f, z = self._objective(A, yf, s, C, theta, reg)
        for self.n_iter_ in range(1, self.max_iter + 1):
            prob = 0.5 * (1.0 + np.tanh(0.5 * z))    # stable sigmoid
            g = C * (A.T @ (s * (prob - yf))) + reg * theta
            H = (A.T * (C * s * prob * (1.0 - prob))) @ A
            H[np.diag_indices_from(H)] += reg
            step = np.linalg.solve(H, g)
            dec = g @ step
            if np.abs(step).max() <= self.tol * (1.0 + np.abs(theta).max()):
                theta = theta - step                 # converged: last (full) Newton step
                break
            t = 1.0
            while True:                              # backtracking (Armijo) line search
                new = theta - t * step
                f_new, z_new = self._objective(A, yf, s, C, new, reg)
                # (the last term: rounding of f near the optimum must not stall the search)
                if f_new <= f - 1e-4 * t * dec + 1e-12 * abs(f) or t < 1e-10:
                    break
                t *= 0.5
            theta, f, z = new, f_new, z_new
        self.coef_ = theta[None, :p]
        self.intercept_ = theta[p:]
        return self

    def decision_function(self, X):
        return np.asarray(X, dtype=np.float64) @ self.coef_[0] + self.intercept_[0]

    def predict(self, X):
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


class BalancedLogisticENet(ClassifierMixin, BaseEstimator):
    """``LogisticRegression(solver="saga", l1_ratio, class_weight="balanced")``, lean.

    Calls scikit-learn's SAGA solver (``sag_solver``) with exactly the arguments
    ``LogisticRegression.fit`` passes for a binary problem (balanced sample
    weights, ``alpha = (1 - l1_ratio) / C``, ``beta = l1_ratio / C``, zero
    start, same random state), so the fit is the same; the estimator's input
    checks and label encoding (~90 % of a fit on fold-sized data) are skipped.
    Tested identical to ``LogisticRegression``; falls back to it if the solver's
    signature changes.
    """

    def __init__(self, C: float = 1.0, l1_ratio: float = 0.5, tol: float = 1e-3,
                 max_iter: int = 5000, random_state=0):
        self.C = C
        self.l1_ratio = l1_ratio
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state

    def _reference(self):
        return LogisticRegression(solver="saga", C=self.C, l1_ratio=self.l1_ratio,
                                  class_weight="balanced", tol=self.tol, max_iter=self.max_iter,
                                  random_state=self.random_state)

    def fit(self, X, y):
        X = np.ascontiguousarray(X, dtype=np.float64)
        self.classes_, y01 = _labels01(y)
        sw = _balanced_weights(y01)[y01]
        C = float(self.C)
        try:
            from sklearn.linear_model._sag import sag_solver
            from sklearn.utils.extmath import row_norms
            w0 = np.zeros((X.shape[1] + 1, 1))
            coef, self.n_iter_, _ = sag_solver(
                X, y01.astype(np.float64), sw, "log", (1.0 / C) * (1 - self.l1_ratio),
                (1.0 / C) * self.l1_ratio, self.max_iter, self.tol, 0,
                check_random_state(self.random_state), False, row_norms(X, squared=True).max(),
                {"coef": w0}, is_saga=True)
            coef = np.ravel(coef)
            self.coef_, self.intercept_ = coef[None, :-1], coef[-1:]
        except (ImportError, TypeError, AttributeError):              # solver API changed
            ref = self._reference().fit(X, y01)
            self.coef_, self.intercept_ = ref.coef_, ref.intercept_
        return self

    def decision_function(self, X):
        return np.asarray(X, dtype=np.float64) @ self.coef_[0] + self.intercept_[0]

    def predict(self, X):
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


class BalancedRandomForest(ClassifierMixin, BaseEstimator):
    """``RandomForestClassifier(class_weight="balanced", bootstrap=True, n_jobs=1)``, lean.

    Grows the same trees as scikit-learn's forest (same seeds per tree, same
    class-weighted bootstrap draws, same Cython tree builder, Gini criterion,
    ``max_features``, ``min_samples_leaf``) and averages their class
    probabilities the same way, but skips what dominates a forest of small
    trees on fold-sized data: cloning and validating every tree and the
    per-tree joblib dispatch (~80 % of the time). Tested identical to
    :class:`~sklearn.ensemble.RandomForestClassifier` (probabilities and
    importances); falls back to it if scikit-learn's tree internals change.
    The class-weighted bootstrap (``choice`` with probabilities proportional to
    the balanced weights, unweighted counts to the trees) is scikit-learn 1.9's
    (pinned in pyproject.toml and envs/learn.yaml); the test flags a version
    whose forest differs.
    """

    def __init__(self, n_estimators: int = 100, max_features="sqrt", min_samples_leaf: int = 2,
                 random_state=0):
        self.n_estimators = n_estimators
        self.max_features = max_features
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state

    def _reference(self):
        return RandomForestClassifier(n_estimators=self.n_estimators, max_features=self.max_features,
                                      min_samples_leaf=self.min_samples_leaf, class_weight="balanced",
                                      n_jobs=1, random_state=self.random_state)

    def fit(self, X, y):
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        self.classes_, y01 = _labels01(y)
        self._forest = None
        try:
            self._trees = self._grow(X32, y01)
        except (ImportError, TypeError, AttributeError, KeyError):    # tree internals changed
            self._forest = self._reference().fit(X32, y01)
        return self

    def _grow(self, X32, y01):
        from sklearn.tree._classes import CRITERIA_CLF, DENSE_SPLITTERS
        from sklearn.tree._tree import DepthFirstTreeBuilder, Tree
        n, p = X32.shape
        if isinstance(self.max_features, str):
            mf = {"sqrt": max(1, int(np.sqrt(p))), "log2": max(1, int(np.log2(p)))}[self.max_features]
        elif self.max_features is None:
            mf = p
        else:
            mf = int(self.max_features) if isinstance(self.max_features, (int, np.integer)) \
                else max(1, int(self.max_features * p))
        leaf = int(self.min_samples_leaf)
        max_int = np.iinfo(np.int32).max
        weight = _balanced_weights(y01)[y01]
        prob = weight / weight.sum()
        y2 = np.ascontiguousarray(y01[:, None], dtype=np.float64)
        n_classes = np.array([2], dtype=np.intp)
        master = check_random_state(self.random_state)
        rs = np.random.RandomState(0)
        trees = []
        for _ in range(self.n_estimators):
            seed = master.randint(max_int)           # as BaseEnsemble._set_random_states
            rs.seed(seed)                            # as _generate_sample_indices(seed, ...)
            idx = rs.choice(n, n, replace=True, p=prob)
            counts = np.bincount(idx, minlength=n).astype(np.float64)
            rs.seed(seed)                            # the tree's own RandomState(seed)
            criterion = CRITERIA_CLF["gini"](1, n_classes)
            splitter = DENSE_SPLITTERS["best"](criterion, mf, leaf, 0.0, rs, None)
            tree = Tree(p, n_classes, 1)
            DepthFirstTreeBuilder(splitter, max(2, 2 * leaf), leaf, 0.0, max_int, 0.0).build(
                tree, X32, y2, counts, None)
            trees.append(tree)
        return trees

    def predict_proba(self, X):
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        if self._forest is not None:
            return self._forest.predict_proba(X32)
        proba = np.zeros((X32.shape[0], 2))
        for tree in self._trees:
            proba += tree.predict(X32)[:, :2]
        proba /= len(self._trees)
        return proba

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    @property
    def feature_importances_(self):
        if self._forest is not None:
            return self._forest.feature_importances_
        imp = [t.compute_feature_importances() for t in self._trees if t.node_count > 1]
        if not imp:
            return np.zeros(self._trees[0].n_features)
        imp = np.mean(imp, axis=0, dtype=np.float64)
        return imp / imp.sum()


class BalancedXGBClassifier(ClassifierMixin, BaseEstimator):
    """XGBoost gradient-boosted trees with balanced class weights, single-threaded.

    Boosts on a ``QuantileDMatrix`` with the parameters ``XGBClassifier`` would
    pass (tested identical), without the scikit-learn wrapper's per-fit overhead.

    Chen T, Guestrin C (2016) XGBoost: a scalable tree boosting system. KDD.
    """

    def __init__(self, n_estimators=100, max_depth=2, learning_rate=0.1, subsample=0.8,
                 colsample_bytree=0.8, random_state=0):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.random_state = random_state

    def fit(self, X, y):
        import xgboost as xgb
        self.classes_, y01 = _labels01(y)
        weight = _balanced_weights(y01)[y01]
        params = {"objective": "binary:logistic", "max_depth": self.max_depth,
                  "learning_rate": self.learning_rate, "subsample": self.subsample,
                  "colsample_bytree": self.colsample_bytree, "random_state": self.random_state,
                  "n_jobs": 1, "tree_method": "hist", "verbosity": 0}
        dtrain = xgb.QuantileDMatrix(np.asarray(X, dtype=np.float64), label=y01, weight=weight,
                                     nthread=1)
        # the loop of xgboost.train without callbacks, and without its final cache release
        # (Booster.reset, ~10 % of a fit this size): the same boosting rounds, same model
        self.booster_ = xgb.Booster(params, [dtrain])
        for i in range(self.n_estimators):
            self.booster_.update(dtrain, i)
        n_features = dtrain.num_col()
        score = self.booster_.get_score(importance_type="gain")
        imp = np.array([score.get(f"f{i}", 0.0) for i in range(n_features)], dtype=float)
        self.feature_importances_ = imp / imp.sum() if imp.sum() > 0 else imp
        return self

    def predict_proba(self, X):
        p1 = self.booster_.inplace_predict(np.asarray(X, dtype=np.float64))
        return np.column_stack([1.0 - p1, p1])

    def predict(self, X):
        return self.classes_[(self.predict_proba(X)[:, 1] > 0.5).astype(int)]


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------

def model_catalogue(seed: int = 0) -> dict:
    """Every known model: name -> (estimator, small hyper-parameter grid).

    The estimators are the lean equivalents of ``SVC(kernel="linear" | "rbf",
    class_weight="balanced")``, ``LogisticRegression(class_weight="balanced")``
    with L2 (lbfgs) and elastic-net (saga) penalties,
    ``RandomForestClassifier(class_weight="balanced")`` and ``XGBClassifier``
    (see the class docstrings; tests compare each with scikit-learn's).
    Grids are deliberately small (nested CV with permutations multiplies every
    grid point by folds x repeats x permutations). A grid with one point skips
    the inner search.
    """
    return {
        "svm_linear": (BalancedSVC(kernel="linear"), {"C": [0.01, 0.1, 1.0]}),
        "svm_rbf": (BalancedSVC(kernel="rbf"), {"C": [1.0, 10.0]}),
        "logreg_l2": (BalancedLogisticL2(), {"C": [0.01, 0.1, 1.0]}),
        "logreg_enet": (BalancedLogisticENet(l1_ratio=0.5, tol=1e-3, max_iter=5000, random_state=seed),
                        {"C": [0.1, 1.0]}),
        "random_forest": (BalancedRandomForest(n_estimators=100, max_features="sqrt",
                                               min_samples_leaf=2, random_state=seed), {}),
        "xgboost": (BalancedXGBClassifier(random_state=seed), {}),
    }


def resolve_models(models, seed: int = 0, grids: dict | None = None) -> dict:
    """Pick models by name (config ``classification.models``); optional grid overrides."""
    catalogue = model_catalogue(seed)
    names = list(models) if models else list(DEFAULT_MODELS)
    unknown = [m for m in names if m not in catalogue]
    if unknown:
        raise InputError(None, f"unknown classification model(s) {unknown}",
                         f"set classification.models to a list drawn from {sorted(catalogue)}")
    out = {}
    for m in names:
        est, grid = catalogue[m]
        if grids and m in grids:
            grid = {k: list(v) for k, v in grids[m].items()}
        out[m] = (est, grid)
    return out


def _grid_points(grid: dict) -> list[dict]:
    if not grid:
        return [{}]
    keys = sorted(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]


def _score(est, X) -> np.ndarray:
    """Continuous score for the positive class (decision function or probability)."""
    if hasattr(est, "decision_function"):
        return est.decision_function(X)
    return est.predict_proba(X)[:, 1]


def _weights(est) -> np.ndarray | None:
    if hasattr(est, "coef_"):
        return np.ravel(est.coef_)
    if hasattr(est, "feature_importances_"):
        return np.asarray(est.feature_importances_, dtype=float)
    return None                                     # RBF SVM: no per-feature weight


def auc_score(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney U / n1 n0, ties counted half)."""
    y = np.asarray(y).astype(bool)
    n1, n0 = y.sum(), (~y).sum()
    if n1 == 0 or n0 == 0:
        return float("nan")
    _, inv, counts = np.unique(np.asarray(s, dtype=float), return_inverse=True, return_counts=True)
    r = (np.cumsum(counts) - (counts - 1) / 2.0)[inv.ravel()]     # average ranks (ties)
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


# ---------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------

@dataclass
class Settings:
    """How the cross-validation runs (config ``classification.*``)."""

    models: tuple = DEFAULT_MODELS
    n_splits: int = 5
    n_repeats: int = 10
    inner_splits: int = 3
    n_permutations: int = 1000
    permutation_repeats: int = 1
    study_permutations: int = 0
    modes: tuple = ("nested", "study", "loso")
    screen_alpha: float = 0.05
    screen_k: int | None = None
    screen_min_features: int = 5
    screen_max_features: int | None = None
    harmonise_site: bool = True
    n_bootstrap: int = 2000
    seed: int = 0
    n_jobs: int = 1
    grids: dict | None = None

    def screen(self) -> UnivariateScreen:
        return UnivariateScreen(alpha=self.screen_alpha, k=self.screen_k,
                                min_features=self.screen_min_features,
                                max_features=self.screen_max_features)


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------

@dataclass
class Dataset:
    """Features, labels and confounds of the subjects in the two groups."""

    X: np.ndarray                       # (n, p) regional SFC (NaN allowed)
    y: np.ndarray                       # (n,) 1 = positive, 0 = negative
    regions: list
    subjects: list
    covariates: np.ndarray              # (n, c) numeric (dummy-coded), NaN allowed
    covariate_names: list
    sites: np.ndarray | None = None     # (n,) site labels or None
    positive: str = "TRD"
    negative: str = "nTRD"
    source: str | None = None
    site_onehot: np.ndarray = field(init=False)

    def __post_init__(self):
        if self.sites is None:
            self.site_onehot = np.zeros((len(self.y), 0))
        else:
            levels = sorted(pd.unique(pd.Series(self.sites).astype(str)))
            s = pd.Series(self.sites).astype(str).to_numpy()
            self.site_onehot = (s[:, None] == np.array(levels)[None, :]).astype(float)

    def design(self, harmonise_site: bool = True) -> tuple[np.ndarray, int, int]:
        """``[features | covariates | site one-hot]`` and the confound counts."""
        blocks = [self.X, self.covariates]
        n_sites = 0
        if harmonise_site and self.sites is not None and self.site_onehot.shape[1] > 1:
            blocks.append(self.site_onehot)
            n_sites = self.site_onehot.shape[1]
        return np.hstack(blocks), self.covariates.shape[1], n_sites


def load_dataset(sfc_path, participants_path, group_column: str = "group", positive: str = "TRD",
                 negative: str = "nTRD", covariates=(), site_column: str | None = None,
                 drop_empty_regions: bool = True) -> Dataset:
    """Read the group SFC table and participants.tsv into a :class:`Dataset`.

    Parameters
    ----------
    sfc_path : path-like
        ``group/atlas-{atlas}_desc-{method}_sfc.tsv``: participant_id + one
        column per region (``n/a`` for missing).
    participants_path : path-like
        BIDS participants.tsv with the group column, covariates and site.
    group_column, positive, negative : str
        Which subjects are classified (others, e.g. healthy controls, are left out).
    covariates : list of str
        Covariates regressed out inside the training folds; non-numeric ones
        (e.g. sex) are dummy-coded.
    site_column : str, optional
        Site labels (harmonisation and leave-one-site-out validation).
    drop_empty_regions : bool
        Regions that are n/a for every classified subject carry no information:
        leave them out with a warning (True) or stop (False). A table in which
        every region is n/a always stops.
    """
    sfc_path, participants_path = Path(sfc_path), Path(participants_path)
    for pth, what in ((sfc_path, "group SFC table"), (participants_path, "participants table")):
        if not pth.is_file():
            raise InputError(pth, f"{what} not found", "run the group stage first or check the path")
    table = pd.read_csv(sfc_path, sep="\t", na_values=["n/a"], dtype={"participant_id": str})
    if "participant_id" not in table.columns or table.shape[1] < 2:
        raise InputError(sfc_path, "group SFC table needs a participant_id column and one column per region",
                         "use the table written by the workflow's group SFC rule")
    needed = [group_column] + list(covariates) + ([site_column] if site_column else [])
    parts = read_participants(participants_path, group_column, columns=needed[1:])
    # Unit IDs (sub-01, or sub-01_ses-1 with sessions) belong to the participant sub-01.
    owner = table["participant_id"].map(participant_of)
    if owner.duplicated().any():
        raise InputError(sfc_path, f"participant {owner[owner.duplicated()].iloc[0]} has more than one unit "
                         "(session) in the table", "classify one session per participant: set the config key "
                         "sessions to first or a label")
    unknown = sorted(set(owner) - set(parts.index))
    if unknown:
        raise InputError(sfc_path, f"{len(unknown)} subject(s) not in the participants table "
                         f"(e.g. {unknown[:3]})", f"add them to {participants_path} or rebuild the table")
    info = parts[list(dict.fromkeys(needed))].reindex(owner.to_numpy())
    info.index = table.index
    merged = pd.concat([table, info.drop(columns=[c for c in info.columns if c in table.columns])], axis=1)
    groups = merged[group_column].astype(str)
    keep = groups.isin([positive, negative]).to_numpy()
    merged = merged.loc[keep].reset_index(drop=True)
    y = (merged[group_column].astype(str) == positive).to_numpy().astype(int)
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    if n_pos == 0 or n_neg == 0:
        have = sorted(groups.unique())
        raise InputError(participants_path,
                         f"classification needs subjects of both '{positive}' and '{negative}' in column "
                         f"'{group_column}', found {n_pos} and {n_neg} (groups present: {have})",
                         "set classification.positive / classification.negative to two groups of the table")
    regions = [c for c in table.columns if c != "participant_id"]
    X = merged[regions].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    empty_mask = np.isnan(X).all(axis=0)
    empty = [r for r, e in zip(regions, empty_mask) if e]
    if len(empty) == len(regions) or (empty and not drop_empty_regions):
        what = "all regions are" if len(empty) == len(regions) else f"{len(empty)} region(s) are"
        raise InputError(sfc_path, f"{what} n/a for every classified subject (e.g. {empty[:5]})",
                         "check the coupling stage for these regions (empty SC rows) or use an atlas "
                         "whose regions all have connections")
    if empty:
        warnings.warn(f"{sfc_path}: {len(empty)} region(s) are n/a for every classified subject and are "
                      f"left out of the classification: {empty}")
        regions = [r for r, e in zip(regions, empty_mask) if not e]
        X = X[:, ~empty_mask]
    cov_blocks, cov_names = [], []
    for c in covariates:
        col = merged[c]
        num = pd.to_numeric(col, errors="coerce")
        if num.notna().sum() == col.notna().sum():
            cov_blocks.append(num.to_numpy(dtype=float)[:, None])
            cov_names.append(c)
        else:
            levels = sorted(col.dropna().astype(str).unique())
            for lev in levels[1:]:
                d = np.array((col.astype(str) == lev).astype(float), dtype=float)
                d[col.isna().to_numpy()] = np.nan
                cov_blocks.append(d[:, None])
                cov_names.append(f"{c}[{lev}]")
    C = np.hstack(cov_blocks) if cov_blocks else np.zeros((len(y), 0))
    sites = None
    if site_column:
        if merged[site_column].isna().any():
            bad = merged.loc[merged[site_column].isna(), "participant_id"].tolist()[:3]
            raise InputError(participants_path, f"site is n/a for {bad}", "fill in the site of every subject")
        sites = merged[site_column].astype(str).to_numpy()
    return Dataset(X=X, y=y, regions=regions, subjects=merged["participant_id"].tolist(),
                   covariates=C, covariate_names=cov_names, sites=sites, positive=positive,
                   negative=negative, source=os.fspath(sfc_path))


def check_folds(ds: Dataset, settings: Settings) -> None:
    """Stop when the smaller group cannot fill the outer and inner folds."""
    n_min = int(min(ds.y.sum(), (1 - ds.y).sum()))
    need_outer = settings.n_splits
    inner_train_min = n_min - int(np.ceil(n_min / settings.n_splits))
    if n_min < need_outer or inner_train_min < settings.inner_splits:
        raise InputError(ds.source, f"the smaller group has {n_min} subject(s), too few for "
                         f"{settings.n_splits} outer x {settings.inner_splits} inner stratified folds",
                         "add subjects or lower classification.n_splits / classification.inner_splits")


# ---------------------------------------------------------------------------------------
# The reference pipeline
# ---------------------------------------------------------------------------------------

def make_pipeline(estimator, n_covariates: int = 0, n_sites: int = 0,
                  screen: UnivariateScreen | None = None) -> Pipeline:
    """The nested procedure of one model as a scikit-learn Pipeline.

    Input columns: ``[features | covariates | site one-hot]``
    (:meth:`Dataset.design`). Wrap it in ``GridSearchCV(..., param_grid={"clf__C": ...})``
    for the inner search; the engine of :func:`run_classification` fits the same steps.
    """
    return Pipeline([
        ("confounds", ConfoundRegressor(n_covariates=n_covariates, n_sites=n_sites)),
        ("scale", StandardScaler()),
        ("screen", screen if screen is not None else UnivariateScreen()),
        ("clf", clone(estimator)),
    ])


# ---------------------------------------------------------------------------------------
# Engine
# ---------------------------------------------------------------------------------------

def _prepare(D_tr, y_tr, D_te, n_cov, n_sites, screen):
    """Fit preprocessing (+ screen) on training rows; transform both sets."""
    if screen is None:                              # study mode: already selected on all subjects
        return D_tr, D_te, None
    conf = ConfoundRegressor(n_cov, n_sites).fit(D_tr)
    Z_tr, Z_te = _standardise(conf.transform(D_tr), conf.transform(D_te))
    F, p = anova_f(Z_tr, y_tr)                     # the screen of make_pipeline, on training rows
    support = _select_from_p(p, F, screen.alpha, screen.k, screen.min_features, screen.max_features)
    return Z_tr[:, support], Z_te[:, support], support


def _standardise(Z_tr, Z_te):
    """``StandardScaler().fit(Z_tr)`` applied to both sets, without the estimator overhead.

    Same rule for (near-)constant columns: scale 1 when the variance is within
    rounding error of zero (scikit-learn's ``_is_constant_feature``).
    """
    n = Z_tr.shape[0]
    mean = Z_tr.mean(axis=0)
    var = Z_tr.var(axis=0)
    eps = np.finfo(np.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    scale = np.sqrt(var)
    scale[constant | (scale < 10 * eps)] = 1.0
    return (Z_tr - mean) / scale, (Z_te - mean) / scale


_FACTORY: dict = {}


def _new(models, name, params):
    """A fresh estimator with ``params`` set: ``clone(est).set_params(**params)``, but
    without re-inspecting the constructor for each of the thousands of fits."""
    est = models[name][0]
    key = (name, id(est))
    if key not in _FACTORY:
        if len(_FACTORY) > 64:
            _FACTORY.clear()
        _FACTORY[key] = (type(est), est.get_params(deep=False), est)   # est kept: id stays unique
    cls, base, _ = _FACTORY[key]
    return cls(**{**base, **params})


def _fit_models(D_tr, y_tr, D_te, models, n_cov, n_sites, screen, inner_splits, inner_seed,
                want_weights=False):
    """One outer fold: inner search for every model, refit, score the test rows."""
    S_tr, S_te, support = _prepare(D_tr, y_tr, D_te, n_cov, n_sites, screen)
    points = {m: _grid_points(g) for m, (est, g) in models.items()}
    best = {m: pts[0] for m, pts in points.items()}
    if any(len(p) > 1 for p in points.values()):
        inner = StratifiedKFold(inner_splits, shuffle=True, random_state=inner_seed)
        folds = [_prepare(D_tr[a], y_tr[a], D_tr[b], n_cov, n_sites, screen)[:2] + (y_tr[a], y_tr[b])
                 for a, b in inner.split(D_tr, y_tr)]
        for m, pts in points.items():
            if len(pts) < 2:
                continue
            means = []
            for params in pts:
                aucs = []
                for A, B, ya, yb in folds:
                    est = _new(models, m, params).fit(A, ya)
                    aucs.append(auc_score(yb, _score(est, B)))
                means.append(np.mean(aucs))
            best[m] = pts[int(np.argmax(means))]
    out = {}
    for m in models:
        est = _new(models, m, best[m]).fit(S_tr, y_tr)
        res = {"score": _score(est, S_te), "pred": np.asarray(est.predict(S_te)).astype(int),
               "params": best[m]}
        if want_weights:
            res["support"] = support
            res["weights"] = _weights(est)
        out[m] = res
    return out


def _cross_validate(D, y, splits, models, n_cov, n_sites, screen, inner_splits, inner_seed,
                    want_weights=False):
    """Out-of-fold scores and predictions of every model over one set of outer splits."""
    n = len(y)
    scores = {m: np.full(n, np.nan) for m in models}
    preds = {m: np.full(n, -1) for m in models}
    fits = {m: [] for m in models}
    for tr, te in splits:
        res = _fit_models(D[tr], y[tr], D[te], models, n_cov, n_sites, screen, inner_splits,
                          inner_seed, want_weights)
        for m, r in res.items():
            scores[m][te] = r["score"]
            preds[m][te] = r["pred"]
            fits[m].append(r)
    return scores, preds, fits


@contextlib.contextmanager
def _worker():
    """One BLAS/OpenMP thread per worker, no repeated input validation, quiet solvers.

    Finite inputs are guaranteed (NaN is imputed by :class:`ConfoundRegressor`
    before any scikit-learn estimator sees the data).
    """
    from sklearn import config_context
    from threadpoolctl import threadpool_limits
    with warnings.catch_warnings(), threadpool_limits(1), \
            config_context(assume_finite=True, skip_parameter_validation=True):
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="xgboost")
        yield


def _observed_repeat(D, y, models, n_cov, n_sites, screen, settings, repeat):
    with _worker():
        outer = StratifiedKFold(settings.n_splits, shuffle=True, random_state=settings.seed + repeat)
        return _cross_validate(D, y, list(outer.split(D, y)), models, n_cov, n_sites, screen,
                               settings.inner_splits, settings.seed, want_weights=True)


def _loso_run(D, y, sites, models, n_cov, n_sites, screen, settings):
    with _worker():
        splits = list(LeaveOneGroupOut().split(D, y, groups=sites))
        return _cross_validate(D, y, splits, models, n_cov, n_sites, screen,
                               settings.inner_splits, settings.seed, want_weights=True)


def _permutation_seeds(seed: int, n: int, tag: int) -> list:
    return [np.random.SeedSequence([seed, tag, j]) for j in range(n)]


def _null_nested(D, y, models, n_cov, n_sites, screen, settings, seeds):
    """Mean AUC over ``permutation_repeats`` repeats for each permutation (seeds given)."""
    out = []
    with _worker():
        for ss in seeds:
            rng = np.random.default_rng(ss)
            yp = rng.permutation(y)
            aucs = {m: [] for m in models}
            for r in range(settings.permutation_repeats):
                outer = StratifiedKFold(settings.n_splits, shuffle=True,
                                        random_state=int(rng.integers(2**31 - 1)))
                sc, _, _ = _cross_validate(D, yp, list(outer.split(D, yp)), models, n_cov, n_sites,
                                           screen, settings.inner_splits, settings.seed)
                for m in models:
                    aucs[m].append(auc_score(yp, sc[m]))
            out.append({m: float(np.mean(v)) for m, v in aucs.items()})
    return out


def _null_study(Z, y, models, screen, settings, seeds):
    """Null of the study procedure: the all-subject screen is redone for each permutation.

    ``Z`` is preprocessed on all subjects once (label-free); the F statistics of
    all permutations in the batch come from one matrix product (:func:`anova_f`).
    """
    rngs = [np.random.default_rng(ss) for ss in seeds]
    Yp = np.stack([rng.permutation(y) for rng in rngs], axis=1)
    F, p = anova_f(Z, Yp)
    out = []
    with _worker():
        for j, rng in enumerate(rngs):
            yp = Yp[:, j]
            sel = _select_from_p(p[j], F[j], screen.alpha, screen.k, screen.min_features,
                                 screen.max_features)
            aucs = {m: [] for m in models}
            for r in range(settings.permutation_repeats):
                outer = StratifiedKFold(settings.n_splits, shuffle=True,
                                        random_state=int(rng.integers(2**31 - 1)))
                sc, _, _ = _cross_validate(Z[:, sel], yp, list(outer.split(Z, yp)), models, 0, 0,
                                           None, settings.inner_splits, settings.seed)
                for m in models:
                    aucs[m].append(auc_score(yp, sc[m]))
            out.append({m: float(np.mean(v)) for m, v in aucs.items()})
    return out


def _chunks(items: list, n_chunks: int) -> list:
    n_chunks = max(1, min(n_chunks, len(items)))
    return [items[i::n_chunks] for i in range(n_chunks)]


def _parallel(n_jobs):
    from joblib import Parallel
    return Parallel(n_jobs=n_jobs, backend="loky" if n_jobs != 1 else "sequential")


def bootstrap_auc(y, score_matrix, n_boot: int, seed: int) -> np.ndarray:
    """Stratified bootstrap over subjects of the mean AUC over repeats.

    Parameters
    ----------
    y : (n,) labels; score_matrix : (R, n) out-of-fold scores of R repeats.

    Returns
    -------
    (n_boot,) bootstrap distribution of the mean-over-repeats AUC.
    """
    y = np.asarray(y).astype(bool)
    S = np.atleast_2d(score_matrix)
    pos, neg = np.nonzero(y)[0], np.nonzero(~y)[0]
    rng = np.random.default_rng(seed)
    total = np.zeros(n_boot)
    batch = 500
    for start in range(0, n_boot, batch):
        b = min(batch, n_boot - start)
        ip = rng.choice(pos, size=(b, len(pos)), replace=True)
        ineg = rng.choice(neg, size=(b, len(neg)), replace=True)
        idx = np.hstack([ip, ineg])
        acc = np.zeros(b)
        for s in S:
            r = stats.rankdata(s[idx], axis=1)
            acc += (r[:, :len(pos)].sum(axis=1) - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))
        total[start:start + b] = acc / len(S)
    return total


def _metrics(y, pred):
    y = np.asarray(y).astype(int)
    pred = np.asarray(pred).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    sens = tp / max(int(y.sum()), 1)
    spec = tn / max(int((1 - y).sum()), 1)
    return {"accuracy": (tp + tn) / len(y), "sensitivity": sens, "specificity": spec,
            "balanced_accuracy": (sens + spec) / 2}


# ---------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------

@dataclass
class ClassificationResult:
    """Tables of one atlas x method (see :func:`write_outputs`)."""

    summary: pd.DataFrame          # one row per mode x model (classification.tsv columns)
    predictions: pd.DataFrame      # out-of-fold score / prediction per subject, repeat, model, mode
    roc: pd.DataFrame              # ROC curve: mean TPR over repeats on a fixed FPR grid
    features: pd.DataFrame         # per region: selection frequency, mean weight over outer fits
    null: pd.DataFrame             # permutation null AUCs per model


def _roc_rows(y, S, mode, model, grid):
    """Vertically averaged ROC over repeats (Fawcett 2006) on a fixed FPR grid."""
    from sklearn.metrics import roc_curve
    tprs = []
    for s in S:
        fpr, tpr, _ = roc_curve(y, s)
        tprs.append(np.interp(grid, fpr, tpr, left=0.0))
    tprs = np.array(tprs)
    tprs[:, 0] = 0.0
    return pd.DataFrame({"mode": mode, "model": model, "fpr": grid, "tpr": tprs.mean(axis=0),
                         "tpr_sd": tprs.std(axis=0)})


def _mode_tables(ds, mode, cv_text, runs, models, settings, p_values, n_perm, support_fixed=None):
    """Summary rows, predictions, ROC and features of one mode from its repeats."""
    y = ds.y
    rows, preds, rocs, feats = [], [], [], []
    grid = np.linspace(0, 1, 101)
    n_regions = len(ds.regions)
    for m in models:
        S = np.array([r[0][m] for r in runs])          # (R, n)
        P = np.array([r[1][m] for r in runs])
        aucs = np.array([auc_score(y, s) for s in S])
        boot = bootstrap_auc(y, S, settings.n_bootstrap, settings.seed)
        met = pd.DataFrame([_metrics(y, p) for p in P]).mean()
        rows.append({"model": m, "mode": mode, "auc": aucs.mean(),
                     "auc_ci_low": np.percentile(boot, 2.5), "auc_ci_high": np.percentile(boot, 97.5),
                     "p_permutation": p_values.get(m, np.nan), "n_positive": int(y.sum()),
                     "n_negative": int((1 - y).sum()), "cv": cv_text, **met.to_dict(),
                     "auc_sd_repeats": aucs.std(ddof=1) if len(aucs) > 1 else np.nan,
                     "n_permutations": n_perm})
        for rep, (s, p) in enumerate(zip(S, P)):
            preds.append(pd.DataFrame({"mode": mode, "model": m, "repeat": rep,
                                       "participant_id": ds.subjects,
                                       "group": np.where(y == 1, ds.positive, ds.negative),
                                       "y_true": y, "score": s, "y_pred": p}))
        rocs.append(_roc_rows(y, S, mode, m, grid))
        sel = np.zeros(n_regions)
        wsum, wsq, n_fit, has_w = np.zeros(n_regions), np.zeros(n_regions), 0, True
        for r in runs:
            for fit in r[2][m]:
                support = fit["support"] if fit["support"] is not None else support_fixed
                idx = np.nonzero(support)[0]
                sel[idx] += 1
                w = np.zeros(n_regions)
                if fit["weights"] is None:
                    has_w = False
                else:
                    w[idx] = fit["weights"]
                wsum += w
                wsq += w ** 2
                n_fit += 1
        mean = wsum / n_fit
        sd = np.sqrt(np.maximum(wsq / n_fit - mean ** 2, 0))
        feats.append(pd.DataFrame({"mode": mode, "model": m, "index": np.arange(1, n_regions + 1),
                                   "name": ds.regions, "selection_frequency": sel / n_fit,
                                   "weight_mean": mean if has_w else np.nan,
                                   "weight_sd": sd if has_w else np.nan, "n_fits": n_fit}))
    return rows, preds, rocs, feats


def run_classification(ds: Dataset, settings: Settings | None = None) -> ClassificationResult:
    """Classify ``ds.positive`` vs ``ds.negative`` with every model and mode.

    Parameters
    ----------
    ds : Dataset
        From :func:`load_dataset`.
    settings : Settings
        Folds, repeats, permutations, screen, models, seed, n_jobs.

    Returns
    -------
    ClassificationResult
    """
    settings = settings or Settings()
    check_folds(ds, settings)
    models = resolve_models(settings.models, settings.seed, settings.grids)
    D, n_cov, n_sites = ds.design(settings.harmonise_site)
    y = ds.y
    screen = settings.screen()
    par = _parallel(settings.n_jobs)
    from joblib import delayed
    modes = [m for m in settings.modes]
    rows, preds, rocs, feats, nulls = [], [], [], [], []
    inner = f"inner {settings.inner_splits}-fold stratified grid search"
    scr = (f"top {settings.screen_k}" if settings.screen_k else
           f"p<{settings.screen_alpha} (min {settings.screen_min_features})")
    # many small chunks: a worker slowed by other load leaves a short tail (results do not
    # depend on the chunking: each permutation has its own seed)
    n_chunks = max(1, settings.n_jobs if settings.n_jobs > 0 else os.cpu_count()) * 16

    if "nested" in modes:
        runs = par(delayed(_observed_repeat)(D, y, models, n_cov, n_sites, screen, settings, r)
                   for r in range(settings.n_repeats))
        p_values = {}
        if settings.n_permutations > 0:
            seeds = _permutation_seeds(settings.seed, settings.n_permutations, 1)
            null = [x for chunk in par(delayed(_null_nested)(D, y, models, n_cov, n_sites, screen,
                                                             settings, c)
                                       for c in _chunks(seeds, n_chunks)) for x in chunk]
            null_df = pd.DataFrame(null)
            k = min(settings.permutation_repeats, settings.n_repeats)
            for m in models:
                obs = np.mean([auc_score(y, runs[r][0][m]) for r in range(k)])
                p_values[m] = (1 + int((null_df[m].to_numpy() >= obs - 1e-12).sum())) / (1 + len(null_df))
            nulls.append(null_df.assign(mode=NESTED, permutation=np.arange(len(null_df))))
        cv = (f"nested: outer {settings.n_splits}-fold stratified x {settings.n_repeats} repeats, {inner}; "
              f"screen {scr} inside training folds; permutations: {settings.n_permutations} x "
              f"{settings.permutation_repeats} outer repeat(s)")
        out = _mode_tables(ds, NESTED, cv, runs, models, settings, p_values, settings.n_permutations)
        for acc, part in zip((rows, preds, rocs, feats), out):
            acc.extend(part)

    if "study" in modes:
        pre = Pipeline([("confounds", ConfoundRegressor(n_cov, n_sites)), ("scale", StandardScaler())])
        Z = pre.fit_transform(D)                       # on ALL subjects: the study's shortcut
        support = clone(screen).fit(Z, y).support_     # screen on ALL subjects: the leak
        Zs = Z[:, support]
        runs = par(delayed(_observed_repeat)(Zs, y, models, 0, 0, None, settings, r)
                   for r in range(settings.n_repeats))
        p_values = {}
        if settings.study_permutations > 0:
            seeds = _permutation_seeds(settings.seed, settings.study_permutations, 2)
            null = [x for chunk in par(delayed(_null_study)(Z, y, models, screen, settings, c)
                                       for c in _chunks(seeds, n_chunks)) for x in chunk]
            null_df = pd.DataFrame(null)
            k = min(settings.permutation_repeats, settings.n_repeats)
            for m in models:
                obs = np.mean([auc_score(y, runs[r][0][m]) for r in range(k)])
                p_values[m] = (1 + int((null_df[m].to_numpy() >= obs - 1e-12).sum())) / (1 + len(null_df))
            nulls.append(null_df.assign(mode=STUDY, permutation=np.arange(len(null_df))))
        cv = (f"study: preprocessing and screen {scr} on ALL subjects ({int(support.sum())} regions), "
              f"then outer {settings.n_splits}-fold stratified x {settings.n_repeats} repeats, {inner}; "
              f"permutations (screen redone per permutation): {settings.study_permutations}")
        out = _mode_tables(ds, STUDY, cv, runs, models, settings, p_values, settings.study_permutations,
                           support_fixed=support)
        for acc, part in zip((rows, preds, rocs, feats), out):
            acc.extend(part)

    if "loso" in modes and ds.sites is not None:
        site_levels = np.unique(ds.sites)
        ok = len(site_levels) >= 2 and all(
            len(np.unique(y[ds.sites != s])) == 2 and
            min(y[ds.sites != s].sum(), (1 - y[ds.sites != s]).sum()) >= settings.inner_splits
            for s in site_levels)
        if ok:
            run = _loso_run(D, y, ds.sites, models, n_cov, n_sites, screen, settings)
            cv = (f"leave-one-site-out: {len(site_levels)} sites as test sets, {inner}; "
                  f"screen {scr} inside training sites; no permutations")
            out = _mode_tables(ds, LOSO, cv, [run], models, settings, {}, 0)
            for acc, part in zip((rows, preds, rocs, feats), out):
                acc.extend(part)
        else:
            warnings.warn(f"{ds.source}: leave-one-site-out skipped (needs >= 2 sites and both groups "
                          "in every training set)")

    return ClassificationResult(
        summary=pd.DataFrame(rows),
        predictions=pd.concat(preds, ignore_index=True),
        roc=pd.concat(rocs, ignore_index=True),
        features=pd.concat(feats, ignore_index=True),
        null=pd.concat(nulls, ignore_index=True) if nulls else pd.DataFrame(),
    )


# ---------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------

SUMMARY_COLUMNS = ["atlas", "method", "model", "auc", "auc_ci_low", "auc_ci_high", "p_permutation",
                   "n_positive", "n_negative", "cv", "accuracy", "sensitivity", "specificity",
                   "balanced_accuracy", "mode", "auc_sd_repeats", "n_permutations"]
KINDS = ("classification", "predictions", "roc", "features", "null")


def output_paths(output_dir, atlas: str, method: str) -> dict:
    """Per atlas x method outputs: ``group/classification/atlas-{a}_desc-{m}_{kind}.tsv``.

    kind: ``classification`` (rows of classification.tsv), ``predictions``
    (out-of-fold scores per subject), ``roc``, ``features`` (selection
    frequency and mean weight per region), ``null`` (permutation AUCs).
    (Candidates for sfc.paths; kept here until the lead moves them.)
    """
    return {k: paths.group_file(output_dir, f"classification/atlas-{atlas}_desc-{method}_{k}.tsv")
            for k in KINDS}


def summary_paths(output_dir) -> dict:
    """``group/classification.tsv`` (all rows) and ``group/classification_atlases.tsv`` (side by side)."""
    return {"table": paths.classification(output_dir),
            "atlases": paths.group_file(output_dir, "classification_atlases.tsv")}


def write_outputs(result: ClassificationResult, paths: dict, atlas: str, method: str) -> None:
    """Write the five tables of one atlas x method (paths from :func:`output_paths`)."""
    from .io import write_tsv
    summary = result.summary.assign(atlas=atlas, method=method)
    write_tsv(paths["classification"], summary[SUMMARY_COLUMNS])
    for kind in ("predictions", "roc", "features", "null"):
        write_tsv(paths[kind], getattr(result, kind).assign(atlas=atlas, method=method))


def combine_tables(paths) -> pd.DataFrame:
    """Concatenate per atlas x method classification tables into classification.tsv rows."""
    tables = [pd.read_csv(p, sep="\t", na_values=["n/a"]) for p in paths]
    return pd.concat(tables, ignore_index=True)[SUMMARY_COLUMNS]


def cross_atlas_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The same models on each atlas side by side.

    One row per method x mode x model; for each atlas the columns
    ``auc_<atlas>``, ``auc_ci_low_<atlas>``, ``auc_ci_high_<atlas>``,
    ``p_permutation_<atlas>``, then ``best_atlas`` (highest AUC).
    """
    values = ["auc", "auc_ci_low", "auc_ci_high", "p_permutation"]
    wide = table.pivot_table(index=["method", "mode", "model"], columns="atlas", values=values,
                             aggfunc="first", dropna=False)
    atlases = list(dict.fromkeys(table["atlas"]))
    cols = [(v, a) for a in atlases for v in values]
    wide = wide.reindex(columns=pd.MultiIndex.from_tuples(cols))
    wide.columns = [f"{v}_{a}" for v, a in wide.columns]
    aucs = wide[[f"auc_{a}" for a in atlases]]
    wide["best_atlas"] = [atlases[int(np.nanargmax(r))] if np.isfinite(r).any() else np.nan
                          for r in aucs.to_numpy(dtype=float)]
    order = {m: i for i, m in enumerate(dict.fromkeys(table["model"]))}
    wide = wide.reset_index()
    wide["_o"] = wide["model"].map(order)
    return wide.sort_values(["method", "mode", "_o"]).drop(columns="_o").reset_index(drop=True)
