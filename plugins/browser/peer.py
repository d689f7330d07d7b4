"""Who connects to the relay: the kernel's word on the process that owns a socket.

The relay adds a proxy's credentials to what it passes on, so it serves this user's
processes only. On Linux it asks the kernel (sock_diag: an exact look-up of the peer's
socket, not a scan of every socket) for the socket's state and owner, and serves only a
live (ESTABLISHED) connection of this user's: a socket closed before it looked is listed
as root's, and would pass for fw's when fw runs as root.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import os
import socket
import struct
import sys

__all__ = ["same_user"]

log = logging.getLogger("fw.browser")

#: Linux's sock_diag: the netlink family, its request type and TCP's ESTABLISHED state.
_NETLINK_SOCK_DIAG, _SOCK_DIAG_BY_FAMILY, _NLMSG_ERROR, _ESTABLISHED = 4, 20, 2, 1


def same_user(writer: asyncio.StreamWriter) -> bool:
    """Tell whether a live connection of this user's comes in. Where the kernel cannot
    say (not Linux), assume so; on Linux, a connection it cannot vouch for is refused."""
    if sys.platform != "linux":
        return True
    peer, own = writer.get_extra_info("peername"), writer.get_extra_info("sockname")
    try:
        state, uid = _owner(peer, own)
    except OSError as exc:
        _unverifiable(exc)
        return False
    return state == _ESTABLISHED and uid == os.getuid()


def _owner(peer: tuple[str, int], own: tuple[str, int]) -> tuple[int, int]:
    """Ask the kernel for the TCP state and owner of the socket at ``peer`` connected to
    ``own`` (an exact look-up, not a scan of every socket). Raises ``OSError``."""
    sockid = (
        struct.pack("!HH", peer[1], own[1])
        + socket.inet_aton(peer[0]).ljust(16, b"\0")
        + socket.inet_aton(own[0]).ljust(16, b"\0")
        + struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF)  # any interface, no cookie
    )
    ask = struct.pack("=BBxxI", socket.AF_INET, socket.IPPROTO_TCP, 0xFFFFFFFF) + sockid
    head = struct.pack("=IHHII", 16 + len(ask), _SOCK_DIAG_BY_FAMILY, 1, 1, 0)  # a request
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as diag:
        diag.settimeout(1.0)
        diag.send(head + ask)
        answer = diag.recv(4096)
    if len(answer) < 20:
        raise OSError(errno.EPROTO, "a short answer from sock_diag")
    if struct.unpack_from("=H", answer, 4)[0] == _NLMSG_ERROR:
        code = -struct.unpack_from("=i", answer, 16)[0]
        raise OSError(code, os.strerror(code))  # ENOENT: that socket is gone already
    if len(answer) < 16 + 72:
        raise OSError(errno.EPROTO, "a short answer from sock_diag")
    return answer[17], struct.unpack_from("=I", answer, 16 + 64)[0]


def _unverifiable(error: OSError) -> None:
    if error.errno != errno.ENOENT:  # a socket gone already is no news
        _cannot_verify(error.strerror or str(error))


@functools.cache  # once a crawl
def _cannot_verify(why: str) -> None:
    log.warning(
        "browser: the kernel will not say who connects to the proxy relay (%s): its "
        "connections are refused, so rendered pages' resources fail",
        why,
    )
