#!/usr/bin/env bash
# Start the Hugging Face Space as the Hub would: exactly the committed files (git archive HEAD), a fresh
# venv, `pip install -r requirements.txt`, `python app.py` with the Space's GRADIO_SERVER_* environment;
# then fetch the page and load the shipped models from that venv, offline. `make space-check` runs it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${PORT:-7861}
WORK=$(mktemp -d)
PID=""
cleanup() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi; rm -rf "$WORK"; }
trap cleanup EXIT
git -C "$ROOT" archive HEAD | tar -x -C "$WORK"
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install --quiet --upgrade pip
"$WORK/venv/bin/pip" install --quiet --retries 1 --timeout 10 -r "$WORK/requirements.txt"
cd "$WORK"
GRADIO_SERVER_NAME=127.0.0.1 GRADIO_SERVER_PORT=$PORT HF_HUB_OFFLINE=1 "$WORK/venv/bin/python" app.py \
    --runs-dir "$WORK/runs" > "$WORK/app.log" 2>&1 &
PID=$!
for _ in $(seq 1 180); do
    if curl -fs "http://127.0.0.1:$PORT/" | grep -q ssm-metarl; then
        HF_HUB_OFFLINE=1 "$WORK/venv/bin/python" -c "
from ssm_metarl import list_pretrained, load_pretrained
for name in list_pretrained():
    load_pretrained(name)
print('shipped models load offline:', list_pretrained())"
        echo "the Space serves its page from a fresh venv ($("$WORK/venv/bin/python" -c 'import gradio, torch; print("gradio", gradio.__version__, "torch", torch.__version__)'))"
        exit 0
    fi
    if ! kill -0 "$PID" 2>/dev/null; then break; fi
    sleep 1
done
echo "the Space did not serve its page; app.py's log:" >&2
tail -50 "$WORK/app.log" >&2
exit 1
