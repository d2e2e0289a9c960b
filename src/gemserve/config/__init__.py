"""Settings and the model registry, loaded once at start-up and passed down."""

from gemserve.config.models import ModelRegistry, ModelSpec, SamplingDefaults
from gemserve.config.settings import Limits, Settings, load_settings

__all__ = ["Limits", "ModelRegistry", "ModelSpec", "SamplingDefaults", "Settings", "load_settings"]
