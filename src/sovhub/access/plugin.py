"""The access built-in plugin: its hooks are registered like any third-party plugin's."""
