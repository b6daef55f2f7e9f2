"""What a PostgreSQL `query=` source may send: exactly one read-only SELECT.

The query is parsed (sqlparse's lexer), not pattern-matched, and refused before anything reaches
the server when it is more than one statement, transaction control (BEGIN, COMMIT, SET, ...),
anything but SELECT or WITH ... SELECT (a data-modifying CTE, SELECT INTO, FOR UPDATE), or calls a
function that acts outside the transaction (set_config, file and large-object access, ...).

Where two lexers could disagree about what is code, the text is refused or rewritten so that they
cannot: the query sent is rebuilt from the parsed tokens without its comments (PostgreSQL nests
block comments, sqlparse does not, so a comment could hide a quote from one of them), and string
literals holding a backslash, dollar-quoted strings and anything the lexer cannot classify are
refused (whether a backslash escapes a quote depends on the server's
standard_conforming_strings). The session guards behind this check are in postgres_source.py:
default_transaction_read_only at connect, a READ ONLY transaction re-checked before each query.
"""

from __future__ import annotations

import sqlparse
from sqlparse import tokens as T

# Keywords that end, open or change a transaction or the session, write, or copy data out.
_REFUSED_KEYWORDS = frozenset(
    {
        "ABORT",
        "BEGIN",
        "CALL",
        "CHECKPOINT",
        "COMMIT",
        "COPY",
        "DEALLOCATE",
        "DISCARD",
        "DO",
        "EXECUTE",
        "GRANT",
        "INTO",
        "LISTEN",
        "LOAD",
        "LOCK",
        "NOTIFY",
        "PREPARE",
        "REFRESH",
        "REINDEX",
        "RELEASE",
        "RESET",
        "REVOKE",
        "ROLLBACK",
        "SAVEPOINT",
        "SET",
        "START",
        "TRANSACTION",
        "TRUNCATE",
        "UNLISTEN",
        "VACUUM",
    }
)
# Functions whose effect outlives a rolled-back read-only transaction or reaches outside the
# database (session settings, server files, large objects, other backends, other servers).
_REFUSED_FUNCTIONS = frozenset(
    {
        "set_config",
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "lo_import",
        "lo_export",
        "lo_unlink",
        "lo_from_bytea",
        "lo_put",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_notify",
        "dblink",
        "dblink_exec",
        "dblink_connect",
        "query_to_xml",
        "pg_advisory_lock",
        "pg_advisory_xact_lock",
        "pg_sleep",
    }
)
MAX_QUERY_CHARS = 100_000


class QueryRefused(ValueError):
    """The query is not one read-only SELECT; the message is one line saying why."""


def read_only_select(text: str) -> str:
    """The query to send for `text`: the same single SELECT, without comments or a trailing
    semicolon. Raises QueryRefused (one line) for anything else."""
    if not isinstance(text, str) or not text.strip():
        raise QueryRefused("query is empty: give one SELECT")
    if len(text) > MAX_QUERY_CHARS:
        raise QueryRefused(f"query is longer than {MAX_QUERY_CHARS} characters")
    if "\x00" in text:
        raise QueryRefused("query holds a NUL character")
    tokens = [t for statement in sqlparse.parse(text) for t in statement.flatten()]
    code = [t for t in tokens if not t.is_whitespace and t.ttype not in T.Comment]
    while code and code[-1].match(T.Punctuation, ";"):
        code.pop()
    if not code:
        raise QueryRefused("query holds no statement: give one SELECT")
    first = code[0]
    if first.normalized not in ("SELECT", "WITH"):
        raise QueryRefused(
            f"query must be one SELECT (or WITH ... SELECT), not {_word(first)}: "
            "a query source only reads"
        )
    depth = 0
    for i, token in enumerate(code):
        word = token.normalized.upper() if token.ttype in T.Keyword else ""
        if token.match(T.Punctuation, ";"):
            raise QueryRefused("query holds more than one statement: give exactly one SELECT")
        if token.match(T.Punctuation, "("):
            depth += 1
        elif token.match(T.Punctuation, ")"):
            depth -= 1
            if depth < 0:
                raise QueryRefused("query closes a parenthesis it never opened")
        elif token.ttype in T.Error:
            raise QueryRefused(f"query has a character the parser cannot read: {_word(token)}")
        elif token.ttype in T.Keyword.DDL or (token.ttype in T.Keyword.DML and word != "SELECT"):
            raise QueryRefused(
                f"query holds {_word(token)}: a query source runs one read-only SELECT "
                "(quote a column of that name)"
            )
        elif word in _REFUSED_KEYWORDS:
            raise QueryRefused(
                f"query holds {_word(token)}: no transaction control, SET or INTO in a "
                "query source (quote a column of that name)"
            )
        elif token.ttype in T.Literal.String.Single and "\\" in token.value:
            raise QueryRefused("query has a backslash in a string literal: spell it without one")
        elif token.ttype is T.Literal and token.value.startswith("$"):
            raise QueryRefused("query has a dollar-quoted string: use a '...' literal")
        elif (
            token.ttype in T.Name or token.ttype in T.Literal.String.Symbol
        ) and token.value.strip('"').lower() in _REFUSED_FUNCTIONS:  # set_config( and "set_config"(
            following = code[i + 1] if i + 1 < len(code) else None
            if following is not None and following.match(T.Punctuation, "("):
                raise QueryRefused(
                    f"query calls {token.value}(): not allowed in a read-only query source"
                )
    if depth:
        raise QueryRefused("query leaves a parenthesis open")
    last = tokens.index(code[-1])
    return "".join(" " if t.ttype in T.Comment else t.value for t in tokens[: last + 1]).strip()


def _word(token) -> str:
    text = " ".join(token.value.split())
    return repr(text if len(text) <= 30 else text[:27] + "...")
