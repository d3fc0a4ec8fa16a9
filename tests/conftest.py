"""Test harness: a real database (SQLite by default, PostgreSQL when ADSTACK_TEST_DATABASE_URL names one),
migrated with the project's own migrations, emptied after each test."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from adstack.app import create_app
from adstack.core.bootstrap import seed, upgrade
from adstack.core.db import Base, make_engine, make_session_factory
from adstack.core.settings import Settings
from tests.documented_statuses import StatusRecorder, undocumented
from tests.support import Api, scratch_database

# Cheap argon2id costs for the many sign-ups tests make; read on the first hash, after this line.
os.environ.setdefault("ADSTACK_ARGON2_PROFILE", "CHEAPEST")

# Property tests judge behaviour, not speed: on a loaded machine (CI, parallel workers) the time an example or its
# generation takes says nothing, so neither the deadline nor the slowness health checks may fail a run.
hypothesis_settings.register_profile("adstack", deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
hypothesis_settings.load_profile("adstack")

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"
CORPUS_DIR = SHARED_DIR / "corpus"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server_url = os.environ.get("ADSTACK_TEST_DATABASE_URL")
    if not server_url:
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'adstack.db'}"
        return
    with scratch_database(server_url, "adstack_test") as url:
        yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    upgrade(database_url)
    eng = make_engine(database_url)
    seed(eng)
    yield eng
    eng.dispose()


# Every sequence of the test database back to 1, as TRUNCATE ... RESTART IDENTITY would.
RESTART_SEQUENCES = (
    "SELECT setval(c.oid, 1, false) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind = 'S' AND n.nspname = current_schema()"
)


def empty_all_tables(engine: Engine) -> None:
    """Children before parents, as the foreign keys need. DELETE rather than TRUNCATE on PostgreSQL too: a test
    leaves a few rows, and TRUNCATE gives each of the ~60 tables new files on disk, 1.3-1.6 s a test against
    0.15-0.3 s (PostgreSQL 15, on a loaded 2-core machine)."""
    existing = set(inspect(engine).get_table_names())
    tables = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name in existing]
    for attempt in range(5):
        try:
            with engine.begin() as conn:
                for table in tables:
                    conn.execute(text(f'DELETE FROM "{table}"'))
                if engine.dialect.name == "postgresql":
                    conn.execute(text(RESTART_SEQUENCES))
                elif conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")).first():
                    conn.execute(text("DELETE FROM sqlite_sequence"))  # the AUTOINCREMENT tables' counters, likewise
            return
        except (OperationalError, IntegrityError) as exc:
            # A background worker of the app just closed may still be writing: PostgreSQL then picks one of the
            # two as a deadlock's victim, or its late row refers to a parent just deleted. The next try finds the
            # worker gone.
            retry = "deadlock detected" in str(exc) or isinstance(exc, IntegrityError)
            if not retry or attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))


@pytest.fixture
def db(engine: Engine) -> Iterator[Engine]:
    """A migrated, seeded database that is emptied again after the test."""
    seed(engine)
    yield engine
    empty_all_tables(engine)


@pytest.fixture
def session(db: Engine) -> Iterator[Session]:
    with make_session_factory(db)() as s:
        yield s


@pytest.fixture
def settings(db: Engine, database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key="test-secret-key",
        environment="test",
        public_base_url="http://testserver",
        # Unsigned postbacks are attributed at once here; tests of the hold set their own.
        unsigned_postback_hold_seconds=0,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    seen: set[tuple[str, str, int]] = set()
    app.add_middleware(StatusRecorder, seen=seen)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
    assert undocumented(app, seen) == [], "answers with a status the OpenAPI document does not declare"


@pytest.fixture
def api(client: TestClient, session: Session) -> Api:
    return Api(client, session)


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def playwright_browser() -> Iterator[object]:
    """Debian's Chromium driven by Playwright, one per worker for every browser test: a second sync Playwright
    started while this one runs would refuse to start inside its event loop."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium (scripts/system-deps.sh installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def corpus_dir() -> Path:
    if not CORPUS_DIR.is_dir():
        pytest.skip("the shared corpus is not beside the project")
    return CORPUS_DIR


