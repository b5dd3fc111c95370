"""The App Platform spec (``.do/app.yaml``) against the code it deploys.

Every name in the spec that the code must answer to is checked here: the
components' ports against the settings' defaults, the run commands against
the CLI, every environment variable against the settings of its service,
every secret as a SECRET without a value, the database binding, the health
check paths (answered with 200 by the services built in-process), and the
ingress: a small model of App Platform's routing, built from the spec's rules
(longest prefix wins; the prefix is stripped unless ``preserve_path_prefix``),
sits in front of the in-process bot and admin API, and every route the
deployment relies on is requested through it, the Socket.IO connection with
its WebSocket upgrade included.  The locked requirements and the Python
version that the buildpack reads are checked against ``pyproject.toml``.
"""

from __future__ import annotations

import json
import random
import re
import sys
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from essen import cli
from essen.admin.service import run_admin
from essen.bot import run_bot
from essen.config import AdminSettings, BotSettings, load_admin_settings, load_bot_settings
from essen.events import Histogram, MetricsSnapshot, WindowStats
from essen.messenger.fake_graph import create_fake_graph
from essen.realtime.client import ClientOptions, SocketIOClient
from essen.realtime.transports import MemoryNetwork

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / ".do" / "app.yaml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
APP_URL = "https://essen-messenger-bot-test.ondigitalocean.app"

SETTINGS: dict[str, type[BotSettings] | type[AdminSettings]] = {
    "facebook-bot": BotSettings,
    "admin-api": AdminSettings,
}
RUN_COMMANDS = {"facebook-bot": "essen bot", "admin-api": "essen admin"}
#: Variables a service may be given that are not fields of its settings, with the
#: reason (also documented in docs/deployment.md).  None so far.
EXTRA_VARIABLES: dict[str, str] = {}
#: Values App Platform substitutes (app-wide, per database, per component).
APP_BINDABLES = {"APP_URL", "APP_DOMAIN", "APP_ID"}
DATABASE_BINDABLES = {
    "DATABASE_URL",
    "HOSTNAME",
    "PORT",
    "USERNAME",
    "PASSWORD",
    "DATABASE",
    "CA_CERT",
    "JDBC_DATABASE_URL",
}
COMPONENT_BINDABLES = {"PUBLIC_URL", "PRIVATE_URL", "PRIVATE_DOMAIN", "COMMIT_HASH", "BUILD_ID"}


def services() -> dict[str, dict[str, Any]]:
    return {service["name"]: service for service in SPEC["services"]}


def static_sites() -> dict[str, dict[str, Any]]:
    return {site["name"]: site for site in SPEC.get("static_sites", [])}


