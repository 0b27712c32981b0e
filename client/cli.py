"""The `tunewire` command line: the client commands (study, trial), and the commands other
parts register as entry points (serve, train, demo), loaded only when run.

Client commands read --server/--token/--tls-ca or TUNEWIRE_SERVER/TUNEWIRE_TOKEN/
TUNEWIRE_TLS_CA; `serve` reads its flags or TUNEWIRE_<FLAG> (see README). They are for a
person at a terminal, so an unreachable server is retried only briefly (--server-wait)
before they say what to check; workers (`tunewire train`) wait far longer.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import os
import sys
import time
from importlib.metadata import entry_points
from typing import Any

from tunewire.client.client import TrialRecord, TunewireClientError, TuningClient
from tunewire.client.records import STATE_VALUES
from tunewire.client.spec import SpecError, load_spec_file
from tunewire.client.troubleshooting import explain_failure
from tunewire.v1 import study_pb2 as pb

# How long an interactive command retries an unreachable server: long enough for a server
# started a moment ago, short enough that a wrong address or TLS setting shows at once.
DEFAULT_SERVER_WAIT_S = 5.0


def _client(args: argparse.Namespace) -> TuningClient:
    return TuningClient(
        args.server,
        token=args.token or None,
        tls=args.tls,
        tls_ca=args.tls_ca or None,
        timeout=args.timeout,
        retry_timeout=args.server_wait,
    )


def _add_client_flags(p: argparse.ArgumentParser) -> None:
    env = os.environ
    p.add_argument(
        "--server",
        default=env.get("TUNEWIRE_SERVER", "localhost:50051"),
        help="server address host:port (env TUNEWIRE_SERVER)",
    )
    p.add_argument(
        "--token", default=env.get("TUNEWIRE_TOKEN", ""), help="bearer token (env TUNEWIRE_TOKEN)"
    )
    add_tls_flags(p)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per call")
    p.add_argument(
        "--server-wait",
        type=float,
        default=DEFAULT_SERVER_WAIT_S,
        metavar="SECONDS",
        help="retry an unreachable server this long (default %(default)g)",
    )


def add_tls_flags(p: argparse.ArgumentParser) -> None:
    """`--tls` and `--tls-ca` (or TUNEWIRE_TLS, TUNEWIRE_TLS_CA), as every command that
    talks to a server takes them; `uses_tls` reads them back."""
    env = os.environ
    p.add_argument(
        "--tls",
        action="store_true",
        default=bool(env.get("TUNEWIRE_TLS")),
        help="connect with TLS (env TUNEWIRE_TLS)",
    )
    p.add_argument(
        "--tls-ca",
        default=env.get("TUNEWIRE_TLS_CA", ""),
        help="CA certificate PEM for TLS (env TUNEWIRE_TLS_CA)",
    )


def uses_tls(args: argparse.Namespace) -> bool:
    """Whether the flags of `add_tls_flags` ask for TLS (a CA file implies it)."""
    return bool(args.tls or args.tls_ca)


def _format_params(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def _study_summary(study: pb.Study) -> str:
    c = study.trial_counts
    state = pb.StudyState.Name(study.state).removeprefix("STUDY_STATE_").lower()
    metrics = ", ".join(
        f"{m.name} ({pb.Goal.Name(m.goal).removeprefix('GOAL_').lower()})"
        for m in study.spec.metrics
    )
    rule = study.spec.early_stopping.WhichOneof("rule") or "none"
    return (
        f"study {study.name}: {state}, algorithm {study.spec.algorithm}, metrics {metrics}, "
        f"early stopping {rule}\n"
        f"  trials: {c.completed} completed, {c.stopped_early} stopped early, {c.active} active, "
        f"{c.requested} requested, {c.infeasible} infeasible, {c.failed} failed, {c.lost} lost"
        + (f" (budget {study.spec.max_trials})" if study.spec.max_trials else "")
    )


def _metric_order(metrics: dict[str, float], objectives: list[str]) -> list[str]:
    """The study's objectives first (in the spec's order), then the other metrics sorted."""
    return [m for m in objectives if m in metrics] + sorted(set(metrics) - set(objectives))


def _trial_line(t: TrialRecord, objectives: list[str]) -> str:
    final = t.final_metrics or {}
    metrics = ", ".join(f"{k}={final[k]:.5g}" for k in _metric_order(final, objectives))
    extra = ""
    if t.stopped_at_step is not None:
        extra = f" [stopped at step {t.stopped_at_step} by {t.stop_rule}]"
    if t.reason:
        extra += f" [{t.reason}]"
    return f"  #{t.id:<4} {t.state:<13} {metrics:<40} {_format_params(t.params)}{extra}"


def cmd_study(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.action == "create":
        spec = load_spec_file(args.file)
        name = args.name or spec.get("name")
        if not name:
            raise SpecError("give the study name as an argument or as 'name' in the file")
        study = client.create_study(str(name), spec)
        print(_study_summary(study))
    elif args.action == "list":
        studies = client.list_studies()
        if not studies:
            print(f"no studies on {args.server} (create one with `tunewire study create FILE`)")
        for study in studies:
            print(_study_summary(study))
    elif args.action == "show":
        study = client.get_study(args.name)
        print(_study_summary(study))
        objectives = [m.name for m in study.spec.metrics]
        for t in client.list_trials(args.name, measurements=False):
            print(_trial_line(t, objectives))
    elif args.action == "best":
        best = client.best_trials(args.name, args.count)
        if not best:
            print(f"study {args.name}: no finished trial yet")
        objectives = [m.name for m in client.study_spec(args.name).metrics]
        for t in best:
            print(_trial_line(t, objectives))
    elif args.action == "export":
        trials = client.list_trials(args.name, measurements=args.format == "json")
        text = _export(trials, args.format)
        if args.output:
            with open(args.output, "w") as f:
                f.write(text)
        else:
            sys.stdout.write(text)
    elif args.action == "delete":
        client.delete_study(args.name)
        print(f"deleted study {args.name}")
    elif args.action == "stop":
        print(_study_summary(client.stop_study(args.name)))
    elif args.action == "resume":
        print(_study_summary(client.resume_study(args.name)))
    elif args.action == "report":
        write_report = _report_writer()
        path = write_report(client, args.name, args.output or f"{args.name}.html")
        print(f"wrote {path}: the study's plots, trials and workers in one file, offline")
    return 0


def _report_writer() -> Any:
    """`study report` is made by the dashboard package, registered as the entry point `html`
    of group `tunewire.reports` (loaded only when run)."""
    found = [ep for ep in entry_points(group="tunewire.reports") if ep.name == "html"]
    if not found:
        raise SpecError("study report needs tunewire's dashboard package (tunewire.dashboard)")
    return found[0].load()


def _export(trials: list[TrialRecord], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([t.__dict__ for t in trials], indent=2, default=str) + "\n"
    params = sorted({k for t in trials for k in t.params})
    metrics = sorted({k for t in trials for k in (t.final_metrics or {})})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["trial_id", "state", "worker_id", "reason", "stopped_at_step"] + params + metrics
    )
    for t in trials:
        writer.writerow(
            [
                t.id,
                t.state,
                t.worker_id,
                t.reason,
                "" if t.stopped_at_step is None else t.stopped_at_step,
            ]
            + [t.params.get(p, "") for p in params]
            + [(t.final_metrics or {}).get(m, "") for m in metrics]
        )
    return out.getvalue()


def cmd_trial(args: argparse.Namespace) -> int:
    client = _client(args)
    trials = client.list_trials(args.name, args.state or (), measurements=False)
    objectives = [m.name for m in client.study_spec(args.name).metrics]
    for t in trials:
        print(_trial_line(t, objectives))
    return 0


# Commands that other parts of tunewire register under the `tunewire.commands` entry
# points (the server, the trainer), with the help shown here without importing them.
PLUGIN_HELP = {
    "serve": "run the suggestion server (see `tunewire serve --help`)",
    "train": "run trainer workers (see `tunewire train --help`)",
    "demo": "the main job: a local server and two trainers tune an MLP on digits",
    "dashboard": "a read-only web UI of a server: studies, plots, trials, workers, live",
}


def plugin_commands() -> dict[str, Any]:
    """The registered commands by name (entry points of group `tunewire.commands`)."""
    return {ep.name: ep for ep in entry_points(group="tunewire.commands")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunewire", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in sorted(plugin_commands()):
        sub.add_parser(name, help=PLUGIN_HELP.get(name, f"the {name} command"), add_help=False)

    study = sub.add_parser("study", help="create, list, show, export studies")
    actions = study.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a study from a YAML/JSON spec file")
    create.add_argument("file")
    create.add_argument("name", nargs="?", default="")
    _add_client_flags(create)
    actions_with_name = {
        "show": "the study and its trials",
        "best": "the best trials",
        "export": "all trials as CSV or JSON",
        "delete": "delete the study and its trials",
        "stop": "stop suggesting new trials",
        "resume": "resume a stopped study",
        "report": "one self-contained HTML file of the study's plots, trials and workers",
    }
    listing = actions.add_parser("list", help="list studies")
    _add_client_flags(listing)
    for action, help_text in actions_with_name.items():
        p = actions.add_parser(action, help=help_text)
        p.add_argument("name")
        if action == "best":
            p.add_argument("--count", type=int, default=1)
        if action == "export":
            p.add_argument("--format", choices=("csv", "json"), default="csv")
            p.add_argument("--output", "-o", default="")
        if action == "report":
            p.add_argument("--output", "-o", default="", help="the file (default NAME.html)")
        _add_client_flags(p)
    study.set_defaults(func=cmd_study)

    trial = sub.add_parser("trial", help="list trials")
    trial_actions = trial.add_subparsers(dest="action", required=True)
    tl = trial_actions.add_parser("list", help="list a study's trials")
    tl.add_argument("name")
    tl.add_argument(
        "--state",
        action="append",
        choices=list(STATE_VALUES),
        metavar="STATE",
        help=f"only this state (repeatable): {', '.join(STATE_VALUES)}",
    )
    _add_client_flags(tl)
    trial.set_defaults(func=cmd_trial)

    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    plugins = plugin_commands()
    if argv and argv[0] in plugins:
        command_main = plugins[argv[0]].load()
        return int(command_main(argv[1:]))
    args = build_parser().parse_args(argv)
    # The client logs each retry at WARNING; the error below says what to check instead.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # here, so that a closed pipe is caught below and not at exit
        return code
    except BrokenPipeError:
        # The reader went away (`tunewire study show X | head`): stop quietly with the
        # status of a process ended by SIGPIPE, and keep Python from failing again when it
        # flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except TunewireClientError as exc:
        waited = time.monotonic() - started
        hint = explain_failure(exc, target=args.server, tls=uses_tls(args), waited=waited)
        print(f"error: {hint}", file=sys.stderr)
        return 1
    except (SpecError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
