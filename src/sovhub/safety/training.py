"""Training the semantic classifier: softmax regression + k-NN blend, calibrated on held-out languages.

Pure numpy, deterministic, a few seconds for a few thousand exemplars. Class 0 is ``safe``;
classes 1.. are the hazard codes in taxonomy order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["TrainedClassifier", "hazard_scores", "rescale", "train_classifier"]

L2 = 1e-2
ITERATIONS = 150
LEARNING_RATE = 0.05
KNN_K = 10
KNN_TEMPERATURE = 0.02
TEMPERATURES = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)
BLENDS = (0.0, 0.25, 0.5, 0.75)
# Thresholds are never set below this: a hazard must be the likely reading, not a faint one.
MIN_THRESHOLD = 0.3
# Out-of-fold false-positive rate on hard safe exemplars the thresholds are raised to meet, in
# every language of the bank (not pooled: a pooled 5% let German and Japanese run at 6.2%).
TARGET_SAFE_FPR = 0.05
# Total training weight of the everyday safe exemplars (code, shell, citizens' questions), next to
# 0.5 for the other safe exemplars and 0.5 for the hazards.
EVERYDAY_WEIGHT = 0.25
# Weights tried for the margin term: harmfulness plus weight x (cosine to the nearest hazard
# exemplar minus cosine to the nearest safe one). The regression reads a whole text and is diluted
# by benign context around a harmful request; the nearest exemplar is not.
MARGIN_WEIGHTS = (0.0, 1.0, 2.0, 4.0)


@dataclass
class TrainedClassifier:
    mean: np.ndarray  # (d,) feature centre
    scale: np.ndarray  # (d,) feature spread
    weights: np.ndarray  # (d, C)
    bias: np.ndarray  # (C,)
    temperature: float
    blend: float  # weight of the k-NN vote
    thresholds: np.ndarray  # (C-1,) per hazard, on the blended probability
    bank: np.ndarray  # (n, d) exemplar embeddings for the k-NN vote
    bank_labels: np.ndarray  # (n,)
    digest: str
    cv_report: str = ""
    margin_weight: float = 0.0  # of the nearest-exemplar margin added to harmfulness


    @property
    def n_classes(self) -> int:
        return int(self.bias.shape[0])

    def probabilities(self, vectors: np.ndarray, sims: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities; ``sims`` (``vectors @ bank.T``) when the caller already has them."""
        logits = ((vectors - self.mean) / self.scale) @ self.weights + self.bias
        p = _softmax(logits / self.temperature)
        if self.blend > 0:
            sims = vectors @ self.bank.T if sims is None else sims
            p = (1 - self.blend) * p + self.blend * _knn_votes(sims, self.bank_labels, self.n_classes)
        return p

    def decision_scores(self, vectors: np.ndarray) -> np.ndarray:
        """(n, C-1) hazard scores, rescaled so each hazard's threshold is 0.5."""
        sims = vectors @ self.bank.T  # once, for the k-NN vote and the margin
        margin = self.margin_weight * _margin(sims, self.bank_labels)
        return rescale(hazard_scores(self.probabilities(vectors, sims), margin), self.thresholds)

    def save(self, path: Path) -> None:
        with path.open("wb") as fh:
            np.savez_compressed(
                fh,
                mean=self.mean, scale=self.scale, weights=self.weights, bias=self.bias,
                temperature=np.float64(self.temperature), blend=np.float64(self.blend),
                thresholds=self.thresholds, bank=self.bank.astype(np.float16), bank_labels=self.bank_labels,
                digest=np.str_(self.digest), cv_report=np.str_(self.cv_report),
                margin_weight=np.float64(self.margin_weight),
            )

    @classmethod
    def load(cls, path: Path) -> TrainedClassifier:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                mean=z["mean"], scale=z["scale"], weights=z["weights"], bias=z["bias"],
                temperature=float(z["temperature"]), blend=float(z["blend"]), thresholds=z["thresholds"],
                bank=z["bank"].astype(np.float32), bank_labels=z["bank_labels"], digest=str(z["digest"]),
                cv_report=str(z["cv_report"]), margin_weight=float(z["margin_weight"]),
            )


