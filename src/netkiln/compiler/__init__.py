"""Model compiler: a list of Keras-named layer entries -> torch nn.Module with inferred shapes.

Imports only torch/omegaconf/stdlib so `netkiln summary` starts fast.
"""
from .builder import compile_model
from .errors import ModelSpecError
from .network import Network, Row
from .spec import LAYER_NAMES
from .summary import count_params, summary_table

__all__ = ["compile_model", "summary_table", "count_params", "LAYER_NAMES", "Network", "Row",
           "ModelSpecError"]
