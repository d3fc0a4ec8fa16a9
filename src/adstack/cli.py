"""The `adstack` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from adstack.accounts.passwords import MIN_PASSWORD_LENGTH
from adstack.accounts.roles import PlatformRole, Role
from adstack.core.settings import Settings, set_settings

app = typer.Typer(help="adstack: self-hosted mobile advertising platform.", no_args_is_help=True)
admin_app = typer.Typer(help="Platform administrators.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks; each prints one JSON line last.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
app.add_typer(bench_app, name="bench")
console = Console()

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Where SQLite, events and uploads live.")]


def _settings(data_dir: Path | None, **overrides: object) -> Settings:
    values: dict[str, object] = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    settings = Settings(**values)  # type: ignore[arg-type]
    set_settings(settings)
    return settings


def _bound_url(host: str, port: int) -> tuple[str, bool]:
    """The URL of the address a server binds, and whether it is one clients can reach: 0.0.0.0 and :: bind every
    interface but are no destination, so loopback stands in for them."""
    import ipaddress

    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return f"http://{host}:{port}", True  # a host name
    reachable = not address.is_unspecified
    if not reachable:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    literal = f"[{address}]" if address.version == 6 else str(address)
    return f"http://{literal}:{port}", reachable


def _serving_settings(data_dir: Path | None, host: str, port: int) -> Settings:
    """Settings for a process that serves on host:port. Links in ads, tracking and postback templates are built on
    ADSTACK_PUBLIC_BASE_URL; only where it is unset on the bound address."""
    settings = _settings(data_dir)
    if "public_base_url" in settings.model_fields_set:
        return settings
    url, reachable = _bound_url(host, port)
    if not reachable:
        console.print(f"[yellow]warning:[/] ADSTACK_PUBLIC_BASE_URL is unset: links in ads, tracking and postback "
                      f"templates point at {url}, which only this machine reaches; set it to the address clients "
                      f"use")
    settings = settings.model_copy(update={"public_base_url": url})
    set_settings(settings)
    return settings


def run_migrate(settings: Settings) -> None:
    """Migrate and seed; a database this version cannot serve stops the command with the reason."""
    from adstack.core.bootstrap import SchemaOutOfDate
    from adstack.core.bootstrap import migrate as bootstrap_migrate

    try:
        bootstrap_migrate(settings)
    except SchemaOutOfDate as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(code=1) from exc


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Bring the control-plane database to the newest schema and seed reference data."""

    settings = _settings(data_dir)
    run_migrate(settings)
    console.print(f"[green]migrated[/] {settings.resolved_database_url.split('@')[-1]}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="HTTP processes (several need ADSTACK_REDIS_URL).")] = 1,
    data_dir: DataDir = None,
) -> None:
    """Migrate, then serve the API, the console, the ad endpoints and tracking."""
    import os

    import uvicorn

    from adstack.app import create_app

    settings = _serving_settings(data_dir, host, port)
    if workers > 1 and not settings.redis_url:
        # Budgets, frequency caps and reservations must be shared, or each process would spend the whole budget.
        raise typer.BadParameter("several workers share budgets through Redis: set ADSTACK_REDIS_URL",
                                 param_hint="--workers")
    run_migrate(settings)
    console.print(f"adstack on [bold]http://{host}:{port}[/]  (API docs at /docs, {workers} worker(s))")
    if workers == 1:
        from adstack.core.workers import EVENT_LOOP, HTTP_IMPLEMENTATION

        uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", access_log=False,
                    http=HTTP_IMPLEMENTATION, loop=EVENT_LOOP)
        return
    # Each worker builds the app from the environment: pass the resolved settings down.
    os.environ["ADSTACK_DATA_DIR"] = str(settings.data_dir.resolve())
    os.environ["ADSTACK_PUBLIC_BASE_URL"] = settings.public_base_url
    from adstack.core.workers import WorkerSpec, serve_workers

    raise typer.Exit(serve_workers(WorkerSpec("adstack.app:create_app", host, port), workers))


