"""Metadata connection strings and store-opening errors: fast, no pipeline run needed."""

from __future__ import annotations

import os
import sqlite3

import pytest
from click.testing import CliRunner
from ml_metadata.proto import metadata_store_pb2

from cli_support import Exit
from lineage.cli import lineage
from metadata.connection import (
    ConnectionConfigError,
    connection_config_from_url,
    describe_connection,
)
from metadata.store import MetadataError as LineageError
from metadata.store import open_store

SECRET = "s3cr3t-Pa55"


def test_plain_path_and_sqlite_urls_are_sqlite(tmp_path):
    path = tmp_path / "m.db"
    for text in (str(path), f"sqlite://{path}", f"sqlite:///{path}"):
        config = connection_config_from_url(text)
        assert config.sqlite.filename_uri == str(path)
    rel = connection_config_from_url("sqlite:rel/m.db")
    assert rel.sqlite.filename_uri == os.path.abspath("rel/m.db")


def test_postgresql_url_takes_password_from_env_and_never_prints_it(monkeypatch):
    monkeypatch.setenv("MLMD_DB_PASSWORD", SECRET)
    config = connection_config_from_url("postgresql://taxi@db.example:6543/mlmd?sslmode=require")
    pg = config.postgresql
    assert (pg.host, pg.port, pg.user, pg.dbname) == ("db.example", "6543", "taxi", "mlmd")
    assert pg.password == SECRET
    assert pg.ssloption.sslmode == "require"
    text = describe_connection(config)
    assert SECRET not in text and "***" in text
    assert text == "postgresql://taxi:***@db.example:6543/mlmd"


def test_password_in_url_wins_and_is_masked(monkeypatch):
    monkeypatch.delenv("MLMD_DB_PASSWORD", raising=False)
    config = connection_config_from_url(f"mysql://u:{SECRET}@h/db?skip_db_creation=true")
    assert config.mysql.password == SECRET
    assert (config.mysql.host, config.mysql.port, config.mysql.database) == ("h", 3306, "db")
    assert config.mysql.skip_db_creation
    assert SECRET not in describe_connection(config)


def test_pbtxt_config_file_gets_env_password(tmp_path, monkeypatch):
    monkeypatch.setenv("MLMD_DB_PASSWORD", SECRET)
    f = tmp_path / "conn.pbtxt"
    f.write_text('postgresql { host: "pg" port: "5432" user: "team" dbname: "meta" }\n')
    config = connection_config_from_url(str(f))
    assert config.postgresql.dbname == "meta"
    assert config.postgresql.password == SECRET


def test_bad_connections_fail_with_clear_safe_messages(tmp_path):
    with pytest.raises(ConnectionConfigError, match="unsupported metadata URL scheme 'redis'"):
        connection_config_from_url("redis://h/0")
    with pytest.raises(ConnectionConfigError, match="database name"):
        connection_config_from_url("postgresql://u@h:5432")
    bad = tmp_path / "bad.pbtxt"
    bad.write_text(f'mysql {{ password: "{SECRET}" nonsense_field: 1 }}\n')
    with pytest.raises(ConnectionConfigError) as err:
        connection_config_from_url(str(bad))
    assert SECRET not in str(err.value) and "line 1" in str(err.value)


def test_open_store_refuses_missing_and_corrupt_files(tmp_path):
    missing = tmp_path / "nope.db"
    with pytest.raises(LineageError, match="metadata store not found"):
        open_store(str(missing))
    assert not missing.exists(), "a mistyped path must not create an empty store"
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LineageError, match="cannot read metadata store"):
        open_store(str(corrupt))
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(LineageError, match="cannot read metadata store"):
        open_store(str(foreign))


def test_cli_errors_exit_nonzero_without_traceback(tmp_path):
    runner = CliRunner()
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"garbage" * 500)
    cases = [
        (["--metadata", str(tmp_path / "missing.db"), "runs"], "metadata store not found", 3),
        (["--metadata", str(corrupt), "trace", "latest"], "cannot read metadata store", 2),
        (["--metadata", "redis://x/1", "runs"], "unsupported metadata URL scheme", 2),
    ]
    for args, expected, status in cases:
        result = runner.invoke(lineage, args)
        assert result.exit_code == status, (args, result.output)
        assert expected in result.output
        assert "Traceback" not in result.output
        assert not isinstance(result.exception, Exception) or isinstance(
            result.exception, SystemExit
        )


def test_empty_store_has_no_runs_and_no_target(tmp_path):
    """A valid MLMD store that no pipeline has written to yet (e.g. a fresh shared database)."""
    path = tmp_path / "empty.db"
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    from ml_metadata.metadata_store import metadata_store

    metadata_store.MetadataStore(config)  # creates the schema
    runner = CliRunner()
    result = runner.invoke(lineage, ["--metadata", str(path), "runs"])
    assert result.exit_code == 0 and "no pipeline runs recorded" in result.output
    result = runner.invoke(lineage, ["--metadata", str(path), "trace", "latest"])
    assert result.exit_code == Exit.INPUT_MISSING and "no model has been pushed" in result.output
    result = runner.invoke(lineage, ["--metadata", str(path), "diff", "latest", "previous"])
    assert result.exit_code == Exit.INPUT_MISSING and "no pipeline runs recorded" in result.output
