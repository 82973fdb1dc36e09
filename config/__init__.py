"""Typed, validated settings: ``load_settings()`` once at startup, then hand each component
its own section."""

from config.loading import (
    Settings,
    env_var_names,
    load_settings,
    setting_names,
    setting_prefixes,
    unknown_setting_names,
)
from config.settings import (
    AlpacaSettings,
    ChannelSettings,
    DiscordSettings,
    EngineSettings,
    LogSettings,
    RiskSettings,
    ScheduleSettings,
    SettingsError,
    SimSettings,
    StorageSettings,
    TradingMode,
    WebSettings,
)
from config.strategies import StrategySettings, StrategySlot

__all__ = [
    "AlpacaSettings",
    "ChannelSettings",
    "DiscordSettings",
    "EngineSettings",
    "LogSettings",
    "RiskSettings",
    "ScheduleSettings",
    "Settings",
    "SettingsError",
    "SimSettings",
    "StorageSettings",
    "StrategySettings",
    "StrategySlot",
    "TradingMode",
    "WebSettings",
    "env_var_names",
    "load_settings",
    "setting_names",
    "setting_prefixes",
    "unknown_setting_names",
]
