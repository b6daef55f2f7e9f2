"""Turn what a user types (a path, a URL, a config file) into an MLMD ConnectionConfig.

A team that shares one metadata store on PostgreSQL or MySQL needs the runner and every lineage
command to reach it the same way, and a password must never end up in shell history, logs or
error messages. So URLs may carry the password but normally don't: it comes from
``MLMD_DB_PASSWORD`` (and the user, if the URL has none, from ``MLMD_DB_USER``), and every
human-readable form of a config goes through :func:`describe_connection`, which masks it.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from google.protobuf import text_format
from ml_metadata.proto import metadata_store_pb2

# Where the local runner writes by default (PipelineConfig.output_dir) and where its SQLite store
# lives under an output dir; readers that default to "the local store" use the same place.
LOCAL_OUTPUT_DIR = Path(__file__).resolve().parent.parent / "tfx_pipeline_output"
PASSWORD_ENV = "MLMD_DB_PASSWORD"
USER_ENV = "MLMD_DB_USER"
MASK = "***"

_TEXT_PROTO_SUFFIXES = (".pbtxt", ".textproto", ".prototxt", ".pb.txt")
_TRUE = {"1", "true", "yes", "on"}


def sqlite_store_path(output_dir: str | os.PathLike[str] = LOCAL_OUTPUT_DIR) -> str:
    """The SQLite store of a local run writing under `output_dir`."""
    return os.path.join(os.fspath(output_dir), "metadata", "metadata.db")


class ConnectionConfigError(ValueError):
    """A metadata connection string or config file that cannot be used; the message is safe to
    print."""


def connection_config_from_url(
    url_or_path: str | os.PathLike[str],
) -> metadata_store_pb2.ConnectionConfig:
    """Build the ConnectionConfig for a SQLite path, a database URL or a text-proto config file.

    Accepted forms:

    * ``/path/metadata.sqlite`` or ``sqlite:///abs/path.sqlite`` (``sqlite:rel/path`` for relative);
    * ``postgresql://user@host:5432/dbname?sslmode=require`` (also ``postgres://``);
    * ``mysql://user@host:3306/dbname`` (``?socket=/path`` for a Unix socket);
    * ``conn.pbtxt``: a text-format ``ConnectionConfig``, exactly what MLMD itself takes.

    Query parameter ``skip_db_creation=true`` is honoured for both servers. A password in the URL
    is accepted, but ``MLMD_DB_PASSWORD`` is the way to pass one; it also fills a config file's
    empty password, so the file can be committed.
    """
    text = os.fspath(url_or_path).strip()
    if not text:
        raise ConnectionConfigError(
            "empty metadata connection: give a SQLite path, a URL or a .pbtxt file"
        )
    lowered = text.lower()
    if lowered.startswith(("postgresql://", "postgres://")):
        return _postgresql(text)
    if lowered.startswith("mysql://"):
        return _mysql(text)
    if lowered.startswith("sqlite:"):
        path = text[len("sqlite:") :]
        if path.startswith("///"):
            # sqlite:///abs/path and SQLAlchemy's sqlite:////abs/path both mean /abs/path.
            path = "/" + path.lstrip("/")
        elif path.startswith("//"):
            raise ConnectionConfigError(
                "sqlite URLs have no host: use sqlite:///absolute/path or sqlite:relative/path"
            )
        return sqlite_config(path)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise ConnectionConfigError(
            f"unsupported metadata URL scheme {scheme!r}: use a path, sqlite://, postgresql://, "
            "mysql:// or a .pbtxt ConnectionConfig file"
        )
    if lowered.endswith(_TEXT_PROTO_SUFFIXES):
        return _from_text_proto(Path(text))
    return sqlite_config(text)


def sqlite_config(
    path: str | os.PathLike[str], *, read_only: bool = False
) -> metadata_store_pb2.ConnectionConfig:
    """SQLite config for a file; read-only mode lets lineage commands refuse to create a store."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = os.path.abspath(os.fspath(path))
    mode = metadata_store_pb2.SqliteMetadataSourceConfig
    config.sqlite.connection_mode = mode.READONLY if read_only else mode.READWRITE_OPENCREATE
    return config


def describe_connection(config: metadata_store_pb2.ConnectionConfig) -> str:
    """A one-line, password-free description of where a config points (for logs and errors)."""
    kind = config.WhichOneof("config")
    if kind == "sqlite":
        return (
            f"sqlite:///{config.sqlite.filename_uri.lstrip('/')}"
            if config.sqlite.filename_uri.startswith("/")
            else f"sqlite:{config.sqlite.filename_uri}"
        )
    if kind == "postgresql":
        pg = config.postgresql
        auth = _auth_part(pg.user, pg.password)
        host = pg.host or pg.hostaddr or "localhost"
        port = f":{pg.port}" if pg.port else ""
        return f"postgresql://{auth}{host}{port}/{pg.dbname}"
    if kind == "mysql":
        my = config.mysql
        auth = _auth_part(my.user, my.password)
        where = f"{my.host or 'localhost'}{f':{my.port}' if my.port else ''}"
        suffix = f"?socket={my.socket}" if my.socket else ""
        return f"mysql://{auth}{where}/{my.database}{suffix}"
    if kind == "fake_database":
        return "fake-database (in memory)"
    return "unset metadata connection"


