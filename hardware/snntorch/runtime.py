"""The snntorch runtime: the generated epoch module run on ``snntorch.Synaptic`` cells.

The neurons are real ``snntorch.Synaptic`` cells set up as Lava's LIF (``alpha = 1-du``,
``beta = 1-dv``, reset to zero without delay). Because every projection has one step of
delay and the network is feed-forward, a layer's input for all T steps is one matrix product
of the layer below's (shifted) spike train; the cells then step through time. Samples run in
parallel (a batch); each sample is one learning epoch and the updates are averaged over the
batch, as in rate mode (batch size 1 is strictly online learning).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neurolocal.errors import LoweringError, NeurolocalError
from neurolocal.network import Network
from neurolocal.rule import FORWARD
from neurolocal.symbols import AXON_SIGNALS

from ..arrayops import torch_device, torch_ops
from ..encoding import encode_input
from ..noise import NOISE_DRIVE, NOISE_VALUE, SLOW_PREFIX
from ..relax import source_layer
from ..semantics import FeedbackPlan, SpikingProgram, feedback_matrix, require_dense
from .lower import generate_source, noise_function_name, pre_reads, update_function_name
from .relax import settle


class SnnTorchRunner:
    """A lowered rule bound to a network's state, running on snntorch neurons (CPU or CUDA).

    :meth:`learn` encodes pixels and learns ``batch_size`` samples per learning epoch (their
    updates averaged; 1 is strictly online); :meth:`predict` scores without learning.
    """

    recurrent_ok = False  # recurrent layers: .recurrent.SnnTorchSequenceRunner

    def __init__(self, net: Network, program: SpikingProgram, *, device: str = "cpu",
                 dtype: str = "float32", seed: int = 0, batch_size: int = 20):
        import snntorch as snn
        import torch

        self._check_network(net, program)
        self.torch = torch
        self.target = "snntorch"
        self.net, self.rule = net, net.rule
        self.program = program
        self.cfg = self.program.config
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise NeurolocalError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.batch_size = int(batch_size)
        self.device = torch_device(device)
        self.dtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
        self.ops = torch_ops()
        self.source = generate_source(program)
        ns: dict = {"ops": self.ops}
        exec(compile(self.source, f"<neurolocal snntorch program {self.rule.name}>", "exec"),
             ns)
        self.mod = ns
        self.g = dict(self.program.globals)
        self._pre_reads = pre_reads(program, FORWARD)
        program.check_depth(net.depth)
        self.k = [self.cfg.constants(layer) for layer in range(net.depth + 1)]
        self.sub_k = [[program.constants(layer, sub) for layer in range(net.depth + 1)]
                      for sub in range(program.epochs)]
        self.gen = torch.Generator(device="cpu").manual_seed(seed)
        self.noise_gen = torch.Generator(device="cpu").manual_seed(seed + 1)
        self.state = {p: {layer: {k: self._to(v) for k, v in d.items()}
                          for layer, d in s.items()} for p, s in net.state.items()}
        self.velocity: dict = {}
        cfg = self.cfg
        self.neurons = [None] + [
            snn.Synaptic(alpha=torch.tensor(1.0 - cfg.du, dtype=self.dtype),
                         beta=torch.tensor(1.0 - cfg.dv, dtype=self.dtype),
                         threshold=torch.tensor(cfg.vth, dtype=self.dtype),
                         reset_mechanism=cfg.reset, reset_delay=cfg.reset == "subtract",
                         surrogate_disable=True).to(self.device)
            for _ in range(net.depth)]
        t = cfg.timesteps
        self._tw: dict = {}
        self.bias_on = {layer: (torch.arange(t, device=self.device) >= layer - 1).to(self.dtype)
                        for layer in range(1, net.depth + 1)}
        self.fixed = {}
        for fb in self.program.feedback:
            if fb.mode == "fixed":
                for layer in range(1, net.depth):
                    self.fixed[(fb.name, layer)] = feedback_matrix(
                        fb, self.state[fb.name][layer]["w"], xp=torch)
        self._events = 0.0
        #: data-parallel hook (neurolocal.app.distributed): averages the step's increments
        self.reduce = None

    @property
    def events(self) -> float:
        """Synaptic events delivered so far (pre spikes x fan-out, forward projections)."""
        return float(self._events)

    def _to(self, a):
        if isinstance(a, self.torch.Tensor):
            return a.to(self.device, self.dtype)
        return self.torch.tensor(np.asarray(a), dtype=self.dtype, device=self.device)

    def sync(self) -> Network:
        """Write the weights back into the network (checkpoints, other targets)."""
        for p, s in self.state.items():
            for layer, d in s.items():
                for k, v in d.items():
                    self.net.state[p][layer][k] = v.detach().cpu().numpy().astype(np.float32)
        return self.net

    # -- the forward projections (conv layers override these: .conv) -------------------
    def _check_network(self, net: Network, program: SpikingProgram) -> None:
        require_dense(net, "snntorch", recurrent=self.recurrent_ok)

    def _inflow(self, layer: int, prev: Any) -> Any:
        """What the spike train (steps, B, n_below) delivers to ``layer``, one step later;
        counts the synaptic events (pre spikes x fan-out)."""
        w = self.state[FORWARD][layer]["w"]
        self._events = self._events + prev.sum() * w.shape[0]
        return self.torch.matmul(prev, w[:, :-1].T)

    def _bias(self, layer: int) -> Any:
        return self.state[FORWARD][layer]["w"][:, -1]

    def _forward_increment(self, fn, layer: int, pre: dict, post: dict, n: int) -> dict:
        return fn(_with_bias(pre, self.torch, self._pre_reads), post,
                  self.state[FORWARD][layer], self.g, n)

    # -- dynamics -------------------------------------------------------------------
    def _tensor_in(self, a: Any) -> Any:
        return a.to(self.device, self.dtype) if isinstance(a, self.torch.Tensor) else self._to(a)

    def simulate(self, spikes: Any) -> list[dict]:
        """Run one inference epoch on input spikes (T, B, n0); raw state of every layer."""
        spikes = self._tensor_in(spikes)
        if spikes.shape[0] != self.cfg.timesteps:
            raise LoweringError(f"input has {spikes.shape[0]} steps, the config says "
                                f"T = {self.cfg.timesteps}")
        return self._epoch(spikes, self._carry(spikes.shape[1]), 0, None)

    def _carry(self, batch: int) -> list:
        """What runs on from one learning epoch of a sample to the next: the cells' state
        (reset here) and each layer's input in flight (the last step's spikes of the layer
        below through the weights they were sent with, as on Lava and Brian2)."""
        for neuron in self.neurons[1:]:
            neuron.reset_mem()
        return [None] + [self.torch.zeros(batch, n, dtype=self.dtype, device=self.device)
                         for n in self.net.sizes[1:]]

    def _epoch(self, spikes: Any, carry: list, start: int, noise: dict | None,
               earlier: dict | None = None) -> list[dict]:
        """Steps ``start ..`` of a sample (an epoch's spikes (E, B, n0)); raw state per layer.

        ``noise``: ``{(source, layer): (B, n)}`` private noise currents of this epoch;
        ``earlier``: the previous learning epoch's (a noise into v enters the cells' input as
        ``xi_t - alpha * xi_(t-1)``, so the step after an epoch boundary needs it).
        """
        torch, cfg = self.torch, self.cfg
        steps = spikes.shape[0]
        raw = [self._raw(spikes, spikes.sum(0))]
        prev = spikes
        alpha = 1.0 - cfg.du
        with torch.no_grad():
            for layer in range(1, self.net.depth + 1):
                inflow = self._inflow(layer, prev)  # arrives one step later
                # the bias neuron fires in the layer below's window (steps layer-1 .. T-1)
                current = torch.cat([carry[layer][None], inflow[:-1]]) + \
                    self._bias(layer) * self.bias_on[layer][start:start + steps, None, None]
                carry[layer] = inflow[-1]
                into_v = None
                for nz in self.program.noise_sources if noise else ():
                    xi = noise.get((nz.name, layer))
                    if xi is None:
                        continue
                    current = current + xi
                    if nz.into == "r":  # into v: the cell's input is xi_t - alpha xi_(t-1)
                        if earlier and alpha:
                            current[0] = current[0] - alpha * earlier.get((nz.name, layer),
                                                                          0.0)
                        current[1:] = current[1:] - alpha * xi
                        into_v = xi if into_v is None else into_v + xi
                neuron = self.neurons[layer]
                out = []
                asum = torch.zeros_like(current[0])
                for j in range(steps):
                    spk, syn, _ = neuron(current[j])
                    out.append(spk)
                    if start + j >= layer:  # the drive is averaged over the layer's window
                        asum = asum + (syn if into_v is None else syn - into_v)
                prev = torch.stack(out).to(self.dtype)
                raw.append(self._raw(prev, asum))
        for layer, st in enumerate(raw):
            for nz in self.program.noise_sources:
                st[nz.raw] = (noise or {}).get((nz.name, layer),
                                               torch.zeros_like(st["tr1"]))
        return raw

    def _raw(self, s, asum) -> dict:
        tw = self._trace_weights(s.shape[0])
        st = {"tr1": self.torch.tensordot(tw[1], s, 1),
              "spk": (s.sum(0) > 0).to(self.dtype), "asum": asum}
        for k in (2, 3):
            if f"tr{k}" in self.program.raw:
                st[f"tr{k}"] = self.torch.tensordot(tw[k], s, 1)
        return st

    def _trace_weights(self, steps: int) -> dict:
        if steps not in self._tw:
            self._tw[steps] = {
                k: self.torch.tensor([self.cfg.decay(k) ** (steps - 1 - i) for i in range(steps)],
                                     dtype=self.dtype, device=self.device) for k in (1, 2, 3)}
        return self._tw[steps]

    # -- epoch program --------------------------------------------------------------
    def compartments(self, raw: list[dict], target: Any = None, *, sub: int = 0,
                     slow: list | None = None) -> list[dict]:
        consts = self.k if target is None else self.sub_k[sub]
        comps = [self.mod["measure"](st, k) for st, k in zip(raw, consts, strict=True)]
        if target is None:
            return comps
        slow = slow if slow is not None else [{} for _ in comps]
        for c, tr in zip(comps, slow, strict=True):
            self._slow(c, tr, self.program.slow_measured)
        top = self.net.depth
        out = comps[top]
        out["target"] = target
        self.mod["output_neuron"](out, self.g)
        for layer in range(top - 1, 0, -1):
            fbw = {fb.name: self.feedback_weights(fb, layer) for fb in self.program.feedback
                   if fb.scope != "prev"}
            nxt = comps[layer + 1]
            self.mod["feedback"](comps[layer], nxt, out, fbw)
            self.mod["hidden_neuron"](comps[layer], self.g)
        if self.program.relax:
            settle(self, comps)
        for c, tr in zip(comps, slow, strict=True):
            self._slow(c, tr, self.program.slow_computed)
        return comps

    def _slow(self, c: dict, traces: dict, names) -> None:
        """slow(X): the normalised low-pass of X over this sample's learning epochs."""
        d = self.program.slow_decay
        for n in names:
            s_prev, norm_prev = traces.get(n, (0.0, 0.0))
            s_new, norm_new = d * s_prev + c[n], d * norm_prev + 1.0
            traces[n] = (s_new, norm_new)
            c[f"{SLOW_PREFIX}{n}"] = s_new / norm_new

    def feedback_weights(self, fb: FeedbackPlan, layer: int) -> Any:
        if fb.mode == "fixed":
            return self.fixed[(fb.name, layer)]
        if fb.mode == "learned":
            return self.state[fb.name][layer]["w"]
        return feedback_matrix(fb, self.state[fb.name][layer]["w"],
                               self.state[FORWARD][layer + 1]["w"][:, :-1], xp=self.torch)

    def increments(self, comps: list[dict]) -> dict:
        out, n = {}, comps[0]["r"].shape[0]
        for proj in self.program.learned_projections:
            fn = self.mod[update_function_name(proj)]
            if proj == FORWARD:
                for layer in range(1, self.net.depth + 1):
                    out[(proj, layer)] = self._forward_increment(fn, layer, comps[layer - 1],
                                                                 comps[layer], n)
            else:
                fb = next(f for f in self.program.feedback if f.name == proj)
                for layer in range(1, self.net.depth):
                    src = comps[source_layer(fb.scope, layer, self.net.depth)]
                    out[(proj, layer)] = fn(src, comps[layer], self.state[proj][layer],
                                            self.g, n)
        return out

    def apply(self, increments: dict) -> None:
        mu = self.cfg.momentum
        for (proj, layer), d in increments.items():
            st = self.state[proj][layer]
            for var, dv in d.items():
                if var == "w" and self.cfg.optimiser == "momentum":
                    v = self.velocity.get((proj, layer))
                    v = dv if v is None else mu * v + dv
                    self.velocity[(proj, layer)] = v
                    st[var] += v
                else:
                    st[var] += dv

    def draw_noise(self, batch: int) -> dict:
        """Private noise of one sample, ``{source: {layer: (epochs, batch, n)}}``, drawn from
        torch's generator (on the CPU, so CPU and CUDA runs draw the same numbers)."""
        torch, out = self.torch, {}
        for nz in self.program.noise_sources:
            for layer in range(1, self.net.depth):
                z = torch.randn((self.program.epochs, batch, self.net.sizes[layer]),
                                generator=self.noise_gen, dtype=torch.float64)
                out.setdefault(nz.name, {})[layer] = (nz.sigma * z).to(self.device, self.dtype)
        return out

    def run_epoch(self, spikes: Any, target: Any = None, *, learn: bool = True,
                  noise: dict | None = None, apply: bool = True, totals: bool = True) -> dict:
        """One sample for a batch of input spike trains (T, B, n0): its learning epochs (or,
        without a target, one inference epoch). ``noise`` replays a recorded private-noise
        draw (``{source: {layer: (epochs, B, n)}}``); ``apply=False`` holds the weights.
        Returns the last epoch's raw state and compartments, and (``totals``: training
        skips them) the increments summed over the sample's learning epochs."""
        with self.torch.no_grad():
            if target is None or not learn:
                raw = self.simulate(spikes)
                return {"raw": raw, "comps": self.compartments(raw), "increments": {}}
            spikes = self._tensor_in(spikes)
            if spikes.shape[0] != self.cfg.timesteps:
                raise LoweringError(f"input has {spikes.shape[0]} steps, the config says "
                                    f"T = {self.cfg.timesteps}")
            tgt, prog, batch = self._to(target), self.program, spikes.shape[1]
            if noise is None and prog.noise_sources:
                noise = self.draw_noise(batch)
            noise = {k: {layer: self._tensor_in(v) for layer, v in d.items()}
                     for k, d in (noise or {}).items()}
            carry, slow, steps, total = self._carry(batch), [{} for _ in self.k], \
                prog.epoch_steps, {}
            prev_noise: dict = {}
            for sub in range(prog.epochs):
                epoch_noise = {(k, layer): v[sub] for k, d in noise.items()
                               for layer, v in d.items()}
                raw = self._epoch(spikes[sub * steps:(sub + 1) * steps], carry, sub * steps,
                                  epoch_noise, prev_noise)
                prev_noise = epoch_noise
                comps = self.compartments(raw, tgt, sub=sub, slow=slow)
                incs = self.increments(comps)
                self._land(incs, apply)
                if totals:
                    accumulate(total, incs)
        return {"raw": raw, "comps": comps, "increments": total}

    # -- noise epochs ---------------------------------------------------------------------
    def noise_drive(self, xi: dict) -> dict:
        """One noise epoch's dynamics: hidden layers driven by constant currents ``xi``
        (``{layer: (B, n)}``), each on snntorch cells; the epoch-mean forward drive of every
        layer above (the spikes of steps 0 .. T-2 arrive in steps 1 .. T-1)."""
        torch, t_steps = self.torch, self.cfg.timesteps
        out = {}
        with torch.no_grad():
            for layer in range(1, self.net.depth):
                neuron = self.neurons[layer]
                neuron.reset_mem()
                count = torch.zeros_like(xi[layer])
                for _ in range(t_steps - 1):
                    spk, _, _ = neuron(xi[layer])
                    count = count + spk
                w = self.state[FORWARD][layer + 1]["w"]
                self._events = self._events + count.sum() * w.shape[0]
                out[layer + 1] = torch.matmul(count, w[:, :-1].T) / (t_steps - 1)
        return out

    def run_noise_epoch(self, phase: str, xi: dict | None = None, *, batch: int = 1,
                        apply: bool = True) -> dict:
        """One noise epoch of noise phase ``phase``; ``xi`` replays a recorded draw
        (``{layer: (B, n)}``), else torch's generator draws it."""
        torch = self.torch
        ph = next(p for p in self.program.noise_phases if p.name == phase)
        depth = self.net.depth
        if xi is None:
            xi = {layer: ph.sigma * torch.randn((batch, self.net.sizes[layer]),
                                                generator=self.noise_gen, dtype=torch.float64)
                  for layer in range(1, depth)}
        xi = {layer: self._tensor_in(v) for layer, v in xi.items()}
        incs: dict = {}
        with torch.no_grad():
            drive = self.noise_drive(xi)
            n = next(iter(xi.values())).shape[0]
            for proj in dict.fromkeys(u.projection for u in ph.updates):
                fb = next(f for f in self.program.feedback if f.name == proj)
                fn = self.mod[noise_function_name(phase, proj)]
                for layer in range(1, depth):
                    pre = {NOISE_DRIVE: drive[layer + 1]}
                    post = {NOISE_VALUE: xi[layer], fb.target: torch.matmul(
                        drive[layer + 1], self.feedback_weights(fb, layer).T)}
                    incs[(proj, layer)] = fn(pre, post, self.state[proj][layer], self.g, n)
            self._land(incs, apply)
        return {"drive": drive, "noise": xi, "increments": incs}

    def _land(self, incs: dict, apply: bool) -> None:
        """One epoch's increments: all-reduced under --distributed, then applied."""
        if self.reduce is not None:
            self.reduce([v for d in incs.values() for v in d.values()])
        if apply:
            self.apply(incs)

    def _encoding(self, x: Any) -> tuple[Any, Any]:
        """``x`` as a tensor here and the seed of its spikes (the generator on the CPU)."""
        x = self._to(x) if not isinstance(x, self.torch.Tensor) else x.to(self.device,
                                                                           self.dtype)
        return x, self.gen if self.device.type == "cpu" else int(
            self.torch.randint(0, 2**31 - 1, (1,), generator=self.gen))

    def encode(self, x: Any) -> Any:
        x, seed = self._encoding(x)
        return encode_input(x, self.cfg, seed=seed)

    def learn(self, x: Any, onehot: Any) -> None:
        """Pixels (N, n0) in order, ``batch_size`` samples per learning epoch."""
        for i in range(0, len(x), self.batch_size):
            self.step(x[i:i + self.batch_size], onehot[i:i + self.batch_size])

    def step(self, x: Any, onehot: Any) -> dict:
        """Encode one batch of pixels as spikes, learn from it, then run its noise epochs."""
        out = self.run_epoch(self.encode(x), onehot, totals=False)
        self._noise_epochs(len(x))
        return out

    def _noise_epochs(self, batch: int) -> None:
        for ph in self.program.noise_phases:
            for _ in range(ph.epochs):
                self.run_noise_epoch(ph.name, batch=batch)

    def step_shard(self, x: Any, onehot: Any, lo: int, hi: int) -> dict:
        """Data-parallel step: encode the whole global batch (the same spikes a single
        process draws for it), run the epoch on rows [lo, hi)."""
        return self.run_epoch(self.encode(x)[:, lo:hi], onehot[lo:hi])

    def learn_spikes(self, spikes: Any, onehot: Any) -> None:
        """Spike trains (T, N, n0) in order, ``batch_size`` samples per learning epoch."""
        for i in range(0, spikes.shape[1], self.batch_size):
            self.run_epoch(spikes[:, i:i + self.batch_size], onehot[i:i + self.batch_size],
                           totals=False)
            self._noise_epochs(min(self.batch_size, spikes.shape[1] - i))

    def close(self) -> None:
        """Nothing to release."""

    def scores(self, raw_out: dict) -> Any:
        """Output rate, ties broken by the epoch-mean drive (never overrides a count)."""
        t = self.cfg.timesteps
        k = self.k[-1]
        return k["k1"] * raw_out["tr1"] + (0.5 / t) * self.torch.tanh(raw_out["asum"] / k["T"])

    def output(self, x: Any) -> Any:
        """Class scores (a tensor) for pixels (B, n0): one epoch without learning."""
        with self.torch.no_grad():
            raw = self.simulate(self.encode(x))
        return self.scores(raw[-1])

    def predict(self, x: Any, batch: int = 1000) -> np.ndarray:
        """Class scores (N, classes) as numpy, ``batch`` samples side by side."""
        out = [self.output(x[i:i + batch]).cpu().numpy() for i in range(0, len(x), batch)]
        return np.concatenate(out) if out else np.zeros((0, self.net.sizes[-1]))

    def predict_spikes(self, spikes: Any) -> np.ndarray:
        with self.torch.no_grad():
            raw = self.simulate(spikes)
        return self.scores(raw[-1]).cpu().numpy()


def accumulate(total: dict, incs: dict) -> None:
    """Add one learning epoch's increments into the sample's totals."""
    for key, d in incs.items():
        acc = total.setdefault(key, {})
        for var, dv in d.items():
            acc[var] = acc[var] + dv if var in acc else dv


def _with_bias(comps: dict, torch, names: frozenset | None = None) -> dict:
    """Pre-synaptic compartments plus the always-on bias neuron (axon signals 1, others 0);
    ``names``: only these (what the forward update reads)."""
    out = {}
    for k, v in comps.items():
        if names is not None and k not in names:
            continue
        fill = 1.0 if k in AXON_SIGNALS else 0.0
        out[k] = torch.cat([v, torch.full_like(v[:, :1], fill)], 1)
    return out
