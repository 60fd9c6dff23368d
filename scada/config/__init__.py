"""Site configuration: YAML files (with includes and generators) parsed once into pydantic models.

The site composes the packages' models: channels, templates, points and devices are
``drivers.config``'s, memory and computed tags ``tags.config``'s, tariffs, accounts, heat and
households ``billing.config``'s, alarm rules ``alarms.config``'s, the historian
``historian.config``'s; buildings, the generator, substations and the site itself are defined
here.
They are re-exported under their old names.

``load_site(path)`` / ``load_site_text(text)`` return a ``SiteConfig`` or raise ``ConfigError``
whose ``issues`` locate every problem as ``file:line:col: field.path: message``.
See docs/config.md for the file format.
"""

from billing.config import HeatConfig, HouseholdConfig
from drivers.config import (
    MODBUS_PROTOCOLS,
    CanChannel,
    CanFrame,
    ChannelConfig,
    DeviceConfig,
    ModbusRtuChannel,
    ModbusRtuOverTcpChannel,
    ModbusTcpChannel,
    PointConfig,
    PointOverride,
    TemplateConfig,
)
from scada.config.buildings import (
    BuildingConfig,
    GenerateChannels,
    GenerateDevice,
    GenerateSpec,
    PositionFactors,
)
from scada.config.errors import ConfigError, ConfigIssue
from scada.config.loader import check_site, load_site, load_site_text
from scada.config.site import SimulateConfig, SiteConfig, SiteInfo
from scada.config.substations import SubstationConfig
from tags.config import ComputedTagConfig, MemoryTagConfig, TagConfig

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
    "SubstationConfig",
    "TagConfig",
    "TemplateConfig",
    "check_site",
    "load_site",
    "load_site_text",
]