def envs(component: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {env["key"]: env for env in component.get("envs", [])}


# -- the spec's shape ------------------------------------------------------------------

#: The App Platform spec fields this spec may use, per object (godo's AppSpec).
#: A typo ("http_paths", "preserve_prefix") would be ignored or refused by the
#: platform; here it fails.
_SOURCE = {"repo", "branch", "deploy_on_push"}
_ENV = {"key", "value", "scope", "type"}
_HEALTH = {
    "http_path",
    "port",
    "initial_delay_seconds",
    "period_seconds",
    "timeout_seconds",
    "success_threshold",
    "failure_threshold",
}
_COMPONENT = {"name", "github", "git", "source_dir", "environment_slug", "envs", "build_command"}
_SERVICE = _COMPONENT | {
    "run_command",
    "http_port",
    "instance_count",
    "instance_size_slug",
    "health_check",
    "internal_ports",
    "alerts",
    "termination",
}
_STATIC = _COMPONENT | {"output_dir", "index_document", "error_document", "catchall_document"}
_DATABASE = {"name", "engine", "version", "production", "cluster_name", "db_name", "db_user"}
_TOP = {
    "name",
    "region",
    "services",
    "static_sites",
    "workers",
    "jobs",
    "databases",
    "domains",
    "envs",
    "alerts",
    "ingress",
}


def _unknown(obj: dict[str, Any], allowed: set[str], where: str) -> list[str]:
    return [f"{where}.{key}" for key in obj if key not in allowed]


def test_the_spec_uses_only_app_platform_fields() -> None:
    unknown = _unknown(SPEC, _TOP, "spec")
    for service in SPEC["services"]:
        where = f"services[{service['name']}]"
        unknown += _unknown(service, _SERVICE, where)
        unknown += _unknown(service.get("github", {}), _SOURCE, f"{where}.github")
        unknown += _unknown(service.get("health_check", {}), _HEALTH, f"{where}.health_check")
        for env in service.get("envs", []):
            unknown += _unknown(env, _ENV, f"{where}.envs[{env['key']}]")
            assert env.get("scope", "RUN_TIME") in ("RUN_TIME", "BUILD_TIME", "RUN_AND_BUILD_TIME")
            assert env.get("type", "GENERAL") in ("GENERAL", "SECRET")
    for site in SPEC["static_sites"]:
        unknown += _unknown(site, _STATIC, f"static_sites[{site['name']}]")
    for database in SPEC["databases"]:
        unknown += _unknown(database, _DATABASE, f"databases[{database['name']}]")
    for rule in SPEC["ingress"]["rules"]:
        unknown += _unknown(rule, {"match", "component"}, "ingress.rules[]")
        unknown += _unknown(rule["match"], {"path"}, "ingress.rules[].match")
        unknown += _unknown(rule["match"]["path"], {"prefix"}, "ingress.rules[].match.path")
        unknown += _unknown(
            rule["component"], {"name", "preserve_path_prefix"}, "ingress.rules[].component"
        )
    assert unknown == []
    # Every component deploys the same repository and branch.
    sources = {
        (c["github"]["repo"], c["github"]["branch"])
        for c in [*SPEC["services"], *SPEC["static_sites"]]
    }
    assert len(sources) == 1


# -- components, ports, run commands ---------------------------------------------------


def test_the_components_are_the_three_services_of_the_guide() -> None:
    assert set(services()) == {"facebook-bot", "admin-api"}
    assert set(static_sites()) == {"admin-ui"}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_each_service_listens_where_its_settings_say(name: str) -> None:
    service = services()[name]
    # App Platform sets PORT to http_port; the settings read PORT, whose
    # default is the port the guide gives each service.
    assert "port" in SETTINGS[name].model_fields
    assert service["http_port"] == SETTINGS[name].model_fields["port"].default
    assert "PORT" not in envs(service) or envs(service)["PORT"]["value"] == str(
        service["http_port"]
    )
    assert service["environment_slug"] == "python"
    assert service.get("source_dir", "/") == "/"


def test_the_guide_ports_are_the_defaults() -> None:
    assert services()["facebook-bot"]["http_port"] == 3000
    assert services()["admin-api"]["http_port"] == 4000


@pytest.mark.parametrize("name", list(SETTINGS))
def test_each_run_command_is_an_essen_command(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    command = services()[name]["run_command"]
    assert command == RUN_COMMANDS[name]
    program, subcommand = command.split()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[program] == "essen.cli:main"
    with pytest.raises(SystemExit) as exited:
        cli.main([subcommand, "--help"])
    assert exited.value.code == 0
    assert f"usage: essen {subcommand}" in capsys.readouterr().out
    # That it listens on $PORT is proven by tests/integration/test_production_settings.py.


def test_several_instances_run_websocket_only_and_share_redis() -> None:
    """App Platform has no sticky sessions (D5): with several instances every
    Socket.IO session is WebSocket-only, and the instances share Redis."""
    bot, admin = services()["facebook-bot"], services()["admin-api"]
    assert bot["instance_count"] >= 2
    assert admin["instance_count"] >= 2
    databases = {database["name"]: database for database in SPEC["databases"]}
    for service in (bot, admin):
        reference = envs(service)["REDIS_URL"]["value"]
        match = re.fullmatch(r"\$\{([a-z0-9-]+)\.DATABASE_URL\}", reference)
        assert match is not None, reference
        assert databases[match.group(1)]["engine"] in ("REDIS", "VALKEY")
    bot_settings = BotSettings(
        admin_socket_transports=envs(bot)["ADMIN_SOCKET_TRANSPORTS"]["value"]
    )
    assert bot_settings.uplink_transports == ("websocket",)
    admin_settings = AdminSettings(
        redis_url="redis://cache:6379",
        socketio_transports=envs(admin)["SOCKETIO_TRANSPORTS"]["value"],
    )
    assert admin_settings.transports == ("websocket",)
    # The dashboard's own default.
    config = (ROOT / "dashboard" / "src" / "lib" / "config.js").read_text()
    assert 'transports: ["websocket"]' in config


# -- environment variables -------------------------------------------------------------


@pytest.mark.parametrize("name", list(SETTINGS))
def test_every_variable_is_a_setting_of_its_service(name: str) -> None:
    fields = {field.upper() for field in SETTINGS[name].model_fields}
    for key in envs(services()[name]):
        assert key in fields or key in EXTRA_VARIABLES, f"{name}: {key} is read by nothing"


@pytest.mark.parametrize("name", list(SETTINGS))
def test_every_secret_is_a_secret_without_a_value(name: str) -> None:
    variables = envs(services()[name])
    for field in SETTINGS[name].SECRETS:
        key = field.upper()
        assert key in variables, f"{name}: {key} is not configured (production refuses to start)"
        assert variables[key].get("type") == "SECRET", f"{name}: {key} must be type SECRET"
        assert "value" not in variables[key], f"{name}: {key} has a value in the repository"
    for key, env in variables.items():
        if env.get("type") == "SECRET":
            assert key.lower() in SETTINGS[name].SECRETS


def test_production_mode_and_the_cross_service_urls() -> None:
    bot, admin = envs(services()["facebook-bot"]), envs(services()["admin-api"])
    for variables in (bot, admin):
        assert variables["ESSEN_ENV"]["value"] == "production"
    # The bot reaches the admin through the public URL (the ingress strips /api).
    assert bot["ADMIN_BACKEND_URL"]["value"] == "${APP_URL}"
    assert BotSettings.model_fields["admin_socket_path"].default == "/api/socket.io/"
    # The dashboard is served from the same origin.
    assert admin["CORS_ORIGINS"]["value"] == "${APP_URL}"
    # The same shared secret on both sides: both ask for it.
    assert bot["BOT_SERVICE_SECRET"]["type"] == admin["BOT_SERVICE_SECRET"]["type"] == "SECRET"


def test_the_admin_gets_the_managed_postgresql_database() -> None:
    databases = {database["name"]: database for database in SPEC["databases"]}
    reference = envs(services()["admin-api"])["DATABASE_URL"]["value"]
    match = re.fullmatch(r"\$\{([a-z0-9-]+)\.DATABASE_URL\}", reference)
    assert match is not None, reference
    assert databases[match.group(1)]["engine"] == "PG"
    assert "DATABASE_URL" not in envs(services()["facebook-bot"])


def test_every_bindable_reference_resolves() -> None:
    databases = {database["name"] for database in SPEC["databases"]}
    components = set(services()) | set(static_sites())
    for component in [*SPEC["services"], *SPEC["static_sites"]]:
        for env in component.get("envs", []):
            for reference in re.findall(r"\$\{([^}]*)\}", str(env.get("value", ""))):
                owner, _, variable = reference.rpartition(".")
                if not owner:
                    assert variable in APP_BINDABLES, reference
                elif owner in databases:
                    assert variable in DATABASE_BINDABLES, reference
                else:
                    assert owner in components | {"_self"}, reference
                    assert variable in COMPONENT_BINDABLES, reference


# -- the dashboard's static site -------------------------------------------------------


def test_the_static_site_builds_the_dashboard() -> None:
    site = static_sites()["admin-ui"]
    assert site["source_dir"] == "dashboard"
    assert site["build_command"] == "npm ci && npm run build"
    assert site["output_dir"] == "dist"
    package = ROOT / site["source_dir"] / "package.json"
    if not package.exists():
        pytest.skip("dashboard/ is not in this checkout yet")
    assert "build" in json.loads(package.read_text())["scripts"]
    # `npm ci` needs the lockfile.
    assert (ROOT / site["source_dir"] / "package-lock.json").exists()


# -- the ingress, modelled from the spec, in front of the in-process services ----------


@dataclass(frozen=True)
class Rule:
    prefix: str
    component: str
    preserve: bool

    def matches(self, path: str) -> bool:
        prefix = self.prefix.rstrip("/")
        return not prefix or path == prefix or path.startswith(prefix + "/")

    def forward(self, path: str) -> str:
        if self.preserve:
            return path
        return "/" + path[len(self.prefix.rstrip("/")) :].lstrip("/")


RULES = [
    Rule(
        rule["match"]["path"]["prefix"],
        rule["component"]["name"],
        bool(rule["component"].get("preserve_path_prefix", False)),
    )
    for rule in SPEC["ingress"]["rules"]
]


def route(path: str) -> tuple[str, str]:
    """(component, forwarded path) for a public path: the longest matching prefix wins."""
    matching = [rule for rule in RULES if rule.matches(path)]
    assert matching, f"no ingress rule for {path}"
    rule = max(matching, key=lambda r: len(r.prefix.rstrip("/")))
    return rule.component, rule.forward(path)


def test_the_ingress_rules_are_the_guides() -> None:
    assert route("/api/socket.io/") == ("admin-api", "/socket.io/")
    assert route("/api/auth/login") == ("admin-api", "/auth/login")
    assert route("/api/monitoring/metrics") == ("admin-api", "/monitoring/metrics")
    assert route("/webhook") == ("facebook-bot", "/webhook")
    assert route("/debug/health-quick") == ("facebook-bot", "/debug/health-quick")
    assert route("/") == ("admin-ui", "/")
    assert route("/index.html") == ("admin-ui", "/index.html")
    assert route("/apis") == ("admin-ui", "/apis")  # a prefix is a path segment
    prefixes = [rule.prefix for rule in RULES]
    assert len(prefixes) == len(set(prefixes))
    assert {rule.component for rule in RULES} == set(services()) | set(static_sites())


class Ingress:
    """An ASGI app routing by the spec's rules to the components' ASGI apps."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {"admin-ui": _static_site}
        self.forwarded: list[tuple[str, str, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return
        component, path = route(scope["path"])
        self.forwarded.append((scope["type"], component, path))
        scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.components[component](scope, receive, send)


async def _static_site(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"admin-ui"})


@dataclass
class System:
    ingress: Ingress
    network: MemoryNetwork
    http: httpx.AsyncClient
    components: dict[str, httpx.AsyncClient]
    bot_settings: BotSettings
    admin_settings: AdminSettings


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[System]:
    """The bot and the admin API in-process, behind the spec's ingress (no sockets)."""
    admin_settings = load_admin_settings(
        essen_data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'essen.db'}",
        cors_origins=APP_URL,
    )
    # Development mode: the generated secrets in tmp_path are shared by both.
    bot_settings = load_bot_settings(
        essen_data_dir=tmp_path,
        admin_backend_url=APP_URL,
        fb_graph_url="http://graph.test",
        bot_instance="bot-spec",
    )
    fake = create_fake_graph(
        page_token=bot_settings.fb_page_access_token.get_secret_value(), rng=random.Random(5)
    )
    ingress = Ingress()
    network = MemoryNetwork(ingress)
    graph_http = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app))
    clients: list[httpx.AsyncClient] = [graph_http]
    try:
        async with trio.open_nursery() as nursery:
            admin = await nursery.start(partial(run_admin, admin_settings, serve=False))
            ingress.components["admin-api"] = admin.asgi
            bot = await nursery.start(
                partial(
                    run_bot,
                    bot_settings,
                    serve=False,
                    graph_http=graph_http,
                    uplink_network=network,
                )
            )
            ingress.components["facebook-bot"] = bot.app
            components = {
                name: httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://component"
                )
                for name, app in (("facebook-bot", bot.app), ("admin-api", admin.asgi))
            }
            http = httpx.AsyncClient(transport=httpx.ASGITransport(app=ingress), base_url=APP_URL)
            clients += [*components.values(), http]
            yield System(ingress, network, http, components, bot_settings, admin_settings)
            nursery.cancel_scope.cancel()
    finally:
        for client in clients:
            await client.aclose()
        await network.aclose()


