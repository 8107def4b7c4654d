"""The reference simulator: the spiking semantics in plain numpy, float64, step by step.

Deliberately naive (no layer-at-a-time batching, expressions evaluated with
``sympy.lambdify`` straight from the program) so that it shares no code path with the
targets it checks: the agreement tests hold every target to it.
"""

from __future__ import annotations

import numpy as np
import sympy

from neurolocal.errors import LoweringError
from neurolocal.network import Network
from neurolocal.rule import FORWARD
from neurolocal.symbols import AXON_SIGNALS, Ref

from .semantics import FeedbackPlan, SpikingProgram, feedback_matrix, require_dense


def _lambdify(expr: sympy.Expr, names: dict[sympy.Symbol, str]):
    """A numpy function of keyword arrays for ``expr`` (symbols renamed to ``names``)."""
    syms = sorted(expr.free_symbols, key=lambda s: s.name)
    args = [names.get(s, s.name) for s in syms]
    renamed = expr.xreplace({s: sympy.Symbol(a, real=True)
                             for s, a in zip(syms, args, strict=True)})
    fn = sympy.lambdify([sympy.Symbol(a, real=True) for a in args], renamed,
                        modules=[{"Heaviside": lambda x, h=0.0: (np.asarray(x) > 0) * 1.0,
                                  "Max": np.maximum, "Min": np.minimum}, "numpy"])
    return lambda env: fn(*(env[a] for a in args))


def _self_names(expr: sympy.Expr) -> dict[sympy.Symbol, str]:
    out = {}
    for s in expr.free_symbols:
        ref = Ref.of(s)
        out[s] = f"g_{ref.name}" if ref.scope == "glob" else ref.name
    return out


def _term_names(expr: sympy.Expr) -> dict[sympy.Symbol, str]:
    out = {}
    for s in expr.free_symbols:
        ref = Ref.of(s)
        out[s] = f"g_{ref.name}" if ref.scope == "glob" else f"{ref.scope}_{ref.name}"
    return out


