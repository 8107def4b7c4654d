"""``LocalRule``: a user's model that trains with a learning rule through ordinary torch."""

from __future__ import annotations

import numpy as np
import torch

from neurolocal.errors import NeurolocalError
from neurolocal.network import ConvSpec, Network, build_cnn, build_mlp
from neurolocal.rule import FORWARD, Rule

from .chain import OUTPUTS, Chain, read_chain
from .functions import FusedRule, GenericRule

_APPLY = {"softmax": lambda a: torch.softmax(a, 1),
          "log_softmax": lambda a: torch.log_softmax(a, 1),
          "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}


class LocalRule(torch.nn.Module):
    """A model whose ``loss.backward()`` puts the rule's updates into ``.grad``.

    Made by :func:`neurolocal.torch.local_rule`. ``module`` is the user's model (its
    parameters are the ones trained; it still runs on its own), ``feedback`` holds the
    feedback weights: buffers ``B1, B2, ...`` where the rule keeps them fixed, parameters
    where it learns them. ``state_dict`` has both; :meth:`network` gives the neurolocal
    :class:`~neurolocal.network.Network` (checkpoints, conversion, other targets).
    """

    def __init__(self, model: torch.nn.Module, rule: Rule, chain: Chain, net: Network,
                 layers: list, *, output: str | None, fused: bool, reduction: str, seed: int):
        super().__init__()
        from neurolocal.hardware.rate.fused import FusedProgram, fusable

        self.module, self.rule, self.net, self.seed = model, rule, net, seed
        self._chain, self._apply, self.reduction = chain, output, reduction
        self.g = rule.scalar_globals()
        self.learned = [n for n in rule.feedback if rule.is_learned(n) and net.state.get(n)]
        self.fixed = [n for n in rule.feedback if not rule.is_learned(n) and net.state.get(n)]
        self.feedback = torch.nn.Module()
        device = next(model.parameters()).device
        for name in self.learned + self.fixed:
            for layer, d in net.state[name].items():
                t = torch.as_tensor(np.array(d["w"]), dtype=torch.float32, device=device)
                if name in self.learned:
                    self.feedback.register_parameter(f"{name}{layer}", torch.nn.Parameter(t))
                else:
                    self.feedback.register_buffer(f"{name}{layer}", t)
        self._plan()
        why = fusable(rule, layers)
        self.fused_reason = why
        self.program = FusedProgram(rule, layers, teach="grad", sink="new") \
            if fused and why is None else None
        self._runner = None

    # -- what the Functions read ---------------------------------------------------------
    def _plan(self) -> None:
        """Where each tensor of :meth:`tensors` goes in (W, b, F), computed once."""
        self._refs, self._unpack, self._pack = [], [], []
        for k, w in enumerate(self._chain.layers, start=1):
            self._refs.append((w.module, "weight"))
            self._unpack.append(("W", k))
            self._pack.append(("W", k))
            if w.module.bias is not None:
                self._refs.append((w.module, "bias"))
                self._unpack.append(("b", k))
                self._pack.append(("b", k))
        for name in self.learned + self.fixed:
            for k in sorted(self.net.state[name]):
                self._refs.append((self.feedback, f"{name}{k}"))
                self._unpack.append((name, k))
                self._pack.append((name, k) if name in self.learned else None)
        self._depth = len(self._chain.layers)

    def tensors(self) -> list:
        """Every tensor the rule reads: weights and biases, then feedback weights."""
        return [getattr(m, a) for m, a in self._refs]

    def unpack(self, tensors) -> tuple[list, list, dict]:
        """(W, b, F) as the generated program reads them: ``W[k]``, ``b[k]``, ``F[name][k]``."""
        d = self._depth
        W, b, F = [None] * (d + 1), [None] * (d + 1), {n: {} for n in self.learned + self.fixed}
        for (where, k), t in zip(self._unpack, tensors):
            if where == "W":
                W[k] = t
            elif where == "b":
                b[k] = t
            else:
                F[where][k] = t
        return W, b, F

    def pack(self, GW, Gb, GF) -> list:
        """Gradients in :meth:`tensors`' order (None for fixed feedback)."""
        out = []
        for slot in self._pack:
            if slot is None:
                out.append(None)
            elif slot[0] == "W":
                out.append(GW[slot[1]])
            elif slot[0] == "b":
                out.append(Gb[slot[1]])
            else:
                out.append(GF[slot[0]].get(slot[1]))
        return out

    def teaching(self, grad):
        """The rule's teaching signal from the loss gradient at the output drive."""
        return grad * grad.shape[0] if self.reduction == "mean" else grad

    def runner(self, tensors, device):
        """The rate runner of the generic path, its state set to ``tensors``."""
        from neurolocal.hardware.rate import RateRunner

        if self._runner is None or self._runner.device != torch.device(device):
            self._runner = RateRunner(self.net, backend="torch", device=str(device),
                                      allow_nonlocal=True, seed=self.seed, fused=False)
        W, b, F = self.unpack([t.detach() for t in tensors])
        state = self._runner.state
        for k in range(1, len(W)):
            flat = W[k].reshape(W[k].shape[0], -1)
            bias = b[k] if b[k] is not None else flat.new_zeros(flat.shape[0])
            state[FORWARD][k]["w"] = torch.cat([flat, bias[:, None]], 1).float()
        for name, layers in F.items():
            for k, t in layers.items():
                state[name][k]["w"] = t.float()
        return self._runner

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_runner"] = None  # remade on first use (holds generated code)
        return state

    # -- torch ---------------------------------------------------------------------------
    def forward(self, x):
        fn = FusedRule if self.program is not None else GenericRule
        out = fn.apply(self, x, *self.tensors())
        return out if self._apply is None else _APPLY[self._apply](out)

    def network(self) -> Network:
        """The neurolocal network with the current weights (checkpoints, conversion)."""
        W, b, F = self.unpack([t.detach().float().cpu() for t in self.tensors()])
        for k in range(1, len(W)):
            flat = W[k].reshape(W[k].shape[0], -1)
            bias = b[k] if b[k] is not None else flat.new_zeros(flat.shape[0])
            self.net.state[FORWARD][k]["w"] = torch.cat([flat, bias[:, None]], 1).numpy()
        for name, layers in F.items():
            for k, t in layers.items():
                self.net.state[name][k]["w"] = t.numpy().copy()
        return self.net

    @property
    def source(self) -> str:
        """The generated program this module runs (the fused one, or the rate runner's)."""
        if self.program is not None:
            return self.program.source
        from neurolocal.hardware.rate import generate_rate_source
        return generate_rate_source(self.rule, "torch")

    def extra_repr(self) -> str:
        path = "fused" if self.program is not None else f"generic ({self.fused_reason})"
        return f"rule={self.rule.name!r}, program={path}"


# --------------------------------------------------------------------------------------------
# Building


def _sizes(chain: Chain, input_shape) -> tuple[list, list, list]:
    """Layer sizes, conv specs (out_channels, kernel, stride, padding), ConvSpecs."""
    first = chain.layers[0].module
    if chain.layers[0].conv:
        if input_shape is None:
            raise NeurolocalError(f"local_rule: the model starts with Conv2d "
                                  f"{chain.layers[0].name!r}; pass input_shape=(channels, "
                                  "height, width) of one sample")
        c, h, w = (int(v) for v in input_shape)
        sizes, convs, specs = [c * h * w], [], []
    else:
        sizes, convs, specs = [first.in_features], [], []
        c = h = w = None
    for layer in chain.layers:
        m = layer.module
        if layer.conv:
            if m.in_channels != c:
                raise NeurolocalError(f"local_rule: layer {layer.name!r} takes {m.in_channels} "
                                      f"channels, the layer below gives {c}")
            spec = ConvSpec(c, h, w, m.out_channels, m.kernel_size[0], m.stride[0],
                            m.padding[0])
            convs.append((m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0]))
            specs.append(spec)
            sizes.append(spec.out_size)
            c, h, w = spec.out_channels, spec.out_height, spec.out_width
        else:
            if m.in_features != sizes[-1]:
                raise NeurolocalError(f"local_rule: layer {layer.name!r} takes "
                                      f"{m.in_features} inputs, the layer below gives "
                                      f"{sizes[-1]}")
            sizes.append(m.out_features)
            specs.append(None)
    if chain.layers[-1].conv:
        raise NeurolocalError(f"local_rule: the last layer {chain.layers[-1].name!r} is a "
                              "Conv2d; end the model with a Linear layer (the classes)")
    return sizes, convs, specs


