"""`sentinelops up | db start|stop|url|migrate | api | seed-demo | demo | rules backtest`."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys

from sentinelops import db, embedded, postgres
from sentinelops.settings import InvalidSettings, get_settings

log = logging.getLogger("sentinelops")


def _shown(url: str, args: argparse.Namespace) -> str:
    return url if args.show_password else postgres.redact_password(url)


def cmd_db(args: argparse.Namespace) -> int:
    settings = get_settings()
    home = settings.sentinelops_home
    if args.action == "start":
        if settings.database_url:
            print("DATABASE_URL is set; the embedded server is not used", file=sys.stderr)
            return 1
        server, _ = embedded.start(home, owner_pid=None)
        print(_shown(server.url(), args))
    elif args.action == "stop":
        print("stopped" if embedded.stop(home) else "not running")
    elif args.action == "url":
        print(_shown(db.database_url(settings), args))
    elif args.action == "migrate":
        applied = db.migrate(db.database_url(settings))
        print("\n".join(applied) if applied else "up to date")
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    if args.workers > 1:
        # Counters must add up across worker processes: prometheus_client's multiprocess mode,
        # set before any worker imports it, with a fresh directory per start.
        metrics_dir = get_settings().sentinelops_home / f"metrics-{os.getpid()}"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    try:
        uvicorn.run(
            "webhook_service.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            access_log=args.access_log,
            proxy_headers=True,
            log_level="info",
        )
    finally:
        if args.workers > 1:
            shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from sentinelops.up import run_stack

    return run_stack(get_settings(), api_port=args.api_port, dagster_port=args.dagster_port)


def cmd_seed_demo(args: argparse.Namespace) -> int:
    from sentinelops_pipelines.demo import seed_demo

    url = db.database_url(get_settings())
    ids = seed_demo(url)
    print(f"demo anomalies: {', '.join(f'#{i}' for i in ids)} (list them with demo_only=true)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from sentinelops_pipelines.demo import run_demo

    return run_demo(
        get_settings(),
        args.api.rstrip("/"),
        allow_non_local=args.allow_non_local,
        verbose=args.verbose,
    )


def cmd_rules_backtest(args: argparse.Namespace) -> int:
    # Imported here: the core stays free of the pipelines, and the backtest of Dagster.
    import json

    import psycopg

    from sentinelops_pipelines import backtest

    settings = get_settings()
    try:
        since, until = backtest.resolve_range(args.since, args.until)
        candidate = backtest.load_book(args.rules)
        current = backtest.load_book(settings.rules_file)
    except backtest.BacktestError as exc:
        print(f"sentinelops rules backtest: {exc}", file=sys.stderr)
        return 2
    with psycopg.connect(
        db.database_url(settings), application_name="sentinelops-backtest", connect_timeout=10
    ) as conn:
        report = backtest.run_backtest(
            conn,
            current,
            candidate,
            since,
            until,
            current_label=settings.rules_file or "the packaged rules.toml",
            candidate_label=args.rules,
        )
    print(json.dumps(report.to_json(), indent=2) if args.json else backtest.render_text(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sentinelops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser(
        "up", help="database, migrations, API on :8000, Dagster UI + daemon on :3000"
    )
    up.add_argument("--api-port", type=int, default=8000)
    up.add_argument("--dagster-port", type=int, default=3000)
    up.set_defaults(func=cmd_up)

    dbp = sub.add_parser("db", help="the embedded PostgreSQL server and migrations")
    dbp.add_argument("action", choices=["start", "stop", "url", "migrate"])
    dbp.add_argument(
        "--show-password", action="store_true", help="print the URL with its password, not ***"
    )
    dbp.set_defaults(func=cmd_db)

    api = sub.add_parser("api", help="the HTTP service alone")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1)
    api.add_argument("--access-log", action="store_true", help="log every request (off: /metrics)")
    api.set_defaults(func=cmd_api)

    seed = sub.add_parser("seed-demo", help="deterministic demo anomalies ([demo]), idempotent")
    seed.set_defaults(func=cmd_seed_demo)

    demo = sub.add_parser(
        "demo",
        help="send signed demo traffic with a failure spike to the API",
        description="Send signed, test-mode Stripe events (normal traffic, then a payment"
        " failure spike) to the running API and have the rules evaluate them. Runs only against"
        " this machine's own stack unless --allow-non-local is given. Exit status: 0 done,"
        " 1 failed, 2 refused.",
    )
    demo.add_argument("--api", default="http://127.0.0.1:8000", help="the API to send to")
    demo.add_argument(
        "--allow-non-local",
        action="store_true",
        help="run even if the API or the database is not on this machine, the database holds"
        " live-mode events, or the secret is STRIPE_WEBHOOK_SECRET rather than the one"
        " `sentinelops up` generated: the demo's events, anomalies and alerts land there",
    )
    demo.add_argument(
        "-v", "--verbose", action="store_true", help="also show the libraries' logs and warnings"
    )
    demo.set_defaults(func=cmd_demo)

    rules = sub.add_parser("rules", help="work with rules files")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    bt = rules_sub.add_parser(
        "backtest",
        help="a candidate rules file against the active one over the stored rollups",
        description="Evaluate a candidate rules file and the active rules (SENTINELOPS_RULES_FILE,"
        " else the packaged rules.toml) over the stored 5-minute rollups, write nothing, and"
        " print per rule and UTC day the anomalies stored, the incidents each raises, and those"
        " new, gone or with another severity under the candidate. Exit status: 0 done, 2 invalid"
        " rules file or range.",
    )
    bt.add_argument("--rules", required=True, metavar="FILE", help="the candidate rules file")
    bt.add_argument(
        "--since",
        metavar="DATE",
        help="YYYY-MM-DD or ISO date and time, UTC (default: 30 days before --until)",
    )
    bt.add_argument(
        "--until",
        metavar="DATE",
        help="exclusive; YYYY-MM-DD or ISO date and time, UTC (default: now, down to 5 minutes)",
    )
    bt.add_argument("--json", action="store_true", help="machine-readable output")
    bt.set_defaults(func=cmd_rules_backtest)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args = build_parser().parse_args(argv)
    try:
        sys.exit(args.func(args))
    except (db.DatabaseNotConfigured, InvalidSettings, embedded.EmbeddedServerError) as exc:
        print(f"sentinelops: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
