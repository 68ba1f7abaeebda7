"""Run metrics: JSON lines (the source of truth), optionally mirrored to TensorBoard."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class MetricsLogger:
    """Appends one JSON object per call to ``out_dir/metrics.jsonl``; keeps the rows in memory too."""

    def __init__(self, out_dir: str | Path | None, tensorboard: bool = False) -> None:
        self.rows: list[dict[str, Any]] = []
        self.path = None
        self.writer = None
        if out_dir is not None:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            self.path = out / "metrics.jsonl"
            self.path.write_text("")
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError as e:  # an explicit request must not be dropped silently
                    raise RuntimeError(
                        "tensorboard=True needs the tensorboard package: pip install tensorboard"
                    ) from e
                self.writer = SummaryWriter(str(out / "tb"))

    def log(self, row: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        self.rows.append(clean)
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(clean) + "\n")
        if self.writer is not None:
            step = int(row.get("global_step", len(self.rows)))
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "global_step" and v is not None:
                    self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