@pytest.mark.parametrize("name", list(SETTINGS))
async def test_each_health_check_path_answers_200(system: System, name: str) -> None:
    """Health checks go to the container on http_port, past the ingress."""
    path = services()[name]["health_check"]["http_path"]
    with trio.fail_after(10):
        response = await system.components[name].get(path)
    assert response.status_code == 200, response.text


async def test_the_admin_health_check_is_the_stripped_path() -> None:
    # App Platform checks the container directly; the admin's own path has no /api.
    assert services()["admin-api"]["health_check"]["http_path"] == "/health"
    assert services()["facebook-bot"]["health_check"]["http_path"] == "/debug/health-quick"


async def test_every_public_route_reaches_its_service_through_the_ingress(
    system: System,
) -> None:
    http = system.http
    verify = system.bot_settings.fb_verify_token.get_secret_value()
    with trio.fail_after(20):
        # facebook-bot, prefix kept: Messenger's subscription check and webhook.
        check = await http.get(
            "/webhook",
            params={"hub.mode": "subscribe", "hub.verify_token": verify, "hub.challenge": "42"},
        )
        assert (check.status_code, check.text) == (200, "42")
        unsigned = await http.post("/webhook", content=b"{}")
        assert unsigned.status_code == 403  # the route exists; signatures are enforced
        quick = await http.get("/debug/health-quick")
        assert quick.status_code == 200
        assert quick.json()["instance"] == "bot-spec"
        assert (await http.get("/debug/metrics")).status_code == 401  # needs DEBUG_TOKEN
        # admin-api, prefix stripped.
        assert (await http.get("/api/health")).json() == {"status": "ok"}
        assert (await http.get("/api/monitoring/metrics")).status_code == 401
        assert (await http.get("/api/monitoring/health-comprehensive")).status_code == 401
        login = await http.post("/api/auth/login", json={"username": "nobody", "password": "x"})
        assert login.status_code == 401
        handshake = await http.get("/api/socket.io/", params={"EIO": "4", "transport": "polling"})
        assert handshake.status_code == 200
        assert handshake.text.startswith('0{"sid":')
        # admin-ui gets everything else.
        assert (await http.get("/")).text == "admin-ui"
    forwarded = {(component, path) for _, component, path in system.ingress.forwarded}
    assert ("admin-api", "/socket.io/") in forwarded
    assert ("admin-api", "/monitoring/metrics") in forwarded
    assert ("facebook-bot", "/webhook") in forwarded
    # Nothing reached the admin with the prefix: the ingress stripped it.
    assert not any(c == "admin-api" and p.startswith("/api") for c, p in forwarded)