def build(model: torch.nn.Module, rule: Rule, *, allow_nonlocal: bool = False,
          input_shape=None, output: str | None = None, seed: int = 0, fused: bool = True,
          loss_reduction: str = "mean") -> LocalRule:
    """:func:`neurolocal.torch.local_rule` (see there)."""
    from neurolocal.hardware.rate.fused import Layer
    from neurolocal.hardware.rate.lower import check_executable
    from neurolocal.locality import require_local

    if not isinstance(model, torch.nn.Module):
        raise NeurolocalError(f"local_rule needs a torch.nn.Module, got {type(model).__name__}")
    if not allow_nonlocal:
        require_local(rule)
    check_executable(rule)
    extra = sorted({u.var for u in rule.updates if u.var != "w"})
    if extra:
        raise NeurolocalError(f"local_rule: rule {rule.name!r} keeps synaptic state "
                              f"{', '.join(extra)} besides the weights; local_rule trains "
                              "weights only (use neurolocal train for this rule)")
    if loss_reduction not in ("mean", "sum"):
        raise NeurolocalError(f"loss_reduction={loss_reduction!r}: expected 'mean' (the loss "
                              "averages over the batch, torch's default) or 'sum'")
    chain = read_chain(model)
    apply = chain.output
    if output is not None:
        if output not in OUTPUTS:
            raise NeurolocalError(f"output={output!r}: expected one of {', '.join(OUTPUTS)}")
        if apply is not None and output != apply:
            raise NeurolocalError(f"output={output!r}, but the model already ends with "
                                  f"{apply}; drop output= or the model's last activation")
    rule_output = {"log_softmax": "softmax", None: output or "softmax"}.get(apply, apply)
    if rule_output == "log_softmax":
        rule_output = "softmax"
    sizes, convs, specs = _sizes(chain, input_shape)
    hidden_acts = [w.activation for w in chain.layers[:-1]]
    uniform = hidden_acts[0] if hidden_acts and len(set(hidden_acts)) == 1 else "relu"
    if convs:
        net = build_cnn(tuple(int(v) for v in input_shape), convs, sizes[1 + len(convs):-1],
                        sizes[-1], rule, hidden_activation=uniform,
                        output_activation=rule_output, seed=seed)
    else:
        net = build_mlp(sizes, rule, hidden_activation=uniform, output_activation=rule_output,
                        seed=seed)
    layers = [Layer(sizes[k], sizes[k + 1], w.activation if k < len(chain.layers) - 1
                    else rule_output, specs[k], w.module.bias is not None)
              for k, w in enumerate(chain.layers)]
    wrapped = LocalRule(model, rule, chain, net, layers, output=apply, fused=fused,
                        reduction=loss_reduction, seed=seed)
    if wrapped.program is None and len(set(hidden_acts)) > 1:
        raise NeurolocalError(f"local_rule: rule {rule.name!r} runs on the generic rate program "
                              f"({wrapped.fused_reason}), which needs one hidden activation; "
                              f"the model has {', '.join(hidden_acts)}")
    _probe(model, wrapped, input_shape, sizes[0])
    return wrapped


def _probe(model, wrapped: LocalRule, input_shape, n_in: int) -> None:
    """The wrapped forward must compute what the model's own forward computes."""
    param = next(model.parameters())
    shape = tuple(input_shape) if input_shape is not None else (n_in,)
    x = torch.rand((2, *shape), generator=torch.Generator().manual_seed(0)).to(param)
    mode = wrapped.training
    try:
        wrapped.eval()  # no noise sources in the comparison
        with torch.no_grad():
            want = model(x)
            got = wrapped(x)
    finally:
        wrapped.train(mode)
    if want.shape != got.shape or not torch.allclose(want.float(), got.float(), rtol=1e-3,
                                                     atol=1e-4):
        raise NeurolocalError("local_rule: the model's forward computes something else than "
                              "its chain of layers (a reshape that is not a flatten, or an "
                              "operation torch.fx did not show); write it as an nn.Sequential")
