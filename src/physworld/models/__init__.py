"""World models: the contract, the registry, and the families.

Importing this package registers the families imported below; any other family module in this
folder registers itself the first time a name is looked up (``model_class``, ``load_model``)
or when :func:`import_families` is called, so heavy optional extras load only when used. A
family whose extra is not installed is skipped and named in the lookup's error.
"""

from physworld.models.base import (
    MODELS,
    ModelConfig,
    WorldModel,
    import_families,
    load_model,
    model_class,
    register_model,
)
from physworld.models.jepa import JEPA, PIXEL_JEPA, STATE_JEPA, JEPAConfig
from physworld.models.probe import StateProbe, fit_probe, position_error

__all__ = [
    "JEPA",
    "JEPAConfig",
    "MODELS",
    "PIXEL_JEPA",
    "STATE_JEPA",
    "ModelConfig",
    "StateProbe",
    "WorldModel",
    "fit_probe",
    "import_families",
    "load_model",
    "model_class",
    "position_error",
    "register_model",
]
# Families with no heavy import-time dependency (diffusers is imported when a diffusion model is
# built) are imported here and exported by name; latent-action (vector-quantize-pytorch pulls in
# torch._dynamo: seconds) registers on first lookup.
from physworld.models.diffusion import DiffusionConfig, DiffusionWorldModel  # noqa: E402
from physworld.models.rnn import RNNConfig, RNNWorldModel  # noqa: E402

__all__ += ["DiffusionConfig", "DiffusionWorldModel", "RNNConfig", "RNNWorldModel"]