def _snapshot(instance: str) -> dict[str, Any]:
    window = WindowStats(
        seconds=60, received=0, answered=0, failed=0, unique_users=0, latency=Histogram()
    )
    return MetricsSnapshot(
        instance=instance,
        at=1.0,
        started_at=1.0,
        uptime_s=0.0,
        totals={"received": 0},
        windows={"1m": window},
        send_api=Histogram(),
        per_minute=(),
    ).model_dump(mode="json")


async def test_a_bot_connects_through_the_ingress_and_upgrades_to_websocket(
    system: System,
) -> None:
    """What the deployed bot does: ${APP_URL}/api/socket.io/, polling, then WebSocket."""
    secret = system.bot_settings.bot_service_secret.get_secret_value()
    client = SocketIOClient(
        APP_URL,
        ClientOptions(
            path=system.bot_settings.admin_socket_path,
            auth={"service": "bot", "secret": secret, "instance": "spec-check"},
            reconnection=False,
        ),
        network=system.network,
    )
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            await client.wait_connected()
            status = await client.wait_status(lambda s: s.transport == "websocket")
            assert status.transport == "websocket"
            ack = await client.call("metrics:update", _snapshot("spec-check"))
            assert ack == [{"ok": True}]
            await client.aclose()
    kinds = {(kind, path) for kind, component, path in system.ingress.forwarded}
    assert ("websocket", "/socket.io/") in kinds
    assert ("http", "/socket.io/") in kinds


