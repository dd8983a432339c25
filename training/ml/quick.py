"""Quick training: a linear head on cached frozen-backbone features, scored by k-fold CV.

The head is an L2-regularised logistic regression (softmax over the tags plus a background class
for multiclass, one sigmoid per tag for multilabel) fitted full-batch by scipy's L-BFGS-B in
float64 numpy, in the training rows' own coordinates when there are fewer rows than dimensions:
on 200 images of 1280-d features a fit takes about 0.05 s of CPU. It is the same objective as
scikit-learn's LogisticRegression, so the two agree (bench/quick_training.py).
Features are standardised per fit, a `-levels` embedding's blocks weighed up against its last
map (training.ml.embedding_parts); the scaling is folded back into the weights so the head
applies to raw embeddings. C, and class weighting when the tags are imbalanced, are chosen by an
inner cross-validation inside each outer fold (select_settings), so the out-of-fold scores stay
honest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.special import expit, logsumexp
from threadpoolctl import threadpool_limits

from .embedding_parts import head_column_scale
from .errors import Cancelled, DatasetTooSmall, TrainingDiverged
from .seeding import seed_everything

ProgressFn = Callable[[str, float], None]


def _ignore_progress(phase: str, fraction: float) -> None:
    return None


def _never_stop() -> bool:
    return False


@dataclass(frozen=True)
class LinearHead:
    """`weight` (C, D) and `bias` (C,), C = T+1 for multiclass (last = background) or T."""

    weight: torch.Tensor
    bias: torch.Tensor
    multilabel: bool

    def probabilities(self, features: np.ndarray | torch.Tensor) -> np.ndarray:
        """Tag probabilities (N, T) float32; the background class is never reported."""
        x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        return head_probabilities(x, self.weight, self.bias, multilabel=self.multilabel)


def head_probabilities(
    features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *, multilabel: bool
) -> np.ndarray:
    """Apply a linear head to (N, D) features -> (N, T) float32 probabilities."""
    logits = features.to(weight.dtype) @ weight.T + bias
    # Multiclass drops the last (background) column: it is never reported as a tag.
    probs = torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)[:, :-1]
    result: np.ndarray = probs.detach().to(torch.float32).numpy()
    return result


@dataclass(frozen=True)
class QuickResult:
    head: LinearHead
    oof_scores: np.ndarray  # (N, T) float32, each row scored by the fold model that never saw it
    fold_of: np.ndarray  # (N,) int, the fold each image was held out in
    epochs: int  # L-BFGS iterations of the final fit
    final_loss: float
    selection: Selection  # the C and class weighting of each fold's head and of the final one


def class_index(targets: np.ndarray) -> np.ndarray:
    """Multiclass targets (N, T) -> class ids (N,), T for an all-zeros (Negative) row."""
    ids: np.ndarray = np.where(targets.any(axis=1), targets.argmax(axis=1), targets.shape[1])
    return ids


def stratified_folds(targets: np.ndarray, n_folds: int, seed: int = 0) -> np.ndarray:
    """Assign each row a fold 0..k-1 so every tag is spread evenly over the folds.

    Multilabel rows are stratified by their rarest tag, the one most at risk of missing a fold.
    Rows of each stratum are shuffled, then dealt round-robin continuing where the previous
    stratum stopped, which keeps fold sizes within one of each other.
    """
    counts = targets.sum(axis=0)
    n, t = targets.shape
    if targets.any():
        rarity = np.where(targets > 0, counts[None, :], np.inf)
        strata = np.where(targets.any(axis=1), rarity.argmin(axis=1), t)
    else:
        strata = np.full(n, t)
    rng = np.random.default_rng(seed)
    fold_of = np.zeros(n, dtype=np.int64)
    dealt = 0
    for stratum in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == stratum))
        fold_of[members] = (dealt + np.arange(len(members))) % n_folds
        dealt += len(members)
    return fold_of


def fold_count(targets: np.ndarray, n_folds: int = 5) -> int:
    """k = min(n_folds, images of the smallest tag); DatasetTooSmall if that is under 2."""
    smallest = int(targets.sum(axis=0).min()) if targets.shape[1] else 0
    k = min(n_folds, smallest)
    if k < 2:
        raise DatasetTooSmall(
            "Every tag needs at least 2 images to cross-validate a model; "
            f"the smallest tag has {smallest}."
        )
    return k


def validate_training_inputs(features: np.ndarray, targets: np.ndarray, multilabel: bool) -> None:
    """Raise ValueError naming the argument when (N, D) features and (N, T) 0/1 targets do not
    fit together (DatasetTooSmall without a tag); quick training and fine-tuning share it."""
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D); got shape {features.shape}.")
    if targets.ndim != 2 or targets.shape[0] != features.shape[0]:
        raise ValueError(
            f"targets must be (N, T) with N = {features.shape[0]}; got shape {targets.shape}."
        )
    if not np.isin(targets, (0, 1)).all():
        raise ValueError("targets must contain only 0 and 1.")
    if not multilabel and (targets.sum(axis=1) > 1).any():
        raise ValueError("multiclass targets must have at most one 1 per row.")
    if targets.shape[1] < 1:
        raise DatasetTooSmall("Training needs at least one tag.")


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch and numpy's BLAS single-threaded for the duration.

    A head fit is thousands of small products (a few hundred kFLOP a step); extra threads only
    add barrier waits, and on a busy 2-core host those waits made each step many times slower
    (torch: 6.4 s vs 0.5 s CPU for a 1000 x 1280 fit; OpenBLAS: 0.7 s vs 0.05 s for a 200-image
    fit beside one other busy process).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(previous)


class _Problem:
    """One fitting problem: standardised training rows, solved in their own row space.

    With an L2 penalty on W and a free bias the optimum W is a combination of the training rows
    (stationarity: W = -C N G^T Z), so when there are fewer rows than dimensions the fit runs on
    Z's principal coordinates U S (n x r, from the eigendecomposition of the n x n Gram matrix)
    instead of Z (n x D, 1,904 for lite0-levels): the same optimum at a fraction of the cost per
    step, and the basis is computed once for every C tried on these rows. Float64 numpy under
    scipy's L-BFGS-B (as scikit-learn's solver): about 0.5 ms a step on 200 rows, less than half
    of what torch.optim.LBFGS spent per step in Python.
    """

    def __init__(self, features: np.ndarray, targets: np.ndarray, multilabel: bool) -> None:
        x = np.asarray(features, dtype=np.float64)
        if not np.isfinite(x).all():
            raise TrainingDiverged("The training loss became NaN or infinite (a feature is not).")
        self.mean = x.mean(axis=0)
        spread = x.std(axis=0, ddof=1) if len(x) > 1 else np.ones(x.shape[1])
        # Standardised, then a -levels embedding's blocks weighed up (embedding_parts); the
        # scale lives in `std`, so raw_head and start_from fold it back like the spread.
        self.std = np.maximum(spread, 1e-6) / head_column_scale(x.shape[1])
        z = (x - self.mean) / self.std
        self.basis: np.ndarray | None = None
        if z.shape[0] < z.shape[1]:
            eigenvalues, vectors = np.linalg.eigh(z @ z.T)
            # Centring leaves at least one empty direction; directions with (relatively)
            # nothing in them are dropped, the rows' coordinates on them being zero.
            keep = eigenvalues > eigenvalues[-1] * 1e-10
            scale = np.sqrt(eigenvalues[keep])
            self.basis = (vectors[:, keep] / scale).T @ z  # (r, D), orthonormal rows
            z = vectors[:, keep] * scale
        self.z = z
        self.multilabel = multilabel
        self.targets = targets
        self.outputs = targets.shape[1] if multilabel else targets.shape[1] + 1

    def _loss_terms(self, balanced: bool) -> tuple[np.ndarray, np.ndarray]:
        """(targets (n, outputs), per-item weights divided by n: (n, outputs) or (n, 1))."""
        n, t = self.targets.shape
        if self.multilabel:
            y = self.targets.astype(np.float64)
            if not balanced:
                return y, np.full((n, 1), 1.0 / n)
            # Per tag, positives and negatives each weigh half of the images (sklearn's
            # "balanced" for a binary problem), so a rare tag's few positives count.
            positives = np.maximum(y.sum(axis=0), 1.0)
            negatives = np.maximum(n - y.sum(axis=0), 1.0)
            return y, np.where(y > 0, 1 / (2 * positives), 1 / (2 * negatives))
        labels = class_index(self.targets)
        y = np.eye(t + 1)[labels]
        if not balanced:
            return y, np.full((n, 1), 1.0 / n)
        counts = np.bincount(labels, minlength=t + 1).astype(np.float64)
        present = int((counts > 0).sum())
        # sklearn's "balanced": n / (classes * count), here divided by n; absent classes: none.
        per_class = np.where(counts > 0, 1.0 / (present * np.maximum(counts, 1.0)), 0.0)
        return y, per_class[labels][:, None]

    def _split(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        split = self.outputs * self.z.shape[1]
        return params[:split].reshape(self.outputs, -1), params[split:]

    def fit(
        self,
        c: float,
        *,
        balanced: bool = False,
        start: np.ndarray | None = None,
        max_iter: int = 200,
        gtol: float = 1e-6,
        should_stop: Callable[[], bool] = _never_stop,
    ) -> tuple[np.ndarray, int, float]:
        """(parameters in this problem's coordinates, iterations, final loss)."""
        z, multilabel = self.z, self.multilabel
        y, scale = self._loss_terms(balanced)
        penalty = 1.0 / (2.0 * c * len(z))

        def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
            if should_stop():
                raise Cancelled("Training was cancelled.")
            weight, bias = self._split(params)
            logits = z @ weight.T + bias
            if multilabel:
                per_item = np.logaddexp(0.0, logits) - y * logits
                residual = expit(logits) - y
            else:
                log_total = logsumexp(logits, axis=1, keepdims=True)
                per_item = (log_total - logits) * y
                residual = np.exp(logits - log_total) - y
            loss = float((per_item * scale).sum() + penalty * (weight * weight).sum())
            if not np.isfinite(loss):
                raise TrainingDiverged("The training loss became NaN or infinite.")
            residual *= scale
            gradient = residual.T @ z + (2.0 * penalty) * weight
            return loss, np.concatenate([gradient.ravel(), residual.sum(axis=0)])

        # Warm start from the solution at a neighbouring C: fewer steps.
        initial = np.zeros(self.outputs * (z.shape[1] + 1)) if start is None else start
        result = minimize(
            objective,
            initial,
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": max_iter, "gtol": gtol, "ftol": 1e-12, "maxcor": 20},
        )
        return result.x, int(result.nit), float(result.fun)

    def raw_head(self, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(weight (outputs, D), bias) on raw features: basis and standardisation folded in."""
        weight, bias = self._split(params)
        full = weight @ self.basis if self.basis is not None else weight
        raw_weight = full / self.std
        return raw_weight, bias - raw_weight @ self.mean

    def start_from(self, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """A head on raw features (raw_head's output) in this problem's coordinates: the warm
        start an outer fold's fit takes from the inner fit on most of the same rows."""
        full = weight * self.std
        coordinates = full @ self.basis.T if self.basis is not None else full
        return np.concatenate([coordinates.ravel(), bias + weight @ self.mean])

    def head(self, params: np.ndarray) -> LinearHead:
        weight, bias = self.raw_head(params)
        return LinearHead(
            torch.from_numpy(weight.astype(np.float32)),
            torch.from_numpy(bias.astype(np.float32)),
            self.multilabel,
        )


def fit_head(
    features: np.ndarray,
    targets: np.ndarray,
    *,
    multilabel: bool,
    c: float = 1.0,
    balanced: bool = False,
    max_iter: int = 200,
    should_stop: Callable[[], bool] = _never_stop,
) -> tuple[LinearHead, int, float]:
    """Fit one L2-regularised logistic head; returns (head, iterations, final loss).

    Objective: mean loss + ||W||^2 / (2 C N), i.e. scikit-learn's C * sum(loss) + ||W||^2 / 2
    divided by N. `balanced` weighs each image by n / (classes x its class's count), as
    sklearn's class_weight="balanced" (per tag, positives vs negatives, for multilabel).
    """
    with _one_thread():
        problem = _Problem(features, targets, multilabel)
        params, iterations, final = problem.fit(
            c, balanced=balanced, max_iter=max_iter, should_stop=should_stop
        )
        return problem.head(params), iterations, final


@dataclass(frozen=True)
class HeadSetting:
    """The regularisation and class weighting of one head fit."""

    c: float
    balanced: bool


# C values tried by the inner cross-validation, ascending so each fit warm-starts from the
# previous one; same units as scikit-learn's C. Five values a factor ~5 apart: each one more
# costs a fit per pair of folds. 6.0 was added on evidence: LogisticRegressionCV chose C of
# 3-1000 on the weak-feature sets of bench/quick_training.py --probe, and without 6.0 quick
# training's held-out accuracy was 0.3-1 point lower on 6 of 25 (set, feature set) pairs, higher
# on 1 (0.5 point). 0.002 (STRONG_C) is tried only where classes are large enough:
# LogisticRegressionCV chose 0.006 on scikit-learn's digits, and with 0.002 quick training gained
# 2.4 points there and 2.5 on the shapes; but on 18 images of three plain colours
# (tests/training/test_training_e2e.py) the inner CV chose it and the out-of-fold mAP fell from
# >= 0.9 to 0.87.
C_GRID: tuple[float, ...] = (0.01, 0.05, 0.25, 1.2, 6.0)
# Tried as well when every class (each tag's positives and negatives, for multilabel) has
# STRONG_C_MIN_IMAGES images or more. With fewer, each inner fold holds one or two images of a
# class and its score is too coarse to pick an extreme setting on (the 18-image case above);
# with more, sets whose features barely tell the classes apart need it (bench/quick_training.py
# --probe: scikit-learn's digits, where LogisticRegressionCV chose 0.006 in every fold).
STRONG_C: tuple[float, ...] = (0.002,)
STRONG_C_MIN_IMAGES = 10
# Used when there are too few folds to select (k < 3): the inner CV needs two folds besides
# the held-out one.
DEFAULT_SETTING = HeadSetting(c=1.0, balanced=False)
# Class weighting is tried only when the largest class has this many times the smallest's
# images; on balanced data it changes nothing and would double the fits.
IMBALANCE_RATIO = 3.0
# Inner fits only rank the settings, warm-started along C: a looser gradient tolerance (the
# one scikit-learn uses) and a cap on the steps.
INNER_GTOL = 1e-4
INNER_MAX_ITER = 60
# The log loss's weight in the inner score: small, so it only ranks settings with (nearly) the
# same error rate.
INNER_LOSS_WEIGHT = 0.01


def _per_class(values: np.ndarray, targets: np.ndarray, multilabel: bool) -> float:
    """Mean of `values` (N,) or (N, T) within each class (each tag and polarity for
    multilabel), then over the classes present: a rare tag weighs as much as a common one."""
    if multilabel:
        parts = [values[targets[:, j] == v, j] for j in range(targets.shape[1]) for v in (0, 1)]
    else:
        labels = class_index(targets)
        parts = [values[labels == cls] for cls in np.unique(labels)]
    means = [float(part.mean()) for part in parts if len(part)]
    return float(np.mean(means)) if means else 0.0


def _inner_score(
    weight: np.ndarray,
    bias: np.ndarray,
    features: np.ndarray,
    targets: np.ndarray,
    multilabel: bool,
) -> float:
    """How a setting did on an inner fold, lower is better: the balanced error rate (mean
    per-class share of misclassified images), plus the balanced log loss x INNER_LOSS_WEIGHT
    to rank settings that make the same mistakes on a small fold.

    Not the log loss alone: on weak features (a probe below 50%) it chose the strongest
    penalty every time, the best calibrated but 2-4 points less accurate than C = 1 or
    LogisticRegressionCV's accuracy-scored choice (bench/quick_training.py --probe)."""
    logits = np.asarray(features, dtype=np.float64) @ weight.T + bias
    if multilabel:
        loss = np.logaddexp(0.0, logits) - targets * logits
        wrong = (logits > 0) != (targets > 0)
    else:
        labels = class_index(targets)
        rows = np.arange(len(labels))
        loss = logsumexp(logits, axis=1) - logits[rows, labels]
        wrong = logits.argmax(axis=1) != labels
    error = _per_class(wrong.astype(np.float64), targets, multilabel)
    return error + INNER_LOSS_WEIGHT * _per_class(loss, targets, multilabel)


def _class_counts(targets: np.ndarray, multilabel: bool) -> np.ndarray:
    if multilabel:
        positives = targets.sum(axis=0)
        return np.concatenate([positives, len(targets) - positives])
    counts = np.bincount(class_index(targets), minlength=targets.shape[1] + 1)
    return counts[counts > 0]


def candidate_settings(targets: np.ndarray, multilabel: bool) -> list[HeadSetting]:
    """The settings the inner CV compares: every C (STRONG_C too when each class has enough
    images), and each also class-weighted when the classes are imbalanced."""
    counts = _class_counts(targets, multilabel)
    weighting = [False]
    if counts.min() > 0 and counts.max() >= IMBALANCE_RATIO * counts.min():
        weighting.append(True)
    grid = STRONG_C + C_GRID if counts.min() >= STRONG_C_MIN_IMAGES else C_GRID
    return [HeadSetting(c, balanced) for balanced in weighting for c in grid]


@dataclass(frozen=True)
class Selection:
    """What the inner cross-validation chose: per outer fold, and for the final head."""

    per_fold: list[HeadSetting]
    final: HeadSetting
    # (folds, settings) summed inner loss each outer fold saw, for inspection and tests.
    inner_loss: np.ndarray
    settings: list[HeadSetting]
    # (pair of folds, setting index) -> the inner head (raw weight, bias) trained without them.
    inner_heads: dict[tuple[tuple[int, int], int], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, repr=False
    )


def select_settings(
    features: np.ndarray,
    targets: np.ndarray,
    fold_of: np.ndarray,
    *,
    multilabel: bool,
    settings: list[HeadSetting] | None = None,
    on_progress: ProgressFn = _ignore_progress,
    should_stop: Callable[[], bool] = _never_stop,
) -> Selection:
    """Pick C (and class weighting) per outer fold by an inner CV that never touches that fold.

    The inner CV of outer fold o uses two neighbouring folds j = o - 1, o + 1 (mod k) as its
    inner folds: a head trained on the images outside {o, j} is scored on fold j. That head is
    the very one outer fold j's inner CV needs for its inner fold o, so one fit per pair
    {o, o + 1} and setting serves both: k x settings fits in all (warm-started along C, each on
    (k-2)/k of the images) instead of k x 2 x settings. Held-out labels are never used: every
    score for fold o's choice comes from folds != o, by heads trained without fold o. The
    final head's setting is the one with the lowest loss over all pairs.
    """
    settings = settings if settings is not None else candidate_settings(targets, multilabel)
    k = int(fold_of.max()) + 1
    inner_loss = np.zeros((k, len(settings)))
    inner_heads: dict[tuple[tuple[int, int], int], tuple[np.ndarray, np.ndarray]] = {}
    # Neighbouring pairs; for k = 3 these are all pairs. All k(k-1)/2 pairs would give each fold
    # k - 1 inner folds at twice the fits for k = 5 (quick training's time budget: < 30% more).
    pairs = sorted({(min(a, (a + 1) % k), max(a, (a + 1) % k)) for a in range(k)})
    for done, (a, b) in enumerate(pairs):
        on_progress(f"choosing regularisation {done + 1}/{len(pairs)}", done / len(pairs))
        keep = (fold_of != a) & (fold_of != b)
        problem = _Problem(features[keep], targets[keep], multilabel)
        starts: dict[bool, np.ndarray] = {}
        on_a, on_b = fold_of == a, fold_of == b
        for index, setting in enumerate(settings):
            # Inner fits only rank settings: a looser tolerance and a cap on the steps.
            params, _, _ = problem.fit(
                setting.c,
                balanced=setting.balanced,
                start=starts.get(setting.balanced),
                max_iter=INNER_MAX_ITER,
                gtol=INNER_GTOL,
                should_stop=should_stop,
            )
            starts[setting.balanced] = params
            weight, bias = inner_heads[(a, b), index] = problem.raw_head(params)
            inner_loss[b, index] += _inner_score(
                weight, bias, features[on_a], targets[on_a], multilabel
            )
            inner_loss[a, index] += _inner_score(
                weight, bias, features[on_b], targets[on_b], multilabel
            )
    per_fold = [settings[int(np.argmin(inner_loss[fold]))] for fold in range(k)]
    # Each pair's two scores were added once to each of its folds: the column sums are the
    # loss over every (pair, scored fold), a CV estimate on (k-2)/k of the images.
    final = settings[int(np.argmin(inner_loss.sum(axis=0)))]
    return Selection(per_fold, final, inner_loss, settings, inner_heads)


def _warm_start(
    problem: _Problem, selection: Selection, pair: tuple[int, int], setting: HeadSetting
) -> np.ndarray | None:
    if setting not in selection.settings:
        return None
    head = selection.inner_heads.get((pair, selection.settings.index(setting)))
    return problem.start_from(*head) if head is not None else None


def train_quick(
    features: np.ndarray,
    targets: np.ndarray,
    *,
    multilabel: bool,
    seed: int = 0,
    n_folds: int = 5,
    c: float | None = None,
    fold_of: np.ndarray | None = None,
    on_progress: ProgressFn = _ignore_progress,
    should_stop: Callable[[], bool] = _never_stop,
) -> QuickResult:
    """Cross-validate then fit the final linear head on all images.

    Out-of-fold scores come from k = min(n_folds, smallest tag count) stratified folds (or the
    given `fold_of`). With `c=None` the regularisation and class weighting are chosen by an
    inner cross-validation inside each outer fold (select_settings); a float fixes C, unweighted.
    Raises DatasetTooSmall, TrainingDiverged (non-finite loss, e.g. a NaN feature), Cancelled.
    """
    features = np.asarray(features)
    targets = np.asarray(targets)
    validate_training_inputs(features, targets, multilabel)
    seed_everything(seed)
    if fold_of is None:
        k = fold_count(targets, n_folds)
        fold_of = stratified_folds(targets, k, seed)
    else:
        fold_of = np.asarray(fold_of, dtype=np.int64)
        k = int(fold_of.max()) + 1
    with _one_thread():
        if c is not None:
            fixed = HeadSetting(float(c), False)
            selection = Selection([fixed] * k, fixed, np.zeros((k, 1)), [fixed])
        elif k < 3:
            selection = Selection(
                [DEFAULT_SETTING] * k, DEFAULT_SETTING, np.zeros((k, 1)), [DEFAULT_SETTING]
            )
        else:
            selection = select_settings(
                features,
                targets,
                fold_of,
                multilabel=multilabel,
                on_progress=lambda phase, fraction: on_progress(phase, 0.6 * fraction),
                should_stop=should_stop,
            )
        base = 0.0 if c is not None or k < 3 else 0.6
        oof = np.zeros(targets.shape, dtype=np.float32)
        for fold in range(k):
            if should_stop():
                raise Cancelled("Training was cancelled.")
            on_progress(f"fold {fold + 1}/{k}", base + (1 - base) * fold / (k + 1))
            train = fold_of != fold
            setting = selection.per_fold[fold]
            problem = _Problem(features[train], targets[train], multilabel)
            # Warm start from the inner head trained without this fold and its neighbour: the
            # same setting on most of the same rows, and it never saw this fold's labels.
            pair = (min(fold, (fold + 1) % k), max(fold, (fold + 1) % k))
            start = _warm_start(problem, selection, pair, setting)
            params, _, _ = problem.fit(
                setting.c, balanced=setting.balanced, start=start, should_stop=should_stop
            )
            oof[~train] = problem.head(params).probabilities(features[~train])
        on_progress("final model", base + (1 - base) * k / (k + 1))
        problem = _Problem(features, targets, multilabel)
        params, iterations, loss = problem.fit(
            selection.final.c,
            balanced=selection.final.balanced,
            start=_warm_start(problem, selection, (0, 1), selection.final),
            should_stop=should_stop,
        )
        head = problem.head(params)
    on_progress("done", 1.0)
    return QuickResult(head, oof, fold_of, iterations, loss, selection)
