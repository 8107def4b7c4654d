"""A rule through time the slow, obvious way: the oracle of the recurrent rate program.

Shares nothing with the generated program but the rule description (its sympy expressions,
evaluated with ``sympy.lambdify``): step by step, every compartment of every layer, every
eligibility trace of every sample as a (sample, post, pre) array updated before the weights
read it, each weight's increments of every step averaged over the batch and summed over the
sequence. No structure is exploited. Rules that read ``future`` are checked against autograd
instead.
"""

from __future__ import annotations

import numpy as np
import sympy

from neurolocal.rule import END, FORWARD, RECURRENT
from neurolocal.symbols import AXON_SIGNALS, Ref

ALIASES = ("s", "x1", "x2", "y1", "y2", "y3")
ACT = {"tanh": np.tanh, "relu": lambda a: np.maximum(a, 0), "linear": lambda a: a,
       "sigmoid": lambda a: 1 / (1 + np.exp(-a))}


def _dphi(kind: str, a, f):
    return {"tanh": 1 - f * f, "relu": (a > 0).astype(a.dtype), "sigmoid": f * (1 - f),
            "softmax": f * (1 - f)}.get(kind, np.ones_like(a))


def _evaluate(expr, values: dict):
    """``expr`` with each scoped symbol bound by ``values[(scope, name)]`` (broadcasting)."""
    syms = sorted(expr.free_symbols, key=str)
    fn = sympy.lambdify(syms, expr, modules=[{"Heaviside": lambda x: (x > 0) * 1.0}, "numpy"])
    return fn(*(values[(Ref.of(s).scope, Ref.of(s).name)] for s in syms))


def _forward_step(net, state, x_t, prev):
    comps = [{"r": x_t, "a": x_t}]
    for layer in range(1, net.depth + 1):
        w = state[FORWARD][layer]["w"]
        a = comps[-1]["r"] @ w[:, :-1].T + w[:, -1]
        kind = net.populations[layer].activation
        if layer in net.recurrent:
            a = a + prev[layer] @ state[RECURRENT][layer]["w"].T
        if kind == "softmax":
            e = np.exp(a - a.max(1, keepdims=True))
            f = e / e.sum(1, keepdims=True)
        else:
            f = ACT[kind](a)
        leak = net.leak(layer)
        r = leak * prev[layer] + (1 - leak) * f if layer in net.recurrent else f
        c = {"r": r, "a": a, "abar": a, "dphi": _dphi(kind, a, f), "err": r * 0,
             "leak": r * 0 + leak}
        c.update({k: r for k in ALIASES})
        comps.append(c)
    return comps


def _equations(eqs, c: dict, last: bool) -> None:
    ends = {e.target for e in eqs if e.phase is not None}
    plain = {e.target for e in eqs if e.phase is None}
    for e in eqs:
        if (e.phase is None and (not last or e.target not in ends)) or \
                (e.phase is not None and last):
            values = {("self", k): v for k, v in c.items()}
            values.update({("glob", k): v for k, v in c["~g"].items()})
            c[e.target] = _evaluate(e.expr, values) + c["r"] * 0
        elif e.phase is not None and e.target not in plain:
            c[e.target] = c["r"] * 0


def sequence_compartments(net, x, onehot):
    """Every layer's compartments at every step: ``steps[t][layer]``."""
    rule, state, g = net.rule, net.state, net.rule.scalar_globals()
    n, steps = x.shape[0], x.shape[1]
    prev = {k: np.zeros((n, net.sizes[k])) for k in net.recurrent}
    out = []
    for t in range(steps):
        comps = _forward_step(net, state, x[:, t].astype(np.float64), prev)
        prev = {k: comps[k]["r"] for k in net.recurrent}
        last = t == steps - 1
        top = comps[-1]
        top["target"], top["~g"] = onehot, g
        _equations(rule.output, top, last)
        for layer in range(net.depth - 1, 0, -1):
            c = comps[layer]
            c["~g"] = g
            for fb in rule.feedback.values():
                c[fb.target] = c["r"] * 0
            for fb in rule.feedback.values():
                src = {"next": comps[layer + 1], "output": top, "lateral": c}[fb.source.scope]
                c[fb.target] = c[fb.target] + src[fb.source.name] @ state[fb.name][layer]["w"].T
            _equations(rule.neuron, c, last)
        out.append(comps)
    return out


def naive_sequence_updates(net, x, onehot) -> dict:
    """``{(projection, layer): dw}`` over a batch of sequences (fixed feedback weights)."""
    rule, state, g = net.rule, net.state, net.rule.scalar_globals()
    steps = sequence_compartments(net, x, onehot)
    n, out = x.shape[0], {}
    sites = [(FORWARD, layer) for layer in range(1, net.depth + 1)]
    sites += [(RECURRENT, layer) for layer in sorted(net.recurrent)]
    for proj, layer in sites:
        ups = [u for u in rule.updates if u.projection == proj]
        if not ups:
            continue
        w = state[proj][layer]["w"].astype(np.float64)
        traces = {v: np.zeros((n, *w.shape)) for v in rule.state_vars(proj) if v != "w"}
        dw = np.zeros_like(w)
        for t, comps in enumerate(steps):
            values = {("glob", k): v for k, v in g.items()}
            if proj == FORWARD:
                below = comps[layer - 1]
                for k in (*AXON_SIGNALS, "a", "dphi", "err"):
                    if k in below:
                        fill = 1.0 if k in AXON_SIGNALS else 0.0
                        values[("pre", k)] = np.concatenate(
                            [below[k], np.full((n, 1), fill)], 1)[:, None, :]
            else:
                before = steps[t - 1][layer]["r"] if t else comps[layer]["r"] * 0
                values.update({("pre", k): before[:, None, :] for k in AXON_SIGNALS})
            values.update({("post", k): v[:, :, None] for k, v in comps[layer].items()
                           if not k.startswith("~")})
            values[("syn", "w")] = w[None]
            values.update({("syn", v): e for v, e in traces.items()})
            new = {v: e + sum(np.broadcast_to(_evaluate(u.expr, values), e.shape)
                              for u in ups if u.var == v) for v, e in traces.items()}
            traces = new
            values.update({("syn", v): e for v, e in traces.items()})
            for u in ups:
                active = u.phase is None or (rule.phases[u.phase].kind == END and
                                             t == len(steps) - 1)
                if u.var == "w" and active:
                    dw += np.broadcast_to(_evaluate(u.expr, values), (n, *w.shape)).mean(0)
        out[(proj, layer)] = dw
    return out
