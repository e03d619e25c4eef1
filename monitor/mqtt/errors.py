"""Why a connection to the broker failed, in words: one phrase per cause, so the log says what to fix.

paho's ``on_connect_fail`` carries no exception; :class:`~monitor.mqtt.publisher.MqttPublisher` keeps the one
raised by the connection attempt (TCP connect, then the TLS handshake, in ``Client.reconnect``) and asks
:func:`describe_connect_error` for the cause. A broker that accepts TCP but closes before answering CONNECT,
and one that answers with a refusal, are described by :func:`closed_before_connack` and :func:`refused`.
"""

from __future__ import annotations

import errno
import socket
import ssl

from paho.mqtt.reasoncodes import ReasonCode

# CONNACK refusals that mean the credentials (mqtt.username, mqtt.password*) are wrong or missing.
_AUTH_CODES = {134, 135}  # bad user name or password, not authorized (paho maps MQTT 3.1.1's 4 and 5 to these)


def describe_connect_error(exc: BaseException, where: str, tls: bool) -> str:
    """What failed, for an exception raised while opening the connection to ``where`` (TCP, then TLS if ``tls``)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or exc.reason or str(exc)
        return (f"TLS with broker {where} failed: certificate verification failed ({why}); the broker's certificate "
                "is not signed by mqtt.ca_certs (or a CA of the system store), or not issued for mqtt.host")
    if isinstance(exc, socket.gaierror):
        return f"cannot reach broker {where}: cannot resolve the host name ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot reach broker {where}: connection refused (is the broker running and listening on that port?)"
    if isinstance(exc, TimeoutError):
        return f"cannot reach broker {where}: timed out (a wrong address, or a firewall dropping the packets?)"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        what = "host unreachable" if exc.errno == errno.EHOSTUNREACH else "network unreachable"
        return f"cannot reach broker {where}: {what} ({exc.strerror})"
    if tls and isinstance(exc, (ssl.SSLError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        # TCP was accepted (else ConnectionRefusedError), so the handshake failed: most often a plain MQTT port,
        # which drops a TLS hello it cannot parse.
        why = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        return (f"TLS with broker {where} failed: TLS handshake failed ({why}); is that port a TLS listener? "
                "(mqtt.tls is on)")
    return f"cannot connect to broker {where}: {type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}"


def closed_before_connack(where: str, tls: bool) -> str:
    """The broker at ``where`` accepted the connection but closed it without answering CONNECT."""
    if tls:
        return f"broker {where} closed the connection without answering CONNECT"
    return (f"broker {where} closed the connection without answering CONNECT: is that port a TLS listener? "
            "(mqtt.tls is off)")


def refused(where: str, reason: ReasonCode) -> str:
    """The broker at ``where`` answered CONNECT with a refusal (its reason code)."""
    hint = "; check mqtt.username and the password" if reason.value in _AUTH_CODES else ""
    return f"broker {where} refused the connection: {reason} (reason code {reason.value}){hint}"
