"""The rate runner through time: a rule's generated recurrent program on a recurrent network.

Sequences come as ``(batch, steps, features)``; the answer is the output at the last step.
Compartments of a whole sequence are kept as rows, one per (step, sample) pair in step-major
order (row ``t * batch + b``), so that everything that does not depend on an earlier step -- a
dense layer, the output, the error delivery of a local rule, every update -- runs on all steps
at once, and only the recurrence itself runs step by step. The semantics (and why an
eligibility trace costs one outer product) are in :mod:`.recurrent_lower`.
"""

from __future__ import annotations

import math

import numpy as np

from neurolocal.errors import LoweringError, ShapeError
from neurolocal.feedback_weights import evaluate_weights
from neurolocal.network import Network
from neurolocal.rule import FORWARD, RECURRENT, FeedbackDecl
from neurolocal.symbols import FUTURE, TIME_COMPARTMENTS, refs_in

from .compartments import Compartments, _Augmented
from .optim import Optimiser
from .recurrent_lower import (
    RecurrentSource,
    TracePlan,
    lower_recurrent,
    trace_name,
    update_name,
)
from .runner import RateRunner


class _Rows(dict):
    """A view of stacked compartments: the rows of one step (``shift`` 0), or every row moved
    by one step -- ``-1``: each row sees the step before (zeros at the first step), ``+1``:
    the step after (zeros after the last) -- derived from the base on first read."""

    def __init__(self, base, xp, batch: int, *, step: int | None = None, shift: int = 0,
                 kind: str = "linear"):
        super().__init__()
        self.base, self.xp, self.batch, self.step, self.shift = base, xp, batch, step, shift
        self.kind = kind

    def __missing__(self, key):
        v, b = self.base[key], self.batch
        if self.step is not None:  # (an array of one step's rows is that step)
            value = v if v.shape[0] == b else v[self.step * b:(self.step + 1) * b]
        elif self.shift < 0:
            value = _cat(self.xp, [v[:b] * 0, v[:-b]])
        else:
            value = _cat(self.xp, [v[b:], v[:b] * 0])
        self[key] = value
        return value


class _Zeros(dict):
    """The same layer one step after the last: every compartment 0."""

    def __init__(self, like):
        super().__init__()
        self.like = like

    def __missing__(self, key):
        value = self.like["r"] * 0
        self[key] = value
        return value


def _cat(xp, parts):
    return xp.cat(parts, 0) if hasattr(xp, "cat") else np.concatenate(parts, 0)


