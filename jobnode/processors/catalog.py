"""The processors a node serves: the built-ins, then installed plugins, then code registrations.

Merged in that order by `build_registry`, a later source replacing an earlier one of the same
name (with a warning in the log), so a plugin may override a built-in and explicit code may
override both.
"""

from __future__ import annotations

from typing import Any

from jobnode.processors import registry
from jobnode.processors.destinations import DestinationPolicy
from jobnode.processors.echo import EchoProcessor
from jobnode.processors.mail import EmailProcessor, SmtpConfig
from jobnode.processors.registry import Processor, ProcessorRegistry
from jobnode.processors.sleep import SleepProcessor
from jobnode.processors.webhook import HttpProcessor


def builtin_processors(settings: Any) -> list[Processor]:
    """One instance of each built-in, configured from `settings` (smtp_* and http_processor_*)."""
    email = EmailProcessor(SmtpConfig.from_settings(settings))
    return [EchoProcessor(), SleepProcessor(), HttpProcessor(DestinationPolicy.from_settings(settings)), email]


def build_registry(settings: Any) -> ProcessorRegistry:
    """The node's registry: built-ins, then entry points, then code-registered processors.

    Reads the `smtp_*` and `http_processor_*` fields of `settings` (for the built-ins).
    """
    built = ProcessorRegistry()
    for processor in builtin_processors(settings):
        built.add(processor)
    built.load_entry_points()
    # Looked up at call time, not bound at import, so the registry that is current when a node
    # starts is the one it serves.
    built.update(registry.default_registry)
    return built
