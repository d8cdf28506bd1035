"""Processors: the code that runs a job of a given type.

Owns the processor protocol and its failure contract, the registry that finds a
processor by type (built-ins, entry points, `register_processor`), and one module per
built-in. Imports `core` only. Processor authors import from here:

    from jobnode.processors import PermanentError, RetryableError, register_processor, run_in_thread
"""

from jobnode.processors.registry import (
    PermanentError,
    Processor,
    RetryableError,
    register_processor,
    run_in_thread,
)

__all__ = ["PermanentError", "Processor", "RetryableError", "register_processor", "run_in_thread"]