def secrets_of(config: metadata_store_pb2.ConnectionConfig) -> list[str]:
    """Every secret in a config, so error text coming back from MLMD can be scrubbed of them."""
    found = [
        config.postgresql.password,
        config.postgresql.ssloption.sslpassword,
        config.mysql.password,
    ]
    return [s for s in found if s]


def scrub(message: str, config: metadata_store_pb2.ConnectionConfig) -> str:
    """Replace any secret of ``config`` that appears in ``message`` with a mask."""
    for secret in secrets_of(config):
        message = message.replace(secret, MASK)
    return message


def _auth_part(user: str, password: str) -> str:
    if not user:
        return ""
    return f"{user}:{MASK}@" if password else f"{user}@"


def _split(url: str) -> tuple[str, str, str, int | None, str, dict[str, str]]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise ConnectionConfigError(f"bad port in metadata URL: {exc}") from None
    user = unquote(parts.username) if parts.username else os.environ.get(USER_ENV, "")
    password = unquote(parts.password) if parts.password else os.environ.get(PASSWORD_ENV, "")
    dbname = unquote(parts.path.lstrip("/"))
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    return user, password, parts.hostname or "", port, dbname, query


def _postgresql(url: str) -> metadata_store_pb2.ConnectionConfig:
    user, password, host, port, dbname, query = _split(url)
    if not dbname:
        raise ConnectionConfigError(
            "postgresql URL needs a database name: postgresql://user@host:5432/dbname"
        )
    config = metadata_store_pb2.ConnectionConfig()
    pg = config.postgresql
    pg.host = host or "localhost"
    pg.port = str(port or 5432)
    pg.dbname = dbname
    if user:
        pg.user = user
    if password:
        pg.password = password
    pg.skip_db_creation = query.pop("skip_db_creation", "").lower() in _TRUE
    if "passfile" in query:
        pg.passfile = query.pop("passfile")
    for field in ("sslmode", "sslcert", "sslkey", "sslrootcert"):
        if field in query:
            setattr(pg.ssloption, field, query.pop(field))
    _reject_unknown(query, "postgresql")
    return config


def _mysql(url: str) -> metadata_store_pb2.ConnectionConfig:
    user, password, host, port, dbname, query = _split(url)
    if not dbname:
        raise ConnectionConfigError(
            "mysql URL needs a database name: mysql://user@host:3306/dbname"
        )
    config = metadata_store_pb2.ConnectionConfig()
    my = config.mysql
    my.database = dbname
    if "socket" in query:
        my.socket = query.pop("socket")
    else:
        my.host = host or "localhost"
        my.port = port or 3306
    if user:
        my.user = user
    if password:
        my.password = password
    my.skip_db_creation = query.pop("skip_db_creation", "").lower() in _TRUE
    _reject_unknown(query, "mysql")
    return config


def _reject_unknown(query: dict[str, str], kind: str) -> None:
    if query:
        raise ConnectionConfigError(f"unknown {kind} URL parameter(s): {', '.join(sorted(query))}")


def _from_text_proto(path: Path) -> metadata_store_pb2.ConnectionConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConnectionConfigError(
            f"cannot read metadata connection file {path}: {exc.strerror}"
        ) from None
    config = metadata_store_pb2.ConnectionConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        # ParseError quotes the offending token, which could be a password: report the place only.
        where = f"line {exc.GetLine()}" if exc.GetLine() else "unknown place"
        raise ConnectionConfigError(
            f"{path} is not a text-format ml_metadata ConnectionConfig (parse error at {where})"
        ) from None
    kind = config.WhichOneof("config")
    if kind is None:
        raise ConnectionConfigError(f"{path} sets no connection (sqlite, mysql or postgresql)")
    env_password = os.environ.get(PASSWORD_ENV, "")
    if kind == "postgresql":
        if env_password and not config.postgresql.password:
            config.postgresql.password = env_password
        if not config.postgresql.user and os.environ.get(USER_ENV):
            config.postgresql.user = os.environ[USER_ENV]
    elif kind == "mysql":
        if env_password and not config.mysql.password:
            config.mysql.password = env_password
        if not config.mysql.user and os.environ.get(USER_ENV):
            config.mysql.user = os.environ[USER_ENV]
    elif kind == "sqlite" and not os.path.isabs(config.sqlite.filename_uri):
        # Relative to the config file, so a committed config works from any working directory.
        config.sqlite.filename_uri = str((path.parent / config.sqlite.filename_uri).resolve())
    return config
