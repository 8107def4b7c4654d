"""The Brian2 runtime: the lowered model instantiated as real NeuronGroups and Synapses.

Objects have stable names and the Cython cache lives under ``~/.cache/neurolocal/brian2`` so
a network compiles once; ``codegen="numpy"`` needs no compiler (unit tests use it). The
simulation starts at t = 1 step, so epoch k covers steps kT+1 .. kT+T and ends on a tick of
the epoch clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from neurolocal.errors import LoweringError, NeurolocalError
from neurolocal.network import Network
from neurolocal.rule import FORWARD

from ..encoding import encode_input
from ..semantics import feedback_matrix, require_dense
from ..timed import check_recurrent, encode_sequence, trace_vars
from . import epochs as ep
from .lower import (
    ORDER_NEXT,
    ORDER_RECORD,
    ORDER_TIED,
    Brian2Model,
    _strip,
    build_model,
    comp_name,
    syn_name,
)

CODEGENS = ("numpy", "cython", "auto")


def cache_dir() -> Path:
    """Where Brian2's Cython cache lives (stable names make its entries reusable)."""
    return Path.home() / ".cache" / "neurolocal" / "brian2"


def _cython_works() -> bool:
    try:
        import Cython  # noqa: F401
    except ImportError:
        return False
    import shutil
    return shutil.which("cc") is not None or shutil.which("gcc") is not None


def set_prefs(codegen: str) -> str:
    """Brian2's code generation target (and its Cython cache): the one Brian2 set-up.

    ``auto``: Cython where a compiler works, else numpy. Returns the target chosen.
    """
    from brian2 import prefs
    if codegen not in CODEGENS:
        raise LoweringError(f"unknown Brian2 code generation target {codegen!r}: expected "
                            f"one of {', '.join(CODEGENS)}")
    if codegen == "auto":
        codegen = "cython" if _cython_works() else "numpy"
    if codegen == "cython":
        path = cache_dir()
        path.mkdir(parents=True, exist_ok=True)
        prefs.codegen.runtime.cython.cache_dir = str(path)
    prefs.codegen.target = codegen
    return codegen


