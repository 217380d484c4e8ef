"""The plugin manager: built-ins first, then third-party plugins from the `sovhub` entry point group."""

from __future__ import annotations

import importlib

import pluggy

from . import hookspecs

__all__ = ["BUILTIN_PLUGINS", "get_plugin_manager"]

BUILTIN_PLUGINS = (
    "sovhub.fleet.plugin",
    "sovhub.backends.embedded",
    "sovhub.backends.upstream",
    "sovhub.api.plugin",
    "sovhub.api.responses.plugin",
    "sovhub.sovereignty.plugin",
    "sovhub.safety.plugin",
    "sovhub.access.plugin",
    "sovhub.assistant.plugin",
    "sovhub.credits.plugin",
)


def get_plugin_manager(*, load_entrypoints: bool = True) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("sovhub")
    pm.add_hookspecs(hookspecs)
    for name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    if load_entrypoints:
        pm.load_setuptools_entrypoints("sovhub")
    return pm
