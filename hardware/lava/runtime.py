"""The Lava runtime: one lifecycle for every graph, and the learning graph's runner.

:func:`session` is the only place that starts and stops Lava (the learning graph here and
converted inference in :mod:`.inference` both go through it): compile errors and run errors
become :class:`LavaGraphError`, and Lava is stopped on every way out, in bounded time, its
workers unable to outlive the run (:mod:`.workers`).

The learning graph (printed by ``neurolocal compile --target lava``)::

    EpochSource --s_out--> EpochLearningDense W1 --a_out--> NeuroLIF L1 --s_out--> ... --> L_out
                 t_out ---------------------------------------------------------------> target_in
    L_out.s_fb_out --> Dense B (graded, fixed random) --> L_l.a_third_factor_in
    L_l.s_out_y1..3 --> W_l.s_in_y1..3  (post factors for the learning engine)

with ``t_epoch = L`` (one sample: a lead step, T forward steps, the error steps), run with
``Loihi2SimCfg(select_tag="floating_pt" | "fixed_pt")``. The error path runs on the graph: no
value is computed on the host between epochs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from neurolocal.errors import NeurolocalError, ShapeError
from neurolocal.network import Network
from neurolocal.rule import FORWARD

from ..encoding import encode_input
from ..semantics import feedback_matrix
from .fixed_point import fixed_point_network, lif_decays, loadable_weights
from .program import TAGS, TRACE_NAMES, LoihiProgram
from .workers import guarded, raise_pending, stop_bounded


class LavaGraphError(NeurolocalError):
    """Lava could not build or run the generated graph (the message says which step)."""


def import_lava() -> None:
    """Make Lava importable on this Python (the project's compatibility hook)."""
    from .compat import ensure_lava_importable

    ensure_lava_importable()


@contextlib.contextmanager
def session(anchor: Any, tag: str, *, exceptions: dict | None = None
            ) -> Iterator[Callable[[int], float]]:
    """Compile and start the graph of ``anchor``; yield ``run(steps) -> seconds``; stop it.

    ``exceptions``: ``exception_proc_model_map`` of the run configuration.
    """
    import_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    cfg = Loihi2SimCfg(select_tag=tag, exception_proc_model_map=exceptions or {})

    def run(steps: int) -> float:
        raise_pending()
        t0 = time.perf_counter()
        try:
            anchor.run(condition=RunSteps(num_steps=int(steps)))
        except Exception as exc:
            raise LavaGraphError(f"Lava failed while running the graph "
                                 f"({type(exc).__name__}: {exc})") from exc
        return time.perf_counter() - t0

    with guarded() as before:
        ok = False
        try:
            try:
                anchor.create_runtime(run_cfg=cfg)
            except Exception as exc:
                raise LavaGraphError(f"Lava failed to compile the graph "
                                     f"({type(exc).__name__}: {exc})") from exc
            raise_pending()
            yield run
            ok = True
        finally:
            failed = stop_bounded(anchor.stop, before)
        if ok and failed is not None:
            raise LavaGraphError(f"Lava failed to stop cleanly ({type(failed).__name__}: "
                                 f"{failed}); its worker processes were ended") from failed


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

    Each call builds the graph for its samples (one learning epoch each), runs it, reads the
    learned weights back into ``net`` and stops Lava (also on error). Weights are kept in
    float units in ``net``; the graph holds them in weight LSBs (powers of two, so the float
    graph computes exactly what the reference computes). With ``fixed_pt`` the network's
    weights are first snapped to the fixed-point grid (:func:`.fixed_point.fixed_point_network`),
    and :attr:`rounding` says by how much they moved.
    """

    def __init__(self, net: Network, program: LoihiProgram, *, tag: str = "fixed_pt",
                 seed: int = 0, chunk: int | None = None) -> None:
        if tag not in TAGS:
            raise NeurolocalError(f"Lava tag must be one of {', '.join(TAGS)}, got {tag!r}")
        self.net, self.tag, self.lp = net, tag, program
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
        """Nothing stays open between calls: every graph is stopped when its call ends."""

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

    def _neuron(self, layer: int, k: int, epoch_len: int, learn: bool) -> Any:
        from .procs.procs import NeuroLIF

        lp, cfg = self.lp, self.cfg
        g, spec = lp.group(layer), lp.neurons[layer - 1]
        if self.tag == "fixed_pt":
            u_unit = g.weight_step / 2 ** lp.profile.lif.activation_shift
            du, dv = lif_decays(cfg.du, cfg.dv, lp.profile)
            vth = round(cfg.vth / g.weight_step)
        else:
            u_unit, du, dv, vth = g.weight_step, cfg.du, cfg.dv, cfg.vth / g.weight_step
        program = spec.running(epoch_len=epoch_len, learn=learn, u_unit=u_unit)
        return NeuroLIF(shape=(spec.n,), du=du, dv=dv, vth=vth, program=program, n_samples=k,
                        name=f"nl_L{layer}")

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
            b = np.asarray(self.net.state[fb.plan.name][fb.layer]["w"], dtype=np.float64)
            b = feedback_matrix(fb.plan, b) / fb.weight_step
            if self.tag == "fixed_pt":
                b = loadable_weights(b)
            dense = Dense(weights=b, num_message_bits=self.lp.options.payload_bits,
                          name=f"nl_{fb.plan.name}{fb.layer}", sign_mode=SignMode.MIXED)
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
        k = spikes.shape[0]
        procs, epoch_len = self.build(spikes, targets, learn=learn)
        self.last_procs = list(procs.values())
        chunk = int(chunk or self.chunk or k) or 1
        done, seconds = 0, 0.0
        with session(procs["source"], self.tag) as run:
            while done < k:
                n = min(chunk, k - done)
                seconds += run(n * epoch_len)
                done += n
                if progress is not None:
                    progress(done, k, seconds)
            result = self._read(procs, k, learn)
        result["seconds"] = seconds
        events = float(spikes.sum()) * self.lp.sizes[1]
        for layer in range(1, self.lp.depth):
            events += float(result["spikes_total"][layer - 1]) * self.lp.sizes[layer + 1]
        result["events"] = events
        self.events += events
        if learn:
            from .extended import epochs_per_sample

            self.epochs_done += k * epochs_per_sample(self.lp)
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
