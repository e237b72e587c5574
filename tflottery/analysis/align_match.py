"""Finding the permutation of network B's units that best matches network A (NumPy only).

Conventions.  A permutation of a group of n units is an int array `perm`
with B's unit perm[i] moved to position i: every permuted axis of a weight
of B becomes `np.take(w, perm, axis)`.  `axes[j]` lists, per axis of the
j-th weight, the group that indexes it (or None).

Weight matching (Ainsworth et al. 2022, Algorithm 1): maximise
sum_j <W_a_j, pi(W_b_j)> over all groups' permutations.  The objective is
linear in any one group's permutation when the others are held, so
coordinate descent solves one linear assignment per group (the cost matrix
sums, over every weight indexed by the group, A's rows against B's rows with
B's other axes already permuted).  Groups are visited in a random order each
round; a group's new permutation is kept only if it raises that linear term,
so the objective never decreases and the search ends after the first round
in which no group changed.  A group on two axes of one weight (a residual
x + Dense(x) ties the Dense's input and output units) is not linear in its
permutation: its assignment is a proposal, kept only if the whole objective
rises.

Activation matching (Ainsworth et al. 2022, section 3.1; Entezari et al.
2022): a unit's activations on the same inputs do not depend on how other
groups are permuted, so each group is one linear assignment maximising the
summed correlation of A's and B's units over the tensors it appears in.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np

Axes = Tuple[Optional[int], ...]


def best_assignment(score: np.ndarray) -> np.ndarray:
    """The columns of the row-by-row assignment maximising the summed `score`.

    scipy.optimize is imported here, not with the module: it costs most of a
    second and every run imports this module (experiments/lmc.py), while
    only an aligning lmc run calls this.
    """
    from scipy.optimize import linear_sum_assignment
    return linear_sum_assignment(score, maximize=True)[1]


def permute(array: np.ndarray, axes: Axes, perms: Sequence[np.ndarray],
            skip: Optional[int] = None) -> np.ndarray:
    """`array` with every axis of a group other than `skip` permuted by that group's perm."""
    for axis, group in enumerate(axes):
        if group is not None and group != skip:
            array = np.take(array, perms[group], axis=axis)
    return array


def objective(weights_a, weights_b, axes: Sequence[Axes], perms) -> float:
    """sum_j <W_a_j, pi(W_b_j)>, in float64."""
    return float(sum(np.vdot(a, permute(b, ax, perms)) for a, b, ax in zip(weights_a, weights_b,
                                                                           axes)))


def group_cost(group: int, size: int, weights_a, weights_b, axes, perms) -> np.ndarray:
    """C[i, k] = the objective's terms that pair A's unit i with B's unit k of `group`."""
    cost = np.zeros((size, size))
    for a, b, ax in zip(weights_a, weights_b, axes):
        if group not in ax:
            continue
        for axis in [i for i, g in enumerate(ax) if g == group]:
            # A group on two axes of one weight (x + Dense(x)): the other
            # axis uses the group's current permutation.
            others = tuple(None if i == axis else g for i, g in enumerate(ax))
            b_perm = permute(b, others, perms)
            rows_a = np.moveaxis(a, axis, 0).reshape(size, -1)
            rows_b = np.moveaxis(b_perm, axis, 0).reshape(size, -1)
            cost += rows_a @ rows_b.T
    return cost


