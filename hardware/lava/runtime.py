"""The runner of the generated Lava graph: it learns, predicts and keeps ``net`` in step.

Learning runs on a graph of cores (:mod:`.live`, one process per layer, kept running
between calls); the graph of separate parts below (``graph="processes"``, built per call)
computes the same, bit for bit, and is the plain mapping printed by ``neurolocal compile
--target lava``::

    EpochSource --s_out--> EpochLearningDense W1 --a_out--> NeuroLIF L1 --s_out--> ... --> L_out
                 t_out ---------------------------------------------------------------> target_in
    L_out.s_fb_out --> Dense B (graded, fixed random) --> L_l.a_third_factor_in
    L_l.s_out_y1..3 --> W_l.s_in_y1..3  (post factors for the learning engine)

with ``t_epoch = L`` (one sample: a lead step, T forward steps, the error steps), run with
``Loihi2SimCfg(select_tag="floating_pt" | "fixed_pt")``. The error path runs on the graph: no
value is computed on the host between epochs. Every graph starts and stops through
:mod:`.session`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from neurolocal.errors import NeurolocalError, ShapeError
from neurolocal.network import Network
from neurolocal.rule import FORWARD

from ..encoding import encode_input
from ..semantics import feedback_matrix
from .extended import epochs_per_sample, needs_extended
from .fixed_point import fixed_point_network, lif_decays, loadable_weights
from .program import TAGS, TRACE_NAMES, LoihiProgram
from .session import LavaGraphError, import_lava, session

#: "cores": one NeuroCore process per layer (synapses + neurons, procs/core.py), kept running
#: between calls (live.py); "processes": EpochLearningDense -> NeuroLIF <- Dense(B), one
#: process per part, built per call (the plain mapping). Both compute the same, bit for bit.
GRAPHS = ("cores", "processes")
BLOCK = 500  #: samples per block of the live graph (its feed holds one block)


def learning_rule(lp: LoihiProgram, layer: int, tag: str, projection: str = FORWARD) -> Any:
    """The ``Loihi3FLearningRule`` of the synapse group of ``projection`` into ``layer``."""
    import_lava()
    from lava.magma.core.learning.learning_rule import Loihi3FLearningRule

    tp = lp.trace_params(tag, layer, projection)
    ys = {n: tp.pop(f"{n}_tau") for n in TRACE_NAMES}
    rule = Loihi3FLearningRule(**lp.synapse_group(layer, projection).strings(tag), **tp)
    for n, tau in ys.items():
        setattr(rule, f"{n}_tau", tau)
    return rule


class LavaRunner:
    """The generated Lava graph for a network and a lowered rule.

    Learning (one epoch per sample) goes to the live graph of cores, started at the first
    call and kept until :meth:`close` (or rebuilt when ``net``'s weights were changed from
    outside); the learned weights are in ``net`` after every call. ``graph="processes"``
    builds the graph of parts for each call and stops it after. Weights are kept in float
    units in ``net``; the graph holds them in weight LSBs (powers of two, so the float graph
    computes exactly what the reference computes). With ``fixed_pt`` the network's weights
    are first snapped to the fixed-point grid (:func:`.fixed_point.fixed_point_network`), and
    :attr:`rounding` says by how much they moved.
    """

    def __init__(self, net: Network, program: LoihiProgram, *, tag: str = "fixed_pt",
                 seed: int = 0, chunk: int | None = None, graph: str = "cores") -> None:
        if tag not in TAGS:
            raise NeurolocalError(f"Lava tag must be one of {', '.join(TAGS)}, got {tag!r}")
        if graph not in GRAPHS:
            raise NeurolocalError(f"Lava graph must be one of {', '.join(GRAPHS)}, got {graph!r}")
        self.net, self.tag, self.lp, self.graph = net, tag, program, graph
        self.target = f"lava:{tag}"
        self.cfg = program.config
        self.rounding = 0.0
        if tag == "fixed_pt":
            q = fixed_point_network(net, program)
            self.rounding = max(float(np.abs(q.state[p][k]["w"] - net.state[p][k]["w"]).max())
                                for p in q.state for k in q.state[p])
            self.net.state = q.state
        self.rng = np.random.default_rng(seed)
        self.chunk = chunk
        self.events = 0.0
        self.last_procs: list = []
        self.start_seconds = 0.0  # building and starting graphs, summed
        self._live: Any = None
        self._published: dict[int, np.ndarray] = {}
        self.replay: dict | None = None  # recorded noise per layer (extended programs)
        self.epochs_done = 0  # learning epochs run so far (the neurons' schedules go on)

    # -- the Runner interface -------------------------------------------------------------------
    def learn(self, x: Any, onehot: Any, *, progress: Callable | None = None) -> dict:
        """Pixels (N, n0): encode, then one learning epoch per sample, in order."""
        return self.learn_spikes(encode_input(np.asarray(x), self.cfg, seed=self.rng), onehot,
                                 progress=progress)

    def predict(self, x: Any) -> np.ndarray:
        return self.predict_spikes(encode_input(np.asarray(x), self.cfg, seed=self.rng))

    def learn_spikes(self, spikes: np.ndarray, onehot: np.ndarray, *,
                     progress: Callable | None = None, noise: list | None = None,
                     phase_noise: list | None = None) -> dict:
        """Spike trains (T, N, n0) and one-hot targets (N, n_out): learn, sample by sample.

        ``noise`` / ``phase_noise`` replay recorded noise draws instead of the neurons' own
        generators (as :meth:`neurolocal.hardware.brian2.runtime.Brian2Runner.run` takes them).
        """
        from .extended import replay_tables

        self.replay = replay_tables(self.lp, noise, phase_noise)
        try:
            return self.run(spikes, onehot, learn=True, progress=progress)
        finally:
            self.replay = None

    def predict_spikes(self, spikes: np.ndarray) -> np.ndarray:
        """Class scores (N, n_out) for spike trains (T, N, n0), without learning."""
        return self.run(spikes, None, learn=False)["scores"]

    def sync(self) -> Network:
        return self.net

    def close(self) -> None:
        """Stop the live learning graph, if one runs (bounded in time; safe to call twice)."""
        live, self._live = self._live, None
        failed = live.close() if live is not None else None
        if failed is not None:
            raise LavaGraphError(f"Lava failed to stop cleanly ({type(failed).__name__}: "
                                 f"{failed}); its worker processes were ended") from failed

    # -- graph construction ---------------------------------------------------------------------
    def feedback_lsb(self, fb: Any) -> np.ndarray:
        """A feedback group's weights in its LSB units (on the fixed grid in fixed_pt)."""
        b = np.asarray(self.net.state[fb.plan.name][fb.layer]["w"], dtype=np.float64)
        b = feedback_matrix(fb.plan, b) / fb.weight_step
        return loadable_weights(b) if self.tag == "fixed_pt" else b

    def weights_lsb(self, layer: int) -> np.ndarray:
        g = self.lp.group(layer)
        w = np.asarray(self.net.state[FORWARD][layer]["w"], dtype=np.float64) / g.weight_step
        return loadable_weights(w) if self.tag == "fixed_pt" else w

    def neuron_units(self, layer: int) -> tuple[float, float, float, float]:
        """``(u_unit, du, dv, vth)`` of layer ``layer``'s neurons in this tag's units."""
        lp, cfg, g = self.lp, self.cfg, self.lp.group(layer)
        if self.tag == "fixed_pt":
            du, dv = lif_decays(cfg.du, cfg.dv, lp.profile)
            return (g.weight_step / 2 ** lp.profile.lif.activation_shift, du, dv,
                    round(cfg.vth / g.weight_step))
        return g.weight_step, cfg.du, cfg.dv, cfg.vth / g.weight_step

    def _neuron_params(self, layer: int, epoch_len: int, learn: bool) -> dict:
        """du, dv, vth and the neuron program of layer ``layer``, in this tag's units."""
        u_unit, du, dv, vth = self.neuron_units(layer)
        program = self.lp.neurons[layer - 1].running(epoch_len=epoch_len, learn=learn,
                                                     u_unit=u_unit)
        return {"du": du, "dv": dv, "vth": vth, "program": program}

    def _neuron(self, layer: int, k: int, epoch_len: int, learn: bool) -> Any:
        from .procs.procs import NeuroLIF

        return NeuroLIF(shape=(self.lp.sizes[layer],), n_samples=k, name=f"nl_L{layer}",
                        **self._neuron_params(layer, epoch_len, learn))

    def _core(self, layer: int, epoch_len: int, **shared: Any) -> Any:
        """Layer ``layer`` as one learning NeuroCore; ``shared``: its feed/header/mailbox."""
        from .procs.core import NeuroCore

        fb = next((f for f in self.lp.feedback if f.layer == layer), None)
        return NeuroCore(weights=self.weights_lsb(layer),
                         learning_rule=learning_rule(self.lp, layer, self.tag), n_samples=1,
                         fb_weights=None if fb is None else self.feedback_lsb(fb),
                         name=f"nl_C{layer}", **self._neuron_params(layer, epoch_len, True),
                         **shared)

    def _synapses(self, layer: int, neuron: Any, learn: bool) -> Any:
        from lava.proc.dense.process import Dense
        from lava.utils.weightutils import SignMode

        from .procs.procs import EpochLearningDense

        w = self.weights_lsb(layer)
        if not learn:
            return Dense(weights=w, name=f"nl_W{layer}", sign_mode=SignMode.MIXED)
        g = self.lp.group(layer)
        dense = EpochLearningDense(weights=w, learning_rule=learning_rule(self.lp, layer, self.tag),
                                   name=f"nl_W{layer}", sign_mode=SignMode.MIXED)
        for y in sorted({f.var for pm in g.products for f in pm.products[self.tag].factors
                         if f.var in TRACE_NAMES}):  # unconnected y ports cost no messages
            getattr(neuron, f"s_out_{y}").connect(getattr(dense, f"s_in_{y}"))
        if g.uses_bap:
            neuron.s_out_bap.connect(dense.s_in_bap)
        return dense

    def _feedback(self, neurons: list, procs: dict, groups: Any = None) -> None:
        from lava.proc.dense.process import Dense
        from lava.utils.weightutils import SignMode

        for fb in self.lp.feedback if groups is None else groups:
            dense = Dense(weights=self.feedback_lsb(fb), name=f"nl_{fb.plan.name}{fb.layer}",
                          num_message_bits=self.lp.options.payload_bits,
                          sign_mode=SignMode.MIXED)
            neurons[fb.source_layer - 1].s_fb_out.connect(dense.s_in)
            dense.a_out.connect(neurons[fb.layer - 1].a_third_factor_in)
            procs[f"{fb.plan.name}{fb.layer}"] = dense

    def build(self, spikes: np.ndarray, targets: np.ndarray, *, learn: bool
              ) -> tuple[dict, int]:
        """The Lava processes for ``spikes`` (K, T, n0) and one-hot ``targets`` (K, n_out),
        and the epoch length."""
        import_lava()
        from .extended import build as build_extended
        from .extended import needs_extended
        from .procs.procs import EpochSource

        lp = self.lp
        if learn and needs_extended(lp):
            return build_extended(self, spikes, targets)
        k = spikes.shape[0]
        epoch_len = lp.epoch_len if learn else lp.timesteps + 1
        dtype = np.int32 if self.tag == "fixed_pt" else float
        src = EpochSource(spikes=spikes, targets=targets.astype(dtype), epoch_len=epoch_len,
                          name="nl_source")
        procs: dict[str, Any] = {"source": src}
        prev_out, neurons = src.s_out, []
        for layer in range(1, lp.depth + 1):
            neuron = self._neuron(layer, k, epoch_len, learn)
            dense = self._synapses(layer, neuron, learn)
            prev_out.connect(dense.s_in)
            dense.a_out.connect(neuron.a_in)
            prev_out = neuron.s_out
            procs[f"W{layer}"], procs[f"L{layer}"] = dense, neuron
            neurons.append(neuron)
        if learn:
            src.t_out.connect(neurons[-1].target_in)
            self._feedback(neurons, procs)
        return procs, epoch_len

    # -- running --------------------------------------------------------------------------------
    def _checked(self, spikes: np.ndarray, targets: np.ndarray | None, learn: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
        lp = self.lp
        spikes = np.asarray(spikes)
        if spikes.ndim != 3 or spikes.shape[0] != lp.timesteps or spikes.shape[2] != lp.sizes[0]:
            raise ShapeError(f"spikes must have shape (T={lp.timesteps}, samples, "
                             f"{lp.sizes[0]}), got {spikes.shape}")
        if spikes.size and not np.isin(spikes, (0, 1)).all():
            raise ShapeError("spikes must be 0/1")
        k = spikes.shape[1]
        if targets is None:
            if learn:
                raise ShapeError("learning needs targets (samples, n_out), one-hot")
            targets = np.zeros((k, lp.sizes[-1]))
        targets = np.asarray(targets)
        if targets.shape != (k, lp.sizes[-1]):
            raise ShapeError(f"targets must have shape ({k}, {lp.sizes[-1]}), got "
                             f"{targets.shape}")
        return np.ascontiguousarray(np.moveaxis(spikes, 0, 1)).astype(np.int8), targets

    def run(self, spikes: np.ndarray, targets: np.ndarray | None = None, *, learn: bool = True,
            chunk: int | None = None,
            progress: Callable[[int, int, float], None] | None = None) -> dict:
        """One learning epoch per sample (``learn``) or inference only; always stops Lava.

        ``spikes``: (T, K, n0) 0/1; ``targets``: (K, n_out) one-hot (needed to learn).
        ``chunk``: samples per ``run`` call (progress is reported between calls).
        Returns ``scores`` (K, n_out), ``pred`` (K,), ``counts`` (spike counts of the last
        sample per layer), ``seconds`` (running, without building), ``events`` (forward
        synaptic events).
        """
        spikes, targets = self._checked(spikes, targets, learn)
        if learn and self.graph == "cores" and not needs_extended(self.lp):
            result = self._run_live(spikes, targets, chunk, progress)
        else:  # inference, and programs the cores do not run (learned feedback, noise epochs)
            result = self._run_built(spikes, targets, learn, chunk, progress)
        if learn:
            self.epochs_done += spikes.shape[0] * epochs_per_sample(self.lp)
        events = float(spikes.sum()) * self.lp.sizes[1]
        for layer in range(1, self.lp.depth):
            events += float(result["spikes_total"][layer - 1]) * self.lp.sizes[layer + 1]
        result["events"] = events
        self.events += events
        return result

    def _run_live(self, spikes: np.ndarray, targets: np.ndarray, chunk: int | None,
                  progress: Callable | None) -> dict:
        """Learn on the live graph of cores, block by block; ``net`` is updated after."""
        live = self._live_graph(chunk)
        k, seconds = spikes.shape[0], 0.0
        parts: list[dict] = []
        try:
            for start in range(0, k, live.capacity):
                stop = min(k, start + live.capacity)
                parts.append(live.learn_block(spikes[start:stop], targets[start:stop]))
                seconds += parts[-1]["seconds"]
                if progress is not None:
                    progress(stop, k, seconds)
        except BaseException:
            # a call cut short leaves the graph ahead of ``net``: stop it, keep ``net`` as it
            # was before the call (the next call starts a new graph from it)
            with contextlib.suppress(LavaGraphError):
                self.close()
            raise
        for layer, w in live.weights_lsb().items():
            self.net.state[FORWARD][layer]["w"] = w * self.lp.group(layer).weight_step
            self._published[layer] = self.net.state[FORWARD][layer]["w"].copy()
        scores = np.concatenate([p["scores"] for p in parts]) if parts else \
            np.zeros((0, self.lp.sizes[-1]))
        return {"scores": scores, "pred": scores.argmax(1),
                "counts": parts[-1]["counts"] if parts else [],
                "spikes_total": list(np.sum([p["spikes_total"] for p in parts], axis=0))
                if parts else [0.0] * self.lp.depth,
                "weights_lsb": live.weights_lsb(), "seconds": seconds}

    def _live_graph(self, chunk: int | None) -> Any:
        """The running graph of cores; a new one if none runs or ``net`` changed outside."""
        import_lava()
        from .live import LiveCores

        if self._live is not None and not all(
                np.array_equal(self.net.state[FORWARD][g.layer]["w"], self._published.get(g.layer))
                for g in self.lp.groups):
            self.close()
        if self._live is None:
            self._live = LiveCores(self, int(chunk or self.chunk or BLOCK))
            self.start_seconds += self._live.start_seconds
            self.last_procs = self._live.processes
            self._published = {g.layer: np.array(self.net.state[FORWARD][g.layer]["w"])
                               for g in self.lp.groups}
        return self._live

    def _run_built(self, spikes: np.ndarray, targets: np.ndarray, learn: bool,
                   chunk: int | None, progress: Callable | None) -> dict:
        """Build the graph of parts for these samples, run it, read it back, stop it."""
        k = spikes.shape[0]
        t0 = time.perf_counter()
        procs, epoch_len = self.build(spikes, targets, learn=learn)
        self.last_procs = list(dict.fromkeys(procs.values()))
        chunk = int(chunk or self.chunk or k) or 1
        done, seconds = 0, 0.0
        with session(procs["source"], self.tag) as run:
            self.start_seconds += time.perf_counter() - t0
            while done < k:
                n = min(chunk, k - done)
                seconds += run(n * epoch_len)
                done += n
                if progress is not None:
                    progress(done, k, seconds)
            result = self._read(procs, k, learn)
        result["seconds"] = seconds
        return result

    def _read(self, procs: dict, k: int, learn: bool) -> dict:
        lp = self.lp
        scores = np.asarray(procs[f"L{lp.depth}"].scores.get(), dtype=np.float64)[:, :k].T
        out: dict[str, Any] = {"scores": scores, "pred": scores.argmax(1)}
        out["counts"] = [np.asarray(procs[f"L{layer}"].counts.get())
                         for layer in range(1, lp.depth + 1)]
        out["spikes_total"] = [float(np.asarray(procs[f"L{layer}"].spikes_total.get()).sum())
                               for layer in range(1, lp.depth + 1)]
        if learn:
            weights = {}
            for g in lp.groups:
                w = np.asarray(procs[f"W{g.layer}"].weights.get(), dtype=np.float64)
                self.net.state[FORWARD][g.layer]["w"] = w * g.weight_step
                weights[g.layer] = w
            for fb in lp.learned_feedback:
                w = np.asarray(procs[f"{fb.plan.name}{fb.layer}"].weights.get(), dtype=np.float64)
                self.net.state[fb.plan.name][fb.layer]["w"] = w * fb.weight_step
                weights[(fb.plan.name, fb.layer)] = w
            out["weights_lsb"] = weights
        return out
