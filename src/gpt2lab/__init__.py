"""gpt2lab: GPT-2 from scratch in readable PyTorch. See README.md for the tour."""

from .config import GPT2Config, preset
from .errors import GPT2LabError
from .model import GPT2
from .tokenizer import Tokenizer, get_tokenizer
from .weights import load

__all__ = ["GPT2", "GPT2Config", "GPT2LabError", "Tokenizer", "get_tokenizer", "load", "preset"]
__version__ = "0.1.0"