def rescale(p: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Piecewise-linear map of probabilities so that ``threshold -> 0.5``, ``0 -> 0`` and ``1 -> 1``."""
    t = thresholds[None, :]
    low = 0.5 * p / t
    high = 0.5 + 0.5 * (p - t) / np.maximum(1 - t, 1e-9)
    return np.asarray(np.clip(np.where(p < t, low, high), 0.0, 1.0))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def _knn(vectors: np.ndarray, bank: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Similarity-weighted vote of the k nearest exemplars (cosine: vectors are L2-normalised)."""
    return _knn_votes(vectors @ bank.T, labels, n_classes)


def _knn_votes(sims: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    k = min(KNN_K, sims.shape[1])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    top_sims = np.take_along_axis(sims, top, axis=1)
    w = np.exp((top_sims - top_sims.max(axis=1, keepdims=True)) / KNN_TEMPERATURE)
    votes = np.zeros((sims.shape[0], n_classes))
    np.add.at(votes, (np.repeat(np.arange(sims.shape[0]), k), labels[top].ravel()), w.ravel())
    return votes / votes.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]


def _fit_softmax(
    x: np.ndarray, y: np.ndarray, n_classes: int, everyday: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced, L2-regularised softmax regression by full-batch Adam (deterministic)."""
    d = x.shape[1]
    # Half the weight on safe text, half shared by the hazards: balancing all classes equally
    # would give "any hazard" 14 times the weight of "safe" and flag far too much.
    extra = np.zeros(len(y), dtype=bool) if everyday is None else everyday & (y == 0)
    counts = np.bincount(y[~extra], minlength=n_classes).astype(np.float64)
    class_w = np.full(n_classes, 0.5 / max(n_classes - 1, 1))
    class_w[0] = 0.5
    sample_w = (class_w / np.maximum(counts, 1))[y]
    # Everyday safe exemplars get a share of their own on top, so that adding them does not
    # thin out the weight of the hard safe ones (news about violence, help-seeking...).
    sample_w[extra] = EVERYDAY_WEIGHT / max(int(extra.sum()), 1)
    sample_w = sample_w.astype(x.dtype)
    sample_w /= sample_w.sum()
    onehot = np.eye(n_classes, dtype=x.dtype)[y]
    w = np.zeros((d, n_classes), dtype=x.dtype)
    b = np.zeros(n_classes, dtype=x.dtype)
    mw, vw, mb, vb = (np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b))
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, ITERATIONS + 1):
        p = _softmax(x @ w + b)
        g = (p - onehot) * sample_w[:, None]
        gw = x.T @ g + L2 * w
        gb = g.sum(axis=0)
        mw = beta1 * mw + (1 - beta1) * gw
        vw = beta2 * vw + (1 - beta2) * gw * gw
        mb = beta1 * mb + (1 - beta1) * gb
        vb = beta2 * vb + (1 - beta2) * gb * gb
        c1, c2 = 1 - beta1**step, 1 - beta2**step
        w -= LEARNING_RATE * (mw / c1) / (np.sqrt(vw / c2) + eps)
        b -= LEARNING_RATE * (mb / c1) / (np.sqrt(vb / c2) + eps)
    return w, b


def _standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(axis=0), x.std(axis=0) + np.float32(1e-6)


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-9, 1.0))))


def nearest_margin(vectors: np.ndarray, bank: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) cosine to the nearest hazard exemplar minus cosine to the nearest safe one."""
    return _margin(vectors @ bank.T, labels)


def _margin(sims: np.ndarray, labels: np.ndarray) -> np.ndarray:
    harmful = labels != 0
    return np.asarray(sims[:, harmful].max(axis=1) - sims[:, ~harmful].max(axis=1))


def hazard_scores(p: np.ndarray, margin: np.ndarray | None = None) -> np.ndarray:
    """(n, C-1) per-hazard scores from class probabilities.

    Harmfulness is ``1 - P(safe)``: the probability mass of harm spreads over related hazards
    (a threat is S1 and a little S10), so no single hazard's probability measures it. The
    top hazard gets all of it; the others in proportion to their probability. ``margin`` (the
    weighted nearest-exemplar margin, per text) is added to harmfulness, within [0, 1].
    """
    harm = 1.0 - p[:, :1]
    if margin is not None:
        harm = np.clip(harm + margin[:, None], 0.0, 1.0)
    hazards = p[:, 1:]
    top = np.maximum(hazards.max(axis=1, keepdims=True), 1e-12)
    return harm * hazards / top  # type: ignore[no-any-return]


def _f1(pred: np.ndarray, truth: np.ndarray) -> float:
    denom = float(pred.sum() + truth.sum())
    return 2 * float(np.sum(pred & truth)) / denom if denom else 0.0


def _worst_fpr(pred: np.ndarray, counted: np.ndarray, langs: np.ndarray | None) -> float:
    """False-positive rate on the ``counted`` safe exemplars.

    With ``langs``, the worst language's, counted with one false positive more than it has: about
    150 hard safe exemplars per language make one item 0.7%, and a rate met only by luck of the
    sample is not met.
    """
    if not counted.any():
        return 0.0
    if langs is None:
        return float(np.mean(pred[counted]))
    return max((float(np.sum(pred[counted & (langs == lang)])) + 1) / int(np.sum(counted & (langs == lang)))
               for lang in np.unique(langs[counted]))


def _choose_thresholds(
    p: np.ndarray, y: np.ndarray, everyday: np.ndarray | None = None, langs: np.ndarray | None = None,
    margin: np.ndarray | None = None,
) -> np.ndarray:
    """Thresholds on out-of-fold hazard scores.

    First one threshold on harmfulness: the F1-best one among those whose false-positive rate on
    safe exemplars is at most TARGET_SAFE_FPR (in every language of ``langs``, when given: a pooled
    rate lets the languages with more hard safe text carry the others). Then each hazard's
    threshold is raised where that improves its own F1 (a hazard that fires on safe text gets a
    stricter threshold), never lowered. The false-positive rate is measured on the safe exemplars
    that are not ``everyday``: easy ones would dilute it and let the thresholds fall.
    """
    scores = hazard_scores(p, margin)
    flagged_score = scores.max(axis=1)
    harmful = y != 0
    counted = ~harmful if everyday is None else ~harmful & ~everyday
    grid = np.linspace(MIN_THRESHOLD, 0.97, 68)
    best_t, best_f1 = 0.97, -1.0
    for t in grid:
        pred = flagged_score >= t
        fpr = _worst_fpr(pred, counted, langs)
        f1 = _f1(pred, harmful)
        if fpr <= TARGET_SAFE_FPR and f1 > best_f1 + 1e-9:
            best_t, best_f1 = float(t), f1
    thresholds = np.full(scores.shape[1], best_t)
    for k in range(scores.shape[1]):
        truth = y == k + 1
        column = scores[:, k]
        best = _f1(column >= best_t, truth)
        for t in grid[grid > best_t]:
            f1 = _f1(column >= t, truth)
            if f1 > best + 1e-9:
                best, thresholds[k] = f1, float(t)
    return thresholds


def _report(
    p: np.ndarray, y: np.ndarray, thresholds: np.ndarray, groups: np.ndarray, margin: np.ndarray | None = None
) -> str:
    flagged: np.ndarray = np.asarray((hazard_scores(p, margin) >= thresholds).any(axis=1))
    harmful: np.ndarray = np.asarray(y != 0)
    tp = float(np.sum(flagged & harmful))
    precision = tp / max(flagged.sum(), 1)
    recall = tp / max(harmful.sum(), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-9)
    fpr = float(np.mean(flagged[~harmful])) if (~harmful).any() else 0.0
    per_group = []
    for g in np.unique(groups):
        m = groups == g
        r = float(np.mean(flagged[m & harmful])) if (m & harmful).any() else 0.0
        fp = float(np.mean(flagged[m & ~harmful])) if (m & ~harmful).any() else 0.0
        per_group.append(f"{g}:R={r:.2f}/FPR={fp:.2f}")
    return (f"cross-validated: P={precision:.3f} R={recall:.3f} F1={f1:.3f} safe-FPR={fpr:.3f}; "
            + " ".join(per_group))


def train_classifier(
    vectors: np.ndarray, labels: np.ndarray, folds: np.ndarray, langs: np.ndarray, *, n_classes: int,
    digest: str, everyday: np.ndarray | None = None,
) -> TrainedClassifier:
    """Fit on all exemplars; temperature, blend and thresholds come from out-of-fold scores.

    ``everyday`` marks the everyday counter-exemplars: they train with a weight of their own
    (EVERYDAY_WEIGHT) and are left out of the false-positive rate the thresholds are held to.
    ``folds`` must keep translations of one exemplar together, or the out-of-fold scores would
    measure recall of a memorised idea, not generalisation (and thresholds would come out too low).
    """
    x = vectors.astype(np.float32)
    oof_lr = np.zeros((len(labels), n_classes))
    oof_knn = np.zeros((len(labels), n_classes))
    oof_margin = np.zeros(len(labels))
    for g in np.unique(folds):
        test = folds == g
        train = ~test
        mean, scale = _standardize(x[train])
        w, b = _fit_softmax((x[train] - mean) / scale, labels[train], n_classes,
                            None if everyday is None else everyday[train])
        oof_lr[test] = ((x[test] - mean) / scale) @ w + b
        oof_knn[test] = _knn(x[test], x[train], labels[train], n_classes)
        oof_margin[test] = nearest_margin(x[test], x[train], labels[train])
    temperature = min(TEMPERATURES, key=lambda t: _log_loss(_softmax(oof_lr / t), labels))
    p_lr = _softmax(oof_lr / temperature)
    blend = min(BLENDS, key=lambda a: _log_loss((1 - a) * p_lr + a * oof_knn, labels))
    oof = (1 - blend) * p_lr + blend * oof_knn
    # The margin's weight: the one whose thresholds give the best out-of-fold F1 (ties: the smaller).
    harmful = labels != 0
    best_f1, margin_weight, thresholds = -1.0, 0.0, np.zeros(n_classes - 1)
    for a in MARGIN_WEIGHTS:
        t = _choose_thresholds(oof, labels, everyday, langs, a * oof_margin)
        f1 = _f1(np.asarray((hazard_scores(oof, a * oof_margin) >= t).any(axis=1)), harmful)
        if f1 > best_f1 + 1e-9:
            best_f1, margin_weight, thresholds = f1, a, t
    mean, scale = _standardize(x)
    w, b = _fit_softmax((x - mean) / scale, labels, n_classes, everyday)
    return TrainedClassifier(
        mean=mean, scale=scale, weights=w, bias=b, temperature=temperature, blend=blend,
        thresholds=thresholds, bank=vectors.astype(np.float32), bank_labels=labels.astype(np.int64),
        digest=digest, cv_report=_report(oof, labels, thresholds, langs, margin_weight * oof_margin)
        + f" margin={margin_weight:g}",
        margin_weight=margin_weight,
    )
