"""The seeds' command line, kept working: ``python main.py --mode <mode> --env <id> ...``.

    python main.py --mode policy_gradient --env CartPole-v1 --episodes 200
    python main.py --mode improved --env HalfCheetah-v5 --episodes 300 --lr 3e-4

Each mode maps onto ``ssm-metarl`` (see ``ssm_metarl/cli.py``); nothing here holds algorithm logic.
"""

from __future__ import annotations

import sys

from ssm_metarl.legacy import main

if __name__ == "__main__":
    sys.exit(main(announce=lambda line: print(line, flush=True)))
