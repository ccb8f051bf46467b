"""``listeners.idempotency``: which store keeps the keys, and how each store connects (pure pydantic)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from listeners.durations import Duration
from listeners.spec import StoreName


class StoreSection(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SqliteStoreConfig(StoreSection):
    """``listeners.idempotency.sqlite``: one database file shared by the listeners of one host."""

    path: str = ".listeners/idempotency.db"


class RedisStoreConfig(StoreSection):
    """``listeners.idempotency.redis``. Keys are ``<prefix><listener id>:<key>``."""

    url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    prefix: str = "listeners:idempotency:"
    timeout: Duration = Field(default=2.0, gt=0)


class PostgresStoreConfig(StoreSection):
    """``listeners.idempotency.postgres``. ``create_table`` creates the table at startup if missing."""

    dsn: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/postgres")
    table: str = Field(
        default="listeners_idempotency", pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"
    )
    create_table: bool = True
    pool_size: int = Field(default=10, ge=1)
    timeout: Duration = Field(default=5.0, gt=0)


class IdempotencySettings(StoreSection):
    """``listeners.idempotency``: the store listeners with an ``idempotency_key`` use unless their own
    ``idempotency.store`` says otherwise, and each store's connection."""

    store: StoreName = "sqlite"
    sqlite: SqliteStoreConfig = SqliteStoreConfig()
    redis: RedisStoreConfig = RedisStoreConfig()
    postgres: PostgresStoreConfig = PostgresStoreConfig()
