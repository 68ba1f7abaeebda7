#!/usr/bin/env bash
# The seeds' daemon control script, on ssm-metarl: ./rsi_control.sh start|status|logs|stop [flags]
# Each action is `ssm-metarl rsi ACTION [flags]` (flags: `ssm-metarl rsi start --help`; the loop's folder is
# --out_dir for start, --out for the others, runs/rsi by default). `logs -f` follows the log.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$here/.venv/bin/ssm-metarl"
[ -x "$bin" ] || bin="ssm-metarl"
action="${1:?usage: ./rsi_control.sh start|status|logs|stop [ssm-metarl rsi flags]}"
shift
case "$action" in
    start|status|logs|stop) exec "$bin" rsi "$action" "$@" ;;
    *) echo "error: unknown action '$action'; use start, status, logs or stop" >&2; exit 2 ;;
esac
