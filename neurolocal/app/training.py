"""One training loop for every target: a config object in, a result out.

The loop is rule- and target-agnostic: it asks the registry for the target, lowers the rule,
binds it to the network (fresh, or from a checkpoint on any target) and hands the runner
samples in a fixed order. It evaluates, measures alignment, and writes an atomic checkpoint
after every epoch. Everything a target cannot honour is refused before work starts.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurolocal.errors import DivergenceError, NeurolocalError
from neurolocal.network import Network, build_cnn, build_mlp, build_rnn
from neurolocal.rule import FORWARD, RECURRENT, Rule
from neurolocal.rules import get_rule

from .metrics import feedback_angles


@dataclass
class TrainConfig:
    """What to train, where, and how long. ``None`` means "the target's default".

    ``target``: any registered target (``numpy``/``torch`` rate mode; ``snntorch``,
    ``brian2``, ``lava``, ``lava:fixed_pt``, ``lava:floating_pt`` spiking). ``lr`` is the
    rate optimiser's step (Adam's step size; for sgd/momentum a multiplier of the rule's
    update); spiking targets take the rule's own ``lr`` global (``globals``). ``lr_decay``
    multiplies the step per epoch (rate default 0.8; on snntorch it decays the rule's ``lr``
    global, default 1). ``init``: a checkpoint to start from (any target's). ``recurrent``:
    recurrent layers first (rate targets, sequence data sets), each with the same ``leak``;
    ``activation`` defaults to tanh for them, relu otherwise.
    """

    rule: str | Rule | None = "fa"
    target: str = "torch"
    dataset: str = "mnist"
    hidden: list[int] | None = None
    conv: list[tuple[int, int, int, int]] = field(default_factory=list)
    recurrent: list[int] | None = None
    leak: float | None = None
    epochs: int = 1
    batch_size: int | None = None
    optimiser: str | None = None
    lr: float | None = None
    lr_decay: float | None = None
    activation: str | None = None
    device: str | None = None
    seed: int = 0
    limit: int | None = None
    test_limit: int | None = None
    out: str | None = None
    init: str | None = None
    allow_nonlocal: bool = False
    globals: dict[str, float] = field(default_factory=dict)
    timesteps: int | None = None
    codegen: str | None = None
    #: data-parallel over torchrun's process group (:mod:`neurolocal.app.distributed`)
    distributed: bool = False


@dataclass
class TrainResult:
    rule: str
    target: str
    mode: str
    dataset: str
    test_accuracy: float
    epochs: int
    seconds: float
    samples_per_second: float
    samples: int
    test_samples: int
    history: list[dict]
    feedback_angles: dict[str, float]
    update_angles: dict[str, float]
    data_source: str
    checkpoint: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out.update(out.pop("extra"))
        return out


# --------------------------------------------------------------------------------------------
# Checks before work starts


def _positive(value: Any, flag: str, *, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise NeurolocalError(f"{flag} must be an integer >= 1, got {value!r}")


def _check_config(cfg: TrainConfig, target: Any) -> None:
    """Refuse what the target's mode cannot honour, naming the flag."""
    spiking = target.mode == "spiking"
    _positive(cfg.epochs, "--epochs", allow_none=False)
    _positive(cfg.batch_size, "--batch-size")
    _positive(cfg.limit, "--samples")
    _positive(cfg.test_limit, "--test-samples")
    _positive(cfg.timesteps, "--timesteps")
    if cfg.lr_decay is not None and not (0.0 < cfg.lr_decay < float("inf")):
        raise NeurolocalError(f"--lr-decay is the step size's factor per epoch and must be a "
                              f"positive number, got {cfg.lr_decay!r}")
    if spiking:
        if cfg.lr is not None:
            raise NeurolocalError("--lr is the rate optimiser's step; spiking targets step by "
                                  "the rule's own lr global: use --set lr=VALUE")
        if cfg.batch_size not in (None, 1) and "batch_size" not in target.options:
            raise NeurolocalError(f"--batch-size {cfg.batch_size}: {target.name} learns strictly "
                                  "online (one learning epoch per sample); drop the flag")
        if cfg.lr_decay not in (None, 1.0) and target.name != "snntorch":
            raise NeurolocalError(f"--lr-decay: {target.name} bakes the rule's lr into its "
                                  "program (Lava scales, Brian2 namespace); it cannot be "
                                  "decayed between epochs here")
    else:
        if cfg.timesteps is not None:
            raise NeurolocalError("--timesteps is for spiking targets; rate mode has no time "
                                  "steps (add --spiking, or drop --timesteps)")
    if cfg.codegen is not None and target.name != "brian2":
        raise NeurolocalError(f"--codegen applies to the brian2 target, not {target.name}")
    if cfg.device not in (None, "cpu") and "device" not in target.options:
        raise NeurolocalError(f"--device {cfg.device}: {target.name} runs on the cpu only")
    if cfg.out:
        check_destination(cfg.out, "--out")


def check_destination(path: str, flag: str) -> None:
    """An output file must be writable where it is asked for: checked before work starts."""
    p = Path(path)
    if p.is_dir():
        raise NeurolocalError(f"{flag} {path}: is a folder; give a file name, e.g. "
                              f"{p / 'checkpoint.h5'}")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise NeurolocalError(f"{flag} {path}: folder {folder} does not exist")
    import os
    if not os.access(folder, os.W_OK):
        raise NeurolocalError(f"{flag} {path}: folder {folder} is not writable")


# --------------------------------------------------------------------------------------------
# Setting up


def _rule(cfg: TrainConfig, init: Network | None) -> Rule:
    """The config's rule; without one, the checkpoint's (``--init`` without ``--rule``)."""
    if cfg.rule is None:
        if init is None:
            raise NeurolocalError("no rule: give --rule NAME (or --init CHECKPOINT to continue "
                                  "with the checkpoint's rule)")
        rule = init.rule
    else:
        rule = cfg.rule if isinstance(cfg.rule, Rule) else get_rule(cfg.rule)
    return rule.with_globals(**cfg.globals) if cfg.globals else rule


def _network(cfg: TrainConfig, rule: Rule, n_in: int, n_classes: int,
             init: Network | None) -> Network:
    _check_sequences(cfg, init, n_in)
    if init is not None:
        if cfg.recurrent is not None and \
                list(cfg.recurrent) != [init.sizes[k] for k in sorted(init.recurrent)]:
            raise NeurolocalError(f"--recurrent {' '.join(map(str, cfg.recurrent))} disagrees "
                                  "with the checkpoint's network; drop --recurrent")
        if init.sizes[0] != n_in or init.sizes[-1] != n_classes:
            raise NeurolocalError(f"--init: the checkpoint's network is "
                                  f"{'-'.join(map(str, init.sizes))}, but {cfg.dataset} has "
                                  f"{n_in} inputs and {n_classes} classes")
        if cfg.hidden is not None and list(cfg.hidden) != init.sizes[1:-1]:
            raise NeurolocalError(f"--hidden {' '.join(map(str, cfg.hidden))} disagrees with "
                                  f"the checkpoint's hidden layers {init.sizes[1:-1]}; drop "
                                  "--hidden (the checkpoint fixes the network)")
        if init.rule.text != rule.text:
            init = _with_rule(init, rule)
        return init
    if cfg.recurrent:
        return build_rnn(n_in, list(cfg.recurrent), n_classes, rule, hidden=cfg.hidden or [],
                         leak=cfg.leak or 0.0, hidden_activation=cfg.activation or "tanh",
                         seed=cfg.seed)
    hidden = [500] if cfg.hidden is None else list(cfg.hidden)
    activation = cfg.activation or "relu"
    if cfg.conv:
        side = int(round(n_in ** 0.5))
        return build_cnn((1, side, side), list(cfg.conv), hidden, n_classes, rule,
                         hidden_activation=activation, seed=cfg.seed)
    return build_mlp([n_in, *hidden, n_classes], rule, hidden_activation=activation,
                     seed=cfg.seed)


def _check_sequences(cfg: TrainConfig, init: Network | None, n_in: int) -> None:
    """Recurrent layers and sequence data sets go together."""
    from .sequences import is_sequence

    recurrent = bool(cfg.recurrent) or bool(init is not None and init.recurrent)
    if is_sequence(cfg.dataset) and not recurrent:
        raise NeurolocalError(f"--dataset {cfg.dataset} is a sequence data set: add a "
                              "recurrent layer (--recurrent 128)")
    if recurrent and not is_sequence(cfg.dataset):
        raise NeurolocalError(f"--recurrent needs a sequence data set (smnist, copy-T), not "
                              f"{cfg.dataset}")
    if cfg.recurrent and cfg.conv:
        raise NeurolocalError("--recurrent and --conv together are not supported: give one")
    if cfg.leak is not None and not cfg.recurrent:
        raise NeurolocalError("--leak is the recurrent layers' leak: add --recurrent N")


def _with_rule(net: Network, rule: Rule) -> Network:
    """The checkpoint's weights under another rule (its forward weights must carry over)."""
    if net.recurrent:
        k = len(net.recurrent)
        fresh = build_rnn(net.sizes[0], net.sizes[1:k + 1], net.sizes[-1], rule,
                          hidden=net.sizes[k + 1:-1], leak=net.leak(1),
                          hidden_activation=net.hidden_activation,
                          output_activation=net.output_activation)
        for layer, d in fresh.state[RECURRENT].items():
            d["w"] = net.state[RECURRENT][layer]["w"]
    else:
        fresh = build_mlp(net.sizes, rule, hidden_activation=net.hidden_activation,
                          output_activation=net.output_activation) if not net.convs else None
    if fresh is None:
        raise NeurolocalError("--init with another rule is supported for dense networks only")
    fresh.state[FORWARD] = net.state[FORWARD]
    for proj, layers in net.state.items():
        if proj in fresh.state and proj != FORWARD and \
                all(layers[k]["w"].shape == fresh.state[proj][k]["w"].shape for k in layers):
            fresh.state[proj] = layers
    return fresh


def _spiking_config(cfg: TrainConfig, meta: dict) -> Any:
    from neurolocal.hardware.semantics import SpikingConfig

    stored = dict(meta.get("spiking") or {})
    base = SpikingConfig().with_options(**stored) if stored else SpikingConfig()
    opts: dict[str, Any] = {}
    if cfg.timesteps is not None:
        opts["timesteps"] = int(cfg.timesteps)
    if cfg.optimiser is not None:
        opts["optimiser"] = cfg.optimiser
    return base.with_options(**opts)


def _per_sample_steps(rule: Rule, cfg: TrainConfig, meta: dict
                      ) -> tuple[Rule, dict[str, float] | None]:
    """The rule with its step sizes per sample, and those steps (None: leave them alone).

    A spiking checkpoint's rule holds the epoch step its run used (already scaled by that
    run's batch); ``--init`` without ``--rule`` starts again from the per-sample steps the
    checkpoint records, so the new run scales them by its own batch, not twice. A spiking
    checkpoint written before they were recorded keeps the step it ran with."""
    from neurolocal.hardware.semantics import step_globals

    values = rule.scalar_globals()
    if cfg.rule is None and meta.get("mode") == "spiking":
        stored = {g: float(v) for g, v in (meta.get("per_sample_steps") or {}).items()
                  if g in values and g not in cfg.globals}
        if not stored:
            return rule, None
        rule = rule.with_globals(**stored)
        values = rule.scalar_globals()
    return rule, {g: values[g] for g in step_globals(rule) if g in values}


def _spiking_steps(rule: Rule, cfg: TrainConfig, target: Any, scfg: Any) -> Rule:
    """The spiking default step: a rule's forward step size (the global scaling every term of
    ``on W``, e.g. ``lr``) is its step *per sample*, so a target that averages the updates of
    B samples per learning epoch (snntorch, batch 20) takes B times it, and a rule that
    learns M times per sample (PAL: M = 4 learning epochs) 1/M of it each time, unless it is
    --set. With --distributed, B is the global batch (every process's share). Rate mode's
    defaults are unchanged."""
    from neurolocal.hardware.semantics import sample_epochs, step_globals

    from . import distributed

    batch = (cfg.batch_size or target.default_batch_size) if "batch_size" in target.options \
        else 1
    batch *= distributed.world_size(cfg)
    factor = batch / (1 if cfg.recurrent else sample_epochs(rule, scfg))
    values = rule.scalar_globals()
    scaled = {g: values[g] * factor for g in step_globals(rule) if g not in cfg.globals
              and g in values}
    return rule.with_globals(**scaled) if scaled and factor != 1 else rule


def _bind_options(cfg: TrainConfig, target: Any) -> dict[str, Any]:
    opts: dict[str, Any] = {"seed": cfg.seed}
    if "batch_size" in target.options:
        opts["batch_size"] = cfg.batch_size or target.default_batch_size
    if cfg.device is not None and "device" in target.options:
        opts["device"] = cfg.device
    if target.mode == "rate":
        from neurolocal.hardware.rate import Optimiser
        opts["optimiser"] = Optimiser(cfg.optimiser or "adam", lr=cfg.lr)
    if target.name == "brian2" and cfg.codegen is not None:
        opts["codegen"] = cfg.codegen
    return opts


# --------------------------------------------------------------------------------------------
# The loop


def accuracy(runner: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Percent of ``x`` whose highest score is the label."""
    if len(x) == 0:
        return 0.0
    return 100.0 * float((np.asarray(runner.predict(x)).argmax(1) == y).mean())


#: weights this many times larger than at the start of the run have run away
RUNAWAY = 1000.0


def _peak(net: Network) -> float:
    """The largest |weight| of any projection (NaN/inf if there is one)."""
    peak = 0.0
    for layers in net.state.values():
        for d in layers.values():
            w = d["w"]
            m = float(np.abs(w).max()) if w.size else 0.0
            if not np.isfinite(m):
                return m
            peak = max(peak, m)
    return peak


def _diverged(net: Network, start_peak: float) -> float | None:
    """The largest |weight| when it is NaN/inf or ran away (RUNAWAY x the start), else None."""
    peak = _peak(net)
    return peak if not np.isfinite(peak) or peak > RUNAWAY * max(start_peak, 1e-3) else None


def _step_size(runner: Any, target: Any) -> float | None:
    """The step this epoch used: the rate optimiser's, or the rule's lr global."""
    if target.mode == "rate":
        return float(runner.opt.lr)
    g = getattr(runner, "g", None) or getattr(getattr(runner, "program", None), "globals", {})
    return float(g["lr"]) if "lr" in g else None


def _decay(runner: Any, target: Any, factor: float) -> None:
    if factor == 1.0:
        return
    if target.mode == "rate":
        runner.opt.lr *= factor
    elif "lr" in runner.g:
        runner.g["lr"] *= factor


def train(cfg: TrainConfig, *, progress: bool = True, log=None) -> TrainResult:
    """Train with ``cfg.rule`` on ``cfg.target``; see :class:`TrainConfig`. Progress and
    notes go to ``log`` (default: stderr)."""
    log = sys.stderr if log is None else log
    from neurolocal.checkpoint import load_checkpoint
    from neurolocal.hardware.base import get_target

    from . import distributed
    from .data import load_dataset

    target = get_target(cfg.target)
    _check_config(cfg, target)
    cfg = distributed.configure(cfg)  # --distributed: checks, this process's device
    progress = progress and distributed.is_main(cfg)
    missing = target.available()
    if missing:
        raise NeurolocalError(missing)
    init, meta = load_checkpoint(cfg.init) if cfg.init else (None, {})
    rule = _rule(cfg, init)
    train_set = load_dataset(cfg.dataset, "train", limit=cfg.limit, verbose=progress)
    test_set = load_dataset(cfg.dataset, "test", limit=cfg.test_limit, verbose=progress)
    for flag, asked, ds in (("--samples", cfg.limit, train_set), ("--test-samples",
                                                                   cfg.test_limit, test_set)):
        if asked is not None and asked > len(ds):
            print(f"note: {flag} {asked}: {cfg.dataset} has {len(ds)} images there; using all "
                  "of them", file=log)
    n_classes = int(max(train_set.y.max(), test_set.y.max())) + 1
    spiking = target.mode == "spiking"
    per_sample: dict[str, float] = {}
    if spiking:
        rule, per_sample = _per_sample_steps(rule, cfg, meta)
        if per_sample is not None:
            rule = _spiking_steps(rule, cfg, target, _spiking_config(cfg, meta))
    net = _network(cfg, rule, train_set.x.shape[-1], n_classes, init)
    scfg = _spiking_config(cfg, meta) if spiking else None
    if spiking and net.recurrent:  # a sequence is one sample, a step one learning epoch
        from .recurrent_spiking import check_rule, sequence_config

        check_rule(net, rule, target.name)
        scfg = sequence_config(cfg, meta, scfg, int(train_set.x.shape[1]))
    program = target.lower(rule, network=net, config=scfg, allow_nonlocal=cfg.allow_nonlocal)
    runner = target.bind(net, program, **_bind_options(cfg, target))
    extra: dict[str, Any] = {}
    if spiking:
        extra.update(timesteps=scfg.timesteps, spiking=dataclasses.asdict(scfg),
                     globals=rule.scalar_globals(), per_sample_steps=per_sample)
    if getattr(runner, "rounding", 0.0):
        extra["init_rounding"] = runner.rounding
        if progress and init is not None:
            print(f"  {target.name}: the checkpoint's weights moved by at most "
                  f"{runner.rounding:.3g} onto the fixed-point grid", file=log)
    group = distributed.start(cfg)
    runner = distributed.wrap(runner, group)
    extra.update(distributed.result_info(group))
    try:
        return _loop(cfg, target, runner, train_set, test_set, n_classes, extra, progress, log)
    finally:
        runner.close()
        distributed.finish(group)


def _loop(cfg: TrainConfig, target: Any, runner: Any, train_set, test_set, n_classes: int,
          extra: dict, progress: bool, log) -> TrainResult:
    from neurolocal.checkpoint import save_checkpoint

    from .bptt import recurrent_update_angles
    from .metrics import spiking_update_angles, update_angles
    from .settling import spiking_settling

    eye = np.eye(n_classes, dtype=np.float32)
    x_test, y_test = np.asarray(test_set.x), np.asarray(test_set.y)
    batch = getattr(runner, "batch_size", 1)
    chunk = max(batch, target.chunk_samples // batch * batch)
    decay = cfg.lr_decay if cfg.lr_decay is not None else (0.8 if target.mode == "rate" else 1.0)
    history: list[dict] = []
    seconds, seen = 0.0, 0
    events0 = getattr(runner, "events", None)
    start_peak = _peak(runner.sync())
    for epoch in range(1, cfg.epochs + 1):
        order = np.random.default_rng(cfg.seed + epoch).permutation(len(train_set.x))
        bar = _progress(len(order), f"{runner.net.rule.name} on {target.name}, epoch {epoch}/"
                        f"{cfg.epochs}", progress, log)
        t0 = time.perf_counter()
        for start in range(0, len(order), chunk):
            idx = order[start:start + chunk]
            runner.learn(train_set.x[idx], eye[train_set.y[idx]])
            seen += len(idx)
            bar.update(len(idx))
            _stop_if_diverged(cfg, runner, epoch, bar, start_peak)
        bar.close()
        seconds += time.perf_counter() - t0
        net = runner.sync()
        entry = {"epoch": epoch, "test_accuracy": accuracy(runner, x_test, y_test),
                 "seconds": seconds, "step": _step_size(runner, target),
                 "feedback_angles": feedback_angles(net)}
        probe = train_set.x[:500], train_set.y[:500]
        if target.mode == "rate":
            angles = recurrent_update_angles if runner.net.recurrent else update_angles
            entry["update_angles"] = angles(runner, *probe)
        elif runner.net.recurrent:
            from .recurrent_spiking import spiking_sequence_angles
            entry["update_angles"] = spiking_sequence_angles(runner, *probe, seed=cfg.seed)
        else:
            entry["update_angles"] = spiking_update_angles(runner, *probe, seed=cfg.seed)
            settling = spiking_settling(runner, probe[0][:100], probe[1][:100], seed=cfg.seed)
            if settling:  # a rule with relax phases: does the spiking relaxation settle?
                entry["settling"] = settling
        history.append(entry)
        if progress:
            angles = " ".join(f"{k}={v:.1f}" for k, v in entry["feedback_angles"].items())
            print(f"  epoch {epoch}: test {entry['test_accuracy']:.2f}%  {angles}", file=log)
        if cfg.out and getattr(runner, "is_main", True):  # one writer when distributed
            save_checkpoint(cfg.out, net, meta=_meta(cfg, target, entry, extra))
        _decay(runner, target, decay)
    if events0 is not None:
        events = float(runner.events) - float(events0)
        extra.update(synaptic_events=events, synaptic_events_per_second=events / max(seconds,
                                                                                     1e-9))
    if hasattr(runner, "codegen"):
        extra["codegen"] = runner.codegen
    extra["batch_size"] = batch
    last = history[-1]
    if "settling" in last:
        extra["settling"] = last["settling"]
    return TrainResult(
        rule=runner.net.rule.name, target=target.name, mode=target.mode, dataset=cfg.dataset,
        test_accuracy=last["test_accuracy"], epochs=cfg.epochs, seconds=seconds,
        samples_per_second=seen / max(seconds, 1e-9), samples=len(train_set.x),
        test_samples=len(x_test), history=history, feedback_angles=last["feedback_angles"],
        update_angles=last.get("update_angles", {}), data_source=train_set.source,
        checkpoint=str(Path(cfg.out)) if cfg.out else None, extra=extra)


def _meta(cfg: TrainConfig, target: Any, entry: dict, extra: dict) -> dict:
    meta = {"epoch": entry["epoch"], "test_accuracy": entry["test_accuracy"],
            "dataset": cfg.dataset, "target": target.name, "mode": target.mode}
    if "spiking" in extra:
        meta["spiking"] = extra["spiking"]
    if extra.get("per_sample_steps"):
        meta["per_sample_steps"] = extra["per_sample_steps"]
    return meta


def _stop_if_diverged(cfg: TrainConfig, runner: Any, epoch: int, bar, start_peak: float
                      ) -> None:
    value = _diverged(runner.sync(), start_peak)
    if value is None:
        return
    bar.close()
    step = f"--lr {runner.opt.lr:g}" if hasattr(runner, "opt") else \
        f"the rule's lr {runner.g.get('lr', float('nan')):g}" if hasattr(runner, "g") else \
        "the rule's lr"
    raise DivergenceError(
        f"training diverged in epoch {epoch} of rule {runner.net.rule.name!r} on "
        f"{runner.target}: a weight reached {value:.3g} (it started at most {start_peak:.3g}; "
        f"NaN/inf or {RUNAWAY:g} times that is a runaway); the step size is too large for "
        f"this rule: lower {step} (--set lr=... for the rule's own step)"
        + (f"; the last good checkpoint is {cfg.out}" if cfg.out and Path(cfg.out).exists()
           else ""))


class _progress:
    """A tqdm bar on a terminal-ish stream, nothing otherwise."""

    def __init__(self, total: int, desc: str, enabled: bool, stream):
        self.bar = None
        if enabled:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, unit="img", file=stream, leave=False,
                            mininterval=0.5)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
