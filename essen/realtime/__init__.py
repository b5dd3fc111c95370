"""Socket.IO on Trio: server, client, and the transports they run on."""

from essen.protocol.engine_server import EngineConfig, Overflow

from ._recovery import RecoveryConfig
from ._socket import Socket
from .asgi import SocketIOMount
from .server import Namespace, ServerOptions, SocketIOServer

__all__ = (
    "EngineConfig",
    "Namespace",
    "Overflow",
    "RecoveryConfig",
    "ServerOptions",
    "Socket",
    "SocketIOMount",
    "SocketIOServer",
)
