#!/usr/bin/env bash
# Makes sure the brokers the e2e suites talk to are listening on loopback,
# starting any that has stopped with the Debian packages' own commands.
# Under CI a broker that still cannot be reached fails the run: a broker
# suite must never pass by skipping.
set -u

wait_port() { # port seconds
  local port=$1 deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { exec 3>&- 3<&-; return 0; }
    sleep 0.5
  done
  return 1
}

start() { # name port command...
  local name=$1 port=$2
  shift 2
  if wait_port "$port" 1; then
    echo "services: $name is up on :$port"
    return 0
  fi
  echo "services: $name is not listening on :$port, starting it"
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "services: cannot start $name: '$1' is not installed" >&2
    return 1
  fi
  "$@" >/dev/null 2>&1 || true
  if wait_port "$port" 60; then
    echo "services: $name is up on :$port"
  else
    echo "services: $name did not come up on :$port" >&2
    return 1
  fi
}

failed=0
start redis 6379 redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
  --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || failed=1
start rabbitmq 5672 rabbitmq-server -detached || failed=1
start mosquitto 1883 mosquitto -d -c /etc/mosquitto/mosquitto.conf || failed=1
start nats 4222 start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
  -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || failed=1

if ((failed)); then
  if [ -n "${CI:-}" ]; then
    echo "services: a broker is unavailable; failing because CI is set" >&2
    exit 1
  fi
  echo "services: a broker is unavailable; its e2e suites will fail" >&2
fi
exit 0
