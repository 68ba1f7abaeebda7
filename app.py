"""Start the web app: ``python app.py [--host 127.0.0.1] [--port 7860]`` (same as ``ssm-metarl app``)."""

from __future__ import annotations

import argparse

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--runs-dir", default="runs/app", help="where trained checkpoints are saved")
    parser.add_argument("--max-jobs", type=int, default=1, help="long jobs that may run at once")
    args = parser.parse_args()

    from ssm_metarl.app import launch

    launch(host=args.host, port=args.port, runs_dir=args.runs_dir, max_jobs=args.max_jobs)