class Brian2Runner:
    """A Brian2 network for a lowered rule, built once, fed samples epoch by epoch.

    ``input_mode="poisson"`` draws input spikes inside Brian2 (``rand() < p_in``, p_in set
    per epoch); ``"raster"`` replays given spike trains step by step (exact, for tests).
    """

    def __init__(self, net: Network, model: Brian2Model, *, codegen: str = "auto",
                 input_mode: str | None = None, seed: int = 0):
        import brian2 as b2

        require_dense(net, "brian2", recurrent=True)
        check_recurrent(net, model.program, "brian2")
        if list(model.sizes) != list(net.sizes):
            raise LoweringError(f"the Brian2 model was built for layers {model.sizes}, the "
                                f"network has {net.sizes}")
        self.b2, self.net = b2, net
        self.target = "brian2"
        self.program = model.program
        self.cfg = self.program.config
        self.codegen = set_prefs(codegen)
        b2.seed(seed)
        self.rng = np.random.default_rng(seed)
        recurrent = tuple(sorted(net.recurrent))
        if (input_mode is not None and input_mode != model.input_mode) or \
                {s.layer for s in model.synapses if s.kind == "recurrent"} != set(recurrent):
            model = build_model(self.program, net.sizes, input_mode=input_mode or
                                model.input_mode, recurrent=recurrent)
        self.model = model
        self.input_mode = model.input_mode
        self._build()

    # -- construction ----------------------------------------------------------------
    def _build(self) -> None:
        b2, ms = self.b2, self.b2.ms
        model, t_ep = self.model, self.program.epoch_steps * self.b2.ms
        self.scheduled = ep.scheduled(self.program)
        objs: list = []
        self.groups, self.synapses, self.learning_ops = {}, {}, []
        ns = dict(model.namespace)
        for g in model.groups:
            grp = b2.NeuronGroup(g.n, "\n".join(g.model), threshold=g.threshold, reset=g.reset,
                                 name=g.name, namespace={**ns, **g.constants}, dt=1 * ms)
            if g.step:
                grp.run_regularly(g.step, when="groups", name=f"{g.name}_step")
            for op in g.epoch:
                ro = grp.run_regularly(_strip(op.code), dt=t_ep, when="end", order=op.order,
                                       name=op.name)
                if op.learning:
                    self.learning_ops.append(ro)
            self.groups[g.layer] = grp
            objs.append(grp)
        self.tied = []
        for s in model.synapses:
            syn = b2.Synapses(self.groups[int(s.source[4:])], self.groups[int(s.target[4:])],
                              "\n".join(s.model), on_pre=s.on_pre, name=s.name, namespace=ns,
                              dt=1 * ms)
            syn.connect()
            if s.summed:
                upd = syn.summed_updaters[f"{s.summed[0]}_post"]
                upd.when, upd.order = "end", s.summed[1]
            for op in s.epoch:
                ro = syn.run_regularly(_strip(op.code), dt=t_ep, when="end", order=op.order,
                                       name=op.name)
                if op.learning:
                    self.learning_ops.append(ro)
            self.synapses[(s.projection, s.layer)] = (syn, s)
            if s.plan is not None and s.plan.mode == "tied":
                self.tied.append((syn, s))
            objs.append(syn)
        self._load_weights()
        out = self.groups[self.net.depth]
        self.monitor = b2.StateMonitor(out, ["tr1", "asum"], record=True, dt=t_ep, when="end",
                                       order=ORDER_RECORD, name="nl_output_monitor")
        objs.append(self.monitor)
        self.counters = [b2.SpikeMonitor(self.groups[layer], record=False,
                                         name=f"nl_count_L{layer}")
                         for layer in range(self.net.depth)]
        objs += self.counters
        self._queue: dict = {}
        self._step_rows = None
        self._step = 0
        self._epoch = 0
        objs.append(b2.NetworkOperation(self._next_epoch, dt=t_ep, when="end",
                                        order=ORDER_NEXT, name="nl_next_epoch"))
        if self.input_mode == "raster":
            objs.append(b2.NetworkOperation(self._next_step, dt=1 * ms, when="start",
                                            name="nl_input_step"))
        if self.tied:
            objs.append(b2.NetworkOperation(self._copy_tied, dt=t_ep, when="end",
                                            order=ORDER_TIED, name="nl_tied_feedback"))
        self.network = b2.Network(*objs)
        self.network.t_ = float(1 * ms)

    def _load_weights(self) -> None:
        for (proj, layer), (syn, spec) in self.synapses.items():
            st = self.net.state[proj][layer]
            i, j = syn.i[:], syn.j[:]
            if self.program.timed:  # eligibility traces start at 0 with every sequence
                st = {k: (v if k not in trace_vars(self.program, proj) else 0.0 * v)
                      for k, v in st.items()}
            if spec.kind == "recurrent":
                for var, value in st.items():
                    setattr(syn, syn_name(var), np.asarray(value, np.float64)[j, i])
            elif spec.kind == "forward":
                for var, value in st.items():
                    setattr(syn, syn_name(var), np.asarray(value, np.float64)[j, i])
                grp = self.groups[layer]
                grp.b = np.asarray(st["w"][:, -1], np.float64)
                for var, value in st.items():
                    if var != "w" and f"b_{syn_name(var)}" in grp.variables:
                        setattr(grp, f"b_{syn_name(var)}", np.asarray(value[:, -1], np.float64))
            else:
                w = np.asarray(st["w"], np.float64)
                if spec.plan.mode == "fixed":
                    w = feedback_matrix(spec.plan, w)
                for var, value in st.items():
                    setattr(syn, syn_name(var),
                            (w if var == "w" else np.asarray(value, np.float64))[j, i])

    def _copy_tied(self) -> None:
        for syn, spec in self.tied:
            fwd, _ = self.synapses[(FORWARD, spec.layer + 1)]
            w_next = np.zeros((self.net.sizes[spec.layer + 1], self.net.sizes[spec.layer]))
            w_next[fwd.j[:], fwd.i[:]] = fwd.w[:]
            stored = np.asarray(self.net.state[spec.projection][spec.layer]["w"], np.float64)
            b = feedback_matrix(spec.plan, stored, w_next)
            syn.w = b[syn.j[:], syn.i[:]]

    def weights(self) -> dict:
        """Current synaptic state as the network IR lays it out (float64 copies)."""
        out: dict = {}
        for (proj, layer), (syn, spec) in self.synapses.items():
            st = self.net.state[proj][layer]
            i, j = syn.i[:], syn.j[:]
            d = {}
            for var in st:
                m = np.zeros(st[var].shape)
                if spec.kind == "forward" and proj == FORWARD:
                    m[j, i] = getattr(syn, syn_name(var))[:]
                    grp = self.groups[layer]
                    m[:, -1] = grp.b[:] if var == "w" else (
                        getattr(grp, f"b_{syn_name(var)}")[:]
                        if f"b_{syn_name(var)}" in grp.variables else 0.0)
                else:
                    m[j, i] = getattr(syn, syn_name(var))[:]
                d[var] = m
            out.setdefault(proj, {})[layer] = d
        return out

    def sync(self) -> Network:
        """Write the weights back into the network."""
        for proj, layers in self.weights().items():
            for layer, d in layers.items():
                spec = self.synapses[(proj, layer)][1]
                if spec.kind == "feedback" and spec.plan.mode != "learned":
                    continue
                for var, m in d.items():
                    self.net.state[proj][layer][var] = m.astype(np.float32)
        return self.net

    # -- feeding samples -------------------------------------------------------------
    def _schedule(self, n: int, learn: bool) -> list[dict]:
        """The epochs of ``n`` samples in order: each sample's learning epochs, then (while
        learning) its noise epochs."""
        prog, out = self.program, []
        for i in range(n):
            for sub in range(prog.epochs):
                out.append({"kind": "sample", "i": i, "sub": sub, "end": sub == prog.epochs - 1})
            if not learn:
                continue
            j = 0
            for ph in prog.noise_phases:
                for _ in range(ph.epochs):
                    out.append({"kind": "noise", "i": i, "phase": ph.name, "j": j, "end": True})
                    j += 1
        return out

    def _set_epoch(self, k: int) -> None:
        """Load epoch k's values: target, input probability, schedule flags, replayed noise."""
        q = self._queue
        if k >= len(q["schedule"]):
            return
        e = q["schedule"][k]
        sample = e["kind"] == "sample"
        out = self.groups[self.net.depth]
        if q.get("target") is not None:
            setattr(out, comp_name("target"), q["target"][e["i"]])
        if self.input_mode == "poisson":  # a sequence: its step sub's row
            p = q["p"][e["i"]] if q["p"].ndim == 2 else q["p"][e["i"], e.get("sub", 0)]
            self.groups[0].p_in = p if sample else 0.0
        if not self.scheduled:
            return
        for layer, grp in self.groups.items():
            grp.learning = float(q["learn"])
            grp.endsample = float(e["end"])
            if self.program.epochs > 1:
                grp.sub = float(e.get("sub", 0))
            if self.program.noise_phases:
                grp.nzep = 0.0 if sample else 1.0
                for ph in self.program.noise_phases:
                    setattr(grp, f"ph_{ph.name}", float(not sample and e["phase"] == ph.name))
            if not 0 < layer < self.net.depth:
                continue
            self._replay(grp, layer, e, q)

    def _replay(self, grp, layer: int, e: dict, q: dict) -> None:
        """Set a hidden group's noise for the coming epoch from a recorded draw."""
        if e["kind"] == "sample" and q.get("noise") is not None:
            for nz in self.program.noise_sources:
                setattr(grp, nz.raw, np.asarray(q["noise"][e["i"]][nz.name][layer])
                        [e["sub"]].reshape(-1) if q["learn"] else 0.0)
        elif e["kind"] == "noise" and q.get("phase_noise") is not None:
            setattr(grp, f"nv_{e['phase']}",
                    np.asarray(q["phase_noise"][e["i"]][e["j"]][layer]).reshape(-1))

    def _next_epoch(self) -> None:
        self._epoch += 1
        self._set_epoch(self._epoch)

    def _next_step(self) -> None:
        if self._step < len(self._step_rows):
            self.groups[0].flag = self._step_rows[self._step]
        self._step += 1

    # -- the Runner interface ---------------------------------------------------------
    def learn(self, x: Any, onehot: Any) -> None:
        """Pixels (N, n0), one learning epoch each, in order (strictly online)."""
        self.run(self._inputs(x), onehot, learn=True)

    def predict(self, x: Any) -> np.ndarray:
        return self.run(self._inputs(x), None, learn=False)

    def learn_spikes(self, spikes: np.ndarray, onehot: np.ndarray, *, noise: list | None = None,
                     phase_noise: list | None = None) -> None:
        """Replay spike trains (T, N, n0), one sample each (raster mode); ``noise`` and
        ``phase_noise`` replay recorded noise draws (see :meth:`run`)."""
        self.run(self._raster(spikes), onehot, learn=True, noise=noise, phase_noise=phase_noise)

    def predict_spikes(self, spikes: np.ndarray) -> np.ndarray:
        return self.run(self._raster(spikes), None, learn=False)

    def close(self) -> None:
        """Nothing to release: Brian2 runs in this process."""

    def _inputs(self, x: Any) -> np.ndarray:
        if self.input_mode == "poisson":
            return np.asarray(x, np.float64)
        if self.program.timed:  # sequences (N, steps, features)
            return np.moveaxis(encode_sequence(np.asarray(x), self.cfg, seed=self.rng), 0, 1)
        return np.moveaxis(encode_input(np.asarray(x), self.cfg, seed=self.rng), 0, 1)

    def _raster(self, spikes: np.ndarray) -> np.ndarray:
        if self.input_mode != "raster":
            raise NeurolocalError("replaying spike trains needs the Brian2 runner in raster "
                                  "input mode (bind it with input_mode='raster')")
        return np.moveaxis(np.asarray(spikes), 0, 1)

    def _rows(self, inputs: np.ndarray, schedule: list[dict]) -> np.ndarray:
        """Raster mode: the input rows step by step (zeros in noise epochs)."""
        steps, t = self.program.epoch_steps, self.cfg.timesteps
        rows = []
        for e in schedule:
            if e["kind"] == "sample":
                rows.append(inputs[e["i"], e["sub"] * steps:(e["sub"] + 1) * steps])
            else:
                rows.append(np.zeros((t, inputs.shape[2])))
        return np.concatenate(rows) if rows else np.zeros((0, inputs.shape[2]))

    def run(self, inputs: np.ndarray, targets: np.ndarray | None = None, *,
            learn: bool = True, progress=None, noise: list | None = None,
            phase_noise: list | None = None) -> np.ndarray:
        """Present samples one after another; returns output scores (N, classes).

        ``inputs``: spike trains (N, T, n0) in raster mode, pixels (N, n0) in poisson mode.
        ``targets``: one-hot (N, classes), needed when ``learn``. Recorded noise to replay
        (else Brian2's ``randn()`` draws it): ``noise[i]`` = sample i's private noise
        ``{source: {layer: (epochs, 1, n)}}``, ``phase_noise[i][j]`` = its j-th noise epoch's
        ``{layer: (1, n)}``.
        """
        n = len(inputs)
        if learn and targets is None:
            raise NeurolocalError("Brian2Runner.run(learn=True) needs targets")
        schedule = self._schedule(n, learn)
        if self.input_mode == "raster":
            inputs = np.asarray(inputs, np.float64)
            if inputs.ndim != 3 or inputs.shape[1] != self.cfg.timesteps:
                raise LoweringError(f"raster input must be (N, T={self.cfg.timesteps}, n0), "
                                    f"got {inputs.shape}")
            self._step_rows = self._rows(inputs, schedule)
            self._step = 0
        p = None if self.input_mode == "raster" else \
            np.asarray(inputs, np.float64) * self.cfg.input_rate
        self._queue = {"n": n, "p": p, "schedule": schedule, "learn": bool(learn),
                       "noise": noise, "phase_noise": phase_noise,
                       "target": None if targets is None else np.asarray(targets, np.float64)}
        for op in self.learning_ops:
            op.active = bool(learn)
        self._draw_first(learn, noise)
        self._epoch = 0
        self._set_epoch(0)
        before = len(self.monitor.t)
        per_sample = len(schedule) // max(n, 1)
        # every Network.run pays Brian2's before_run (tens of ms): chunk only for progress
        chunk = n if progress is None else max(1, min(n, 1000))
        for start in range(0, n, chunk):
            steps = min(chunk, n - start) * per_sample * self.program.epoch_steps
            self.network.run(steps * self.b2.ms, namespace={})
            if progress is not None:
                progress(min(start + chunk, n))
        ends = [k for k, e in enumerate(schedule) if e["kind"] == "sample" and e["end"]]
        tr1 = np.asarray(self.monitor.tr1[:, before:]).T[ends]
        asum = np.asarray(self.monitor.asum[:, before:]).T[ends]
        t = self.cfg.timesteps
        depth = self.net.depth
        if self.program.timed:  # the answer: the output over the last learning epoch
            k = self.program.constants(depth, self.program.epochs - 1)
            return k["k1"] * tr1 + (0.5 / k["T"]) * np.tanh(asum / k["T"])
        return self.cfg.gain(1, depth) * tr1 + (0.5 / t) * np.tanh(
            asum / self.cfg.window(depth))

    def _draw_first(self, learn: bool, noise) -> None:
        """The first epoch's noise (later epochs draw theirs in the reset code)."""
        for layer in range(1, self.net.depth):
            grp = self.groups[layer]
            for nz in self.program.noise_sources:
                value = f"{nz.sigma!r}*randn()" if learn and noise is None else "0.0"
                setattr(grp, nz.raw, value)
            for ph in self.program.noise_phases:
                setattr(grp, f"nv_{ph.name}", f"{ph.sigma!r}*randn()")

    @property
    def events(self) -> float:
        """Synaptic events delivered so far (pre spikes x fan-out, forward projections)."""
        return float(sum(int(np.sum(self.counters[layer].count[:])) * self.net.sizes[layer + 1]
                         for layer in range(self.net.depth)))


# --------------------------------------------------------------------------------------
