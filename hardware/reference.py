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
from neurolocal.rule import FORWARD, RECURRENT
from neurolocal.symbols import AXON_SIGNALS, Ref

from .noise import NOISE_DRIVE, NOISE_VALUE, SLOW_PREFIX
from .relax import source_layer
from .semantics import FeedbackPlan, SpikingProgram, feedback_matrix, require_dense
from .timed import trace_vars


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
    targets it checks. Noise is drawn from ``seed`` unless given (replayed): private noise
    as ``{source: {layer: (epochs, batch, n)}}``, a noise epoch's as ``{layer: (batch, n)}``.
    """

    def __init__(self, net: Network, program: SpikingProgram, *, optimiser: str | None = None,
                 seed: int = 0):
        self._check_network(net, program)
        program.check_depth(net.depth)
        if RECURRENT in program.learned_projections and not net.recurrent:
            raise LoweringError(f"rule {program.name} updates recurrent synapses R; this "
                                "network has no recurrent layer (build_rnn, --recurrent N)")
        self.traces: dict = {}  # timed programs: {(proj, layer): {var: (B, post, pre)}}
        self.net, self.program, self.cfg = net, program, program.config
        self.optimiser = optimiser or self.cfg.optimiser
        self.rng = np.random.default_rng(seed)
        self.state = {p: {layer: {k: np.array(v, np.float64) for k, v in d.items()}
                          for layer, d in s.items()} for p, s in net.state.items()}
        self.velocity: dict = {}
        consts = self.cfg.constants()
        self.env0 = {**consts, **{f"g_{k}": v for k, v in program.globals.items()}}
        self.layer_consts = [self.cfg.constants(layer) for layer in range(len(net.sizes))]
        self.sub_consts = [[program.constants(layer, sub) for layer in range(len(net.sizes))]
                           for sub in range(program.epochs)]
        self.sym_fns = {n: _lambdify(e, {}) for n, e in program.symbols.items()}
        self.out_fns = [(e.target, _lambdify(e.expr, _self_names(e.expr)), e.last)
                        for e in program.output_eqs]
        self.hid_fns = [(e.target, _lambdify(e.expr, _self_names(e.expr)), e.last)
                        for e in program.hidden_eqs]
        self.term_fns = {(u.projection, u.var): [_lambdify(t.expr, _term_names(t.expr))
                                                 for t in u.terms] for u in program.updates}
        self.relax_fns = [(plan, [(e.target, _lambdify(e.expr, _self_names(e.expr)))
                                  for e in plan.output_rates],
                           [(e.target, _lambdify(e.expr, _self_names(e.expr)))
                            for e in plan.hidden_rates],
                           [(e.target, _lambdify(e.expr, _self_names(e.expr)), e.last)
                            for e in plan.output_derived],
                           [(e.target, _lambdify(e.expr, _self_names(e.expr)), e.last)
                            for e in plan.hidden_derived]) for plan in program.relax]
        self.noise_fns = {ph.name: [(u, [_lambdify(t.expr, _term_names(t.expr)) for t in u.terms])
                                    for u in ph.updates] for ph in program.noise_phases}
        self.fixed = {}
        for fb in program.feedback:
            if fb.mode == "fixed":
                for layer in range(1, net.depth):
                    self.fixed[(fb.name, layer)] = feedback_matrix(
                        fb, self.state[fb.name][layer]["w"])

    # -- the forward projections (a conv net overrides these: .conv_reference) --------
    def _check_network(self, net: Network, program: SpikingProgram) -> None:
        require_dense(net, "spiking reference", recurrent=True)

    def _bias(self, layer: int) -> np.ndarray:
        """The bias neuron's weight onto each neuron of ``layer``."""
        return self.state[FORWARD][layer]["w"][:, -1]

    def _inflow(self, layer: int, spikes: np.ndarray) -> np.ndarray:
        """What the spikes (B, n_below) of one step deliver to ``layer`` in the next."""
        return spikes @ self.state[FORWARD][layer]["w"][:, :-1].T

    def _forward_increment(self, fns, layer: int, pre: dict, post: dict, *,
                           per_sample: bool = False) -> np.ndarray:
        """The batch-averaged increment of the forward synapses into ``layer`` (per sample for
        an eligibility trace of a timed program)."""
        syn = {**self.state[FORWARD][layer], **self.traces.get((FORWARD, layer), {})}
        return self._evaluate(fns, _with_bias(pre), post, syn, per_sample=per_sample)

    # -- dynamics -------------------------------------------------------------------
    def _neurons(self, batch: int) -> list[dict]:
        """Neuron state that runs on through a sample (u, v, the last spike, the input)."""
        return [{k: np.zeros((batch, n)) for k in ("u", "v", "I", "last")}
                for n in self.net.sizes]

    def simulate(self, spikes: np.ndarray, *, neurons: list | None = None, start: int = 0,
                 noise: dict | None = None) -> list[dict[str, np.ndarray]]:
        """Run steps ``start .. start + len(spikes) - 1`` of a sample on input spikes
        (steps, B, n0); returns the raw state of this epoch per layer (0 = input).

        ``neurons`` (from :meth:`_neurons`) carries u, v across the epochs of one sample;
        ``noise``: ``{(source, layer): (B, n)}`` currents of this epoch (hidden layers).
        """
        cfg, sizes = self.cfg, self.net.sizes
        t_steps, batch = spikes.shape[0], spikes.shape[1]
        if neurons is None and t_steps != cfg.timesteps:
            raise LoweringError(f"input has {t_steps} steps, the config says T = "
                                f"{cfg.timesteps}")
        neurons = neurons if neurons is not None else self._neurons(batch)
        d = [None, cfg.decay(1), cfg.decay(2), cfg.decay(3)]
        layers = [{k: np.zeros((batch, n)) for k in ("tr1", "tr2", "tr3", "spk", "asum")}
                  for n in sizes]
        into = {"a": {}, "r": {}}
        for nz in self.program.noise_sources:
            for layer in range(1, self.net.depth):
                if noise is not None:
                    into[nz.into][layer] = into[nz.into].get(layer, 0.0) + noise[(nz.name, layer)]
        for j in range(t_steps):
            t = start + j
            emitted = [np.asarray(spikes[j], np.float64)]
            for lay in range(1, len(sizes)):
                st, raw = neurons[lay], layers[lay]
                bias = self._bias(lay) if t >= lay - 1 else 0.0  # the bias neuron's window
                st["u"] = (1 - cfg.du) * st["u"] + st["I"] + bias + into["a"].get(lay, 0.0)
                st["v"] = (1 - cfg.dv) * st["v"] + st["u"] + into["r"].get(lay, 0.0)
                if cfg.reset == "subtract":  # the previous step's spike, subtracted now
                    st["v"] = st["v"] - cfg.vth * st["last"]
                if t >= lay:  # the drive is averaged over the layer's window
                    raw["asum"] = raw["asum"] + st["u"]
                s = (st["v"] > cfg.vth) * 1.0
                if cfg.reset == "zero":
                    st["v"] = np.where(s > 0, 0.0, st["v"])
                st["last"] = s
                emitted.append(s)
            for lay, s in enumerate(emitted):
                raw = layers[lay]
                for k in (1, 2, 3):
                    raw[f"tr{k}"] = d[k] * raw[f"tr{k}"] + s
                raw["spk"] = np.maximum(raw["spk"], s)
            for lay in range(1, len(sizes)):  # synapses: this step's spikes -> next step's I
                neurons[lay]["I"] = self._inflow(lay, emitted[lay - 1])
                if lay in self.net.recurrent:  # R: the layer's own spikes, one step later
                    neurons[lay]["I"] = neurons[lay]["I"] + \
                        emitted[lay] @ self.state[RECURRENT][lay]["w"].T
            layers[0]["asum"] = layers[0]["asum"] + emitted[0]  # input: a = its rate
        for lay, raw in enumerate(layers):
            for nz in self.program.noise_sources:
                raw[nz.raw] = noise[(nz.name, lay)] if noise is not None and \
                    (nz.name, lay) in noise else np.zeros((batch, sizes[lay]))
        return layers

    # -- epoch program --------------------------------------------------------------
    def compartments(self, layers: list[dict], target: np.ndarray | None, *, sub: int = 0,
                     slow: list | None = None, consts: list | None = None) -> list[dict]:
        """Steps 1-2 of the epoch program: measured symbols, output and hidden equations.

        ``sub``: the learning epoch within the sample; ``slow``: the per-layer slow traces
        of this sample (updated here).
        """
        prog = self.program
        final = sub == prog.epochs - 1  # end-phase equations hold in the last epoch only
        consts = consts or (self.sub_consts[sub] if target is not None else self.layer_consts)
        comps = []
        for lay, st in enumerate(layers):
            env = {**self.env0, **consts[lay], **st}
            c = {n: np.broadcast_to(fn(env), st["tr1"].shape).astype(np.float64)
                 for n, fn in self.sym_fns.items()}
            for n in prog.computed:
                c[n] = np.zeros_like(st["tr1"])
            comps.append(c)
        if target is None:
            return comps
        slow = slow if slow is not None else [{} for _ in comps]
        for c, tr in zip(comps, slow, strict=True):
            self._slow(c, tr, prog.slow_measured)
        out = comps[-1]
        out["target"] = np.asarray(target, np.float64)
        self._run_eqs(out, self.out_fns, final)
        top = self.net.depth
        for layer in range(top - 1, 0, -1):
            c = comps[layer]
            for fb in prog.feedback:
                if fb.scope == "prev":
                    continue  # delivered bottom-up while settling
                src = comps[source_layer(fb.scope, layer, self.net.depth)]
                c[fb.target] = c[fb.target] + src[fb.source] @ self.feedback_weights(fb, layer).T
            self._run_eqs(c, self.hid_fns, final)
        self.relax(comps)
        for c, tr in zip(comps, slow, strict=True):
            self._slow(c, tr, prog.slow_computed)
        return comps

    def relax(self, comps: list[dict]) -> None:
        """The settling stretch of every relax phase: the values that
        follow the relaxed ones brought in line once (:meth:`_settle`), then per step the
        Euler step of every layer from the values before it, and :meth:`_settle` again."""
        top = self.net.depth
        self.residuals = {}  # phase -> {(compartment, layer): RMS of dx/dt at every step}
        for n, (plan, out_rates, hid_rates, out_derived, hid_derived) in \
                enumerate(self.relax_fns):
            if n == 0:
                self._settle(comps, out_derived, hid_derived)
            res = self.residuals.setdefault(plan.name, {})
            for _ in range(plan.steps):
                rates = [(top, out_rates)] + [(layer, hid_rates) for layer in range(1, top)]
                incs = []
                for layer, fns in rates:
                    env = {**self.env0, **comps[layer]}
                    incs += [(layer, x, np.broadcast_to(fn(env), comps[layer]["r"].shape))
                             for x, fn in fns]
                for layer, x, dx in incs:
                    res.setdefault((x, layer), []).append(float(np.sqrt(np.mean(dx ** 2))))
                for layer, x, dx in incs:  # every layer from the values before the step
                    comps[layer][x] = comps[layer][x] + plan.rate * dx
                self._settle(comps, out_derived, hid_derived)

    def _settle(self, comps: list[dict], out_derived, hid_derived) -> None:
        """Top-down: the output's static equations, then each hidden layer's projections
        from above, the output and itself, and its static equations; then bottom-up the
        projections from the layer below through its forward synapses (prev.X via W) and
        the static equations of the layer they reach."""
        top, prog = self.net.depth, self.program
        down = [fb for fb in prog.feedback if fb.scope != "prev"]
        up = [fb for fb in prog.feedback if fb.scope == "prev"]
        self._run_eqs(comps[top], out_derived)
        for layer in range(top - 1, 0, -1):
            self._deliver(comps, layer, down)
            self._run_eqs(comps[layer], hid_derived)
        if up:
            for layer in range(2, top + 1):
                self._deliver(comps, layer, up)
                self._run_eqs(comps[layer], out_derived if layer == top else hid_derived)

    def _deliver(self, comps: list[dict], layer: int, plans) -> None:
        """Each target compartment of ``plans`` = the sum of what they carry into ``layer``."""
        c = comps[layer]
        for target in {fb.target for fb in plans}:
            c[target] = np.zeros_like(c["r"])
        for fb in plans:
            src = comps[source_layer(fb.scope, layer, self.net.depth)]
            c[fb.target] = c[fb.target] + src[fb.source] @ self.feedback_weights(fb, layer).T

    def _slow(self, c: dict, traces: dict, names) -> None:
        """slow(X): the normalised low-pass of X over this sample's learning epochs."""
        d = self.program.slow_decay
        for n in names:
            s_prev, norm_prev = traces.get(n, (0.0, 0.0))
            s_new, norm_new = d * s_prev + c[n], d * norm_prev + 1.0
            traces[n] = (s_new, norm_new)
            c[f"{SLOW_PREFIX}{n}"] = s_new / norm_new

    def _run_eqs(self, c: dict, fns, final: bool = True) -> None:
        for target, fn, last in fns:
            if last and not final:
                continue
            env = {**self.env0, **c}
            c[target] = np.broadcast_to(fn(env), c["r"].shape).astype(np.float64)

    def feedback_weights(self, fb: FeedbackPlan, layer: int) -> np.ndarray:
        if fb.mode == "forward":  # prev.X via W: the forward synapses into ``layer``
            return self.state[FORWARD][layer]["w"][:, :-1]
        if fb.mode == "fixed":
            return self.fixed[(fb.name, layer)]
        if fb.mode == "learned":
            return self.state[fb.name][layer]["w"]
        return feedback_matrix(fb, self.state[fb.name][layer]["w"],
                               self.state[FORWARD][layer + 1]["w"][:, :-1])

    def _evaluate(self, fns, pre: dict, post: dict, syn: dict, *,
                  per_sample: bool = False) -> np.ndarray:
        """Sum of term functions over (batch, post, pre), averaged over the batch (kept per
        sample for an eligibility trace; ``syn`` values of 3 dimensions are per sample)."""
        shape = syn["w"].shape
        batch = next(iter(post.values())).shape[0]
        total = np.zeros((batch, *shape))
        env = dict(self.env0)
        env.update({f"pre_{k}": v[:, None, :] for k, v in pre.items()})
        env.update({f"post_{k}": v[:, :, None] for k, v in post.items()})
        env.update({f"syn_{k}": v if v.ndim == 3 else v[None] for k, v in syn.items()})
        for fn in fns:
            total = total + np.broadcast_to(fn(env), (batch, *shape))
        return total if per_sample else total.mean(0)

    def increments(self, comps: list[dict], *, only: str | None = None) -> dict:
        """Step 3: every update's increment, averaged over the batch (nothing applied).

        ``only``: ``"traces"`` or ``"w"`` (a timed program updates its eligibility traces,
        per sample, before the weight updates read them)."""
        out = {}
        prog = self.program
        for up in prog.updates:
            fns = self.term_fns[(up.projection, up.var)]
            traces = trace_vars(prog, up.projection)
            if only is not None and (up.var in traces) != (only == "traces"):
                continue
            if up.projection == FORWARD:
                for layer in range(1, self.net.depth + 1):
                    out.setdefault((FORWARD, layer), {})[up.var] = self._forward_increment(
                        fns, layer, comps[layer - 1], comps[layer], per_sample=up.var in traces)
                continue
            if up.projection == RECURRENT:  # pre: the layer's own neurons
                pairs = [(layer, comps[layer], comps[layer])
                         for layer in sorted(self.net.recurrent)]
            else:
                fb = next(f for f in prog.feedback if f.name == up.projection)
                pairs = [(layer, comps[source_layer(fb.scope, layer, self.net.depth)], comps[layer])
                         for layer in range(1, self.net.depth)]
            for layer, pre, post in pairs:
                syn = {**self.state[up.projection][layer],
                       **self.traces.get((up.projection, layer), {})}
                total = self._evaluate(fns, pre, post, syn, per_sample=up.var in traces)
                out.setdefault((up.projection, layer), {})[up.var] = total
        return out

    def apply(self, increments: dict) -> None:
        """Add the increments: ``w`` through the optimiser, other state directly."""
        mu = self.cfg.momentum
        for (proj, layer), d in increments.items():
            st = self.state[proj][layer]
            traces = trace_vars(self.program, proj)
            for var, dv in d.items():
                if var in traces:  # one copy per sequence
                    tr = self.traces.setdefault((proj, layer), {})
                    tr[var] = tr.get(var, 0.0) + dv
                elif var == "w" and self.optimiser == "momentum":
                    v = mu * self.velocity.get((proj, layer), 0.0) + dv
                    self.velocity[(proj, layer)] = v
                    st[var] = st[var] + v
                else:
                    st[var] = st[var] + dv

    def draw_noise(self, batch: int) -> dict:
        """Private noise of one sample: ``{source: {layer: (epochs, batch, n)}}``."""
        out: dict = {}
        for _sub in range(self.program.epochs):
            for nz in self.program.noise_sources:
                for layer in range(1, self.net.depth):
                    z = nz.sigma * self.rng.standard_normal((batch, self.net.sizes[layer]))
                    out.setdefault(nz.name, {}).setdefault(layer, []).append(z)
        return {k: {layer: np.stack(v) for layer, v in d.items()} for k, d in out.items()}

    def run_epoch(self, spikes: np.ndarray, target: np.ndarray | None = None,
                  *, learn: bool = True, noise: dict | None = None, apply: bool = True) -> dict:
        """One sample: its learning epochs (simulate, program, update) or, without a target
        or ``learn``, one inference epoch of T steps.

        ``apply=False`` computes every epoch's increments with the weights held. Returns the
        last epoch's ``layers`` and ``comps`` and the sum of the ``increments``.
        """
        spikes = np.asarray(spikes)
        if self.program.timed:
            return self._run_sequence(spikes, target if learn else None, apply=apply)
        if not (learn and target is not None):
            layers = self.simulate(spikes)
            return {"layers": layers, "comps": self.compartments(layers, None),
                    "increments": {}}
        if spikes.shape[0] != self.cfg.timesteps:
            raise LoweringError(f"input has {spikes.shape[0]} steps, the config says T = "
                                f"{self.cfg.timesteps}")
        prog, batch = self.program, spikes.shape[1]
        if noise is None and prog.noise_sources:
            noise = self.draw_noise(batch)
        neurons, slow = self._neurons(batch), [{} for _ in self.net.sizes]
        steps, total = prog.epoch_steps, {}
        for sub in range(prog.epochs):
            epoch_noise = {(k, layer): v[sub] for k, d in (noise or {}).items()
                           for layer, v in d.items()}
            layers = self.simulate(spikes[sub * steps:(sub + 1) * steps], neurons=neurons,
                                   start=sub * steps, noise=epoch_noise)
            comps = self.compartments(layers, target, sub=sub, slow=slow)
            incs = self.increments(comps)
            if apply:
                self.apply(incs)
            _accumulate(total, incs)
        return {"layers": layers, "comps": comps, "increments": total}

    def _run_sequence(self, spikes: np.ndarray, target: np.ndarray | None, *,
                      apply: bool = True) -> dict:
        """A timed program's sample: a sequence, one learning epoch per step. The traces
        start at 0 and are updated before the weight updates of each epoch read them;
        without a target, the sequence runs unchanged and the output is read in its last
        learning epoch (the answer at the sequence's last step)."""
        prog, batch = self.program, spikes.shape[1]
        if spikes.shape[0] != self.cfg.timesteps:
            raise LoweringError(f"input has {spikes.shape[0]} steps, the config says T = "
                                f"{self.cfg.timesteps}")
        self.traces = {}
        for up in prog.updates:
            for var in trace_vars(prog, up.projection):
                for layer, st in self.state[up.projection].items():
                    self.traces.setdefault((up.projection, layer), {})[var] = np.zeros(
                        (batch, *st["w"].shape))
        neurons, steps, total = self._neurons(batch), prog.epoch_steps, {}
        for sub in range(prog.epochs):
            layers = self.simulate(spikes[sub * steps:(sub + 1) * steps], neurons=neurons,
                                   start=sub * steps)
            if target is None:
                continue
            comps = self.compartments(layers, target, sub=sub)
            self.apply(self.increments(comps, only="traces"))
            incs = self.increments(comps, only="w")
            if apply:
                self.apply(incs)
            _accumulate(total, incs)
        if target is None:
            comps = self.compartments(layers, None, consts=self.sub_consts[-1])
        return {"layers": layers, "comps": comps, "increments": total}

    # -- noise epochs -----------------------------------------------------------------
    def noise_drive(self, xi: dict) -> dict:
        """One noise epoch's dynamics: hidden layers driven by constant currents ``xi``
        (``{layer: (B, n)}``); returns each layer's epoch-mean forward drive (steps 1..T-1)."""
        cfg, depth = self.cfg, self.net.depth
        batch = next(iter(xi.values())).shape[0]
        st = {layer: {k: np.zeros((batch, self.net.sizes[layer])) for k in ("u", "v", "last")}
              for layer in range(1, depth)}
        dsum = {layer: np.zeros((batch, self.net.sizes[layer])) for layer in range(2, depth + 1)}
        prev = {layer: np.zeros((batch, self.net.sizes[layer])) for layer in range(1, depth)}
        for t in range(cfg.timesteps):
            for layer in range(2, depth + 1):
                if t >= 1:  # the spikes of step t-1 arrive now
                    dsum[layer] = dsum[layer] + prev[layer - 1] @ \
                        self.state[FORWARD][layer]["w"][:, :-1].T
            for layer in range(1, depth):
                s = st[layer]
                s["u"] = (1 - cfg.du) * s["u"] + xi[layer]
                s["v"] = (1 - cfg.dv) * s["v"] + s["u"]
                if cfg.reset == "subtract":
                    s["v"] = s["v"] - cfg.vth * s["last"]
                spk = (s["v"] > cfg.vth) * 1.0
                if cfg.reset == "zero":
                    s["v"] = np.where(spk > 0, 0.0, s["v"])
                s["last"] = spk
                prev[layer] = spk
        return {layer: v / (cfg.timesteps - 1) for layer, v in dsum.items()}

    def run_noise_epoch(self, phase: str, xi: dict | None = None, *, batch: int = 1,
                        apply: bool = True) -> dict:
        """One noise epoch of noise phase ``phase``: its updates of the feedback synapses."""
        ph = next(p for p in self.program.noise_phases if p.name == phase)
        depth = self.net.depth
        if xi is None:
            xi = {layer: ph.sigma * self.rng.standard_normal((batch, self.net.sizes[layer]))
                  for layer in range(1, depth)}
        drive = self.noise_drive(xi)
        incs: dict = {}
        for up, fns in self.noise_fns[phase]:
            fb = next(f for f in self.program.feedback if f.name == up.projection)
            for layer in range(1, depth):
                pre = {NOISE_DRIVE: drive[layer + 1]}
                post = {NOISE_VALUE: np.asarray(xi[layer], np.float64),
                        fb.target: drive[layer + 1] @ self.feedback_weights(fb, layer).T}
                incs.setdefault((up.projection, layer), {})[up.var] = self._evaluate(
                    fns, pre, post, self.state[up.projection][layer])
        if apply:
            self.apply(incs)
        return {"drive": drive, "noise": xi, "increments": incs}


def _accumulate(total: dict, incs: dict) -> None:
    """Add one learning epoch's increments into the sample's totals."""
    for key, d in incs.items():
        acc = total.setdefault(key, {})
        for var, dv in d.items():
            acc[var] = acc.get(var, 0.0) + dv


def _with_bias(comps: dict) -> dict:
    """Pre-synaptic compartments plus the always-on bias neuron (axon signals 1, others 0)."""
    out = {}
    for k, v in comps.items():
        fill = 1.0 if k in AXON_SIGNALS else 0.0
        out[k] = np.concatenate([v, np.full_like(v[:, :1], fill)], 1)
    return out