@app.command()
def pipeline(
    data_dir: DataDir = None,
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", min=1, max=65535,
        help="Serve this process's Prometheus metrics (consumers, retention) at GET /metrics on this port.")] = None,
    metrics_host: Annotated[str, typer.Option(
        "--metrics-host", help="Interface for --metrics-port; beyond loopback only with ADSTACK_METRICS_TOKEN.")
    ] = "127.0.0.1",
) -> None:
    """Run the event pipeline's consumers, postback attribution and the event store's loader, without HTTP.

    Serving processes then run with ADSTACK_PIPELINE_IN_PROCESS=false and only append to the log."""
    import signal
    import threading

    from adstack.app import create_app
    from adstack.events.service import get_event_store
    from adstack.pipeline.log import LocalLog
    from adstack.pipeline.metrics import serve_metrics
    from adstack.pipeline.service import EventStoreElsewhere

    settings = _settings(data_dir)
    run_migrate(settings)
    application = create_app(settings.model_copy(update={"pipeline_in_process": True}))
    metrics_server = None
    if metrics_port is not None:
        try:
            metrics_server = serve_metrics(application.state.pipeline.metrics, metrics_host, metrics_port,
                                           settings.metrics_token)
        except OSError as exc:
            raise typer.BadParameter(f"cannot listen on {metrics_host}:{metrics_port}: {exc.strerror or exc}",
                                     param_hint="--metrics-port") from exc
        console.print(f"metrics on http://{metrics_host}:{metrics_port}/metrics")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        for hook in application.state.on_startup:
            hook(application)
        pipeline = application.state.pipeline
        running = pipeline.start()
        get_event_store(settings).start_loader()
        console.print("pipeline consumers running" if running else
                      "another process runs the consumers of this log; waiting to take over"
                      if isinstance(pipeline.log, LocalLog) else
                      "the event log does not answer yet; the consumers start once it does")
        while not stop.wait(1.0):
            if not running:
                running = pipeline.start()
    except EventStoreElsewhere as exc:
        console.print(str(exc), style="red", markup=False)
        raise typer.Exit(code=1) from exc
    finally:
        for hook in reversed(application.state.on_shutdown):
            hook(application)
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()