# -- what the Python buildpack reads ---------------------------------------------------


def _pins() -> tuple[dict[str, str], list[str]]:
    pins: dict[str, str] = {}
    others: list[str] = []
    for raw in (ROOT / "requirements.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+!\-]+)", line)
        if match is None:
            others.append(line)
            continue
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"{name} pinned twice"
        pins[name] = match.group(2)
    return pins, others


def test_requirements_lock_every_runtime_dependency_and_install_the_package() -> None:
    pins, others = _pins()
    # Only exact pins, and the package itself last.
    assert others == ["."]
    last = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.strip()][
        -1
    ]
    assert last.strip() == "."
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    test_only = {
        canonicalize_name(Requirement(r).name) for r in project["optional-dependencies"]["test"]
    } - {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not locked in requirements.txt"
        assert requirement.specifier.contains(pins[name], prereleases=True), (spec, pins[name])
        for extra in requirement.extras:  # psycopg[binary] -> psycopg-binary
            dist = metadata.distribution(requirement.name)
            for needed in map(Requirement, dist.requires or []):
                if needed.marker is not None and needed.marker.evaluate({"extra": extra}):
                    assert canonicalize_name(needed.name) in pins, f"{needed.name} ({spec})"
    assert not (test_only & set(pins)), f"test-only packages locked: {test_only & set(pins)}"


def test_requirements_lock_is_closed_under_dependencies() -> None:
    """Every dependency of a locked package is locked too (judged from the installed
    metadata of the packages whose installed version is the locked one)."""
    pins, _ = _pins()
    missing: list[str] = []
    for name, version in pins.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if dist.version != version:
            continue
        for needed in map(Requirement, dist.requires or []):
            if needed.marker is not None and not needed.marker.evaluate({"extra": ""}):
                continue
            if canonicalize_name(needed.name) not in pins:
                missing.append(f"{needed.name} (needed by {name})")
    assert missing == []


def test_the_buildpack_gets_python_3_11() -> None:
    runtime = (ROOT / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(3)\.(11)\.(\d+)", runtime)
    assert match is not None, runtime
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    # The version the suite runs on is the version deployed.
    assert sys.version_info[:2] == (3, 11)
