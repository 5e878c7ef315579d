"""TensorBoard event files next to a run's outputs (``<output>/tensorboard/``), for the Kubeflow viewer.

Events are written to a local folder (the output itself when it is local) and copied to object
storage whenever the run publishes its history.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from wukong.io import Storage
from wukong.io.local import LocalStorage

FOLDER = "tensorboard"


class TensorBoard:
    def __init__(self, output: Storage) -> None:
        self.output = output
        self.local = isinstance(output, LocalStorage)
        self.folder = output.root / FOLDER if self.local else Path(tempfile.mkdtemp(prefix="wukong-tb-"))
        self.writer = SummaryWriter(str(self.folder))

    def scalars(self, group: str, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(f"{group}/{name}", value, step)

    def publish(self) -> None:
        self.writer.flush()
        if not self.local:
            for path in self.folder.iterdir():
                self.output.write_bytes(f"{FOLDER}/{path.name}", path.read_bytes())

    def close(self) -> None:
        self.publish()
        self.writer.close()
        if not self.local:
            shutil.rmtree(self.folder, ignore_errors=True)
