"""Run metrics: JSON lines (the source of truth), optionally mirrored to TensorBoard.

Non-finite numbers are written as ``NaN`` / ``Infinity`` (Python's ``json`` reads them back), never
hidden as ``null``: a diverged value must stay visible in the log.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl file (a torn last line, from a crash mid-write, is dropped)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


class MetricsLogger:
    """Appends one JSON object per call to ``out_dir/metrics.jsonl``; keeps the rows in memory too.

    ``keep_rows`` (resuming): start from the first ``keep_rows`` rows of ``source`` (default: the file
    itself), dropping rows written after the checkpoint being resumed.
    """

    def __init__(
        self,
        out_dir: str | Path | None,
        tensorboard: bool = False,
        keep_rows: int = 0,
        source: str | Path | None = None,
    ) -> None:
        self.rows: list[dict[str, Any]] = []
        self.path: Path | None = None
        self.writer: Any = None
        if keep_rows:
            src = Path(source) if source is not None else Path(out_dir or ".") / "metrics.jsonl"
            self.rows = read_rows(src)[:keep_rows] if src.is_file() else []
        if out_dir is not None:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            self.path = out / "metrics.jsonl"
            self.path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError as e:  # an explicit request must not be dropped silently
                    raise RuntimeError(
                        "tensorboard=True needs the tensorboard package: pip install tensorboard"
                    ) from e
                self.writer = SummaryWriter(str(out / "tb"))

    def log(self, row: dict[str, Any]) -> None:
        self.rows.append(dict(row))
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
        if self.writer is not None:
            step = int(row.get("global_step", len(self.rows)))
            for k, v in row.items():
                if (
                    isinstance(v, (int, float))
                    and not isinstance(v, bool)
                    and k != "global_step"
                    and math.isfinite(v)
                ):
                    self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


__all__ = ["MetricsLogger", "read_rows"]
