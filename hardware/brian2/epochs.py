"""Brian2 code for the epoch structure beyond one learning epoch per sample.

Learning epochs within a sample, private noise, slow(X) and noise epochs (:mod:`..noise`)
need state that outlives one tick of the epoch clock and a per-epoch schedule. The runner's
``_next_epoch`` operation writes the schedule into shared group variables for the *coming*
epoch; the generated code only multiplies by them (Brian2's abstract code has no branches):

* ``learning``: 1 while learning (noise is drawn, traces restart per learning epoch);
* ``endsample``: 1 when this epoch ends a sample (u, v, the bias window and slow(X) restart);
* ``sub``: the learning epoch within the sample (0 picks the first epoch's shorter windows);
* ``nzep`` and ``ph_<phase>``: 1 in a noise epoch (of that phase): hidden neurons take their
  noise ``nv_<phase>`` as input instead of the sample, every layer sums what arrives from
  below into ``ndsum``.

A program with none of these features prints exactly the code it printed before.
"""

from __future__ import annotations

from ..noise import NOISE_DRIVE, SLOW_PREFIX
from ..semantics import SpikingProgram

#: names this module gives model variables (rule compartments with these names are renamed)
OWN_NAMES = {"sub", "learning", "endsample", "nzep", "sN", "ndsum", "keep", "gate", "fresh"}


def scheduled(program: SpikingProgram) -> bool:
    """Does the program need the per-epoch schedule (anything beyond one epoch per sample)?"""
    return program.epochs > 1 or bool(program.noise_sources or program.slow
                                      or program.noise_phases or program.timed)


def _comp(name: str) -> str:
    from .lower import comp_name

    return comp_name(name)


def window_constants(program: SpikingProgram, layer: int) -> dict[str, float]:
    """Per-group constants: the first learning epoch's windows (``_0``) and the others' (``_1``)
    where a sample has several learning epochs, else the one epoch's."""
    if program.epochs == 1:
        c = program.constants(layer, 0)
        return {k: c[k] for k in ("T", "k1", "k2", "k3", "lay")}
    first, rest = program.constants(layer, 0), program.constants(layer, 1)
    out = {"lay": first["lay"]}
    for k in ("T", "k1", "k2", "k3"):
        out[f"{k}_0"], out[f"{k}_1"] = first[k], rest[k]
    return out


def namespace(program: SpikingProgram) -> dict[str, float]:
    ns: dict[str, float] = {}
    if program.slow:
        ns["sdec"] = float(program.slow_decay)
    for nz in program.noise_sources:
        ns[f"sigma_{nz.name}"] = float(nz.sigma)
    for ph in program.noise_phases:
        ns[f"sigma_{ph.name}"] = float(ph.sigma)
    return ns


def group_model(program: SpikingProgram, layer: int, depth: int) -> list[str]:
    """Model variables a group needs for the schedule, noise and slow traces."""
    if not scheduled(program):
        return []
    out = ["learning : 1 (shared)", "endsample : 1 (shared)"]
    if program.epochs > 1:
        out += ["sub : 1 (shared)"] + [f"{k} : 1 (shared)" for k in ("T", "k1", "k2", "k3")]
    out += [f"{nz.raw} : 1" for nz in program.noise_sources]
    if program.slow:
        out.append("sN : 1 (shared)")
        out += [f"sS_{n} : 1" for n in program.slow]
        out += [f"{_comp(SLOW_PREFIX + n)} : 1" for n in program.slow]
    if program.noise_phases:
        out += ["nzep : 1 (shared)", "ndsum : 1", f"{_comp(NOISE_DRIVE)} : 1"]
        out += [f"ph_{ph.name} : 1 (shared)" for ph in program.noise_phases]
        out += [f"nv_{ph.name} : 1" for ph in program.noise_phases]
        out += [f"fbsrc_{fb.name} : 1" for fb in program.feedback]
    return out


def current_code(program: SpikingProgram, layer: int, depth: int) -> str:
    """The per-step current update (the sample's input, or noise in a noise epoch)."""
    drive = "I + b*int(age >= lay)"
    hidden = 0 < layer < depth
    if program.noise_phases and hidden:
        noise = " + ".join(f"ph_{ph.name}*nv_{ph.name}" for ph in program.noise_phases)
        drive = f"({drive})*(1 - nzep) + {noise}"
    extra = "".join(f" + {nz.raw}" for nz in program.noise_sources if nz.into == "a") \
        if hidden else ""
    lines = [f"u = (1 - du)*u + {drive}{extra}"]
    if program.noise_phases and layer >= 2:
        lines.insert(0, "ndsum += I*nzep")
    return "\n".join(lines)