class ReferenceSimulator:
    """The spiking semantics in plain numpy, float64, one step at a time: the ground truth.

    Deliberately naive (no layer-at-a-time batching, expressions evaluated with
    ``sympy.lambdify`` straight from the program) so that it shares no code path with the
    targets it checks.
    """

    def __init__(self, net: Network, program: SpikingProgram, *, optimiser: str | None = None):
        require_dense(net, "spiking reference")
        self.net, self.program, self.cfg = net, program, program.config
        self.optimiser = optimiser or self.cfg.optimiser
        self.state = {p: {layer: {k: np.array(v, np.float64) for k, v in d.items()}
                          for layer, d in s.items()} for p, s in net.state.items()}
        self.velocity: dict = {}
        consts = self.cfg.constants()
        self.env0 = {**consts, **{f"g_{k}": v for k, v in program.globals.items()}}
        self.layer_consts = [self.cfg.constants(layer) for layer in range(len(net.sizes))]
        self.sym_fns = {n: _lambdify(e, {}) for n, e in program.symbols.items()}
        self.out_fns = [(e.target, _lambdify(e.expr, _self_names(e.expr)))
                        for e in program.output_eqs]
        self.hid_fns = [(e.target, _lambdify(e.expr, _self_names(e.expr)))
                        for e in program.hidden_eqs]
        self.term_fns = {(u.projection, u.var): [_lambdify(t.expr, _term_names(t.expr))
                                                 for t in u.terms] for u in program.updates}
        self.fixed = {}
        for fb in program.feedback:
            if fb.mode == "fixed":
                for layer in range(1, net.depth):
                    self.fixed[(fb.name, layer)] = feedback_matrix(
                        fb, self.state[fb.name][layer]["w"])

    # -- dynamics -------------------------------------------------------------------
    def simulate(self, spikes: np.ndarray) -> list[dict[str, np.ndarray]]:
        """Run one epoch on input spikes (T, B, n0); returns raw state per layer (0 = input)."""
        cfg, sizes = self.cfg, self.net.sizes
        t_steps, batch = spikes.shape[0], spikes.shape[1]
        if t_steps != cfg.timesteps:
            raise LoweringError(f"input has {t_steps} steps, the config says T = "
                                f"{cfg.timesteps}")
        d = [None, cfg.decay(1), cfg.decay(2), cfg.decay(3)]
        layers = []
        for n in sizes:
            layers.append({k: np.zeros((batch, n)) for k in
                           ("u", "v", "I", "last", "tr1", "tr2", "tr3", "spk", "asum")})
        for t in range(t_steps):
            emitted = [np.asarray(spikes[t], np.float64)]
            for lay in range(1, len(sizes)):
                st = layers[lay]
                w = self.state[FORWARD][lay]["w"]
                bias = w[:, -1] if t >= lay - 1 else 0.0  # the bias neuron's window
                st["u"] = (1 - cfg.du) * st["u"] + st["I"] + bias
                st["v"] = (1 - cfg.dv) * st["v"] + st["u"]
                if cfg.reset == "subtract":  # the previous step's spike, subtracted now
                    st["v"] = st["v"] - cfg.vth * st["last"]
                if t >= lay:  # the drive is averaged over the layer's window
                    st["asum"] = st["asum"] + st["u"]
                s = (st["v"] > cfg.vth) * 1.0
                if cfg.reset == "zero":
                    st["v"] = np.where(s > 0, 0.0, st["v"])
                st["last"] = s
                emitted.append(s)
            for lay, s in enumerate(emitted):
                st = layers[lay]
                for k in (1, 2, 3):
                    st[f"tr{k}"] = d[k] * st[f"tr{k}"] + s
                st["spk"] = np.maximum(st["spk"], s)
            for lay in range(1, len(sizes)):  # synapses: this step's spikes -> next step's I
                w = self.state[FORWARD][lay]["w"]
                layers[lay]["I"] = emitted[lay - 1] @ w[:, :-1].T
            layers[0]["asum"] = layers[0]["asum"] + emitted[0]  # input: a = its rate
        return layers

    # -- epoch program --------------------------------------------------------------
    def compartments(self, layers: list[dict], target: np.ndarray | None) -> list[dict]:
        """Steps 1-2 of the epoch program: measured symbols, output and hidden equations."""
        prog = self.program
        comps = []
        for lay, st in enumerate(layers):
            env = {**self.env0, **self.layer_consts[lay], **st}
            c = {n: np.broadcast_to(fn(env), st["tr1"].shape).astype(np.float64)
                 for n, fn in self.sym_fns.items()}
            for n in prog.computed:
                c[n] = np.zeros_like(st["tr1"])
            comps.append(c)
        if target is None:
            return comps
        out = comps[-1]
        out["target"] = np.asarray(target, np.float64)
        self._run_eqs(out, self.out_fns)
        top = self.net.depth
        for layer in range(top - 1, 0, -1):
            c = comps[layer]
            for fb in prog.feedback:
                src = comps[layer + 1] if fb.scope == "next" else comps[top]
                c[fb.target] = c[fb.target] + src[fb.source] @ self.feedback_weights(fb, layer).T
            self._run_eqs(c, self.hid_fns)
        return comps

    def _run_eqs(self, c: dict, fns) -> None:
        for target, fn in fns:
            env = {**self.env0, **c}
            c[target] = np.broadcast_to(fn(env), c["r"].shape).astype(np.float64)

    def feedback_weights(self, fb: FeedbackPlan, layer: int) -> np.ndarray:
        if fb.mode == "fixed":
            return self.fixed[(fb.name, layer)]
        if fb.mode == "learned":
            return self.state[fb.name][layer]["w"]
        return feedback_matrix(fb, self.state[fb.name][layer]["w"],
                               self.state[FORWARD][layer + 1]["w"][:, :-1])

    def increments(self, comps: list[dict]) -> dict:
        """Step 3: every update's increment, averaged over the batch (nothing applied)."""
        out = {}
        prog = self.program
        for up in prog.updates:
            fns = self.term_fns[(up.projection, up.var)]
            if up.projection == FORWARD:
                pairs = [(layer, _with_bias(comps[layer - 1]), comps[layer])
                         for layer in range(1, self.net.depth + 1)]
            else:
                fb = next(f for f in prog.feedback if f.name == up.projection)
                pairs = [(layer, comps[layer + 1] if fb.scope == "next" else comps[-1],
                          comps[layer]) for layer in range(1, self.net.depth)]
            for layer, pre, post in pairs:
                syn = self.state[up.projection][layer]
                total = np.zeros_like(syn["w"])
                batch = post["r"].shape[0]
                for fn in fns:
                    env = dict(self.env0)
                    for k, v in pre.items():
                        env[f"pre_{k}"] = v[:, None, :]
                    for k, v in post.items():
                        env[f"post_{k}"] = v[:, :, None]
                    for k, v in syn.items():
                        env[f"syn_{k}"] = v[None]
                    val = np.broadcast_to(fn(env), (batch, *total.shape))
                    total = total + val.mean(0)
                out.setdefault((up.projection, layer), {})[up.var] = total
        return out

    def apply(self, increments: dict) -> None:
        """Add the increments: ``w`` through the optimiser, other state directly."""
        mu = self.cfg.momentum
        for (proj, layer), d in increments.items():
            st = self.state[proj][layer]
            for var, dv in d.items():
                if var == "w" and self.optimiser == "momentum":
                    v = mu * self.velocity.get((proj, layer), 0.0) + dv
                    self.velocity[(proj, layer)] = v
                    st[var] = st[var] + v
                else:
                    st[var] = st[var] + dv

    def run_epoch(self, spikes: np.ndarray, target: np.ndarray | None = None,
                  *, learn: bool = True) -> dict:
        """One learning epoch: simulate, then (with a target and ``learn``) the program."""
        layers = self.simulate(spikes)
        comps = self.compartments(layers, target if learn else None)
        incs = {}
        if learn and target is not None:
            incs = self.increments(comps)
            self.apply(incs)
        return {"layers": layers, "comps": comps, "increments": incs}


def _with_bias(comps: dict) -> dict:
    """Pre-synaptic compartments plus the always-on bias neuron (axon signals 1, others 0)."""
    out = {}
    for k, v in comps.items():
        fill = 1.0 if k in AXON_SIGNALS else 0.0
        out[k] = np.concatenate([v, np.full_like(v[:, :1], fill)], 1)
    return out
