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
from ..semantics import FeedbackPlan, SpikingProgram, feedback_matrix, require_dense
from .lower import generate_source, update_function_name


class SnnTorchRunner:
    """A lowered rule bound to a network's state, running on snntorch neurons (CPU or CUDA).

    :meth:`learn` encodes pixels and learns ``batch_size`` samples per learning epoch (their
    updates averaged; 1 is strictly online); :meth:`predict` scores without learning.
    """

    def __init__(self, net: Network, program: SpikingProgram, *, device: str = "cpu",
                 dtype: str = "float32", seed: int = 0, batch_size: int = 20):
        import snntorch as snn
        import torch

        require_dense(net, "snntorch")
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
        self.k = [self.cfg.constants(layer) for layer in range(net.depth + 1)]
        self.gen = torch.Generator(device="cpu").manual_seed(seed)
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
        self.trace_weights = {
            k: torch.tensor([cfg.decay(k) ** (t - 1 - i) for i in range(t)],
                            dtype=self.dtype, device=self.device) for k in (1, 2, 3)}
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

    # -- dynamics -------------------------------------------------------------------
    def simulate(self, spikes: Any) -> list[dict]:
        """Run one epoch on input spikes (T, B, n0); raw state of every layer (0 = input)."""
        torch, cfg = self.torch, self.cfg
        spikes = self._to(spikes) if not isinstance(spikes, torch.Tensor) else \
            spikes.to(self.device, self.dtype)
        if spikes.shape[0] != cfg.timesteps:
            raise LoweringError(f"input has {spikes.shape[0]} steps, the config says "
                                f"T = {cfg.timesteps}")
        raw = [self._raw(spikes, spikes.sum(0))]
        prev = spikes
        with torch.no_grad():
            for layer in range(1, self.net.depth + 1):
                w = self.state[FORWARD][layer]["w"]
                shifted = torch.cat([torch.zeros_like(prev[:1]), prev[:-1]])
                self._events = self._events + prev.sum() * w.shape[0]
                # the bias neuron fires in the layer below's window (steps layer-1 .. T-1)
                current = torch.matmul(shifted, w[:, :-1].T) + \
                    w[:, -1] * self.bias_on[layer][:, None, None]
                neuron = self.neurons[layer]
                neuron.reset_mem()
                out = []
                asum = torch.zeros_like(current[0])
                for t in range(cfg.timesteps):
                    spk, syn, _ = neuron(current[t])
                    out.append(spk)
                    if t >= layer:  # the drive is averaged over the layer's window
                        asum = asum + syn
                prev = torch.stack(out).to(self.dtype)
                raw.append(self._raw(prev, asum))
        return raw

    def _raw(self, s, asum) -> dict:
        st = {"tr1": self.torch.tensordot(self.trace_weights[1], s, 1),
              "spk": (s.sum(0) > 0).to(self.dtype), "asum": asum}
        for k in (2, 3):
            if f"tr{k}" in self.program.raw:
                st[f"tr{k}"] = self.torch.tensordot(self.trace_weights[k], s, 1)
        return st

    # -- epoch program --------------------------------------------------------------
    def compartments(self, raw: list[dict], target: Any = None) -> list[dict]:
        comps = [self.mod["measure"](st, k) for st, k in zip(raw, self.k, strict=True)]
        if target is None:
            return comps
        top = self.net.depth
        out = comps[top]
        out["target"] = target
        self.mod["output_neuron"](out, self.g)
        for layer in range(top - 1, 0, -1):
            fbw = {fb.name: self.feedback_weights(fb, layer) for fb in self.program.feedback}
            nxt = comps[layer + 1]
            self.mod["feedback"](comps[layer], nxt, out, fbw)
            self.mod["hidden_neuron"](comps[layer], self.g)
        return comps

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
                    out[(proj, layer)] = fn(_with_bias(comps[layer - 1], self.torch),
                                            comps[layer], self.state[proj][layer], self.g, n)
            else:
                fb = next(f for f in self.program.feedback if f.name == proj)
                for layer in range(1, self.net.depth):
                    src = comps[layer + 1] if fb.scope == "next" else comps[-1]
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

    def run_epoch(self, spikes: Any, target: Any = None, *, learn: bool = True) -> dict:
        """One learning epoch on a batch of input spike trains (T, B, n0)."""
        with self.torch.no_grad():
            raw = self.simulate(spikes)
            tgt = None if target is None or not learn else self._to(target)
            comps = self.compartments(raw, tgt)
            incs = {}
            if tgt is not None:
                incs = self.increments(comps)
                if self.reduce is not None:
                    self.reduce([v for d in incs.values() for v in d.values()])
                self.apply(incs)
        return {"raw": raw, "comps": comps, "increments": incs}

    def encode(self, x: Any) -> Any:
        x = self._to(x) if not isinstance(x, self.torch.Tensor) else x.to(self.device,
                                                                           self.dtype)
        return encode_input(x, self.cfg, seed=self.gen if self.device.type == "cpu" else
                            int(self.torch.randint(0, 2**31 - 1, (1,), generator=self.gen)))

    def learn(self, x: Any, onehot: Any) -> None:
        """Pixels (N, n0) in order, ``batch_size`` samples per learning epoch."""
        for i in range(0, len(x), self.batch_size):
            self.step(x[i:i + self.batch_size], onehot[i:i + self.batch_size])

    def step(self, x: Any, onehot: Any) -> dict:
        """Encode one batch of pixels as spikes and run one learning epoch on it."""
        return self.run_epoch(self.encode(x), onehot)

    def step_shard(self, x: Any, onehot: Any, lo: int, hi: int) -> dict:
        """Data-parallel step: encode the whole global batch (the same spikes a single
        process draws for it), run the epoch on rows [lo, hi)."""
        return self.run_epoch(self.encode(x)[:, lo:hi], onehot[lo:hi])

    def learn_spikes(self, spikes: Any, onehot: Any) -> None:
        """Spike trains (T, N, n0) in order, ``batch_size`` samples per learning epoch."""
        for i in range(0, spikes.shape[1], self.batch_size):
            self.run_epoch(spikes[:, i:i + self.batch_size], onehot[i:i + self.batch_size])

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


def _with_bias(comps: dict, torch) -> dict:
    """Pre-synaptic compartments plus the always-on bias neuron (axon signals 1, others 0)."""
    out = {}
    for k, v in comps.items():
        fill = 1.0 if k in AXON_SIGNALS else 0.0
        out[k] = torch.cat([v, torch.full_like(v[:, :1], fill)], 1)
    return out
