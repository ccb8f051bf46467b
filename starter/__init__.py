"""Auto-configuration: settings from YAML profiles and env, and the container applications subclass."""

from starter.application import ListenersApplication
from starter.container import ListenersContainer
from starter.loading import LaunchOptions, LoadedSettings, load_settings
from starter.settings import ApplicationSettings, ListenersSettings, Section

__all__ = [
    "ApplicationSettings",
    "LaunchOptions",
    "ListenersApplication",
    "ListenersContainer",
    "ListenersSettings",
    "LoadedSettings",
    "Section",
    "load_settings",
]
