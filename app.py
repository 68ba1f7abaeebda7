"""Start the web app: ``python app.py [--host 127.0.0.1] [--port 7860]`` (same as ``ssm-metarl app``).

Also the entry of a Hugging Face Space (``app_file`` in the README's front matter): a Space sets
``GRADIO_SERVER_NAME=0.0.0.0`` and ``GRADIO_SERVER_PORT``, which are then the defaults here; anywhere else
the app binds to loopback only.
"""

from __future__ import annotations

import argparse
import os

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="address to bind (default: $GRADIO_SERVER_NAME, else loopback only)",
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--runs-dir", default="runs/app", help="where trained checkpoints are saved")
    parser.add_argument("--max-jobs", type=int, default=1, help="long jobs that may run at once")
    args = parser.parse_args()

    from ssm_metarl.app import launch

    launch(host=args.host, port=args.port, runs_dir=args.runs_dir, max_jobs=args.max_jobs)