@app.command()
def prune(data_dir: DataDir = None) -> None:
    """Remove what the growing tables keep past their retention, once (a pipeline process does it hourly)."""
    from adstack.core.db import make_engine, make_session_factory
    from adstack.retention.service import RetentionWorker

    settings = _settings(data_dir)
    run_migrate(settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        pruned = RetentionWorker(make_session_factory(engine), settings).run_once()
    finally:
        engine.dispose()
    console.print(", ".join(f"{name.replace('_', ' ')}: {count} removed" for name, count in vars(pruned).items()))


@admin_app.command("create")
def admin_create(
    email: Annotated[str, typer.Option(help="Sign-in email.")],
    password: Annotated[str, typer.Option(help=f"At least {MIN_PASSWORD_LENGTH} characters, not one of the most "
                                                 f"common passwords.", prompt=True, hide_input=True)],
    role: Annotated[PlatformRole, typer.Option(help="The platform role.")] = PlatformRole.ADMIN,
    data_dir: DataDir = None,
) -> None:
    """Create a platform administrator."""
    from adstack.accounts import users
    from adstack.accounts.passwords import check_new_password
    from adstack.core.db import make_engine, make_session_factory, session_scope
    from adstack.core.errors import DomainError, ValidationFailed

    try:
        check_new_password(password)  # before migrating: the same policy users.create_admin applies
    except ValidationFailed as exc:
        raise typer.BadParameter(exc.message, param_hint="--password") from exc
    settings = _settings(data_dir)
    run_migrate(settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            user = users.create_admin(session, email=email, password=password, role=Role(role.value))
            console.print(f"[green]created[/] {user.email} ({user.role})")
    except DomainError as exc:
        console.print(f"[red]{exc.message}[/]")
        raise typer.Exit(code=1) from exc
    finally:
        engine.dispose()


@app.command()
def demo(
    data_dir: DataDir = None,
    days: Annotated[int, typer.Option(min=1, max=30, help="Days of traffic to simulate, ending today.")] = 3,
    requests_per_day: Annotated[int, typer.Option(min=10, max=10_000_000, help="Ad requests per day.")] = 350,
    seed: Annotated[int, typer.Option(help="Random seed, for a repeatable demo.")] = 20261122,
    serve_after: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the platform afterwards.")] = False,
    host: Annotated[str, typer.Option(help="Interface to bind when serving.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port when serving.")] = 8000,
) -> None:
    """Build a demo platform and simulate days of traffic through the real path, then print a login."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from adstack.core.money import format_micros
    from adstack.demo import ADMIN_EMAIL, ADMIN_PASSWORD, USER_PASSWORD, DemoAlreadyBuilt, DemoConfig, DemoError, run

    settings = _serving_settings(data_dir or Path("./adstack-data"), host, port)
    config = DemoConfig(days=days, requests_per_day=requests_per_day, seed=seed)
    with Progress(TextColumn("[bold]simulating traffic"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        task = bar.add_task("traffic", total=days * requests_per_day)
        try:
            summary = run(settings, config, progress=lambda done, total: bar.update(task, completed=done))
        except DemoAlreadyBuilt as exc:
            bar.stop()
            console.print(f"{exc}; use another --data-dir for a fresh one.")
            console.print(f"console: [bold]{settings.public_base_url}/console[/]")
            console.print(f"admin: {ADMIN_EMAIL} / {ADMIN_PASSWORD}   user: moonlight@example.com / {USER_PASSWORD}")
            if serve_after:
                serve(host=host, port=port, data_dir=settings.data_dir)
            return
        except DemoError as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(code=1) from exc
    console.print(
        f"requests {summary.requests:,}  ads {summary.ads_served:,}  impressions {summary.impressions:,}  "
        f"clicks {summary.clicks:,}  postbacks {summary.postbacks:,}  installs sent {summary.installs_sent:,}")
    console.print(
        f"ledger charges {format_micros(summary.ledger_charges_micros)}  "
        f"report cost {format_micros(summary.report_cost_micros)}  "
        f"attributed installs {summary.attributed_installs:,}  report installs {summary.report_installs:,}")
    console.print(f"console: [bold]{summary.console_url}[/]")
    console.print(f"admin: {summary.admin_email} / {summary.admin_password}")
    for email, password in summary.user_logins.items():
        console.print(f"user:  {email} / {password}")
    if serve_after:
        serve(host=host, port=port, data_dir=settings.data_dir)


@bench_app.command("serving")
def bench_serving() -> None:
    """Decision latency at 1,000 and 100,000 ad groups, and HTTP throughput of POST /v1/ads."""
    from adstack.bench import serving

    serving.main()


@bench_app.command("postbacks")
def bench_postbacks() -> None:
    """Postbacks accepted per second over HTTP, and in-process attribution throughput."""
    from adstack.bench import postbacks

    postbacks.main()


@bench_app.command("pipeline")
def bench_pipeline(
    seconds: Annotated[float, typer.Option(help="Length of each wrk run.")] = 5.0,
    rounds: Annotated[int, typer.Option(min=1, help="A B rounds per endpoint.")] = 2,
) -> None:
    """Tracking and postbacks against a trivial route with wrk; acknowledgement to ledger; consumers per CPU-second."""
    import json

    from adstack.bench import pipeline

    print(json.dumps(pipeline.run(seconds=seconds, rounds=rounds)))


@bench_app.command("scaling")
def bench_scaling(
    seconds: Annotated[float, typer.Option(help="Length of each wrk run.")] = 8.0,
    rounds: Annotated[int, typer.Option(min=1, help="A B rounds.")] = 2,
) -> None:
    """POST /v1/ads on `adstack serve --workers 1` and `--workers 2` (Redis-shared counters), with wrk, A B A B."""
    import json

    from adstack.bench import scaling

    print(json.dumps(scaling.run(seconds=seconds, rounds=rounds)))


@bench_app.command("reports")
def bench_reports(
    events: Annotated[int, typer.Option("--events", min=1000, help="Synthetic events to load.")] = 100_000_000,
) -> None:
    """Report latency on rollups against the same aggregate over raw events."""
    from adstack.bench import reports

    reports.main(events=events)


@bench_app.command("audiences")
def bench_audiences() -> None:
    """Import a 64 MB GAID file; ids per second, peak RSS growth and membership look-ups per second."""
    from adstack.bench import audiences

    audiences.main()


if __name__ == "__main__":
    app()