class RecurrentRunner(RateRunner):
    """A rule's recurrent rate program bound to a network with recurrent layers.

    :meth:`step` is one batch of sequences: the forward sweep through time, the error delivery,
    the weights' increments summed over the sequence and applied once through the optimiser.
    """

    def __init__(self, net: Network, *, backend: str = "numpy", device: str = "cpu",
                 allow_nonlocal: bool = False, seed: int = 0, optimiser: Optimiser | None = None,
                 batch_size: int = 50, program: RecurrentSource | None = None):
        if not net.recurrent:
            raise LoweringError("the recurrent rate program needs a network with a recurrent "
                                "layer (build_rnn, --recurrent N)")
        if net.convs:
            raise LoweringError("a network with both convolutions and recurrent layers is not "
                                "run")
        program = program or lower_recurrent(net.rule, backend)
        if not isinstance(program, RecurrentSource):
            raise LoweringError("a recurrent network runs the program lower_recurrent "
                                "generates, not a feed-forward one")
        super().__init__(net, backend=backend, device=device, allow_nonlocal=allow_nonlocal,
                         seed=seed, optimiser=optimiser, batch_size=batch_size, program=program)
        self.program = program
        rule = self.rule
        exprs = [e.expr for e in rule.neuron + rule.output] + [u.expr for u in rule.updates]
        self.reads_leak = any(ref.name in TIME_COMPARTMENTS for e in exprs for ref in refs_in(e))
        self.eq_targets = {"hidden": list(dict.fromkeys(e.target for e in rule.neuron)),
                           "output": list(dict.fromkeys(e.target for e in rule.output))}
        self.fb_targets = sorted({fb.target for fb in rule.feedback.values()})

    # -- the forward sweep through time ---------------------------------------------------------
    def _rows(self, x):
        """``(batch, steps, features)`` -> step-major rows ``(steps * batch, features)``."""
        torch_in = self.backend == "torch" and isinstance(x, self.xp.Tensor)
        x = x.to(self.device, self.xp.float32) if torch_in else self.asarray(x)
        if x.ndim != 3 or x.shape[2] != self.net.sizes[0]:
            raise ShapeError(f"input batch has shape {tuple(x.shape)}; the recurrent network "
                             f"expects sequences (batch, steps, {self.net.sizes[0]})")
        batch, steps = int(x.shape[0]), int(x.shape[1])
        if steps < 1:
            raise ShapeError("a sequence needs at least one step")
        rows = x.transpose(0, 1).reshape(steps * batch, -1) if self.backend == "torch" else \
            np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(steps * batch, -1)
        return rows, steps, batch

    def forward_sequence(self, x) -> tuple[list[dict], int, int]:
        """Compartments of every layer (0 = input) as step-major rows; steps; batch size."""
        rows, steps, batch = self._rows(x)
        comps = [Compartments(self, "linear", r=rows, a=rows, abar=rows)]
        pops, r_in = self._populations, rows
        top = self.net.depth
        for layer in range(1, top + 1):
            kind = pops[layer].activation
            if layer == top and self.program.output_last:
                r_in = r_in[-batch:]  # nothing reads the output before the last step
            drive = self.ops.affine(r_in, self.state[FORWARD][layer]["w"])
            if layer in self.net.recurrent:
                a, r, rate = self._recur(drive, layer, steps, batch, kind)
                c = Compartments(self, kind, r=r, a=a, abar=a)
                if rate is not r:  # a leaky layer: f'(a) of the instantaneous rate f(a)
                    c["dphi"] = self._derivative(a, rate, kind)
            else:
                r = self._activation(drive, kind)[0]
                c = Compartments(self, kind, r=r, a=drive, abar=drive)
            if self.reads_leak:
                c["leak"] = r * 0 + self.net.leak(layer)
            comps.append(c)
            r_in = r
        return comps, steps, batch

    def _recur(self, drive, layer: int, steps: int, batch: int, kind: str):
        """The recurrence ``a_t = drive_t + R r_{t-1}``, ``r_t = leak r_{t-1} + (1-leak) f(a_t)``;
        returns a, r and f(a) (r itself for a layer without leak)."""
        rec = self.state[RECURRENT][layer]["w"].T
        leak = self.net.leak(layer)
        xp, torch = self.xp, self.backend == "torch"
        a_all, f_all = xp.empty_like(drive), xp.empty_like(drive)
        r_all = f_all if leak == 0 else xp.empty_like(drive)
        r = drive[:batch] * 0
        into = {"tanh": xp.tanh, "sigmoid": xp.sigmoid if torch else None,
                "relu": xp.relu if torch else None}.get(kind)
        if torch and into is not None:  # the step's views made once: no indexing per step
            d_t, a_t, f_t, r_t = (v.view(steps, batch, -1).unbind(0)
                                  for v in (drive, a_all, f_all, r_all))
            for t in range(steps):
                into(xp.addmm(d_t[t], r, rec, out=a_t[t]), out=f_t[t])
                r = xp.lerp(f_t[t], r, leak, out=r_t[t]) if leak else f_t[t]
            return a_all, r_all, f_all
        for t in range(steps):
            rows = slice(t * batch, (t + 1) * batch)
            if torch:
                a = xp.addmm(drive[rows], r, rec, out=a_all[rows])
            else:
                a = a_all[rows] = drive[rows] + r @ rec
            if into is not None:
                into(a, out=f_all[rows])
            else:
                f_all[rows] = self._activation(a, kind)[0]
            if leak:
                if torch:
                    xp.lerp(f_all[rows], r, leak, out=r_all[rows])
                else:
                    r_all[rows] = leak * r + (1 - leak) * f_all[rows]
            r = r_all[rows]
        return a_all, r_all, f_all

    def forward(self, x, noisy: bool = False):
        raise LoweringError("a recurrent network runs on sequences: use forward_sequence(x) "
                            "with x of shape (batch, steps, features)")

    def predict(self, x) -> np.ndarray:
        """The output at the last step (N, classes) as numpy, 1000 sequences at a time."""
        out = []
        for i in range(0, len(x), 1000):
            comps, _, batch = self.forward_sequence(x[i:i + 1000])
            out.append(self.to_numpy(comps[-1]["r"][-batch:]))
        return np.concatenate(out) if out else np.zeros((0, self.net.sizes[-1]), np.float32)

    def output(self, x):
        comps, _, batch = self.forward_sequence(x)
        return comps[-1]["r"][-batch:]

    # -- error delivery ---------------------------------------------------------------------------
    def feedback_matrix(self, fb: FeedbackDecl, layer: int):
        """As the rate runner's, and ``R`` (the recurrent weights of ``layer``, 0 for a layer
        without) for projections from ``future``."""
        if fb.source.scope != FUTURE:
            return super().feedback_matrix(fb, layer)
        stored = self.state[fb.name][layer]["w"]
        if self.rule.is_learned(fb.name):
            return stored

        def recurrent():
            if layer in self.net.recurrent:
                return self.state[RECURRENT][layer]["w"]
            return stored * 0

        return evaluate_weights(
            fb.weights, name=fb.name, text=fb.weights_text, stored=stored, xp=self.xp,
            recurrent=recurrent, where="in rate mode",
            resample=lambda: self._uniform(stored.shape, 1.0 / math.sqrt(stored.shape[1])))

    def _target_rows(self, target, steps: int, batch: int):
        target = self.asarray(target)
        if self.program.output_last:
            return target[:, -1] if target.ndim == 3 else target
        if target.ndim == 3:  # a target per step: (batch, steps, classes)
            return target.transpose(0, 1).reshape(steps * batch, -1) if \
                self.backend == "torch" else \
                np.ascontiguousarray(target.transpose(1, 0, 2)).reshape(steps * batch, -1)
        return _cat(self.xp, [target] * steps)

    def deliver(self, comps: list[dict], target, steps: int, batch: int) -> list[dict]:
        """The teaching signal and the feedback at every step: err and the neuron equations."""
        comps[-1]["target"] = self._target_rows(target, steps, batch)
        if self.program.backward:
            return self._deliver_backward(comps, steps, batch)
        self._equations(comps[-1], "output", batch, last=True if self.program.output_last
                        else None)
        for layer in range(self.net.depth - 1, 0, -1):
            self._receive(comps, layer, comps, None, batch)
            self._equations(comps[layer], "hidden", batch)
        return comps

    def _kind(self, layer: int) -> str:
        return "output" if layer == self.net.depth else "hidden"

    def _receive(self, comps, layer: int, now, later, batch: int | None = None) -> None:
        """Every projection into ``layer``: from the layer above, the output, the same layer
        (``now``) and the same layer one step later (``later``; None: after the last step).
        ``batch``: ``now`` holds every step, and a source that is 0 before the last step (the
        rule's structure says so) is sent at the last step only."""
        c, total = now[layer], {}
        for fb in self.rule.feedback.values():
            scope = fb.source.scope
            if scope == FUTURE:
                if later is None:
                    continue
                src, at = later[layer], layer
            else:
                at = {"next": layer + 1, "output": self.net.depth, "lateral": layer}[scope]
                src = now[at]
            value = src[fb.source.name]
            if batch is not None and fb.source.name in self.program.zeros[self._kind(at)]:
                sent = self.xp.empty_like(c["r"])  # 0 before the last step
                sent[:-batch] = 0
                sent[-batch:] = value[-batch:] @ self.feedback_matrix(fb, layer).T
            else:
                sent = value @ self.feedback_matrix(fb, layer).T
            total[fb.target] = sent if fb.target not in total else total[fb.target] + sent
        for name in self.fb_targets:
            c[name] = total[name] if name in total else c["r"] * 0

    def _equations(self, c, where: str, batch: int, later=None, last: bool | None = None):
        """A layer's equations on its rows; equations during an end phase hold at the last
        step (``last``: these rows are one step, the last one or not)."""
        g, later = self.g, (_Zeros(c) if later is None else later)
        ends = self.program.end_targets.get(where, ())
        if last is not None or not ends:
            name = f"{where}_neuron_last" if last and ends else f"{where}_neuron"
            self.mod[name](c, later, g)
            return
        tail = _Rows(c, self.xp, batch, step=c["r"].shape[0] // batch - 1)
        self.mod[f"{where}_neuron_last"](tail, later, g)
        self.mod[f"{where}_neuron"](c, later, g)
        for key in self.eq_targets[where]:
            c[key] = _cat(self.xp, [c[key][:-batch], tail[key]])

    def _deliver_backward(self, comps: list[dict], steps: int, batch: int) -> list[dict]:
        """Rules that read ``future``: each step after the one that follows it, last first."""
        views = [[Compartments(self, getattr(c, "kind", "linear"),
                               **{k: v[t * batch:(t + 1) * batch] for k, v in c.items()})
                  for c in comps] for t in range(steps)]
        top = self.net.depth
        for t in range(steps - 1, -1, -1):
            now = views[t]
            later = views[t + 1] if t + 1 < steps else None
            self._equations(now[top], "output", batch, None if later is None else later[top],
                            last=t == steps - 1)
            for layer in range(top - 1, 0, -1):
                self._receive(comps, layer, now, later)
                self._equations(now[layer], "hidden", batch,
                                None if later is None else later[layer], last=t == steps - 1)
        for layer, c in enumerate(comps):
            keys = set(views[0][layer])
            for v in views[1:]:
                keys &= set(v[layer])
            for k in keys:
                c[k] = _cat(self.xp, [v[layer][k] for v in views])
        return comps

    # -- updates ----------------------------------------------------------------------------------
    def _sites(self, proj: str, comps: list[dict], batch: int, step: int | None):
        """(layer, pre, post, syn) of every synapse group of ``proj``; ``step``: one step only."""
        def view(c, shift=0):
            if step is None and shift == 0:
                return c
            return _Rows(c, self.xp, batch, step=step, shift=shift)

        top = self.net.depth
        if proj == FORWARD:
            for layer in range(1, top + 1):
                yield (layer, _Augmented(view(comps[layer - 1]), self.xp), view(comps[layer]),
                       self.state[FORWARD][layer])
        elif proj == RECURRENT:
            for layer in sorted(self.net.recurrent):
                before = _Rows(comps[layer], self.xp, batch, shift=-1)
                pre = before if step is None else _Rows(before, self.xp, batch, step=step)
                yield layer, pre, view(comps[layer]), self.state[RECURRENT][layer]
        else:
            fb = self.rule.feedback[proj]
            for layer in range(1, top):
                scope = fb.source.scope
                src = _Rows(comps[layer], self.xp, batch, shift=1) if scope == FUTURE else \
                    {"next": comps[layer + 1], "output": comps[-1], "lateral": comps[layer]}[scope]
                if step is not None:
                    src = _Rows(src, self.xp, batch, step=step)
                yield layer, src, view(comps[layer]), self.state[proj][layer]

    def _gather(self, c, d, steps: int, batch: int):
        """``hat_s = c_s + (1 + d_{s+1}) hat_{s+1}`` over the steps, last first."""
        xp, torch = self.xp, self.backend == "torch"
        v = c.reshape(steps, batch, -1)
        if d is None:  # no decay: the sum of the read coefficients from each step on
            if torch:
                return xp.flip(xp.cumsum(xp.flip(v, [0]), 0), [0]).reshape(steps * batch, -1)
            return np.flip(np.cumsum(v[::-1], 0), 0).reshape(steps * batch, -1)
        keep = (1 + d).reshape(steps, batch, -1)
        out = xp.empty_like(v)
        out[steps - 1] = v[steps - 1]
        for t in range(steps - 2, -1, -1):
            if torch:
                xp.addcmul(v[t], keep[t + 1], out[t + 1], out=out[t])
            else:
                out[t] = v[t] + keep[t + 1] * out[t + 1]
        return out.reshape(steps * batch, -1)

    def _hat(self, plan: TracePlan, post, steps: int, batch: int):
        """A trace's read coefficients gathered back along its decay (see the plan's mode)."""
        g = self.g_steps
        if plan.last:  # 0 before the last step: hat follows from the last step alone
            tail = _Rows(post, self.xp, batch, step=steps - 1)
            c_last = None
            for phase in plan.read_phases:
                v = self.mod[trace_name("read", plan, phase)](tail, g)
                c_last = v if c_last is None else c_last + v
            if plan.mode == "sum":
                return c_last.repeat(steps, 1) if self.backend == "torch" else \
                    np.tile(c_last, (steps, 1))
            if post["r"].shape[0] == batch:  # the rows are the last step alone: nothing to
                return c_last                  # pad before it, nothing to gather back
            c = _cat(self.xp, [post["r"][:-batch] * 0, c_last])
        else:
            c = None
            for phase in plan.read_phases:
                fn = self.mod[trace_name("read", plan, phase)]
                if phase is None:
                    v = fn(post, g)
                else:
                    tail = fn(_Rows(post, self.xp, batch, step=steps - 1), g)
                    v = _cat(self.xp, [post["r"][:-batch] * 0, tail])
                c = v if c is None else c + v
        if plan.mode == "now":
            return c
        d = self.mod[trace_name("decay", plan)](post, g) if plan.mode == "decay" else None
        return self._gather(c, d, steps, batch)

    def _traces(self, comps: list[dict], steps: int, batch: int) -> None:
        """Each trace's ``hat``, on the post-synaptic neurons of its synapses."""
        for plan in self.program.traces:
            for layer, _, post, _ in self._sites(plan.projection, comps, batch, None):
                if self._kind(layer) == plan.where and plan.hat not in post:
                    post[plan.hat] = self._hat(plan, post, steps, batch)

    def sequence_updates(self, comps: list[dict], steps: int, batch: int, *,
                         descent: bool = False) -> dict:
        """The rule's increments of every weight over the sequence (nothing applied yet)."""
        self.g_steps = dict(self.g, _steps=float(steps))
        self._traces(comps, steps, batch)
        out: dict = {}
        for proj, where, rows in self.program.updates:
            fn = self.mod[update_name(proj, where, rows, descent)]
            step = None if rows == "all" else steps - 1
            for layer, pre, post, syn in self._sites(proj, comps, batch, step):
                if self._kind(layer) != where:
                    continue
                d = fn(pre, post, syn, self.g_steps, batch)
                key = (proj, layer)
                out[key] = d if key not in out else {"w": out[key]["w"] + d["w"]}
        return out

    def step(self, x, target, opt: Optimiser | None = None) -> list[dict]:
        """One batch of sequences: forward through time, errors, updates applied once."""
        opt = opt or self.opt
        comps, steps, batch = self.forward_sequence(x)
        self.deliver(comps, target, steps, batch)
        opt.step()
        descent = self.backend == "torch" and opt.kind == "adam"
        ups = self.sequence_updates(comps, steps, batch, descent=descent)
        if descent:
            self._apply_torch_adam(ups, opt)
        else:
            self.apply(ups, opt)
        return comps

    def raw_updates(self, x, onehot) -> dict:
        """The rule's increments ``{(projection, layer): dw}`` for a batch, as numpy."""
        comps, steps, batch = self.forward_sequence(x)
        self.deliver(comps, onehot, steps, batch)
        ups = self.sequence_updates(comps, steps, batch)
        return {k: self.to_numpy(d["w"]) for k, d in ups.items()}
