# shellcheck shell=bash
# A throwaway PostgreSQL cluster for CI and local test runs.
#
# Source this file, then call pg_start and (always, e.g. from an EXIT trap) pg_stop.
# The cluster lives in a fresh temporary directory, listens on 127.0.0.1 only,
# keeps its unix socket in that directory, trades durability for speed
# (fsync=off) and has a role icep/icep that may CREATE DATABASE and CREATE ROLE:
# the test suite creates and drops its own databases through it, and
# tests/test_database_roles.py runs deploy/postgres/roles.sql with it, as the
# administrator of a managed PostgreSQL would (roles of its own, dropped after).
#
# initdb refuses to run as root, so the server runs as the `postgres` OS user.
# Debian keeps the server binaries off PATH, under /usr/lib/postgresql/<major>/bin.

PG_PORT="${PG_PORT:-55432}"
PG_ROLE="${PG_ROLE:-icep}"
PG_PASSWORD="${PG_PASSWORD:-icep}"
PG_OS_USER="${PG_OS_USER:-postgres}"
PG_TMPDIR=""
PG_BINDIR=""

# The newest installed server's bin directory, or nothing.
pg_find_bindir() {
    local dir best=""
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V); do
        [ -x "$dir/initdb" ] && best="$dir"
    done
    [ -n "$best" ] || return 1
    printf '%s\n' "$best"
}

# Run a command as the PostgreSQL OS user, from a directory it can read.
_pg_as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd "$PG_TMPDIR" && runuser -u "$PG_OS_USER" -- "$@")
    else
        (cd "$PG_TMPDIR" && "$@")
    fi
}

_pg_port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$PG_PORT") 2>/dev/null
}

pg_start() {
    PG_BINDIR="$(pg_find_bindir)" || {
        echo "pg_start: no initdb under /usr/lib/postgresql/*/bin (apt-get install postgresql)" >&2
        return 1
    }
    if _pg_port_in_use; then
        echo "pg_start: something already listens on 127.0.0.1:$PG_PORT (a leftover cluster?)" >&2
        return 1
    fi
    if [ "$(id -u)" -eq 0 ] && ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
        useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_OS_USER"
    fi

    PG_TMPDIR="$(mktemp -d -t icep-pg.XXXXXX)"
    if [ "$(id -u)" -eq 0 ]; then
        chown "$PG_OS_USER:" "$PG_TMPDIR"
    fi
    local data="$PG_TMPDIR/data"

    _pg_as_owner "$PG_BINDIR/initdb" --pgdata="$data" --username=postgres \
        --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C --no-sync >"$PG_TMPDIR/initdb.log" 2>&1 || {
        cat "$PG_TMPDIR/initdb.log" >&2
        return 1
    }

    # Appended settings win over initdb's defaults earlier in the file.
    cat >>"$data/postgresql.conf" <<CONF

# icep CI throwaway cluster
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_TMPDIR'
max_connections = 400
fsync = off
synchronous_commit = off
full_page_writes = off
CONF

    _pg_as_owner "$PG_BINDIR/pg_ctl" --pgdata="$data" --log="$PG_TMPDIR/server.log" \
        --wait --timeout=60 start >/dev/null || {
        cat "$PG_TMPDIR/server.log" >&2
        return 1
    }

    local tries=0
    until "$PG_BINDIR/pg_isready" --quiet --host=127.0.0.1 --port="$PG_PORT"; do
        tries=$((tries + 1))
        if [ "$tries" -ge 60 ]; then
            echo "pg_start: server not ready after 30s" >&2
            cat "$PG_TMPDIR/server.log" >&2
            return 1
        fi
        sleep 0.5
    done

    pg_setup_role
}

# The suite's admin role, with the rights it needs; safe to run again on a
# cluster that has it already (with fewer rights, e.g. made by an older
# version of this file, it gets them).
pg_setup_role() {
    _pg_as_owner "$PG_BINDIR/psql" --quiet --no-psqlrc --host="$PG_TMPDIR" --port="$PG_PORT" \
        --username=postgres --dbname=postgres -v ON_ERROR_STOP=1 \
        -c "SET client_min_messages = warning" \
        -c "DO \$\$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
                    CREATE ROLE \"$PG_ROLE\";
                END IF;
            END \$\$" \
        -c "ALTER ROLE \"$PG_ROLE\" LOGIN CREATEDB CREATEROLE PASSWORD '$PG_PASSWORD'" \
        -c "GRANT pg_signal_backend TO \"$PG_ROLE\"" >/dev/null
}

# The admin URL the test suite takes in ICEP_TEST_POSTGRES_URL.
pg_url() {
    printf 'postgresql://%s:%s@127.0.0.1:%s/postgres\n' "$PG_ROLE" "$PG_PASSWORD" "$PG_PORT"
}

# Safe to call more than once, and when pg_start never ran or failed half way.
pg_stop() {
    [ -n "$PG_TMPDIR" ] || return 0
    [ -n "${PG_BINDIR:-}" ] || PG_BINDIR="$(pg_find_bindir || true)"
    if [ -f "$PG_TMPDIR/data/postmaster.pid" ] && [ -n "$PG_BINDIR" ]; then
        if ! _pg_as_owner "$PG_BINDIR/pg_ctl" --pgdata="$PG_TMPDIR/data" --mode=fast \
            --wait --timeout=60 stop >/dev/null; then
            echo "pg_stop: fast shutdown failed, trying immediate" >&2
            if ! _pg_as_owner "$PG_BINDIR/pg_ctl" --pgdata="$PG_TMPDIR/data" --mode=immediate \
                --wait --timeout=30 stop >/dev/null; then
                # Keep the directory: the server still uses it, and its log says why.
                echo "pg_stop: could not stop the server; left $PG_TMPDIR" >&2
                return 1
            fi
        fi
    fi
    rm -rf -- "$PG_TMPDIR"
    PG_TMPDIR=""
}