def voltage_extra(program: SpikingProgram, layer: int, depth: int) -> str:
    """Private noise into the voltage (``-> r``) of hidden neurons."""
    if not 0 < layer < depth:
        return ""
    return "".join(f" + {nz.raw}" for nz in program.noise_sources if nz.into == "r")


def measure_prefix(program: SpikingProgram) -> list[str]:
    """This epoch's windows (several learning epochs per sample) and the slow normaliser."""
    out = []
    if program.epochs > 1:
        out += [f"{k} = {k}_0 + ({k}_1 - {k}_0)*int(sub > 0)" for k in ("T", "k1", "k2", "k3")]
    if program.slow:
        out.append("sN = sdec*sN + 1")
    return out


def measure_suffix(program: SpikingProgram, layer: int) -> list[str]:
    """After measuring: the noise epoch's drive and the slow part of measured compartments."""
    out = []
    if program.noise_phases:
        out.append(f"{_comp(NOISE_DRIVE)} = ndsum/(T_epoch - 1)")
    out += _slow_lines(program.slow_measured)
    if layer == 0:
        out += [f"{_comp(SLOW_PREFIX + n)} = 0" for n in program.slow_computed]
    return out


def _slow_lines(names) -> list[str]:
    return [f"sS_{n} = sdec*sS_{n} + {_comp(n)}\n{_comp(SLOW_PREFIX + n)} = sS_{n}/sN"
            for n in names]


def after_equations(program: SpikingProgram, layer: int) -> list[str]:
    """After a layer's equations: slow parts of computed compartments, the feedback source."""
    out = _slow_lines(program.slow_computed) if layer > 0 else []
    if program.noise_phases and layer > 0:
        out += [f"fbsrc_{fb.name} = {_comp(fb.source)}*(1 - nzep) + {_comp(NOISE_DRIVE)}*nzep"
                for fb in program.feedback]
    return out


def feedback_source(program: SpikingProgram, fb) -> str:
    """What a feedback synapse reads of its pre neuron (the compartment, or in a program
    with noise epochs the switch between it and the drive)."""
    return f"fbsrc_{fb.name}_pre" if program.noise_phases else f"{_comp(fb.source)}_pre"


def reset_code(program: SpikingProgram, layer: int, depth: int, traces: list[str]) -> list[str]:
    """End of an epoch: what restarts per learning epoch, per sample, and the next draws."""
    sub = program.config.reset == "subtract"
    out = []  # Brian2: writes to shared (scalar) variables come first
    if layer:
        out.append("age = age*(1 - endsample)")
    if program.slow:
        out.append("sN = sN*(1 - endsample)")
    if layer:
        out += ["u = u*(1 - endsample)", "v = v*(1 - endsample)", "I = I*(1 - endsample)"]
        if sub:
            out.append("last = last*(1 - endsample)")
    # learning: the epoch's traces restart; inference: they run through the sample
    keep = "(1 - learning)*(1 - endsample)" if program.epochs > 1 and not program.timed \
        else "0"  # a timed program reads its output in the last learning epoch
    out += [f"{t} = {t}*{keep}" for t in (*traces, "spk", "asum")]
    out += [f"sS_{n} = sS_{n}*(1 - endsample)" for n in program.slow]
    if program.noise_phases:
        out.append("ndsum = 0")
    if 0 < layer < depth:
        out += [f"{nz.raw} = sigma_{nz.name}*randn()*learning" for nz in program.noise_sources]
        out += [f"nv_{ph.name} = sigma_{ph.name}*randn()" for ph in program.noise_phases]
    return out


def sample_gate(program: SpikingProgram, where: str) -> str:
    """A factor that is 0 in noise epochs (``where``: "" in group code, "_post" in synapses)."""
    return f"(1 - nzep{where})" if program.noise_phases else ""


def noise_updates(program: SpikingProgram, projection: str):
    """(phase, updates) of every noise phase that updates ``projection``."""
    return [(ph, tuple(u for u in ph.updates if u.projection == projection))
            for ph in program.noise_phases
            if any(u.projection == projection for u in ph.updates)]


def learns(program: SpikingProgram, projection: str) -> bool:
    """Does any epoch (sample or noise) update ``projection``?"""
    return projection in program.learned_projections or projection in program.noise_projections
