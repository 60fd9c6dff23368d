"""Site configuration: YAML files (with includes and generators) parsed once into pydantic models.

``load_site(path)`` / ``load_site_text(text)`` return a ``SiteConfig`` or raise ``ConfigError``
whose ``issues`` locate every problem as ``file:line:col: field.path: message``.
See docs/config.md for the file format.
"""

from scada.config.buildings import (
    BuildingConfig,
    GenerateChannels,
    GenerateDevice,
    GenerateSpec,
    HeatConfig,
    HouseholdConfig,
    PositionFactors,
)
from scada.config.errors import ConfigError, ConfigIssue
from scada.config.loader import check_site, load_site, load_site_text
from scada.config.models import (
    MODBUS_PROTOCOLS,
    CanChannel,
    CanFrame,
    ChannelConfig,
    ComputedTagConfig,
    DeviceConfig,
    MemoryTagConfig,
    ModbusRtuChannel,
    ModbusRtuOverTcpChannel,
    ModbusTcpChannel,
    PointConfig,
    PointOverride,
    TagConfig,
    TemplateConfig,
)
from scada.config.site import SimulateConfig, SiteConfig, SiteInfo

__all__ = [
    "MODBUS_PROTOCOLS",
    "BuildingConfig",
    "CanChannel",
    "CanFrame",
    "ChannelConfig",
    "ComputedTagConfig",
    "ConfigError",
    "ConfigIssue",
    "DeviceConfig",
    "GenerateChannels",
    "GenerateDevice",
    "GenerateSpec",
    "HeatConfig",
    "HouseholdConfig",
    "MemoryTagConfig",
    "ModbusRtuChannel",
    "ModbusRtuOverTcpChannel",
    "ModbusTcpChannel",
    "PointConfig",
    "PointOverride",
    "PositionFactors",
    "SimulateConfig",
    "SiteConfig",
    "SiteInfo",
    "TagConfig",
    "TemplateConfig",
    "check_site",
    "load_site",
    "load_site_text",
]
