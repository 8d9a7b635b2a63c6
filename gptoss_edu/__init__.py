"""gptoss_edu: the helper package of the course "From GPT-2 to gpt-oss"."""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

# name -> module holding it. Imported on first use, so that `python -m gptoss_edu doctor` (and
# notebook 00's check) can say what is missing even when torch itself is.
_EXPORTS = {
    "GPT": "model", "ModelConfig": "config", "PRESETS": "config", "preset": "config", "course_config": "config",
    "config_diff": "config", "load_model": "checkpoint", "write_checkpoint": "checkpoint",
    "CheckpointError": "checkpoint",
}
__all__ = ["GPT", "ModelConfig", "PRESETS", "preset", "course_config", "config_diff", "load_model", "write_checkpoint",
           "CheckpointError"]

if TYPE_CHECKING:
    from .checkpoint import CheckpointError, load_model, write_checkpoint
    from .config import PRESETS, ModelConfig, config_diff, course_config, preset
    from .model import GPT


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)  # a module: g.attention as after `import`
    raise AttributeError(f"module 'gptoss_edu' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
