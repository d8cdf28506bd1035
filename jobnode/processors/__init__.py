"""Processors: the code that runs a job of a given type.

Owns the processor protocol and its failure contract (`registry`), the registry that finds a
processor by type, one module per built-in (`echo`, `sleep`, `webhook` for http, `mail` for
email) with the payload checks they share (`payload`), and `catalog`, which merges built-ins,
entry points and `register_processor` into a node's registry. Imports `core` only. Processor
authors import from here:

    from jobnode.processors import PermanentError, RetryableError, register_processor, run_in_thread
"""

from jobnode.processors.registry import (
    PermanentError,
    Processor,
    RetryableError,
    register_processor,
)
from jobnode.processors.threads import run_in_thread

__all__ = ["PermanentError", "Processor", "RetryableError", "register_processor", "run_in_thread"]
