"""A question-answering assistant over documents, with checked citations."""

from .core import Assistant, BusyError, Delta, Final, InputError
from .settings import Settings
from .types import Answer, Citation, Message, Passage

__all__ = ["Answer", "Assistant", "BusyError", "Citation", "Delta", "Final", "InputError",
           "Message", "Passage", "Settings"]
__version__ = "0.1.0"
