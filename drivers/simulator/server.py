"""Modbus serving of simulated devices: TCP, RTU over TCP, and RTU on a serial port.

One server per endpoint (a ``(host, port)`` or a serial port path); many unit ids behind
it, as on an RS-485 bus behind a serial device server. The servers are pymodbus's async
servers (framing, PDU encoding, function codes 1-6, 15, 16, 22, 23) with our own request
handler, because the simulator needs per-request control that a datastore cannot give:

- each request is answered from the PDU it came with (pymodbus's stock handler reuses the
  connection's *last* PDU, which mixes up transaction ids once an answer is delayed);
- a request to an unknown unit, or to an ``offline`` device, gets no answer at all;
- ``slow`` devices answer after a delay; ``garbage`` devices answer wrongly (see
  :mod:`drivers.simulator.faults`).

Everything runs on the event loop thread that called :meth:`ModbusEndpoint.start`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import SimData, SimDevice
from pymodbus.transaction import TransactionManager

from drivers.codec import Kind
from drivers.simulator.faults import Fault, FaultKind, GarbageMode
from drivers.simulator.image import FC_KIND

__all__ = ["EndpointSpec", "ModbusBackend", "ModbusEndpoint"]

log = logging.getLogger(__name__)

_READ_FCS = frozenset({1, 2, 3, 4, 23})


class ModbusBackend(Protocol):
    """What a Modbus endpoint asks of the simulator (implemented by ``Simulator``)."""

    def device_at(self, endpoint: str, unit: int) -> str | None:
        """Return the device id at ``unit`` behind ``endpoint``, or ``None``."""
        ...

    def fault_of(self, device_id: str) -> Fault | None:
        """Return the device's active fault, or ``None``."""
        ...

    def read_table(
        self, device_id: str, kind: Kind, address: int, count: int
    ) -> list[int] | list[bool] | ExcCodes:
        """Return registers/bits of the device (refreshed from the model), or an exception code."""
        ...

    def write_table(
        self, device_id: str, kind: Kind, address: int, values: list[int] | list[bool]
    ) -> ExcCodes | None:
        """Apply a master's write to the device and its model; return an exception code if refused."""
        ...


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """Where and how to serve: ``framer`` ``socket`` (Modbus TCP) or ``rtu``.

    ``serial_port`` set: Modbus RTU on that serial device (a pty from ``socat`` in tests),
    with ``baudrate``/``parity``/``stopbits``/``bytesize``; else TCP at ``host``:``port``
    (port 0 picks a free port, see :attr:`ModbusEndpoint.address`).
    """

    key: str
    framer: str = "socket"
    channels: tuple[str, ...] = ()  # channel ids served here, for messages
    host: str = "127.0.0.1"
    port: int = 502
    serial_port: str | None = None
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8


class _DeviceContext:
    """The datastore interface pymodbus PDUs call, bound to one simulated device."""

    def __init__(self, backend: ModbusBackend, device_id: str) -> None:
        self.backend = backend
        self.device_id = device_id

    async def async_getValues(
        self, _unit: int, func_code: int, address: int, count: int = 1
    ) -> Any:
        return self.backend.read_table(self.device_id, FC_KIND[func_code], address, count)

    async def async_setValues(
        self, _unit: int, func_code: int, address: int, values: Any
    ) -> ExcCodes | None:
        return self.backend.write_table(self.device_id, FC_KIND[func_code], address, list(values))


