"""Scoped symbols of the rule language and what each one means physically.

A rule reads symbols such as ``pre.r`` or ``post.err``. Their scope says *where the
value lives*: in the pre-synaptic neuron, the post-synaptic neuron, the synapse
itself, a declared global, or another neuron entirely. The locality checker reasons
only about these scopes, so the meaning of each built-in name is written down here,
once.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy
from sympy.printing.str import StrPrinter

#: Scopes a synaptic update may read.
SYNAPSE_SCOPES = ("pre", "post", "syn", "glob")
#: Scopes that name a neuron other than the two ends of the synapse (``lateral``: another
#: neuron of the same layer), or a neuron at another time: ``future`` is the same layer one
#: step later, a value that exists only once the step is over (reading it is non-local in time).
OTHER_NEURON_SCOPES = ("next", "prev", "output", "input", "lateral", "future")
#: The scope of a value from a later time step.
FUTURE = "future"
ALL_SCOPES = SYNAPSE_SCOPES + OTHER_NEURON_SCOPES

#: Compartments every neuron has. Rules may add their own with ``neuron NAME = ...``.
NEURON_COMPARTMENTS: dict[str, str] = {
    "r": "output rate (spiking mode: the neuron's filtered spike train)",
    "a": "somatic drive / pre-activation (spiking mode: membrane potential)",
    "dphi": "derivative of the neuron's nonlinearity at its drive (spiking: surrogate derivative)",
    "abar": "slow part of the drive, slow(a): what a low-pass filter of a converges to (rate "
            "mode: the drive without the rule's private noise sources; a when it has none)",
    "err": "error compartment: a dendritic compartment fed by feedback synapses",
    "target": "teaching input; exists at output neurons only",
    "s": "spike output (rate mode: the rate)",
    "x1": "first pre-synaptic trace (rate mode: the rate)",
    "x2": "second pre-synaptic trace (rate mode: the rate)",
    "y1": "first post-synaptic trace (rate mode: the rate)",
    "y2": "second post-synaptic trace (rate mode: the rate)",
    "y3": "third post-synaptic trace (rate mode: the rate)",
}

#: Compartments of neurons in networks with time steps (recurrent layers). A rule that reads
#: one needs a recurrent network (it is a time statement, see ``Rule.time_statements``).
TIME_COMPARTMENTS: dict[str, str] = {
    "leak": "the share of its rate a neuron keeps from one step to the next (a recurrent "
            "layer: r = leak * r one step earlier + (1 - leak) * f(a)); 0 in other layers",
}

#: What a neuron sends along its axon, i.e. what a forward synapse can see of its pre neuron
#: (and a recurrent synapse, of the same layer's neurons one step earlier).
AXON_SIGNALS = frozenset({"r", "s", "x1", "x2"})

#: Functions allowed in expressions (name -> arity).
FUNCTIONS: dict[str, int] = {
    "exp": 1, "log": 1, "tanh": 1, "sigmoid": 1, "relu": 1, "step": 1,
    "sign": 1, "abs": 1, "sqrt": 1, "min": 2, "max": 2, "slow": 1,
}
#: ``slow(X)``: the slow part of compartment X, what a long low-pass filter of it converges
#: to. Rate mode: X's value in the same sweep without the rule's private noise sources
#: (``noise`` statements); X itself when the rule has none.
SLOW = "slow"

#: Names and functions of the feedback-weight language (``feedback B = ... via WEXPR``).
WEIGHT_LEAVES: dict[str, str] = {
    "random": "fixed random matrix drawn once (Gaussian, scaled like the forward init)",
    "resample": "random matrix redrawn for every batch",
}
#: Weight leaves that name synapses of the network itself (``W`` forward, ``R`` recurrent).
NETWORK_WEIGHTS = ("W", "R")
WEIGHT_FUNCTIONS: dict[str, int] = {
    "transpose": 1, "sign": 1, "abs": 1, "sparse": 1,
}


@dataclass(frozen=True)
class Ref:
    """A scoped symbol: ``scope.name``, optionally held from an earlier phase (``@phase``)."""

    scope: str
    name: str
    phase: str | None = None

    def __str__(self) -> str:
        at = f"@{self.phase}" if self.phase else ""
        return f"{self.scope}.{self.name}{at}"

    @property
    def symbol(self) -> sympy.Symbol:
        at = f"__at__{self.phase}" if self.phase else ""
        return sympy.Symbol(f"{self.scope}__{self.name}{at}", real=True)

    @staticmethod
    def of(symbol: sympy.Symbol) -> Ref:
        """Inverse of :attr:`symbol`."""
        body, _, phase = symbol.name.partition("__at__")
        scope, _, name = body.partition("__")
        return Ref(scope, name, phase or None)


def refs_in(expr: sympy.Expr) -> list[Ref]:
    """The scoped symbols an expression reads, in a stable order."""
    return sorted((Ref.of(s) for s in expr.free_symbols), key=str)


def sympy_function(name: str, args: list[sympy.Expr]) -> sympy.Expr:
    """Build the sympy form of an allowed function call."""
    (x, *rest) = args
    table = {
        "exp": sympy.exp, "log": sympy.log, "tanh": sympy.tanh, "sign": sympy.sign,
        "abs": sympy.Abs, "sqrt": sympy.sqrt, "step": sympy.Heaviside,
    }
    if name in table:
        return table[name](x)
    if name == "slow":
        return sympy.Function("slow")(x)
    if name == "sigmoid":
        return 1 / (1 + sympy.exp(-x))
    if name == "relu":
        return sympy.Max(x, 0)
    if name == "min":
        return sympy.Min(x, rest[0])
    if name == "max":
        return sympy.Max(x, rest[0])
    raise KeyError(name)


class _RulePrinter(StrPrinter):
    """Prints scoped symbols as the rule language spells them."""

    def _print_Symbol(self, s):
        ref = Ref.of(s)
        return ref.name if ref.scope in ("glob", "self") and not ref.phase else str(ref)


def pretty(expr: sympy.Expr) -> str:
    """An expression in the rule language's own spelling (``lr*post.delta*pre.r``)."""
    return _RulePrinter().doprint(expr)
