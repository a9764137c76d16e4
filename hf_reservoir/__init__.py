"""hf-reservoir: Reservoir Transformers (Shen et al., ACL 2021) for HuggingFace Transformers."""

from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM

from .models.reservoir_marian.configuration_reservoir import ReservoirMarianConfig, place_reservoir_layers
from .models.reservoir_marian.modeling_reservoir import (
    BiGRUReservoirLayer,
    ConvReservoirLayer,
    FFNReservoirLayer,
    LightweightConv,
    ReservoirMarianEncoderLayer,
    ReservoirMarianModel,
    ReservoirMarianMTModel,
    ReservoirMarianPreTrainedModel,
)

__version__ = "0.1.0"

AutoConfig.register(ReservoirMarianConfig.model_type, ReservoirMarianConfig, exist_ok=True)
AutoModel.register(ReservoirMarianConfig, ReservoirMarianModel, exist_ok=True)
AutoModelForSeq2SeqLM.register(ReservoirMarianConfig, ReservoirMarianMTModel, exist_ok=True)

# Writes `auto_map` into config.json and copies the two code files on `save_pretrained`, so a
# saved folder loads with `trust_remote_code=True` where hf_reservoir is not installed.
ReservoirMarianConfig.register_for_auto_class()
ReservoirMarianModel.register_for_auto_class("AutoModel")
ReservoirMarianMTModel.register_for_auto_class("AutoModelForSeq2SeqLM")

__all__ = [
    "ReservoirMarianConfig",
    "ReservoirMarianModel",
    "ReservoirMarianMTModel",
    "ReservoirMarianPreTrainedModel",
    "ReservoirMarianEncoderLayer",
    "FFNReservoirLayer",
    "BiGRUReservoirLayer",
    "ConvReservoirLayer",
    "LightweightConv",
    "place_reservoir_layers",
]