def weight_matching(weights_a, weights_b, axes: Sequence[Axes], sizes: Sequence[int],
                    seed: int = 0, max_rounds: int = 1000, incremental: bool = True):
    """Coordinate descent; returns (perms, history).

    history: the objective before the first step and after every step, as
    (group visited or None, objective).  incremental=False recomputes the
    whole objective after every accepted step instead of adding the step's
    change (the same permutations; the baseline of
    benchmarks/weight_matching_cost.py).
    """
    weights_a = [np.asarray(w, np.float64) for w in weights_a]
    weights_b = [np.asarray(w, np.float64) for w in weights_b]
    perms: List[np.ndarray] = [np.arange(n) for n in sizes]
    # A group on at most one axis of every weight enters the objective linearly
    # (module docstring), so a step changes it by exactly the change of its
    # cost; only a group on two axes of one weight needs the whole objective
    # again.  (Recomputing it after every step was most of the time on a
    # ResNet-50: every step permuted all 23M weights.)
    linear = [incremental and all(ax.count(g) <= 1 for ax in axes) for g in range(len(sizes))]
    rng = np.random.default_rng(seed)
    value = objective(weights_a, weights_b, axes, perms)
    history = [(None, value)]
    for _ in range(max_rounds):
        changed = False
        for group in rng.permutation(len(sizes)):
            group = int(group)
            cost = group_cost(group, sizes[group], weights_a, weights_b, axes, perms)
            cols = best_assignment(cost)
            old = cost[np.arange(sizes[group]), perms[group]].sum()
            new = cost[np.arange(sizes[group]), cols].sum()
            if new > old + 1e-12 * max(1.0, abs(old)):
                if linear[group]:
                    perms[group], value, changed = cols, value + (new - old), True
                else:
                    # The cost is linear in this group's perm on one axis at a time only:
                    # keep the step if the whole objective rises.
                    trial = perms[:group] + [cols] + perms[group + 1:]
                    trial_value = objective(weights_a, weights_b, axes, trial)
                    if trial_value > value + 1e-12 * max(1.0, abs(value)):
                        perms, value, changed = trial, trial_value, True
            history.append((group, value))
        if not changed:
            break
    return perms, history


class Correlation:
    """Pearson correlation of A's units with B's units, accumulated over chunks of examples.

    Sums rather than stored activations: a ResNet's activations on a
    thousand images would not fit in memory, their sums do.  matrix()[i, k]
    is corr(A's unit i, B's unit k); a constant unit correlates 0 with all.
    """

    def __init__(self, size: int):
        self.n = 0
        self.sum_a, self.sum_b = np.zeros(size), np.zeros(size)
        self.sq_a, self.sq_b = np.zeros(size), np.zeros(size)
        self.cross = np.zeros((size, size))

    def add(self, x, y) -> None:
        """x, y: [examples, units] activations of A and B on the same examples."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        self.n += len(x)
        self.sum_a += x.sum(0)
        self.sum_b += y.sum(0)
        self.sq_a += (x * x).sum(0)
        self.sq_b += (y * y).sum(0)
        self.cross += x.T @ y

    def matrix(self) -> np.ndarray:
        mean_a, mean_b = self.sum_a / self.n, self.sum_b / self.n
        std_a, std_b = (_std(sq / self.n, m) for sq, m in ((self.sq_a, mean_a),
                                                            (self.sq_b, mean_b)))
        cov = self.cross / self.n - np.outer(mean_a, mean_b)
        scale = np.outer(std_a, std_b)
        return np.where(scale > 0, cov / np.where(scale > 0, scale, 1.0), 0.0)


def _std(mean_square, mean) -> np.ndarray:
    """sqrt(E[x^2] - E[x]^2), 0 where that is rounding noise (a constant unit)."""
    var = mean_square - mean ** 2
    return np.sqrt(np.where(var > 1e-12 * (mean ** 2 + 1.0), var, 0.0))


def assign_by_correlation(correlations: Sequence[np.ndarray]) -> List[np.ndarray]:
    """Per group: the permutation maximising its summed correlation matrix."""
    return [best_assignment(c) for c in correlations]


def activation_matching(acts_a: Sequence[Sequence[np.ndarray]],
                        acts_b: Sequence[Sequence[np.ndarray]]) -> List[np.ndarray]:
    """Per group: the assignment maximising the correlation summed over its tensors.

    acts_a[g]: a list of [examples, units] activation arrays of group g (one
    per tensor the group appears in), and likewise acts_b.
    """
    totals = []
    for tensors_a, tensors_b in zip(acts_a, acts_b):
        total = 0.0
        for x, y in zip(tensors_a, tensors_b):
            corr = Correlation(x.shape[-1])
            corr.add(x, y)
            total = total + corr.matrix()
        totals.append(total)
    return assign_by_correlation(totals)
