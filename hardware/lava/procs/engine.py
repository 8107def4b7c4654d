"""Lava's learning engine, faster: the same numbers with fewer numpy calls.

Drop-in parts for the bit-approximate ``LearningDense`` model that the cores use, each
tested against Lava's own: a trace random generator drawing its numbers in blocks, the
learning-rule applier forming a product of vectors as one outer product, and the stochastic
rounding of the weights in integer arithmetic.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.learning.constants import (
    FACTOR_TO_WIDTH_DICT,
    W_ACCUMULATOR_U,
    W_S_MANT,
    W_SYN_VAR_U,
    W_TRACE,
)
from lava.magma.core.learning.learning_rule_applier import LearningRuleApplierBitApprox
from lava.magma.core.learning.random import TraceRandom
from lava.proc.dense.models import PyLearningDenseModelBitApproximate


class BlockTraceRandom(TraceRandom):
    """Lava's ``TraceRandom`` with its numbers drawn a block at a time: numpy's generators
    give the same sequence for one draw of ``n`` as for ``n`` draws of one (tested), so the
    numbers are Lava's, for one numpy call per block instead of two per step."""

    BLOCK = 4096

    def __init__(self, seed_trace_decay: int, seed_impulse_addition: int) -> None:
        super().__init__(seed_trace_decay=seed_trace_decay,
                         seed_impulse_addition=seed_impulse_addition)
        self._decays = self._impulses = np.zeros(0)
        self._at = 0

    def advance(self) -> None:
        if self._at == len(self._decays):
            self._decays = self._rng_trace_decay.random(self.BLOCK)
            self._impulses = self._rng_impulse_addition.integers(0, 2 ** W_TRACE,
                                                                 size=self.BLOCK, dtype=int)
            self._at = 0
        self._random_trace_decay = self._decays[self._at]
        self._random_impulse_addition = self._impulses[self._at]
        self._at += 1



class OuterApplier(LearningRuleApplierBitApprox):
    """Lava's fixed-point applier, with a product of vectors formed as one outer product.

    Lava multiplies ``ones(post x pre)`` by the dependency and by every factor in turn (int32,
    in place); when each of them is a row (1, pre), a column (post, 1) or a scalar, the same
    int32 product (multiplication modulo 2^32 is associative and commutative) is the outer
    product of the column part and the row part: one pass over the matrix instead of one per
    factor. Any other product takes Lava's own path.
    """

    def apply(self, init_accumulator: np.ndarray, **applier_args) -> np.ndarray:
        result = init_accumulator
        lo, hi = -(2 ** W_ACCUMULATOR_U) - 1, 2 ** W_ACCUMULATOR_U - 1
        for product in self._product_series.products:
            current = self._outer(product, applier_args)
            if current is None:
                current = np.ones(applier_args["shape"], dtype=np.int32)
                current *= applier_args[product.dependency]
                for factor in product.factors:
                    width = FACTOR_TO_WIDTH_DICT[factor.state_var]
                    val = np.clip(self._compute_factor(product.dependency, factor, applier_args),
                                  a_min=-(2 ** width), a_max=2 ** width - 1)
                    current *= val.astype(np.int32)
                current *= product.s_mantissa
            width_sum = sum(FACTOR_TO_WIDTH_DICT[f.state_var] for f in product.factors)
            shift = np.maximum(0, width_sum + W_S_MANT - W_ACCUMULATOR_U)
            current = np.left_shift(np.right_shift(current, shift), product.s_exp)
            current = np.clip(current, a_min=lo, a_max=hi)
            result = np.clip(result + current, a_min=lo, a_max=hi)
        return result

    def _outer(self, product, applier_args) -> np.ndarray | None:
        post, pre = applier_args["shape"]
        col = np.ones((post, 1), dtype=np.int32)
        row = np.ones((1, pre), dtype=np.int32)
        parts = [np.asarray(applier_args[product.dependency])]
        for factor in product.factors:
            width = FACTOR_TO_WIDTH_DICT[factor.state_var]
            val = np.clip(self._compute_factor(product.dependency, factor, applier_args),
                          a_min=-(2 ** width), a_max=2 ** width - 1)
            parts.append(np.asarray(val).astype(np.int32))
        for part in parts:
            if part.ndim == 0 or part.size == 1:
                row *= part.reshape(())
            elif part.shape == (1, pre):
                row *= part
            elif part.shape == (post, 1):
                col *= part
            else:
                return None  # a full matrix (a synaptic variable, a trace at x0/y0)
        row *= product.s_mantissa
        return col * row



def stochastic_round_weights(syn_var_name: str, syn_var_values: np.ndarray, random: float
                             ) -> np.ndarray:
    """Lava's stochastic rounding of a synaptic variable in integer arithmetic, the same
    numbers: for an integer accumulator ``v`` and ``m = 2^s`` Lava computes ``(floor(v/m) +
    [r < (v mod m)/m]) m``; ``v >> s`` is the floor, ``v & (m-1)`` the remainder, and ``r <
    rem/m`` is ``r m < rem`` exactly (a power of two scales a float without rounding)."""
    if not np.issubdtype(np.asarray(syn_var_values).dtype, np.integer):
        return PyLearningDenseModelBitApproximate._stochastic_round_synaptic_variable(
            syn_var_name, syn_var_values, random)
    shift = W_ACCUMULATOR_U - W_SYN_VAR_U[syn_var_name]
    m = 1 << shift
    up = (syn_var_values & (m - 1)) > random * m
    return ((syn_var_values >> shift) + up).astype(syn_var_values.dtype) * m
