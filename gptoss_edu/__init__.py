"""gptoss_edu: the helper package of the course "From GPT-2 to gpt-oss"."""

from .checkpoint import CheckpointError, load_model, write_checkpoint
from .config import PRESETS, ModelConfig, config_diff, course_config, preset
from .model import GPT

__all__ = ["GPT", "ModelConfig", "PRESETS", "preset", "course_config", "config_diff", "load_model", "write_checkpoint", "CheckpointError"]
