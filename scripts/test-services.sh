#!/usr/bin/env bash
# Real database servers for the authentication backend tests (PostgreSQL, MariaDB, Redis),
# each in a data directory of its own and listening on 127.0.0.1 only, on fixed uncommon ports
# so that they never clash with a system instance. The ports are below Linux's ephemeral range
# (32768-60999): there, a busy test run's own outgoing connections can hold the port and make the
# server's bind fail.
#
#   scripts/test-services.sh start   # start what is not running yet, then print the env
#   scripts/test-services.sh env     # print the env (whether or not the servers run)
#   scripts/test-services.sh stop    # stop the servers this directory holds
#
# `start` and `env` print shell lines: eval "$(scripts/test-services.sh start)".
# The tests run this themselves when PORTICO_TEST_POSTGRES & co. are not set, so plain
# `cargo nextest run` works; many test processes may call `start` at once, hence the lock.
#
# Directory: ${PORTICO_TEST_SERVICES_DIR:-/tmp/portico-test-services}. Packages (Debian):
# postgresql, mariadb-server, redis-server (scripts/install-test-deps.sh installs them).
set -euo pipefail

DIR="${PORTICO_TEST_SERVICES_DIR:-/tmp/portico-test-services}"
PG_PORT="${PORTICO_TEST_PG_PORT:-25432}"
MY_PORT="${PORTICO_TEST_MYSQL_PORT:-23306}"
REDIS_PORT="${PORTICO_TEST_REDIS_PORT:-26379}"
# Test-only credentials: the servers listen on loopback and hold nothing but test tables.
USER_NAME=portico
USER_PASSWORD=portico-test
DB_NAME=portico_test
HOST=127.0.0.1

log() { echo "test-services: $*" >&2; }
die() { log "$*"; exit 1; }

print_env() {
    echo "export PORTICO_TEST_POSTGRES=postgres://$USER_NAME:$USER_PASSWORD@$HOST:$PG_PORT/$DB_NAME"
    echo "export PORTICO_TEST_MYSQL=mysql://$USER_NAME:$USER_PASSWORD@$HOST:$MY_PORT/$DB_NAME"
    echo "export PORTICO_TEST_REDIS=redis://:$USER_PASSWORD@$HOST:$REDIS_PORT/0"
    # The CA that signed PostgreSQL's certificate (TLS tests; the server also takes plain TCP).
    echo "export PORTICO_TEST_POSTGRES_CA=$DIR/tls/ca.pem"
}

# Waits until `$@` succeeds, at most $1 tenths of a second.
wait_for() {
    local tenths="$1"
    shift
    for _ in $(seq "$tenths"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    return 1
}

# --- PostgreSQL ---------------------------------------------------------------------------
# postgres refuses to run as root: as root the cluster belongs to the `postgres` system user.
pg_bin() {
    local bin
    bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
    [ -n "$bin" ] || bin="$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")"
    [ -x "$bin/initdb" ] || die "PostgreSQL not found (install the Debian package postgresql)"
    echo "$bin"
}

as_pg() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_ready() { pg_isready -q -h "$HOST" -p "$PG_PORT"; }

# A test CA and a server certificate for 127.0.0.1, made once.
make_certs() {
    local tls="$DIR/tls"
    [ -f "$tls/server.key" ] && return 0
    command -v openssl >/dev/null || die "openssl not found (install the Debian package openssl)"
    mkdir -p "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=portico-test-ca" \
        -keyout "$tls/ca.key" -out "$tls/ca.pem" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$HOST" -keyout "$tls/server.key.tmp" \
        -out "$tls/server.csr" >/dev/null 2>&1
    printf 'subjectAltName=IP:%s,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$HOST" \
        >"$tls/server.ext"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
        -days 3650 -extfile "$tls/server.ext" -out "$tls/server.pem" >/dev/null 2>&1
    chmod 600 "$tls/server.key.tmp"
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$tls/server.key.tmp" "$tls/server.pem"; fi
    mv "$tls/server.key.tmp" "$tls/server.key"
}

start_postgres() {
    local bin data="$DIR/postgres"
    bin="$(pg_bin)"
    if pg_ready; then return 0; fi
    make_certs
    mkdir -p "$data"
    touch "$DIR/postgres.log"
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$data" "$DIR/postgres.log"; fi
    if [ ! -f "$data/PG_VERSION" ]; then
        local pwfile="$data.pw"
        echo "$USER_PASSWORD" >"$pwfile"
        if [ "$(id -u)" -eq 0 ]; then chown postgres: "$pwfile"; fi
        as_pg "$bin/initdb" -D "$data" -U "$USER_NAME" --pwfile="$pwfile" -A scram-sha-256 \
            -E UTF8 --locale=C.UTF-8 --no-sync >"$DIR/postgres-initdb.log" 2>&1 ||
            { rm -f "$pwfile"; die "initdb failed, see $DIR/postgres-initdb.log"; }
        rm -f "$pwfile"
    fi
    # Sockets in the data directory (not /var/run/postgresql, which may not exist or be
    # someone else's); TCP on loopback only; fsync off: test data need not survive a crash.
    as_pg "$bin/pg_ctl" -D "$data" -l "$DIR/postgres.log" -s -w -t 30 start \
        -o "-c listen_addresses=$HOST -p $PG_PORT -c unix_socket_directories=$data -c fsync=off -c max_connections=300 -c ssl=on \
        -c ssl_cert_file=$DIR/tls/server.pem -c ssl_key_file=$DIR/tls/server.key" 9>&- ||
        die "PostgreSQL did not start, see $DIR/postgres.log"
    if ! PGPASSWORD="$USER_PASSWORD" psql -q -h "$HOST" -p "$PG_PORT" -U "$USER_NAME" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1; then
        PGPASSWORD="$USER_PASSWORD" psql -q -h "$HOST" -p "$PG_PORT" -U "$USER_NAME" -d postgres \
            -c "CREATE DATABASE $DB_NAME" >/dev/null
    fi
}

