"""Benchmark of the IdP end to end over HTTP: one scenario per run, or the whole matrix.

Scenarios (bench/scenarios.py says what one measured request is in each):
  cc             POST /token, client_credentials, client_secret_basic (the default)
  refresh        POST /token, refresh_token, each connection following its own rotating chain
  flow           one whole authorization code + PKCE sign-in (authorize, login, consent, token)
  jwks           GET /jwks.json
  introspection  POST /introspect by a resource server, over a pool of access tokens

What cc measures: how many access tokens (RS256 JWTs) one `idp serve` instance issues per
second, and the latency of each POST /token (from writing the request to reading the whole
response body), with a confidential client authenticating by client_secret_basic. Every request
goes the full way: HTTP parsing, client lookup, secret check, token signing and the audit trail.

How: the script creates a temporary directory (database, key-encryption key, server log), picks a
free port on 127.0.0.1, applies the migrations, registers the scenario's clients (and user) with
`idp clients create` / `idp users create`, starts `idp serve` as a subprocess and waits for its
discovery document. It then opens --connections HTTP/1.1 keep-alive connections (raw asyncio
streams, bench/loadgen.py; a Python HTTP library would be the bottleneck), checks one answer,
runs a warm-up that is not measured, and measures for --seconds or until --requests responses,
whichever comes first. The server's CPU time (utime + stime of it and its workers, from /proc)
is read before and after the measured phase, so figures compare per server CPU-second too.
Afterwards it stops the server (SIGTERM, then SIGKILL on timeout) and removes the directory.

The load generator runs in this process and the server in its own: on a 2-core machine, one core
for a single server worker and one for the load generator. With --workers 2 both compete for the
same two cores, so the figures say more about the machine than about the server.

--matrix runs every scenario (or those of --scenario a,b) x SQLite and PostgreSQL (when
--postgres-url answers; a fresh database per run, created and dropped) x --matrix-workers (1,2)
one after the other, and prints one markdown table at the end (bench/run_all.sh does that).

Run:
    make bench
    .venv/bin/python bench/token_bench.py --seconds 10
    .venv/bin/python bench/token_bench.py --seconds 10 --workers 2 --json
    .venv/bin/python bench/token_bench.py --scenario flow --seconds 10
    .venv/bin/python bench/token_bench.py \\
        --database-url postgresql://root@127.0.0.1:5432/test
    .venv/bin/python bench/token_bench.py --url http://127.0.0.1:8000 \\
        --client-id ID --client-secret SECRET              # a server that is already running
    bench/run_all.sh --seconds 10                         # the matrix

Exit status: 0 when every measured request succeeded, 1 when any did not (or the first answer
was not what the scenario expects), 2 when the server could not be set up or started, 130 when
interrupted. With --matrix: 0 when every run exited 0, 130 when interrupted, else 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from loadgen import (
    HOST,
    BadResponse,
    Connection,
    SetupError,
    client_loop_name,
    latency_ms,
    run_async,
    run_phase,
)
from scenarios import SCENARIOS, Scenario
from server import Target, running_server, server_cpu_seconds, server_rss_mib, spawned_server

DEFAULT_POSTGRES_URL = "postgresql://root@127.0.0.1:5432/test"
EXTERNAL_SCENARIOS = ("cc", "jwks")  # what --url can run: nothing to register


async def run_load(args: argparse.Namespace, scenario: Scenario, target: Target) -> dict[str, Any]:
    conns = [Connection(target.port) for _ in range(args.connections)]
    # At rest: the server has answered its readiness probe and nothing else yet.
    rss_rest = server_rss_mib(target.pid)
    try:
        await asyncio.gather(*(conn.open() for conn in conns))
        visitors, details, checked = await scenario.prepare(target, conns)
        warm, _ = await run_phase(conns, visitors, args.warmup, args.requests, record=False)
        if warm.errors:
            print(f"warm-up: {warm.errors} errors; first: {warm.first_error}", file=sys.stderr)
        server_start = server_cpu_seconds(target.pid)
        cpu_start = time.process_time()
        phase, duration = await run_phase(conns, visitors, args.seconds, args.requests, record=True)
        # Near 1.0 the load generator, not the server, sets the pace.
        client_cpu = (time.process_time() - cpu_start) / duration
        server_end = server_cpu_seconds(target.pid)
        rss_after = server_rss_mib(target.pid)
    finally:
        await asyncio.gather(*(conn.close() for conn in conns), return_exceptions=True)
    server_cpu = None
    if server_start is not None and server_end is not None:
        server_cpu = round(server_end - server_start, 2)
    rate = round(phase.ok / duration, 1)
    figures: dict[str, Any] = {
        "scenario": scenario.name,
        "requests": phase.ok + phase.errors,
        "errors": phase.errors,
        "duration_s": round(duration, 3),
        "requests_per_s": rate,
    }
    if scenario.unit != "requests":
        figures[f"{scenario.unit}_per_s"] = rate  # cc: tokens_per_s, as before
    figures.update(
        {
            "latency_ms": latency_ms(phase.latencies),
            "server_cpu_s": server_cpu,
            "requests_per_server_cpu_s": round(phase.ok / server_cpu, 1) if server_cpu else None,
            "warmup": {"requests": warm.ok + warm.errors, "errors": warm.errors},
            "client_cpu": round(client_cpu, 2),
            "server_rss_mib": {"rest": rss_rest, "after": rss_after},
            "first_error": phase.first_error,
            scenario.probe_label: details,
            "checked": checked,
        }
    )
    return figures


def server_setting(text: str) -> tuple[str, str]:
    """IDP_NAME=VALUE: the caller's IDP_* variables never reach the server, so a setting to
    compare goes through this flag."""
    name, sep, value = text.partition("=")
    if not sep or not name.startswith("IDP_"):
        raise argparse.ArgumentTypeError(f"{text!r} is not IDP_NAME=VALUE")
    return name, value


def server_for(
    args: argparse.Namespace, scenario: Scenario
) -> contextlib.AbstractContextManager[Target]:
    if args.url:
        port = urlsplit(args.url).port
        assert port is not None  # checked by parse_args
        credentials = {"client_id": args.client_id, "client_secret": args.client_secret}
        workers = args.workers if args.workers_given else None
        return running_server(port, workers, args.database_url, credentials)
    return spawned_server(
        idp_command=args.idp,
        database_url=args.database_url,
        kek_file=args.kek_file,
        workers=args.workers,
        env_extra={**scenario.env, **dict(args.server_env)},
        provision=scenario.provision,
    )


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One run of args.scenario; raises SetupError, BadResponse or OSError."""
    scenario = SCENARIOS[args.scenario](args.scope)
    with server_for(args, scenario) as target:
        figures = run_async(lambda: run_load(args, scenario, target), args.loop)
    figures["connections"] = args.connections
    figures["server"] = {
        "url": f"http://{HOST}:{target.port}",
        "workers": target.workers,
        "database": target.database,
        "python": target.server_python,
    }
    figures["client"] = {
        "python": platform.python_version(),
        "loop": client_loop_name(args.loop),
        "cpus": os.cpu_count(),
    }
    return figures


