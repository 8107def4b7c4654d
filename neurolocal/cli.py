"""The ``neurolocal`` command line: rules, check, compile, train, demo (and convert/run).

Exit status: 0 success (for ``check``: the rule is local), 1 ``check`` found the rule
non-local, 2 unusable input (a clear message on stderr says which input and the fix).
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import NeurolocalError

EXIT_OK, EXIT_NONLOCAL, EXIT_BAD_INPUT = 0, 1, 2


def _rule_arg(value: str):
    from .rules import get_rule
    return get_rule(value)


def cmd_rules(args) -> int:
    from .locality import check_locality
    from .rules import builtin_names, get_rule
    rows = []
    for name in builtin_names():
        rule = get_rule(name)
        rep = check_locality(rule)
        kinds = ",".join(sorted({v.kind for v in rep.violations})) or "-"
        rows.append((name, "local" if rep.local else "NOT local", kinds, rule.description))
    if args.json:
        print(json.dumps([dict(zip(("rule", "verdict", "violations", "description"), r))
                          for r in rows], indent=2))
        return EXIT_OK
    print(f"{'rule':<10} {'verdict':<10} {'violations':<18} description")
    for r in rows:
        print(f"{r[0]:<10} {r[1]:<10} {r[2]:<18} {r[3]}")
    return EXIT_OK


def cmd_check(args) -> int:
    from .locality import check_locality
    rep = check_locality(_rule_arg(args.rule))
    print(rep.to_json() if args.json else rep.to_text())
    return EXIT_OK if rep.local else EXIT_NONLOCAL


def cmd_compile(args) -> int:
    from .errors import LocalityError
    from .locality import check_locality
    rule = _rule_arg(args.rule)
    rep = check_locality(rule)
    if not rep.local and not args.allow_nonlocal:
        print(rep.to_text(), file=sys.stderr)
        raise LocalityError(f"rule {rule.name!r} is not local: refusing to compile it for "
                            f"{args.target}; pass --allow-nonlocal to compile it anyway")
    from .hardware import targets
    print(targets.compile_text(rule, args.target, **_target_options(args)))
    return EXIT_OK


def _target_options(args) -> dict:
    return {"hidden": args.hidden} if getattr(args, "hidden", None) else {}


def _parse_set(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise NeurolocalError(f"--set {item!r}: expected NAME=NUMBER, e.g. --set lr=0.01")\
                from None
    return out


def cmd_train(args) -> int:
    if args.spiking:
        from .hardware import targets
        result = targets.train_spiking(args)
    else:
        from .train import TrainConfig, train
        cfg = TrainConfig(
            rule=_rule_arg(args.rule), dataset=args.dataset, hidden=args.hidden,
            epochs=args.epochs, batch_size=args.batch_size, optimiser=args.optimiser,
            lr=args.lr,
            lr_decay=args.lr_decay, activation=args.activation, backend=args.backend,
            device=args.device, seed=args.seed, limit=args.samples, out=args.out,
            allow_nonlocal=args.allow_nonlocal, globals=_parse_set(args.set))
        result = train(cfg, progress=not args.json).to_dict()
    if args.json:
        print(json.dumps(result))
    else:
        print(f"rule {result['rule']}: test accuracy {result['test_accuracy']:.2f}% after "
              f"{result['epochs']} epoch(s), {result['seconds']:.1f} s")
        for key in ("feedback_angles", "update_angles"):
            if result.get(key):
                print(f"  {key.replace('_', ' ')} (degrees): " + ", ".join(
                    f"{k} {v:.1f}" for k, v in result[key].items()))
        if result.get("checkpoint"):
            print(f"  checkpoint: {result['checkpoint']}")
    return EXIT_OK


def cmd_demo(args) -> int:
    from .demo import run_demo
    return run_demo(quick=args.quick)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neurolocal", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("rules", help="list the built-in rules and their locality verdicts")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_rules)

    s = sub.add_parser("check", help="check a rule's locality (exit 0 local, 1 not, 2 bad input)")
    s.add_argument("rule", help="a built-in rule name or a .rule file")
    s.add_argument("--json", action="store_true", help="one JSON object")
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("compile", help="print the program a rule compiles to for a target")
    s.add_argument("--rule", required=True)
    s.add_argument("--target", required=True,
                   choices=["numpy", "torch", "snntorch", "brian2", "lava"])
    s.add_argument("--allow-nonlocal", action="store_true")
    s.set_defaults(func=cmd_compile)

    s = sub.add_parser("train", help="train an MLP with a rule (rate mode, or --spiking)")
    s.add_argument("--rule", required=True)
    s.add_argument("--dataset", default="mnist", help="mnist or fashion-mnist")
    s.add_argument("--hidden", type=int, nargs="+", default=[500], help="hidden layer sizes")
    s.add_argument("--epochs", type=int, default=1)
    s.add_argument("--batch-size", type=int, default=50)
    s.add_argument("--optimiser", default="adam", choices=["adam", "momentum", "sgd"])
    s.add_argument("--lr", type=float, default=None,
                   help="optimiser step: adam's step size (default 3e-3); for sgd/momentum a "
                        "multiplier of the rule's own update (default 1)")
    s.add_argument("--lr-decay", type=float, default=0.8, help="per-epoch step-size factor")
    s.add_argument("--activation", default="relu", choices=["relu", "tanh", "sigmoid"])
    s.add_argument("--backend", default="torch", choices=["torch", "numpy"])
    s.add_argument("--device", default="cpu", help="cpu or cuda (torch backends)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--samples", type=int, default=None, help="limit the training images")
    s.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="override a global the rule declares (repeatable)")
    s.add_argument("--out", help="checkpoint file (HDF5), written atomically every epoch")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--allow-nonlocal", action="store_true")
    s.add_argument("--spiking", action="store_true", help="train online on a spiking target")
    s.add_argument("--target", default="snntorch", choices=["snntorch", "brian2", "lava"])
    s.add_argument("--timesteps", type=int, default=None)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("demo", help="train, check, compare against backprop, print a table")
    s.add_argument("--quick", action="store_true", help="a smaller run (CI smoke test)")
    s.set_defaults(func=cmd_demo)

    try:
        from .converters import cli as conv_cli
    except ImportError:
        conv_cli = None
    if conv_cli is not None:
        for name in ("add_convert_parser", "add_run_parser"):
            if hasattr(conv_cli, name):
                getattr(conv_cli, name)(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except NeurolocalError as exc:
        print(f"neurolocal {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
