"""Recurrent layers on snntorch: the generated epoch module on sequences (:mod:`..timed`).

A recurrent layer's cells step through the epoch with their own spikes of the previous step
fed back through ``R`` (one step of synaptic delay, as every projection); its input from
the layer below is still one matrix product for the whole epoch. A sequence is one sample,
each of its steps one learning epoch. The eligibility traces (a timed rule's non-``w``
synaptic state) are one copy per sequence of the batch: the generated update functions run
once per sample of the batch (``n = 1``), the traces first, then the weight updates reading
them; the weight increments are the batch mean.
"""

from __future__ import annotations

from typing import Any

from neurolocal.errors import LoweringError
from neurolocal.rule import FORWARD, RECURRENT

from ..timed import check_recurrent, encode_sequence, trace_vars
from .lower import update_function_name
from .runtime import SnnTorchRunner, _with_bias, accumulate


class SnnTorchSequenceRunner(SnnTorchRunner):
    """:class:`SnnTorchRunner` for a network with recurrent layers or a timed rule:
    :meth:`learn` takes sequences (N, steps, features), one learning epoch per step."""

    recurrent_ok = True

    def __init__(self, net, program, **options: Any):
        if program.noise_sources or program.noise_phases:
            raise LoweringError(f"rule {program.name}: private noise and noise phases are not "
                                "lowered together with recurrent layers on snntorch")
        if program.config.reset == "subtract" and net.recurrent:
            raise LoweringError("reset='subtract' is not lowered with recurrent layers on "
                                "snntorch (the delayed reset and R's delay are one step apart);"
                                " use reset='zero' (the default)")
        check_recurrent(net, program, "snntorch")
        super().__init__(net, program, **options)
        self.traces: dict = {}
        self._rin: dict = {}

    # -- dynamics ---------------------------------------------------------------------------
    def _carry(self, batch: int) -> list:
        carry = super()._carry(batch)
        self._rin = {layer: carry[layer].clone() for layer in self.net.recurrent}
        return carry

    def _epoch(self, spikes: Any, carry: list, start: int, noise: dict | None,
               earlier: dict | None = None) -> list[dict]:
        torch = self.torch
        steps = spikes.shape[0]
        raw = [self._raw(spikes, spikes.sum(0))]
        prev = spikes
        with torch.no_grad():
            for layer in range(1, self.net.depth + 1):
                w = self.state[FORWARD][layer]["w"]
                self._events = self._events + prev.sum() * w.shape[0]
                inflow = torch.matmul(prev, w[:, :-1].T)  # arrives one step later
                current = torch.cat([carry[layer][None], inflow[:-1]]) + \
                    w[:, -1] * self.bias_on[layer][start:start + steps, None, None]
                carry[layer] = inflow[-1]
                r = self.state[RECURRENT][layer]["w"] if layer in self.net.recurrent else None
                neuron, out = self.neurons[layer], []
                asum = torch.zeros_like(current[0])
                for j in range(steps):
                    drive = current[j] if r is None else current[j] + self._rin[layer]
                    spk, syn, _ = neuron(drive)
                    out.append(spk)
                    if r is not None:  # through R, one step later
                        self._rin[layer] = torch.matmul(spk.to(self.dtype), r.T)
                        self._events = self._events + spk.sum() * r.shape[0]
                    if start + j >= layer:
                        asum = asum + syn
                prev = torch.stack(out).to(self.dtype)
                raw.append(self._raw(prev, asum))
        return raw

    def simulate(self, spikes: Any) -> list[dict]:
        """Run a whole sequence (T, B, n0) without learning; the raw state of its last
        learning epoch (where the network answers)."""
        spikes = self._tensor_in(spikes)
        if spikes.shape[0] != self.cfg.timesteps:
            raise LoweringError(f"input has {spikes.shape[0]} steps, the config says "
                                f"T = {self.cfg.timesteps}")
        carry, steps = self._carry(spikes.shape[1]), self.program.epoch_steps
        for sub in range(self.program.epochs):
            raw = self._epoch(spikes[sub * steps:(sub + 1) * steps], carry, sub * steps, None)
        return raw

    def scores(self, raw_out: dict) -> Any:
        """Output rate over the last learning epoch, ties broken by its mean drive."""
        k = self.sub_k[-1][-1]
        return k["k1"] * raw_out["tr1"] + (0.5 / k["T"]) * self.torch.tanh(
            raw_out["asum"] / k["T"])

    def compartments(self, raw: list[dict], target: Any = None, *, sub: int = 0,
                     slow: list | None = None) -> list[dict]:
        if target is None:
            return [self.mod["measure"](st, k) for st, k in zip(raw, self.sub_k[-1],
                                                                   strict=True)]
        final = sub == self.program.epochs - 1
        out_fn = "output_neuron" if final else "output_neuron_early"
        hid_fn = "hidden_neuron" if final else "hidden_neuron_early"
        saved = self.mod["output_neuron"], self.mod["hidden_neuron"]
        self.mod["output_neuron"], self.mod["hidden_neuron"] = self.mod[out_fn], \
            self.mod[hid_fn]
        try:
            comps = super().compartments(raw, target, sub=sub, slow=slow)
        finally:
            self.mod["output_neuron"], self.mod["hidden_neuron"] = saved
        for c in comps:  # a constant equation (keep = 1) as one value per neuron
            for k, v in c.items():
                if not isinstance(v, self.torch.Tensor):
                    c[k] = self.torch.full_like(c["r"], float(v))
        return comps

    # -- updates ----------------------------------------------------------------------------
    def _pairs(self, proj: str, comps: list[dict]) -> list:
        if proj == FORWARD:
            return [(layer, _with_bias(comps[layer - 1], self.torch), comps[layer])
                    for layer in range(1, self.net.depth + 1)]
        if proj == RECURRENT:
            return [(layer, comps[layer], comps[layer]) for layer in sorted(self.net.recurrent)]
        fb = next(f for f in self.program.feedback if f.name == proj)
        return [(layer, comps[layer + 1] if fb.scope == "next" else comps[-1], comps[layer])
                for layer in range(1, self.net.depth)]

    def _timed_increments(self, comps: list[dict]) -> dict:
        """The traces of every sample updated (in place), then the weight increments that
        read them, averaged over the batch."""
        out, n = {}, comps[0]["r"].shape[0]
        for proj in self.program.learned_projections:
            fn, traces = self.mod[update_function_name(proj)], trace_vars(self.program, proj)
            for layer, pre, post in self._pairs(proj, comps):
                st, tr = self.state[proj][layer], self.traces.get((proj, layer), {})
                rows = [({k: v[b:b + 1] for k, v in pre.items()},
                         {k: v[b:b + 1] for k, v in post.items()}) for b in range(n)]
                if traces:
                    new = [fn(p, q, {**st, **{v: tr[v][b] for v in traces}}, self.g, 1)
                           for b, (p, q) in enumerate(rows)]
                    for v in traces:
                        tr[v] = tr[v] + self.torch.stack([d[v] for d in new])
                dw = 0.0
                for b, (p, q) in enumerate(rows):
                    d = fn(p, q, {**st, **{v: tr[v][b] for v in traces}}, self.g, 1)
                    dw = dw + d.get("w", 0.0)
                if "w" in {u.var for u in self.program.updates_for(proj)}:
                    out[(proj, layer)] = {"w": dw / n}
        return out

    def run_epoch(self, spikes: Any, target: Any = None, *, learn: bool = True,
                  noise: dict | None = None, apply: bool = True, totals: bool = True) -> dict:
        """One batch of sequences (T, B, n0): a learning epoch per sequence step (or, without
        a target, the sequence run unchanged and read at its last step); ``totals`` as in
        the feed-forward runner."""
        torch, prog = self.torch, self.program
        with torch.no_grad():
            if target is None or not learn:
                raw = self.simulate(spikes)
                return {"raw": raw, "comps": self.compartments(raw), "increments": {}}
            spikes = self._tensor_in(spikes)
            if spikes.shape[0] != self.cfg.timesteps:
                raise LoweringError(f"input has {spikes.shape[0]} steps, the config says "
                                    f"T = {self.cfg.timesteps}")
            tgt, batch = self._to(target), spikes.shape[1]
            self.traces = {}
            for proj in prog.learned_projections:
                for var in trace_vars(prog, proj):
                    for layer, st in self.state[proj].items():
                        self.traces.setdefault((proj, layer), {})[var] = torch.zeros(
                            (batch, *st["w"].shape), dtype=self.dtype, device=self.device)
            carry, steps, total = self._carry(batch), prog.epoch_steps, {}
            for sub in range(prog.epochs):
                raw = self._epoch(spikes[sub * steps:(sub + 1) * steps], carry, sub * steps,
                                  None)
                comps = self.compartments(raw, tgt, sub=sub)
                incs = self._timed_increments(comps) if prog.timed else self.increments(comps)
                self._land(incs, apply)
                if totals:
                    accumulate(total, incs)
        return {"raw": raw, "comps": comps, "increments": total}

    def encode(self, x: Any) -> Any:
        """Sequences (B, steps, features) -> spikes (steps * E, B, features)."""
        x, seed = self._encoding(x)
        return encode_sequence(x, self.cfg, seed=seed)
