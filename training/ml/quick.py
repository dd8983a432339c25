"""Quick training: a linear head on cached frozen-backbone features, scored by k-fold CV.

The head is an L2-regularised logistic regression (softmax over the tags plus a background class
for multiclass, one sigmoid per tag for multilabel) fitted full-batch with L-BFGS in float32
(float64 gave the same accuracy at 1.8x the time): on a thousand 1280-d vectors a fit takes
about 0.3 s of CPU, and it is the same objective as scikit-learn's LogisticRegression, so the two
agree (bench/quick_training.py).
Features are standardised per fit; the scaling is folded back into the weights so the head
applies to raw embeddings. C, and class weighting when the tags are imbalanced, are chosen by an
inner cross-validation inside each outer fold (select_settings), so the out-of-fold scores stay
honest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

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


def _validate(features: np.ndarray, targets: np.ndarray, multilabel: bool) -> None:
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
    """Run torch single-threaded for the duration.

    A head fit is thousands of tiny ops (N x D x T is a few MFLOP); intra-op threads only add
    barrier waits, and on a busy 2-core host those waits made each L-BFGS step ~10x slower
    (measured 6.4 s vs 0.5 s CPU for a 1000 x 1280 fit).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _Problem:
    """One fitting problem: standardised training rows, solved in their own row space.

    With an L2 penalty on W and a free bias the optimum W is a combination of the training rows
    (stationarity: W = -C N G^T Z), so when there are fewer rows than dimensions the fit runs on
    Z's SVD coordinates U S (n x n) instead of Z (n x 1280): the same optimum at a fraction of
    the cost per L-BFGS step, and the basis is computed once for every C tried on these rows.
    """

    def __init__(self, features: np.ndarray, targets: np.ndarray, multilabel: bool) -> None:
        x = torch.as_tensor(features, dtype=torch.float32)
        self.mean = x.mean(dim=0)
        self.std = x.std(dim=0).clamp_min(1e-6)
        z = (x - self.mean) / self.std
        self.basis: torch.Tensor | None = None
        if z.shape[0] < z.shape[1] and torch.isfinite(z).all():
            u, s, vh = torch.linalg.svd(z, full_matrices=False)
            self.basis = vh  # (n, D), orthonormal rows
            z = u * s
        self.z = z
        self.multilabel = multilabel
        self.targets = targets
        self.outputs = targets.shape[1] if multilabel else targets.shape[1] + 1

    def _loss_terms(self, balanced: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        n, t = self.targets.shape
        if self.multilabel:
            y = torch.as_tensor(self.targets, dtype=torch.float32)
            if not balanced:
                return y, None
            # Per tag, positives and negatives each weigh half of the images (sklearn's
            # "balanced" for a binary problem), so a rare tag's few positives count.
            positives = y.sum(dim=0).clamp_min(1.0)
            negatives = (n - y.sum(dim=0)).clamp_min(1.0)
            weights = torch.where(y > 0, n / (2 * positives), n / (2 * negatives))
            return y, weights
        labels = torch.as_tensor(class_index(self.targets), dtype=torch.int64)
        if not balanced:
            return labels, None
        counts = torch.bincount(labels, minlength=t + 1).to(torch.float32)
        present = int((counts > 0).sum())
        # sklearn's "balanced": n / (classes * count); classes absent here get no weight.
        weights = torch.where(counts > 0, n / (present * counts.clamp_min(1.0)), 0.0)
        return labels, weights[labels]

    def fit(
        self,
        c: float,
        *,
        balanced: bool = False,
        start: tuple[torch.Tensor, torch.Tensor] | None = None,
        max_iter: int = 200,
        should_stop: Callable[[], bool] = _never_stop,
    ) -> tuple[torch.Tensor, torch.Tensor, int, float]:
        """(weight in this problem's coordinates, bias, iterations, final loss)."""
        z = self.z
        n, d = z.shape
        y, sample_weight = self._loss_terms(balanced)
        if start is None:
            weight = torch.zeros(self.outputs, d, dtype=torch.float32)
            bias = torch.zeros(self.outputs, dtype=torch.float32)
        else:  # warm start from the solution at a neighbouring C: fewer L-BFGS steps
            weight, bias = start[0].clone(), start[1].clone()
        weight.requires_grad_(True)
        bias.requires_grad_(True)
        optimizer = torch.optim.LBFGS(
            [weight, bias],
            lr=1.0,
            max_iter=max_iter,
            tolerance_grad=1e-6,
            tolerance_change=1e-10,
            history_size=20,
            line_search_fn="strong_wolfe",
        )
        penalty = 1.0 / (2.0 * c * n)
        multilabel = self.multilabel

        def closure_value(weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            logits = z @ weight.T + bias
            if multilabel:
                per_item = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
                if sample_weight is not None:
                    per_item = per_item * sample_weight
                data_loss = per_item.sum() / n
            else:
                per_row = F.cross_entropy(logits, y, reduction="none")
                if sample_weight is not None:
                    per_row = per_row * sample_weight
                data_loss = per_row.sum() / n
            return data_loss + penalty * (weight * weight).sum()

        def closure() -> torch.Tensor:
            if should_stop():
                raise Cancelled("Training was cancelled.")
            optimizer.zero_grad()
            loss = closure_value(weight, bias)
            if not torch.isfinite(loss):
                raise TrainingDiverged("The training loss became NaN or infinite.")
            loss.backward()  # type: ignore[no-untyped-call]
            return loss

        optimizer.step(closure)  # type: ignore[no-untyped-call]
        with torch.no_grad():
            final = float(closure_value(weight, bias))
        if not np.isfinite(final) or not torch.isfinite(weight).all():
            raise TrainingDiverged("The training loss became NaN or infinite.")
        iterations = int(optimizer.state[optimizer._params[0]].get("n_iter", 0))
        return weight.detach(), bias.detach(), iterations, final

    def head(self, weight: torch.Tensor, bias: torch.Tensor) -> LinearHead:
        """The fitted head on raw features: basis and standardisation folded into W and b."""
        with torch.no_grad():
            full = weight @ self.basis if self.basis is not None else weight
            raw_weight = (full / self.std).to(torch.float32)
            raw_bias = (bias - (full * (self.mean / self.std)).sum(dim=1)).to(torch.float32)
        return LinearHead(raw_weight, raw_bias, self.multilabel)


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
        weight, bias, iterations, final = problem.fit(
            c, balanced=balanced, max_iter=max_iter, should_stop=should_stop
        )
        return problem.head(weight, bias), iterations, final


@dataclass(frozen=True)
class HeadSetting:
    """The regularisation and class weighting of one head fit."""

    c: float
    balanced: bool


# C values tried by the inner cross-validation, ascending so each fit warm-starts from the
# previous one; same units as scikit-learn's C. Four values a factor ~5 apart: each one more
# costs a fit per pair of folds (bench/quick_training.py --probe shows what
# LogisticRegressionCV picks on a finer grid).
C_GRID: tuple[float, ...] = (0.01, 0.05, 0.25, 1.2)
# Used when there are too few folds to select (k < 3): the inner CV needs two folds besides
# the held-out one.
DEFAULT_SETTING = HeadSetting(c=1.0, balanced=False)
# Class weighting is tried only when the largest class has this many times the smallest's
# images; on balanced data it changes nothing and would double the fits.
IMBALANCE_RATIO = 3.0


def _balanced_log_loss(
    head: LinearHead, features: np.ndarray, targets: np.ndarray, multilabel: bool
) -> float:
    """Log loss averaged per class (per tag and polarity for multilabel), so a rare tag weighs
    as much as a common one; continuous, so small folds still rank the C values."""
    x = torch.as_tensor(features, dtype=torch.float32)
    logits = x @ head.weight.T + head.bias
    if multilabel:
        y = torch.as_tensor(targets, dtype=torch.float32)
        loss = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
        parts = [loss[y[:, j] == v, j].mean() for j in range(y.shape[1]) for v in (0.0, 1.0)]
    else:
        labels = torch.as_tensor(class_index(targets), dtype=torch.int64)
        loss = F.cross_entropy(logits, labels, reduction="none")
        parts = [loss[labels == cls].mean() for cls in torch.unique(labels)]
    values = [float(part) for part in parts if torch.isfinite(part)]
    return float(np.mean(values)) if values else 0.0


def _class_counts(targets: np.ndarray, multilabel: bool) -> np.ndarray:
    if multilabel:
        positives = targets.sum(axis=0)
        return np.concatenate([positives, len(targets) - positives])
    counts = np.bincount(class_index(targets), minlength=targets.shape[1] + 1)
    return counts[counts > 0]


def candidate_settings(targets: np.ndarray, multilabel: bool) -> list[HeadSetting]:
    """The settings the inner CV compares: every C, and each also class-weighted when the
    classes are imbalanced."""
    counts = _class_counts(targets, multilabel)
    weighting = [False]
    if counts.min() > 0 and counts.max() >= IMBALANCE_RATIO * counts.min():
        weighting.append(True)
    return [HeadSetting(c, balanced) for balanced in weighting for c in C_GRID]


@dataclass(frozen=True)
class Selection:
    """What the inner cross-validation chose: per outer fold, and for the final head."""

    per_fold: list[HeadSetting]
    final: HeadSetting
    # (folds, settings) summed inner loss each outer fold saw, for inspection and tests.
    inner_loss: np.ndarray
    settings: list[HeadSetting]


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
    # Neighbouring pairs; for k = 3 these are all pairs. All k(k-1)/2 pairs would give each fold
    # k - 1 inner folds at twice the fits for k = 5 (quick training's time budget: < 30% more).
    pairs = sorted({(min(a, (a + 1) % k), max(a, (a + 1) % k)) for a in range(k)})
    for done, (a, b) in enumerate(pairs):
        on_progress(f"choosing regularisation {done + 1}/{len(pairs)}", done / len(pairs))
        keep = (fold_of != a) & (fold_of != b)
        problem = _Problem(features[keep], targets[keep], multilabel)
        starts: dict[bool, tuple[torch.Tensor, torch.Tensor]] = {}
        for index, setting in enumerate(settings):
            # Inner fits only rank settings; 60 steps from a warm start is enough for that.
            weight, bias, _, _ = problem.fit(
                setting.c,
                balanced=setting.balanced,
                start=starts.get(setting.balanced),
                max_iter=60,
                should_stop=should_stop,
            )
            starts[setting.balanced] = (weight, bias)
            head = problem.head(weight, bias)
            on_a, on_b = fold_of == a, fold_of == b
            inner_loss[b, index] += _balanced_log_loss(
                head, features[on_a], targets[on_a], multilabel
            )
            inner_loss[a, index] += _balanced_log_loss(
                head, features[on_b], targets[on_b], multilabel
            )
    per_fold = [settings[int(np.argmin(inner_loss[fold]))] for fold in range(k)]
    # Each pair's two scores were added once to each of its folds: the column sums are the
    # loss over every (pair, scored fold), a CV estimate on (k-2)/k of the images.
    final = settings[int(np.argmin(inner_loss.sum(axis=0)))]
    return Selection(per_fold, final, inner_loss, settings)


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
    _validate(features, targets, multilabel)
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
            weight, bias, _, _ = problem.fit(
                setting.c, balanced=setting.balanced, should_stop=should_stop
            )
            oof[~train] = problem.head(weight, bias).probabilities(features[~train])
        on_progress("final model", base + (1 - base) * k / (k + 1))
        problem = _Problem(features, targets, multilabel)
        weight, bias, iterations, loss = problem.fit(
            selection.final.c, balanced=selection.final.balanced, should_stop=should_stop
        )
        head = problem.head(weight, bias)
    on_progress("done", 1.0)
    return QuickResult(head, oof, fold_of, iterations, loss, selection)
