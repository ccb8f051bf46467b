"""The layered configuration loader: files, profiles, environment, overrides, provenance and errors."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from listeners.exceptions import ConfigError
from listeners.spec import ListenerOptions, Retry
from starter.loading import LaunchOptions, LoadedSettings, Source, load_settings
from starter.settings import ApplicationSettings, Section


class OrdersSettings(Section):
    topic: str = "orders"
    batch_size: int = 10


class OrdersApp(ApplicationSettings):
    orders: OrdersSettings = OrdersSettings()


class Vault(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: int
    name: str = "vault"
    api_tokens: list[int] = []


class VaultApp(ApplicationSettings):
    vault: Vault


NOT_AN_INT = "Input should be a valid integer, unable to parse string as an integer"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(
    config_dir: Path,
    *,
    environ: dict[str, str] | None = None,
    profiles: tuple[str, ...] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> LoadedSettings[ApplicationSettings]:
    options = LaunchOptions(config_dir, profiles, overrides or {}, environ or {})
    return load_settings(ApplicationSettings, options)


def load_error(model: type[BaseModel], config_dir: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(model, LaunchOptions(config_dir, environ=environ or {}))
    return str(caught.value)


def test_defaults_without_a_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./config here

    loaded = load_settings(ApplicationSettings, LaunchOptions(environ={}))

    assert loaded.settings == ApplicationSettings.model_construct()
    assert loaded.settings.listeners.kafka.bootstrap_servers == "memory://"
    assert loaded.files == ()
    assert loaded.profiles == ()
    assert loaded.provenance.source_of(("listeners", "kafka", "bootstrap_servers")) == Source("default")


def test_default_config_dir_is_config_under_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config").mkdir()
    write(tmp_path / "config", "application.yml", "listeners: {memory: {partitions: 7}}")
    monkeypatch.chdir(tmp_path)

    loaded = load_settings(ApplicationSettings, LaunchOptions(environ={}))

    assert loaded.settings.listeners.memory.partitions == 7
    assert loaded.files == (Path("config/application.yml"),)
    source = loaded.provenance.source_of(("listeners", "memory", "partitions"))
    assert str(source) == "file config/application.yml"


def test_os_environ_is_not_read_when_an_environ_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LISTENERS__LOGGING__LEVEL", "ERROR")
    monkeypatch.setenv("LISTENERS__MEMORY__PARTITIONS", "not-a-number")

    loaded = load(tmp_path, environ={})

    assert loaded.settings.listeners.logging.level == "INFO"
    assert loaded.settings.listeners.memory.partitions == 3


def test_os_environ_is_read_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTENERS__LOGGING__LEVEL", "DEBUG")

    loaded = load_settings(ApplicationSettings, LaunchOptions(tmp_path))

    assert loaded.settings.listeners.logging.level == "DEBUG"


def test_layers_merge_in_precedence_order(tmp_path: Path) -> None:
    base = write(
        tmp_path,
        "application.yaml",
        """
        listeners:
          kafka: {bootstrap_servers: ["a:9092", "b:9092"]}
          logging: {level: WARNING}
          memory: {partitions: 2}
          tracing: {enabled: true, service_name: billing, endpoint: "http://collector:4318"}
        """,
    )
    first = write(
        tmp_path,
        "application-first.yaml",
        """
        listeners:
          kafka: {bootstrap_servers: ["c:9092"]}
          memory: {partitions: 5}
          tracing: {service_name: first, endpoint: null}
        """,
    )
    second = write(tmp_path, "application-second.yml", "listeners: {memory: {partitions: 6}}")
    environ = {"LISTENERS__LOGGING__LEVEL": "ERROR", "LISTENERS__TRACING__SERVICE_NAME": "env"}
    overrides = {"listeners.tracing.service_name": "override"}

    loaded = load(tmp_path, environ=environ, profiles=("first", "second"), overrides=overrides)

    listeners = loaded.settings.listeners
    assert listeners.kafka.bootstrap_servers == ["c:9092"]  # lists replace, they do not concatenate
    assert listeners.logging.level == "ERROR"
    assert listeners.memory.partitions == 6  # the later profile wins
    assert listeners.tracing.enabled is True  # a sibling from the lowest layer survives
    assert listeners.tracing.service_name == "override"
    assert listeners.tracing.endpoint is None  # null is a value
    assert loaded.files == (base, first, second)
    assert loaded.profiles == ("first", "second")


def test_provenance_names_the_layer_that_set_each_key(tmp_path: Path) -> None:
    base = write(tmp_path, "application.yaml", "listeners: {memory: {partitions: 2}, tracing: {enabled: 1}}")
    profile = write(tmp_path, "application-local.yaml", "listeners: {memory: {partitions: 5}}")
    environ = {"LISTENERS__LOGGING__LEVEL": "DEBUG"}
    overrides = {"listeners.kafka.bootstrap_servers": "localhost:9092"}

    provenance = load(tmp_path, environ=environ, profiles=("local",), overrides=overrides).provenance

    assert provenance.source_of(["listeners", "tracing", "enabled"]) == Source("file", str(base))
    assert provenance.source_of(["listeners", "memory", "partitions"]) == Source("file", str(profile))
    env = Source("env", "LISTENERS__LOGGING__LEVEL")
    assert provenance.source_of(["listeners", "logging", "level"]) == env
    assert provenance.source_of(["listeners", "kafka", "bootstrap_servers"]) == Source(
        "override", "listeners.kafka.bootstrap_servers"
    )
    assert provenance.source_of(["listeners", "shutdown_timeout"]) == Source("default")
    assert provenance.source_of(["listeners", "tracing", "exporter"]) == Source("default")


def test_provenance_of_a_key_set_through_an_ancestor(tmp_path: Path) -> None:
    write(tmp_path, "application.yaml", "listeners: {memory: {partitions: 2}, tracing: {enabled: true}}")
    environ = {"LISTENERS__MEMORY": '{"partitions": 9}'}
    overrides = {"listeners.tracing": {"exporter": "console"}}

    loaded = load(tmp_path, environ=environ, overrides=overrides)

    assert loaded.settings.listeners.memory.partitions == 9
    assert loaded.settings.listeners.tracing.enabled is True
    assert loaded.settings.listeners.tracing.exporter == "console"
    provenance = loaded.provenance
    assert provenance.source_of(("listeners", "memory", "partitions")) == Source("env", "LISTENERS__MEMORY")
    # The override set the whole `tracing` mapping, which outranks the file's `enabled`.
    override = Source("override", "listeners.tracing")
    assert provenance.source_of(("listeners", "tracing", "enabled")) == override


def test_source_renders_kind_and_detail() -> None:
    assert str(Source("default")) == "default"
    assert str(Source("file", "config/application.yaml")) == "file config/application.yaml"
    assert str(Source("env", "LISTENERS__KAFKA__CLIENT_ID")) == "env LISTENERS__KAFKA__CLIENT_ID"
    assert str(Source("override", "listeners.x.y")) == "override listeners.x.y"


def test_listener_ids_from_files_and_env_are_one_entry(tmp_path: Path) -> None:
    yaml_text = "listeners: {listener: {order-audit: {retry: {attempts: 5}}}}"
    config = write(tmp_path, "application.yaml", yaml_text)
    environ = {"LISTENERS__LISTENER__ORDER_AUDIT__CONCURRENCY": "4"}

    loaded = load(tmp_path, environ=environ)

    assert loaded.settings.listeners.listener == {
        "order-audit": ListenerOptions(concurrency=4, retry=Retry(attempts=5))
    }
    provenance = loaded.provenance
    env = Source("env", "LISTENERS__LISTENER__ORDER_AUDIT__CONCURRENCY")
    assert provenance.source_of(("listeners", "listener", "order-audit", "concurrency")) == env
    assert provenance.source_of(("listeners", "listener", "order_audit", "concurrency")) == env
    assert provenance.source_of(("listeners", "listener", "order-audit", "retry", "attempts")) == Source(
        "file", str(config)
    )
    assert ("listeners", "listener", "order-audit", "concurrency") in provenance.paths()


def test_profiles_come_from_the_environment(tmp_path: Path) -> None:
    write(tmp_path, "application-a.yaml", "listeners: {memory: {partitions: 4}}")
    write(tmp_path, "application-b.yaml", "listeners: {memory: {partitions: 8}}")

    from_env = load(tmp_path, environ={"LISTENERS_PROFILES": " b , a ,"})
    explicit = load(tmp_path, environ={"LISTENERS_PROFILES": "b,a"}, profiles=("b",))

    assert from_env.profiles == ("b", "a")
    assert from_env.settings.listeners.memory.partitions == 4
    assert explicit.profiles == ("b",)
    assert explicit.settings.listeners.memory.partitions == 8


def test_empty_file_is_fine(tmp_path: Path) -> None:
    path = write(tmp_path, "application.yaml", "# nothing configured yet\n")

    loaded = load(tmp_path)

    assert loaded.files == (path,)
    assert loaded.settings == ApplicationSettings.model_construct()


def test_unknown_key_names_file_key_and_suggestion(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "application.yaml",
        """
        listeners:
          kafka: {bootstrap_server: "x:9092"}
          listener:
            billing: {concurency: 2}
        """,
    )

    message = load_error(ApplicationSettings, tmp_path)

    assert message.splitlines() == [
        "invalid configuration",
        f"file {path}: listeners.kafka.bootstrap_server: unknown key (did you mean 'bootstrap_servers'?)",
        f"file {path}: listeners.listener.billing.concurency: unknown key (did you mean 'concurrency'?)",
    ]


def test_unknown_key_without_a_close_match(tmp_path: Path) -> None:
    path = write(tmp_path, "application.yaml", "listeners: {zzz: 1}")

    assert load_error(ApplicationSettings, tmp_path).splitlines()[1:] == [
        f"file {path}: listeners.zzz: unknown key"
    ]


def test_type_error_from_env_names_the_variable(tmp_path: Path) -> None:
    environ = {"LISTENERS__MEMORY__PARTITIONS": "many", "LISTENERS_PROFILES": ""}

    message = load_error(ApplicationSettings, tmp_path, environ)

    assert message.splitlines() == [
        "invalid configuration",
        "env LISTENERS__MEMORY__PARTITIONS: listeners.memory.partitions: "
        "Input should be a valid integer, unable to parse string as an integer (got 'many')",
    ]


def test_invalid_env_json_names_the_variable(tmp_path: Path) -> None:
    environ = {"LISTENERS__LOGGING__LEVEL": "DEBUG", "LISTENERS__LISTENER": "{not json"}

    message = load_error(ApplicationSettings, tmp_path, environ)

    assert message.splitlines() == [
        "invalid configuration",
        "env LISTENERS__LISTENER: not valid JSON for a nested setting",
    ]


def test_union_errors_name_the_key_not_the_union_member(tmp_path: Path) -> None:
    path = write(tmp_path, "application.yaml", "listeners: {kafka: {bootstrap_servers: 12}}")

    message = load_error(ApplicationSettings, tmp_path)

    assert message.splitlines()[1:] == [
        f"file {path}: listeners.kafka.bootstrap_servers: Input should be a valid string (got 12)",
        f"file {path}: listeners.kafka.bootstrap_servers: Input should be a valid list (got 12)",
    ]


def test_bad_duration_reads_naturally(tmp_path: Path) -> None:
    path = write(tmp_path, "application.yaml", "listeners: {shutdown_timeout: 3 weeks}")

    message = load_error(ApplicationSettings, tmp_path)

    assert message.splitlines()[1] == (
        f"file {path}: listeners.shutdown_timeout: invalid duration '3 weeks': "
        "use a number of seconds or e.g. 250ms, 30s, 5m, 2h, 7d"
    )


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "application.yaml", "listeners:\n  kafka: {client_id: a\n  memory: 1\n")

    message = load_error(ApplicationSettings, tmp_path)

    assert message.startswith(f"invalid YAML in {path} at line 3, column 9: ")
    assert message.endswith("expected ',' or '}', but got ':'")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "application-local.yaml", "- listeners\n- kafka\n")

    with pytest.raises(ConfigError) as caught:
        load(tmp_path, profiles=("local",))

    assert str(caught.value) == f"{path}: the top level must be a mapping of keys, not a list"


def test_yaml_and_yml_side_by_side_are_ambiguous(tmp_path: Path) -> None:
    write(tmp_path, "application.yaml", "")
    write(tmp_path, "application.yml", "")

    message = load_error(ApplicationSettings, tmp_path)

    assert message == (
        f"ambiguous configuration: both {tmp_path / 'application.yaml'} "
        f"and {tmp_path / 'application.yml'} exist; keep one"
    )


def test_missing_explicit_config_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"

    assert load_error(ApplicationSettings, missing) == f"config directory {str(missing)!r} does not exist"


def test_missing_profile_file_warns_and_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path, "application.yaml", "listeners: {memory: {partitions: 2}}")

    with caplog.at_level(logging.WARNING, logger="listeners.config"):
        loaded = load(tmp_path, profiles=("staging",))

    assert loaded.settings.listeners.memory.partitions == 2
    assert loaded.profiles == ("staging",)
    assert [record.name for record in caplog.records] == ["listeners.config"]
    assert caplog.records[0].getMessage() == (
        f"profile 'staging' is active but {tmp_path / 'application-staging.yaml'} does not exist; ignoring it"
    )


@pytest.mark.parametrize("name", ["../etc", "a b", ""])
def test_bad_profile_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, profiles=(name,))

    assert str(caught.value) == f"invalid profile name {name!r}: use letters, digits, '_', '.' and '-'"


def test_bad_profile_name_from_env(tmp_path: Path) -> None:
    message = load_error(ApplicationSettings, tmp_path, {"LISTENERS_PROFILES": "dev,prod/eu"})

    assert message == "invalid profile name 'prod/eu': use letters, digits, '_', '.' and '-'"


def test_secret_inputs_are_never_shown(tmp_path: Path) -> None:
    yaml_text = "vault: {url: hunter2-s3cret, name: [1], api_tokens: [tok-123]}"
    path = write(tmp_path, "application.yaml", yaml_text)

    message = load_error(VaultApp, tmp_path)

    assert "hunter2" not in message
    assert "tok-123" not in message
    assert message.splitlines()[1:] == [
        f"file {path}: vault.url: {NOT_AN_INT}",
        f"file {path}: vault.name: Input should be a valid string",
        f"file {path}: vault.api_tokens.0: {NOT_AN_INT}",
    ]


def test_missing_required_key(tmp_path: Path) -> None:
    message = load_error(VaultApp, tmp_path)

    assert message == "invalid configuration\nmissing: vault: Field required"


def test_subclass_sections_load_and_reject_unknown_keys(tmp_path: Path) -> None:
    write(tmp_path, "application.yaml", "orders: {topic: orders.v2}\nlisteners: {memory: {partitions: 4}}")

    loaded = load_settings(OrdersApp, LaunchOptions(tmp_path, environ={"ORDERS__BATCH_SIZE": "50"}))

    assert loaded.settings.orders == OrdersSettings(topic="orders.v2", batch_size=50)
    assert loaded.settings.listeners.memory.partitions == 4
    assert loaded.provenance.source_of(("orders", "batch_size")) == Source("env", "ORDERS__BATCH_SIZE")

    path = write(tmp_path, "application.yaml", "orders: {topik: x}\nordres: {}")
    assert load_error(OrdersApp, tmp_path).splitlines()[1:] == [
        f"file {path}: orders.topik: unknown key (did you mean 'topic'?)",
        f"file {path}: ordres: unknown key (did you mean 'orders'?)",
    ]


def test_a_key_given_twice_in_one_file_is_an_error_with_its_line(tmp_path: Path) -> None:
    text = "listeners:\n  memory: {partitions: 2}\n  memory: {partitions: 3}\n"
    path = write(tmp_path, "application.yaml", text)

    message = load_error(ApplicationSettings, tmp_path)

    assert message == f"invalid YAML in {path} at line 3, column 3: duplicate key 'memory'"