def run_once(args: argparse.Namespace) -> tuple[int, dict[str, Any] | None, str | None]:
    """(exit status, figures, why there are none); KeyboardInterrupt goes through."""
    try:
        figures = measure(args)
    except BadResponse as exc:
        return 1, None, str(exc)
    except SetupError as exc:
        return 2, None, str(exc)
    except OSError as exc:
        return 2, None, f"cannot reach the server: {exc}"
    return (1 if figures["errors"] else 0), figures, None


# --------------------------------------------------------------------------------------------
# The matrix: scenarios x databases x workers, one table.
# --------------------------------------------------------------------------------------------


def libpq_url(url: str) -> str:
    """postgresql+psycopg://… as libpq spells it."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=parts.scheme.split("+", 1)[0]))


def postgres_problem(admin_url: str) -> str | None:
    """None when the PostgreSQL server answers, else why not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        with psycopg.connect(libpq_url(admin_url), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty database next to admin_url's, dropped afterwards; yields its URL."""
    import psycopg
    from psycopg import sql

    name = f"idp_bench_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(libpq_url(admin_url), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise SetupError(f"cannot create the database {name}: {exc}") from exc
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    finally:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        try:
            with psycopg.connect(libpq_url(admin_url), autocommit=True, connect_timeout=5) as conn:
                conn.execute(drop)
        except psycopg.Error as exc:
            print(f"token_bench: could not drop the database {name}: {exc}", file=sys.stderr)


def run_matrix(args: argparse.Namespace) -> int:
    databases = list(args.matrix_databases)
    notes = []
    if "postgresql" in databases:
        problem = postgres_problem(args.postgres_url)
        if problem:
            databases.remove("postgresql")
            notes.append(f"PostgreSQL skipped: {args.postgres_url} does not answer ({problem})")
            print(f"token_bench: {notes[-1]}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    status = 0
    try:
        for name in args.scenario:
            for database in databases:
                for workers in args.matrix_workers:
                    run = argparse.Namespace(**vars(args))
                    run.scenario, run.workers, run.workers_given = name, workers, True
                    label = f"{name}, {database}, {workers} worker(s)"
                    print(f"token_bench: {label} ...", file=sys.stderr, flush=True)
                    code, figures, why = run_on(run, database)
                    status = status or (1 if code else 0)
                    rows.append(
                        {
                            "scenario": name,
                            "database": database,
                            "workers": workers,
                            "exit": code,
                            "figures": figures,
                            "why": why,
                        }
                    )
                    print(f"token_bench: {label}: {summary(figures, why)}", file=sys.stderr)
    except KeyboardInterrupt:
        print("token_bench: interrupted; the table holds the runs done", file=sys.stderr)
        status = 130
    if args.json:
        print(json.dumps({"runs": rows, "notes": notes}))
    else:
        print(markdown_table(rows, args))
        for note in notes:
            print(f"\n{note}")
    return status


def run_on(run: argparse.Namespace, database: str) -> tuple[int, dict[str, Any] | None, str | None]:
    """run_once on a temporary SQLite file, or on a PostgreSQL database of its own."""
    if database == "sqlite":
        run.database_url = None
        return run_once(run)
    try:
        with fresh_database(run.postgres_url) as url:
            run.database_url = url
            return run_once(run)
    except SetupError as exc:
        return 2, None, str(exc)


def summary(figures: dict[str, Any] | None, why: str | None) -> str:
    if figures is None:
        return f"failed: {why}"
    per_cpu = figures["requests_per_server_cpu_s"]
    return (
        f"{figures['requests_per_s']:.1f}/s, {figures['errors']} errors, "
        f"{per_cpu if per_cpu is not None else 'n/a'} per server CPU-second"
    )


def markdown_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    head = (
        "| scenario | database | workers | requests | errors | per s | p50 ms | p90 ms "
        "| p99 ms | max ms | server CPU s | per server CPU-s |"
    )
    lines = [head, "|" + "---|" * 12]
    for row in rows:
        start = f"| {row['scenario']} | {row['database']} | {row['workers']} |"
        figures = row["figures"]
        if figures is None:
            why = " ".join(str(row["why"]).split())[:120].replace("|", "/")
            lines.append(f"{start} failed: {why} |" + " |" * 8)
            continue
        lat = figures["latency_ms"]
        cpu = figures["server_cpu_s"]
        per_cpu = figures["requests_per_server_cpu_s"]
        lines.append(
            f"{start} {figures['requests']} | {figures['errors']} | "
            f"{figures['requests_per_s']:,.1f} | {lat['p50']:.2f} | {lat['p90']:.2f} | "
            f"{lat['p99']:.2f} | {lat['max']:.2f} | "
            f"{'n/a' if cpu is None else f'{cpu:.2f}'} | "
            f"{'n/a' if per_cpu is None else f'{per_cpu:,.1f}'} |"
        )
    lines.append("")
    lines.append(
        f"{args.connections} connections, {args.seconds:g} s measured after a {args.warmup:g} s "
        "warm-up; per s: tokens (cc, refresh), flows (flow) or responses (jwks, introspection)."
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------------


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return number


def scenario_list(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {unknown[0] if unknown else value!r}; "
            f"choose from {', '.join(SCENARIOS)}"
        )
    return names


def workers_list(value: str) -> list[int]:
    return [positive_int(part) for part in value.split(",") if part.strip()]


def database_list(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names or not set(names) <= {"sqlite", "postgresql"}:
        raise argparse.ArgumentTypeError("sqlite, postgresql or both (comma-separated)")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the idp over HTTP: POST /token (client_credentials) by default.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    load = parser.add_argument_group("load")
    load.add_argument(
        "--scenario",
        type=scenario_list,
        default=None,
        help=f"{'|'.join(SCENARIOS)} [cc]; with --matrix a comma list [all]",
    )
    load.add_argument("--seconds", type=non_negative_float, default=10.0, help="measured time")
    load.add_argument(
        "--requests", type=positive_int, default=50_000, help="measured requests at most"
    )
    load.add_argument("--warmup", type=non_negative_float, default=2.0, help="unmeasured seconds")
    load.add_argument("--connections", type=positive_int, default=32, help="keep-alive connections")
    load.add_argument("--scope", default="api", help="scope of the cc client and of each request")
    load.add_argument(
        "--loop", choices=("auto", "uvloop", "asyncio"), default="auto", help="client event loop"
    )
    server = parser.add_argument_group("server started by the benchmark")
    server.add_argument("--workers", type=positive_int, default=None, help="uvicorn workers [1]")
    server.add_argument(
        "--database-url",
        help="IDP_DATABASE_URL instead of a temporary SQLite file (with --url: only reported)",
    )
    server.add_argument(
        "--kek-file",
        help="key-encryption key file to reuse (needed to run twice on one PostgreSQL database)",
    )
    server.add_argument("--idp", help="the idp command (default: the one next to this Python)")
    server.add_argument(
        "--server-env",
        action="append",
        default=[],
        type=server_setting,
        metavar="IDP_NAME=VALUE",
        help="a setting for the server, after the scenario's own (repeatable)",
    )
    external = parser.add_argument_group("server already running (cc and jwks only)")
    external.add_argument("--url", help=f"http://{HOST}:PORT of a running idp")
    external.add_argument("--client-id")
    external.add_argument("--client-secret")
    matrix = parser.add_argument_group("matrix")
    matrix.add_argument(
        "--matrix",
        action="store_true",
        help="every scenario x database x workers, one markdown table at the end",
    )
    matrix.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="a PostgreSQL database to connect to for creating (and dropping) one per run",
    )
    matrix.add_argument(
        "--matrix-databases", type=database_list, default=["sqlite", "postgresql"], help="databases"
    )
    matrix.add_argument(
        "--matrix-workers", type=workers_list, default=[1, 2], help="worker counts (comma list)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    args.workers_given = args.workers is not None
    if args.workers is None:
        args.workers = 1
    if args.matrix:
        check_matrix(parser, args)
        return args
    if args.scenario is None:
        args.scenario = "cc"
    elif len(args.scenario) == 1:
        args.scenario = args.scenario[0]
    else:
        parser.error("one --scenario per run; several go with --matrix")
    if args.url is None and (args.client_id or args.client_secret):
        parser.error("--client-id and --client-secret go with --url")
    if args.url is not None:
        check_url(parser, args)
    if args.url is not None and args.kek_file:
        parser.error("--kek-file is for a server the benchmark starts")
    return args


def check_matrix(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for flag in ("url", "client_id", "client_secret", "database_url", "kek_file"):
        if getattr(args, flag):
            parser.error(f"--{flag.replace('_', '-')} does not go with --matrix")
    if args.workers_given:
        parser.error("--matrix takes --matrix-workers, not --workers")
    if args.scenario is None:
        args.scenario = list(SCENARIOS)


def check_url(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    parts = urlsplit(args.url)
    try:
        port = parts.port
    except ValueError as exc:
        parser.error(f"--url: {exc}")
    if parts.scheme != "http" or parts.hostname != HOST or port is None:
        parser.error(f"--url must be http://{HOST}:PORT; this benchmark loads nothing else")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        parser.error("--url takes no path, query, fragment or user")
    if args.scenario not in EXTERNAL_SCENARIOS:
        parser.error(
            f"--url runs {' and '.join(EXTERNAL_SCENARIOS)}; {args.scenario} registers "
            "a user and clients, so it needs a server the benchmark starts"
        )
    if args.scenario == "cc" and not (args.client_id and args.client_secret):
        parser.error("--url needs --client-id and --client-secret")


def rss_line(rss: dict[str, float | None]) -> str:
    rest, after = rss["rest"], rss["after"]
    if rest is None or after is None:
        return "n/a (not a server this benchmark started)"
    return f"{rest:.1f} MiB at rest, {after:.1f} MiB after the run ({after / rest - 1:+.1%})"


def print_figures(figures: dict[str, Any]) -> None:
    latency = figures["latency_ms"]
    workers = figures["server"]["workers"]
    scenario = SCENARIOS[figures["scenario"]]
    cpu = figures["server_cpu_s"]
    if cpu is None:
        server_cpu = "n/a (not a server this benchmark started)"
    else:
        per_cpu = figures["requests_per_server_cpu_s"]
        server_cpu = (
            f"{cpu:.2f} s ({cpu / figures['duration_s']:.2f} cores), "
            f"{per_cpu if per_cpu is not None else 0:.1f} {scenario.unit} per server CPU-second"
        )
    rows = [
        ("scenario", figures["scenario"]),
        ("requests", f"{figures['requests']}"),
        ("errors", f"{figures['errors']}"),
        ("duration", f"{figures['duration_s']:.2f} s"),
        (f"{scenario.unit}/s", f"{figures['requests_per_s']:.1f}"),
        (
            "latency ms",
            f"p50 {latency['p50']:.2f}  p90 {latency['p90']:.2f}  "
            f"p99 {latency['p99']:.2f}  max {latency['max']:.2f}",
        ),
        ("server CPU", server_cpu),
        ("server RSS", rss_line(figures["server_rss_mib"])),
        ("connections", f"{figures['connections']}"),
        ("warm-up", f"{figures['warmup']['requests']} requests, not measured"),
        (
            "server",
            f"{workers if workers is not None else '?'} worker(s), "
            f"{figures['server']['database']}, Python {figures['server']['python']}",
        ),
        (scenario.probe_label, figures["checked"]),
        (
            "client",
            f"Python {figures['client']['python']}, {figures['client']['loop']} loop, "
            f"{figures['client']['cpus']} CPUs, {figures['client_cpu']:.0%} of a core busy",
        ),
    ]
    for name, value in rows:
        print(f"{name:<12} {value}")
    if figures["first_error"]:
        print(f"first error  {figures['first_error']}")


def interrupt(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the finally blocks stop the server and remove the files."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    if args.matrix:
        return run_matrix(args)
    try:
        code, figures, why = run_once(args)
    except KeyboardInterrupt:
        print("token_bench: interrupted", file=sys.stderr)
        return 130
    if figures is None:
        print(f"token_bench: {why}", file=sys.stderr)
        return code
    if args.json:
        print(json.dumps(figures))
    else:
        print_figures(figures)
    return code


if __name__ == "__main__":
    sys.exit(main())