class _Handler(ServerRequestHandler):
    """One master connection: decode frames, answer each request as its device would."""

    server: _ServerMixin

    def callback_data(self, data: bytes, addr: tuple | None = None) -> int:
        # every complete frame of the buffer, not just the first: masters may pipeline requests
        used = 0
        while used < len(data):
            n = self._one_frame(data[used:], addr)
            if n <= 0:
                break
            used += n
        return used

    def _one_frame(self, data: bytes, addr: tuple | None) -> int:
        try:
            used_len = TransactionManager.callback_data(self, data, addr)
        except ModbusIOException as exc:
            response = ExceptionResponse(
                exc.fcode or 0,
                ExcCodes.ILLEGAL_FUNCTION,
                device_id=exc.dev_id,
                transaction=exc.transaction_id,
            )
            self.server_send(response, addr)
            return len(data)
        pdu, self.last_pdu = self.last_pdu, None
        if pdu is not None:
            self.server.spawn(self._answer(pdu, addr))
        return used_len

    async def _answer(self, pdu: ModbusPDU, addr: tuple | None) -> None:
        srv = self.server
        device_id = srv.backend.device_at(srv.spec.key, pdu.dev_id)
        if device_id is None:
            log.debug("%s: no device at unit %d", srv.spec.key, pdu.dev_id)
            return
        fault = srv.backend.fault_of(device_id)
        if fault is not None and fault.kind is FaultKind.OFFLINE:
            return
        if fault is not None and fault.kind is FaultKind.SLOW:
            await asyncio.sleep(fault.delay_s)
            fault = srv.backend.fault_of(device_id)
            if fault is not None and fault.kind is FaultKind.OFFLINE:
                return
        garbage = fault if fault is not None and fault.kind is FaultKind.GARBAGE else None
        fc = pdu.function_code
        if garbage is not None and (garbage.mode is GarbageMode.EXCEPTION or fc not in _READ_FCS):
            response: ModbusPDU = ExceptionResponse(fc, garbage.code)
        else:
            try:
                response = await pdu.datastore_update(
                    _DeviceContext(srv.backend, device_id),  # type: ignore[arg-type]  # duck-typed: pymodbus only calls async_get/setValues
                    pdu.dev_id,
                )
            except Exception:
                log.exception(
                    "%s: device %s failed to answer function %d", srv.spec.key, device_id, fc
                )
                response = ExceptionResponse(fc, ExcCodes.DEVICE_FAILURE)
            if garbage is not None and not isinstance(response, ExceptionResponse):
                _shorten(response)
        response.transaction_id = pdu.transaction_id
        response.dev_id = pdu.dev_id
        packet = self.framer.buildFrame(response)
        if garbage is not None and garbage.mode is GarbageMode.CRC and srv.spec.framer == "rtu":
            packet = packet[:-1] + bytes([packet[-1] ^ 0xFF])
        if self.transport is None:  # the master hung up while we were slow
            return
        self.low_level_send(packet, addr=addr)


def _shorten(response: ModbusPDU) -> None:
    """Drop the last register, or the last byte of bits, of a read response."""
    if response.registers:
        response.registers = response.registers[:-1]
    elif response.bits:
        response.bits = response.bits[:-8] if len(response.bits) > 8 else []


def _placeholder() -> list[SimDevice]:
    # pymodbus insists on a datastore at construction; requests never reach it (see _Handler)
    return [SimDevice(0, simdata=[SimData(0)])]


class _ServerMixin:
    backend: ModbusBackend
    spec: EndpointSpec
    _tasks: set[asyncio.Task[None]]

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def callback_new_connection(self) -> _Handler:
        return _Handler(self, None, None, None)


class _TcpServer(_ServerMixin, ModbusTcpServer):
    def __init__(self, backend: ModbusBackend, spec: EndpointSpec) -> None:
        framer = FramerType.RTU if spec.framer == "rtu" else FramerType.SOCKET
        super().__init__(_placeholder(), framer=framer, address=(spec.host, spec.port))
        self.backend, self.spec, self._tasks = backend, spec, set()


class _SerialServer(_ServerMixin, ModbusSerialServer):
    def __init__(self, backend: ModbusBackend, spec: EndpointSpec) -> None:
        super().__init__(
            _placeholder(),
            framer=FramerType.RTU,
            port=spec.serial_port or "",
            baudrate=spec.baudrate,
            parity=spec.parity,
            stopbits=spec.stopbits,
            bytesize=spec.bytesize,
            reconnect_delay=0.5,
        )
        self.backend, self.spec, self._tasks = backend, spec, set()


class ModbusEndpoint:
    """One listening Modbus server for the devices behind one endpoint."""

    def __init__(self, backend: ModbusBackend, spec: EndpointSpec) -> None:
        self.backend = backend
        self.spec = spec
        self._server: _TcpServer | _SerialServer | None = None
        self.address: tuple[str, int] | str | None = None

    async def start(self) -> None:
        """Start listening; raise ``OSError`` naming the endpoint if the address is taken."""
        spec = self.spec
        if spec.serial_port:
            server: _TcpServer | _SerialServer = _SerialServer(self.backend, spec)
        else:
            server = _TcpServer(self.backend, spec)
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            where = spec.serial_port or f"{spec.host}:{spec.port}"
            names = ", ".join(spec.channels) or spec.key
            raise OSError(
                f"simulator: cannot serve channel {names} on {where} (in use?): {exc}"
            ) from None
        self._server = server
        if spec.serial_port:
            self.address = spec.serial_port
        else:
            sockets = getattr(server.transport, "sockets", None) or []
            self.address = (
                tuple(sockets[0].getsockname()[:2]) if sockets else (spec.host, spec.port)
            )
        log.info("simulator serving %s on %s (%s)", spec.key, self.address, spec.framer)

    async def stop(self) -> None:
        """Stop listening, drop connections and cancel answers still pending."""
        server, self._server = self._server, None
        if server is None:
            return
        for task in list(server._tasks):
            task.cancel()
        await server.shutdown()
