"""gptoss_edu: the helper package of the course "From GPT-2 to gpt-oss"."""

from .checkpoint import CheckpointError, load_model, write_checkpoint
from .config import PRESETS, ModelConfig, preset
from .model import GPT

__all__ = ["GPT", "ModelConfig", "PRESETS", "preset", "load_model", "write_checkpoint", "CheckpointError"]
