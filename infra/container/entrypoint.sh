#!/bin/sh
# bootfleet's one container image: FUNCTION_TARGET picks what this container is.
#
#   boot | config | status | dns | cleanup   that function alone, served by functions-framework
#                                            (gunicorn) on $PORT: what each Code Engine app runs
#   gateway                                  nginx on $PORT routing /<function>/ to each app's
#                                            URL (BOOTFLEET_UPSTREAM_<FUNCTION>), dashboard from disk
#   router                                   all five behind one gunicorn on $PORT (one VM, no nginx)
#
# Code Engine sets PORT=8080; HOST (default 0.0.0.0) is the address to listen on. Settings come from the environment (BOOTFLEET_*);
# the gateway's read timeout from BOOTFLEET_GATEWAY_READ_TIMEOUT (seconds, default 60).
set -eu

root="${BOOTFLEET_ROOT:-/app}"
port="${PORT:-8080}"
host="${HOST:-0.0.0.0}"   # all interfaces in a container; tests set 127.0.0.1
target="${FUNCTION_TARGET:-}"

# Prometheus metrics (GET /<function>/metrics): gunicorn's processes add theirs up through files
# in this directory, which must be empty when the server starts.
metrics_dir() {
  export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-/tmp/bootfleet-metrics}"
  mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
  find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -delete
}

case "$target" in
  boot | config | status | dns | cleanup)
    export FUNCTION_SOURCE="${FUNCTION_SOURCE:-$root/functions/$target/main.py}"
    metrics_dir
    exec functions-framework --target "$target" --source "$FUNCTION_SOURCE" --host "$host" --port "$port"
    ;;
  gateway)
    runtime="${NGINX_RUNTIME_DIR:-/tmp/nginx}"
    mkdir -p "$runtime"
    # How long a function may take to answer (Terraform: request_timeout, the apps' own timeout too).
    read_timeout="${BOOTFLEET_GATEWAY_READ_TIMEOUT:-60}"
    python "$root/infra/nginx/render.py" --standalone --mode functions --http-port "$port" \
      --listen "$host" --runtime-dir "$runtime" --static-root "$root/static" --output "$runtime/nginx.conf" \
      --read-timeout "$read_timeout"
    exec nginx -e stderr -p "$runtime" -c "$runtime/nginx.conf" -g 'daemon off;'
    ;;
  router)
    metrics_dir
    exec gunicorn --bind "$host:$port" --worker-class bootfleet.web.worker.BufferingThreadWorker --workers "${WORKERS:-2}" \
      --threads "${THREADS:-8}" --timeout 60 --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}" \
      --logger-class bootfleet.web.accesslog.RedactingLogger \
      'bootfleet.web.router:create_router()'
    ;;
  *)
    echo "bootfleet: FUNCTION_TARGET must be one of boot, config, status, dns, cleanup, gateway, router (got '${target}')" >&2
    exit 64
    ;;
esac
