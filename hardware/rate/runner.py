"""The rate runner: a rule's generated rate module bound to a network's state."""

from __future__ import annotations

import math

import numpy as np
import sympy

from neurolocal.errors import LoweringError
from neurolocal.feedback_weights import evaluate_weights
from neurolocal.network import Network
from neurolocal.rule import FORWARD, FeedbackDecl

from ..arrayops import numpy_ops, torch_device, torch_ops
from .binding import FusedBinding
from .compartments import RATE_ALIASES, Compartments, Pairwise, _Augmented, _Positions, _slow
from .fused import chain_of, fusable
from .lower import (
    RateSource,
    _fn,
    is_dynamic,
    lower_rate,
    relaxed_targets,
    update_function_name,
)
from .optim import Optimiser


class RateRunner:
    """A rule's rate program bound to a network's state, running on numpy or torch.

    The target's runner (:class:`~neurolocal.hardware.base.Runner`): :meth:`learn` steps
    through samples in batches of ``batch_size`` with the bound optimiser, :meth:`step` is one
    batch, :meth:`predict` gives the output rates as numpy scores.
    """

    def __init__(self, net: Network, *, backend: str = "numpy", device: str = "cpu",
                 allow_nonlocal: bool = False, seed: int = 0, optimiser: Optimiser | None = None,
                 batch_size: int = 50, program: RateSource | None = None, fused: bool = True):
        from neurolocal.locality import require_local

        self.net, self.rule, self.backend = net, net.rule, backend
        self.target = backend
        if not allow_nonlocal:
            require_local(self.rule)
        program = program or lower_rate(self.rule, backend)
        if program.backend != backend:
            raise LoweringError(f"the program was generated for {program.backend!r}, not "
                                f"{backend!r}")
        self.source = program.text
        self.opt = optimiser or Optimiser("adam")
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise LoweringError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.batch_size = int(batch_size)
        if backend == "torch":
            import torch
            self.xp, self.ops, self.device = torch, torch_ops(), torch_device(device)
        else:
            if device != "cpu":
                raise LoweringError(f"the numpy backend runs on the cpu, not {device!r}")
            self.xp, self.ops, self.device = np, numpy_ops(), "cpu"
        self.rng = np.random.default_rng(seed)
        ns: dict = {"ops": self.ops, "Pairwise": Pairwise, "slow": _slow}
        exec(compile(self.source, f"<neurolocal rate program {self.rule.name}>", "exec"), ns)
        self.mod = ns
        self.g = self.rule.scalar_globals()
        self.state = {p: {layer: {k: self.asarray(v) for k, v in d.items()}
                          for layer, d in s.items()} for p, s in net.state.items()}
        self.hold_phases = {n for n, p in self.rule.phases.items() if p.kind == "hold"}
        self.dynamic = is_dynamic(self.rule)
        self.relax_phases = [(n, p) for n, p in self.rule.phases.items() if p.kind == "relax"]
        self._memo: dict = {}  # (projection, layer) -> (source array, its delivery)
        exprs = [e.expr for e in self.rule.neuron + self.rule.output] + \
            [u.expr for u in self.rule.updates]
        self.uses_slow = any(e.has(sympy.Function("slow")) for e in exprs)
        self._populations = self.net.populations
        self._start_at_zero = sorted({fb.target for fb in self.rule.feedback.values()}
                                     | set(relaxed_targets(self.rule, "neuron"))
                                     | set(relaxed_targets(self.rule, "output")))
        #: data-parallel hook: called with the step's update tensors (batch means), averages
        #: them across processes in place (neurolocal.app.distributed); None on one process
        self.reduce = None
        #: the fused program (torch, rules that need one sweep): :mod:`.binding`
        self._fused = None
        if backend == "torch" and fused and fusable(self.rule, chain_of(net)) is None:
            self._fused = FusedBinding(self)

    # -- array helpers ---------------------------------------------------------------
    def asarray(self, a):
        """An array of this backend (float32; numpy input is copied, a tensor is not)."""
        if self.backend == "torch":
            if isinstance(a, self.xp.Tensor):
                return a.to(device=self.device, dtype=self.xp.float32)
            return self.xp.as_tensor(np.array(a, dtype=np.float32), device=self.device)
        return np.asarray(a, dtype=np.float32)

    def to_numpy(self, a) -> np.ndarray:
        return a.detach().cpu().numpy() if self.backend == "torch" else np.asarray(a)

    def _randn(self, shape):
        # one numpy stream for both backends, so numpy and torch runs stay identical
        return self.asarray(self.rng.standard_normal(shape).astype(np.float32))

    def _uniform(self, shape, bound):
        return self.asarray((2 * self.rng.random(shape, dtype=np.float32) - 1) * bound)

    def sync(self) -> Network:
        """Write the program's state back into the network (for checkpoints)."""
        for p, s in self.state.items():
            for layer, d in s.items():
                for k, v in d.items():
                    self.net.state[p][layer][k] = self.to_numpy(v).astype(np.float32)
        return self.net

    # -- dynamics --------------------------------------------------------------------
    def _activation(self, a, kind: str):
        """The rate ``f(a)``; the derivative is computed only if a rule reads ``dphi``."""
        xp = self.xp
        if kind == "relu":
            return (xp.relu(a) if self.backend == "torch" else np.maximum(a, 0)), None
        if kind == "tanh":
            return xp.tanh(a), None
        if kind == "sigmoid":
            return 1 / (1 + xp.exp(-a)), None
        if kind == "softmax":
            z = a - a.max(1, keepdims=True) if self.backend == "numpy" else \
                a - a.max(1, keepdim=True).values
            e = xp.exp(z)
            r = e / e.sum(1, keepdims=True) if self.backend == "numpy" else e / e.sum(1, True)
            return r, None
        return a, None

    def _derivative(self, a, r, kind: str):
        if kind == "relu":
            return (a > 0).to(a.dtype) if self.backend == "torch" else (a > 0).astype(a.dtype)
        if kind == "tanh":
            return 1 - r * r
        if kind in ("sigmoid", "softmax"):
            return r * (1 - r)
        return self.xp.ones_like(a)

    def _comps(self, r, a, dphi=None, kind: str = "linear") -> dict:
        c = Compartments(self, kind, r=r, a=a, abar=a)
        if dphi is not None:
            c["dphi"] = dphi
        return c

    def forward(self, x, noisy: bool = False) -> list[dict]:
        """Forward sweep; returns the compartments of every layer (0 = input).

        ``noisy``: hidden neurons add the rule's private noise sources (``noise`` statements)
        to their rate or drive, and ``abar`` holds the drive of the same sweep without noise
        (``slow(a)``). Without ``noisy`` (inference) the noise compartments are zero.
        """
        x = self.asarray(x) if not isinstance(x, self.xp.Tensor if self.backend == "torch"
                                          else np.ndarray) else x
        if x.ndim != 2 or x.shape[1] != self.net.sizes[0]:
            from neurolocal.errors import ShapeError
            raise ShapeError(f"input batch has shape {tuple(x.shape)}, the network expects "
                             f"(batch, {self.net.sizes[0]})")
        comps = [self._comps(x, x)]
        pops = self._populations
        noise = self.rule.noise.values() if noisy else ()
        r = r_clean = x
        for layer in range(1, self.net.depth + 1):
            w = self.state[FORWARD][layer]["w"]
            a = self._affine(r, w, layer)
            hidden = layer < self.net.depth
            drawn = {}
            if noise and hidden:
                a_clean = self._affine(r_clean, w, layer)
                r_clean = self._activation(a_clean, pops[layer].activation)[0]
                for nz in noise:
                    drawn[nz.name] = nz.sigma * self._randn(tuple(a.shape))
                    if nz.into == "a":
                        a = a + drawn[nz.name]
            elif noise:
                a_clean = self._affine(r_clean, w, layer)
            r, dphi = self._activation(a, pops[layer].activation)
            for nz in noise if hidden else ():
                if nz.into == "r":
                    r = r + drawn[nz.name]
            c = self._comps(r, a, dphi, pops[layer].activation)
            if noise:
                c["abar"] = a_clean
            for name in self.rule.noise:
                c[name] = drawn.get(name, a * 0)
            comps.append(c)
        for c in comps:
            for ph in self.hold_phases:
                for k in ("dphi", "err", *RATE_ALIASES):
                    c[k]  # materialise what is derived, so the snapshot holds it
                for k in list(c):
                    if "@" not in k:
                        c[f"{k}@{ph}"] = c[k]
        return comps

    def _affine(self, r, w, layer: int):
        spec = self.net.convs.get(layer)
        return self.ops.affine(r, w) if spec is None else self.ops.conv_affine(r, w, spec)

    def _dense_only(self, layer: int, what: str) -> None:
        """Refuse what needs the forward weights of ``layer`` as a matrix when it is a conv."""
        spec = self.net.convs.get(layer)
        if spec is not None:
            raise LoweringError(
                f"rule {self.rule.name}: {what} needs the forward weights into layer {layer} "
                f"as a dense matrix, but layer {layer} is a convolution ({spec.out_channels} "
                f"channels, {spec.kernel}x{spec.kernel} kernel): feedback through conv layers "
                "is lowered for feedback from the output only (dfa, sdfa)")

    def predict(self, x) -> np.ndarray:
        """Output rates (N, classes) as numpy, in batches of 1000 samples."""
        out = [self.to_numpy(self.forward(x[i:i + 1000])[-1]["r"])
               for i in range(0, len(x), 1000)]
        return np.concatenate(out) if out else np.zeros((0, self.net.sizes[-1]), np.float32)

    def output(self, x):
        """Output rates of this backend (no copy to numpy)."""
        return self.forward(x)[-1]["r"]

    def feedback_matrix(self, fb: FeedbackDecl, layer: int):
        """The feedback weights into ``layer`` as the rule's weight expression defines them."""
        if fb.source.scope == "prev":
            self._dense_only(layer, f"feedback {fb.name} (prev.{fb.source.name} via W)")
            return self.state[FORWARD][layer]["w"][:, :-1]  # the forward synapses themselves
        stored = self.state[fb.name][layer]["w"]

        if self.rule.is_learned(fb.name):
            return stored
        forward = None
        if fb.source.scope == "next":
            def forward():
                self._dense_only(layer + 1, f"feedback {fb.name} ({fb.weights_text})")
                return self.state[FORWARD][layer + 1]["w"][:, :-1]
        return evaluate_weights(
            fb.weights, name=fb.name, text=fb.weights_text, stored=stored, xp=self.xp,
            forward=forward, where="in rate mode",
            resample=lambda: self._uniform(stored.shape, 1.0 / math.sqrt(stored.shape[1])))

    def errors(self, comps: list[dict], target) -> list[dict]:
        """Deliver the teaching signal and the feedback: fills err and the neuron equations.

        Top-down: output equations, then each hidden layer receives its projections and runs
        its equations. A rule with relax phases then settles (:meth:`relax`).
        """
        g, top = self.g, self.net.depth
        out = comps[top]
        out["target"] = target
        self._memo = {}  # weights are fixed within one call: unchanged sources reuse deliveries
        self._init_compartments(comps)
        self.mod["output_neuron"](out, g)
        for layer in range(top - 1, 0, -1):
            self._deliver_down(comps, layer)
            self.mod["hidden_neuron"](comps[layer], g)
        if self.dynamic:
            self._settle(comps)
            for name, ph in self.relax_phases:
                self.relax(comps, name, ph)
        return comps

    def _init_compartments(self, comps: list[dict]) -> None:
        """Projection targets and relaxed compartments start at zero."""
        zeros = self.xp.zeros_like
        for c in comps[1:]:
            for name in self._start_at_zero:
                if name not in c:
                    c[name] = zeros(c["r"])

    def _deliver_down(self, comps: list[dict], layer: int) -> None:
        """Projections from the layer above, the output layer and the same layer."""
        total: dict = {}
        for fb in self.rule.feedback.values():
            scope = fb.source.scope
            if scope == "prev":
                continue
            src = {"next": comps[layer + 1], "output": comps[-1],
                   "lateral": comps[layer]}[scope][fb.source.name]
            memo = self._memo.get((fb.name, layer))
            if memo is not None and memo[0] is src:
                value = memo[1]  # source unchanged since the last delivery in this sweep
            else:
                value = src @ self.feedback_matrix(fb, layer).T
                self._memo[(fb.name, layer)] = (src, value)
            total[fb.target] = value if fb.target not in total else total[fb.target] + value
        comps[layer].update(total)

    def _deliver_up(self, comps: list[dict], layer: int) -> None:
        """Projections from the layer below through the forward synapses (``prev.X via W``)."""
        total: dict = {}
        for fb in self.rule.feedback.values():
            if fb.source.scope == "prev" and fb.source.name in comps[layer - 1]:
                value = comps[layer - 1][fb.source.name] @ self.feedback_matrix(fb, layer).T
                total[fb.target] = value if fb.target not in total else total[fb.target] + value
        comps[layer].update(total)

    def _settle(self, comps: list[dict]) -> None:
        """Bring every static compartment in line with the relaxed ones.

        Signals travel instantly within one relaxation step: top-down (output equations, then
        each hidden layer's projections and equations), then bottom-up the projections from
        ``prev`` through the forward synapses (and the equations of the layers they reach).
        Equations that give a relaxed compartment its initial value are not re-run.
        """
        g, top = self.g, self.net.depth
        self.mod["output_derived"](comps[top], g)
        for layer in range(top - 1, 0, -1):
            self._deliver_down(comps, layer)
            self.mod["hidden_derived"](comps[layer], g)
        if any(fb.source.scope == "prev" for fb in self.rule.feedback.values()):
            for layer in range(2, top + 1):
                self._deliver_up(comps, layer)
                self.mod["output_derived" if layer == top else "hidden_derived"](
                    comps[layer], g)

    def _relax_step(self, comps: list[dict], name: str) -> list[tuple[dict, dict]]:
        """The increments dx/dt of every dynamic equation during phase ``name``."""
        g, top, fn = self.g, self.net.depth, _fn(name)
        incs = []
        if f"output_relax_{fn}" in self.mod:
            incs.append((comps[top], self.mod[f"output_relax_{fn}"](comps[top], g)))
        if f"hidden_relax_{fn}" in self.mod:
            for layer in range(1, top):
                incs.append((comps[layer], self.mod[f"hidden_relax_{fn}"](comps[layer], g)))
        return incs

    def relax(self, comps: list[dict], name: str, ph) -> list[dict]:
        """Relax phase ``name``: ``steps`` Euler steps x += rate * dx/dt of every equation
        ``during`` it, all layers at once; values at the end are held as ``x@name``."""
        steps, rate = int(ph.params["steps"]), float(ph.params["rate"])
        for _ in range(steps):
            for c, d in self._relax_step(comps, name):
                for k, v in d.items():
                    c[k] = c[k] + rate * v
            self._settle(comps)
        for c in comps[1:]:
            for k in [k for k in c if "@" not in k]:
                c[f"{k}@{name}"] = c[k]
        return comps

    def stability(self, x, target, phase: str | None = None) -> dict:
        """Linear stability of a relax phase's dynamics (:func:`.stability.stability`)."""
        from .stability import stability

        return stability(self, x, target, phase)

    def _tile(self, v, n: int):
        if self.backend == "torch":
            return v.repeat(n, *([1] * (v.ndim - 1)))
        return np.repeat(v, n, axis=0)

    def updates(self, comps: list[dict], phase: str | None = None, *,
                descent: bool = False) -> dict:
        """The rule's increments for every projection and layer (nothing applied yet).

        ``descent`` (torch): the negated increments, for :meth:`_apply_torch_adam`.
        """
        g, n, out = self.g, comps[0]["r"].shape[0], {}
        name = update_function_name(FORWARD, phase, descent)
        conv_name = update_function_name(FORWARD, phase, descent, conv=True)
        if name in self.mod:
            for layer in range(1, self.net.depth + 1):
                spec = self.net.convs.get(layer)
                if spec is not None and conv_name in self.mod:
                    out[(FORWARD, layer)] = self.mod[conv_name](
                        comps[layer - 1], comps[layer], self.state[FORWARD][layer], g, n, spec)
                    continue
                if spec is None:
                    pre, post = _Augmented(comps[layer - 1], self.xp), comps[layer]
                else:
                    pre = _Augmented(comps[layer - 1], self.xp,
                                     lambda v, spec=spec: self.ops.patches(v, spec))
                    post = _Positions(comps[layer], spec, self.ops)
                out[(FORWARD, layer)] = self.mod[name](
                    pre, post, self.state[FORWARD][layer], g, n)
        for fb in self.rule.feedback.values():
            name = update_function_name(fb.name, phase, descent)
            if name not in self.mod:
                continue
            for layer in range(1, self.net.depth):
                src = {"next": comps[layer + 1], "output": comps[-1],
                       "lateral": comps[layer]}[fb.source.scope]
                out[(fb.name, layer)] = self.mod[name](
                    src, comps[layer], self.state[fb.name][layer], g, n)
        return out

    def mirror_updates(self, phase: str, batch: int, *, descent: bool = False) -> dict:
        """The noise phase: drive each hidden layer with noise, send drive down feedback."""
        sigma, g, out = self.rule.phases[phase].params["sigma"], self.g, {}
        for fb in self.rule.feedback.values():
            name = update_function_name(fb.name, phase, descent)
            if name not in self.mod:
                continue
            if fb.source.scope != "next":
                raise LoweringError(f"phase {phase} (noise) needs feedback {fb.name} to come "
                                    "from next.<compartment>")
            for layer in range(1, self.net.depth):
                self._dense_only(layer + 1, f"phase {phase} (noise through W)")
                xi = sigma * self._randn((batch, self.net.sizes[layer]))
                drive = xi @ self.state[FORWARD][layer + 1]["w"][:, :-1].T
                post = self._comps(xi, xi, xi * 0 + 1)
                pre = self._comps(drive, drive, drive * 0 + 1)
                pre[fb.source.name] = drive
                # the feedback delivers the drive to its target compartment here
                post[fb.target] = drive @ self.feedback_matrix(fb, layer).T
                out[(fb.name, layer)] = self.mod[name](
                    pre, post, self.state[fb.name][layer], g, batch)
        return out

    def apply(self, updates: dict, opt: Optimiser) -> None:
        """Add the rule's increments ``updates`` (as :meth:`updates` returns them)."""
        if self.backend == "torch" and opt.kind == "adam":
            return self._apply_torch_adam(
                {k: {v: -dv for v, dv in d.items()} for k, d in updates.items()}, opt)
        for (proj, layer), d in updates.items():
            st = self.state[proj][layer]
            for var, dv in d.items():
                if var == "w":
                    st[var] += opt.delta((proj, layer, var), dv, self.ops)
                else:
                    st[var] += dv

    def _apply_torch_adam(self, descents: dict, opt: Optimiser) -> None:
        """Adam through torch's multi-tensor implementation (same maths as :class:`Optimiser`).

        ``descents``: the negated increments (:meth:`updates` with ``descent=True``), handed
        to torch as gradients to minimise along; the generated ``descent_*`` functions flip
        the signs in the code, so no negated copy is made at run time.
        """
        torch = self.xp
        params = []
        for (proj, layer), d in descents.items():
            st = self.state[proj][layer]
            for var, dv in d.items():
                if var == "w":
                    st[var].grad = dv
                    params.append(st[var])
                else:
                    st[var] -= dv
        key = tuple(id(p) for p in params)
        if getattr(self, "_torch_opt_key", None) != key:
            self._torch_opt = torch.optim.Adam(params, lr=opt.lr, betas=opt.betas, eps=opt.eps,
                                               foreach=True)
            self._torch_opt_key = key
        for group in self._torch_opt.param_groups:
            group["lr"] = opt.lr
        with torch.no_grad():
            self._torch_opt.step()
        for p in params:
            p.grad = None

    def learn(self, x, onehot) -> None:
        """Consume samples in order, ``batch_size`` at a time, one :meth:`step` each."""
        for i in range(0, len(x), self.batch_size):
            self.step(x[i:i + self.batch_size], onehot[i:i + self.batch_size])

    def close(self) -> None:
        """Nothing to release: the state lives in this process."""

    @property
    def fused(self) -> bool:
        """Does :meth:`step` run the fused program (:mod:`.fused`)?"""
        return self._fused is not None

    def step(self, x, target, opt: Optimiser | None = None) -> list[dict] | None:
        """One training step on a batch: forward, error, updates, every declared phase.

        ``opt``: this step's optimiser (default: the bound one). Returns the compartments,
        or None where the fused program ran (it keeps none).
        """
        opt = opt or self.opt
        target = self.asarray(target)
        if self._fused is not None:
            if not self._fused.valid:
                self._fused = FusedBinding(self)
            self._fused.step(self.asarray(x), target, opt)
            return None
        if self.rule.noise:
            comps = self.forward(x, noisy=True)
            if self.uses_slow:
                # slow(X): X in the same sweep without the noise (what a low-pass converges to)
                clean = self.errors(self.forward(x), target)
                for c, s in zip(comps, clean):
                    c.update({f"{k}~slow": v for k, v in s.items()})
            comps = self.errors(comps, target)
        else:
            comps = self.errors(self.forward(x), target)
        opt.step()
        descent = self.backend == "torch" and opt.kind == "adam"
        ups = self.updates(comps, descent=descent)
        for name, ph in self.rule.phases.items():
            if ph.kind == "noise":
                ups.update(self.mirror_updates(name, comps[0]["r"].shape[0], descent=descent))
        if self.reduce is not None:
            self.reduce([v for d in ups.values() for v in d.values()])
        if descent:
            self._apply_torch_adam(ups, opt)
        else:
            self.apply(ups, opt)
        return comps