# The PostgreSQL run is there for what differs between the two databases: locking and concurrency, ON CONFLICT,
# JSON, time zones, money arithmetic. The console's tests render pages over the services that every other folder
# (accounts, campaigns, finance, serving, audiences, reports, attribution, pipeline, the API, ...) tests against
# the database itself, so on a server they would repeat SQLite's run at length and prove nothing new: they run on
# SQLite only. A console test of data the console keeps itself (announcements' translations, the list's
# remembered columns) is marked `postgresql` and runs on both.
SQLITE_ONLY_FOLDERS = ("console",)
# Modules whose tests start the app on the database and then work in memory: the bidder on a snapshot swapped
# into the serving engine (OpenRTB parsing, privacy signals, brand safety, floors, deadlines), the API's docs
# page, HSTS. Their tests that also read or write through `api` or `session` (the exchange's price in reports
# and balances, invalid-traffic rows) run on both.
APP_START_ONLY_MODULES = (
    "serving/test_openrtb.py",
    "serving/test_openrtb_safety.py",
    "serving/test_auction.py",
    "core/test_docs.py",
    "core/test_hsts.py",
)
DATABASE_FIXTURES = ("api", "session")
# Every guide format's material rules, checked in Python before the one creative insert that
# tests/creatives/test_api.py already runs on both databases. The demo, which builds and serves the embedded
# default platform (SQLite): three simulated days through the real path, half a minute on a server for what the
# rest of the suite covers there piece by piece.
SQLITE_ONLY_MODULES = ("creatives/test_guide_formats.py", "demo/test_demo.py", "audiences/test_demo_profiles.py")
# The API fuzz's quick variant repeats on a server what its long variant (`slow`, run there by CI) covers several
# times over: the server run keeps the long one only.
SERVER_RUNS_SLOW_ONLY_MODULES = ("api/test_openapi_fuzz.py",)
TESTS_DIR = Path(__file__).resolve().parent


def runs_on_database_server(item: pytest.Item) -> bool:
    """Whether the PostgreSQL run keeps this test: it reaches the database, and it is outside the SQLite-only
    folders and modules or marked `postgresql`."""
    fixtures = getattr(item, "fixturenames", ())
    if "database_url" not in fixtures:
        return False  # it ran on SQLite already and would only repeat itself
    if item.get_closest_marker("postgresql"):
        return True
    module = Path(str(item.path)).resolve().relative_to(TESTS_DIR)
    if module.as_posix() in SERVER_RUNS_SLOW_ONLY_MODULES:
        return item.get_closest_marker("slow") is not None
    if module.as_posix() in APP_START_ONLY_MODULES:
        return any(name in fixtures for name in DATABASE_FIXTURES)
    return module.parts[0] not in SQLITE_ONLY_FOLDERS and module.as_posix() not in SQLITE_ONLY_MODULES


# The longest modules outside the `slow` selection (half a minute to a minute each), started first for the same
# reason as the slow ones.
LONGEST_QUICK_MODULES = ("api/test_openapi_fuzz.py", "e2e/test_tenant_isolation.py", "api/test_roles.py",
                         "console/test_console_roles.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a database server run, keep only the tests `runs_on_database_server` names; every test runs on SQLite.
    Then the modules holding a `slow` test, and the longest others, go first (scripts/test.sh hands modules to the
    workers in this order): started last, a minutes-long module would leave the other worker idle at the end."""
    if os.environ.get("ADSTACK_TEST_DATABASE_URL"):
        kept: list[pytest.Item] = []
        repeated: list[pytest.Item] = []
        for item in items:
            (kept if runs_on_database_server(item) else repeated).append(item)
        if repeated:
            config.hook.pytest_deselected(items=repeated)
            items[:] = kept
    first = {item.path for item in items if item.get_closest_marker("slow")
             or Path(str(item.path)).resolve().relative_to(TESTS_DIR).as_posix() in LONGEST_QUICK_MODULES}
    items.sort(key=lambda item: item.path not in first)  # stable: each module keeps its order