stop_postgres() {
    local data="$DIR/postgres"
    [ -f "$data/postmaster.pid" ] || return 0
    as_pg "$(pg_bin)/pg_ctl" -D "$data" -s -m fast -w stop || true
}

# --- MariaDB / MySQL ----------------------------------------------------------------------
my_server() { command -v mariadbd || command -v mysqld || ls /usr/sbin/mariadbd /usr/sbin/mysqld 2>/dev/null | head -n1; }
my_install_db() { command -v mariadb-install-db || command -v mysql_install_db; }
my_client() { command -v mariadb || command -v mysql; }

my_ready() {
    "$(my_client)" --no-defaults -h "$HOST" -P "$MY_PORT" -u "$USER_NAME" -p"$USER_PASSWORD" \
        -e "SELECT 1" "$DB_NAME" >/dev/null 2>&1
}

start_mysql() {
    local data="$DIR/mysql" server install
    server="$(my_server)"
    install="$(my_install_db)"
    [ -n "$server" ] && [ -n "$install" ] || die "MariaDB not found (install the Debian package mariadb-server)"
    if my_ready; then return 0; fi
    local fresh=0
    if [ ! -d "$data/mysql" ]; then
        mkdir -p "$data"
        "$install" --no-defaults --datadir="$data" --user="$(id -un)" --auth-root-authentication-method=socket \
            --skip-test-db >"$DIR/mysql-install.log" 2>&1 || die "mariadb-install-db failed, see $DIR/mysql-install.log"
        fresh=1
    fi
    # --user is needed (and harmless) when running as root.
    nohup "$server" --no-defaults --datadir="$data" --socket="$DIR/mysql.sock" --pid-file="$DIR/mysql.pid" \
        --port="$MY_PORT" --bind-address="$HOST" --user="$(id -un)" --skip-name-resolve \
        --innodb-buffer-pool-size=32M --innodb-log-file-size=8M --innodb-flush-log-at-trx-commit=0 \
        --max-connections=300 --log-error="$DIR/mysql.log" >/dev/null 2>&1 9>&- &
    wait_for 300 "$(my_client)" --no-defaults -S "$DIR/mysql.sock" -u root -e "SELECT 1" ||
        die "MariaDB did not start, see $DIR/mysql.log"
    if [ "$fresh" = 1 ] || ! my_ready; then
        "$(my_client)" --no-defaults -S "$DIR/mysql.sock" -u root <<SQL
CREATE DATABASE IF NOT EXISTS $DB_NAME;
CREATE USER IF NOT EXISTS '$USER_NAME'@'127.0.0.1' IDENTIFIED BY '$USER_PASSWORD';
GRANT ALL ON $DB_NAME.* TO '$USER_NAME'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
    fi
    wait_for 50 my_ready || die "MariaDB does not accept $USER_NAME, see $DIR/mysql.log"
}

stop_mysql() {
    [ -f "$DIR/mysql.pid" ] || return 0
    local pid
    pid="$(cat "$DIR/mysql.pid")"
    kill "$pid" 2>/dev/null || true
    wait_for 300 bash -c "! kill -0 $pid" || log "MariaDB ($pid) did not stop in time"
    rm -f "$DIR/mysql.pid"
}

# --- Redis --------------------------------------------------------------------------------
redis_ready() { redis-cli -h "$HOST" -p "$REDIS_PORT" --no-auth-warning -a "$USER_PASSWORD" ping 2>/dev/null | grep -q PONG; }

start_redis() {
    command -v redis-server >/dev/null || die "redis-server not found (install the Debian package redis-server)"
    if redis_ready; then return 0; fi
    mkdir -p "$DIR/redis"
    redis-server --bind "$HOST" --port "$REDIS_PORT" --requirepass "$USER_PASSWORD" --daemonize yes \
        --dir "$DIR/redis" --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log" --save "" --appendonly no \
        --protected-mode yes >/dev/null 9>&-
    wait_for 100 redis_ready || die "Redis did not start, see $DIR/redis.log"
}

stop_redis() {
    [ -f "$DIR/redis.pid" ] || return 0
    local pid
    pid="$(cat "$DIR/redis.pid")"
    kill "$pid" 2>/dev/null || true
    wait_for 100 bash -c "! kill -0 $pid" || log "Redis ($pid) did not stop in time"
    rm -f "$DIR/redis.pid"
}

# --- main ---------------------------------------------------------------------------------
# The lock is fd 9; the servers are started with it closed (9>&-), or they would hold it.
locked() {
    mkdir -p "$DIR"
    chmod 755 "$DIR"
    exec 9>"$DIR/.lock"
    flock -w 120 9 || die "could not lock $DIR/.lock"
    "$@"
}

start_all() {
    local began=$SECONDS
    start_postgres
    start_mysql
    start_redis
    log "ready in $((SECONDS - began))s (PostgreSQL :$PG_PORT, MariaDB :$MY_PORT, Redis :$REDIS_PORT on $HOST)"
    print_env
}

stop_all() {
    stop_redis
    stop_mysql
    stop_postgres
    log "stopped"
}

case "${1:-}" in
start) locked start_all ;;
stop) locked stop_all ;;
env) print_env ;;
*)
    echo "usage: $0 start|stop|env" >&2
    exit 2
    ;;
esac
