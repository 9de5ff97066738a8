"""Correction for label shift: the same conditional p(x | y), different class priors p(y) between the data a
model was trained on (the *source* priors) and the data it is applied to (the *target* priors).

Each class of a multi-label model is its own binary problem (joint shifts between classes are not modelled).
For a posterior p = p_s(y=1 | x) calibrated under the source prior pi_s, Bayes' rule gives the posterior under
the target prior pi_t as a shift of its log-odds (Saerens, Latinne & Decaestecker 2002, eq. 2.4):

    logit p_t(y=1 | x) = logit p_s(y=1 | x) + logit(pi_t) - logit(pi_s)

so a correction is one offset per class on the logits. A constant offset keeps the order of every class's
scores: **per-class AUC (and so the macro AUC) cannot change**; calibration (ECE, Brier), F1 at fixed
thresholds and the challenge score can. The micro AUC, which pools classes, can change too.

Methods (the names `stages/configs.py` offers as `label_shift`):
- `none`: no offset;
- `prior`: pi_t given (a labelled target training split);
- `em`: pi_t estimated from the model's calibrated outputs on unlabelled target records by EM (Saerens et al.
  2002): start at pi_s, adjust every posterior to the current pi_t, set pi_t to their mean, repeat;
- `reweight` (training): the loss weights w+ = pi_s / pi_t, w- = (1 - pi_s) / (1 - pi_t) make target data
  carry the source's label distribution during fine-tuning (every class keeps the weight it had in
  pretraining); the trained outputs then live under pi_s and are moved to pi_t by the same offset (logit
  adjustment, Menon et al. 2021). `loss_weights` gives the weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit

PRIOR_EPS = 1e-4  # priors are clipped to [eps, 1 - eps]: a class absent from a split has no finite log-odds


def clip_priors(priors: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(priors, dtype=float), PRIOR_EPS, 1 - PRIOR_EPS)


def prior_offsets(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-class logit offsets [classes] that move posteriors from `source` to `target` priors [classes]."""
    return logit(clip_priors(target)) - logit(clip_priors(source))


def shift_probabilities(probabilities: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Probabilities [records, classes] moved by per-class logit `offsets` [classes]."""
    p = np.clip(np.asarray(probabilities, dtype=float), 1e-12, 1 - 1e-12)
    return expit(logit(p) + np.asarray(offsets)[None, :])


@dataclass(frozen=True)
class EMPriors:
    priors: np.ndarray  # [classes]
    iterations: int
    converged: bool


def em_priors(probabilities: np.ndarray, source: np.ndarray, *, tol: float = 1e-6, max_iter: int = 1000) -> EMPriors:
    """Target priors [classes] estimated from posteriors [records, classes] calibrated under `source` priors.

    Each class's fixed-point iteration is Saerens et al.'s EM; it stops when no prior moves by more than `tol`.
    """
    probabilities = np.asarray(probabilities, dtype=float)
    source = clip_priors(source)
    current = source.copy()
    for iteration in range(1, max_iter + 1):
        adjusted = shift_probabilities(probabilities, prior_offsets(source, current))
        estimate = clip_priors(adjusted.mean(axis=0))
        if np.max(np.abs(estimate - current)) < tol:
            return EMPriors(estimate, iteration, True)
        current = estimate
    return EMPriors(current, max_iter, False)


def loss_weights(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) weights [classes] under which target-distributed labels carry the source's priors."""
    source, target = clip_priors(source), clip_priors(target)
    return source / target, (1 - source) / (1 - target)


@dataclass(frozen=True)
class Correction:
    """A label-shift correction as applied: its method, the priors it moved between, EM's iterations."""

    method: str
    source: np.ndarray  # [classes]
    target: np.ndarray  # [classes]
    iterations: int = 0
    converged: bool = True

    def warning(self) -> str | None:
        """Why an EM estimate should not be trusted (None when there is no such sign): it did not converge, or
        it ran to the bounds. Both happen when the outputs are not calibrated on the target records: a shift
        of p(x | y) (other devices, amplitudes, noise), which breaks EM's one assumption."""
        if self.method != "em":
            return None
        at_bounds = int(np.sum((self.target <= PRIOR_EPS * 1.01) & (self.source > 10 * PRIOR_EPS))
                        + np.sum(self.target >= 1 - PRIOR_EPS * 1.01))
        if self.converged and not at_bounds:
            return None
        what = [] if self.converged else [f"no convergence in {self.iterations} iterations"]
        what += [f"{at_bounds} class prior(s) driven to 0 or 1"] if at_bounds else []
        return (f"label_shift=em: {', '.join(what)}; the model's outputs are not calibrated on these records "
                "(more than a label shift), so the correction may hurt")

    @property
    def offsets(self) -> np.ndarray:
        return prior_offsets(self.source, self.target)


def correction_for(method: str, source: np.ndarray, *, target: np.ndarray | None = None,
                   probabilities: np.ndarray | None = None) -> Correction | None:
    """The correction `method` asks for: `prior` needs the `target` priors, `em` the calibrated
    `probabilities` [records, classes] on unlabelled target records; `none` is no correction (None)."""
    if method == "none":
        return None
    if method == "prior":
        return Correction("prior", clip_priors(source), clip_priors(target))
    if method == "em":
        found = em_priors(probabilities, source)
        return Correction("em", clip_priors(source), found.priors, found.iterations, found.converged)
    raise ValueError(f"unknown label-shift method {method!r}")
