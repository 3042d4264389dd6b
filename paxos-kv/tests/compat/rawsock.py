#!/usr/bin/env python3
"""Sends bytes to a RESP server over a plain TCP socket and prints the replies, one a line.

    rawsock.py HOST:PORT N1 PAYLOAD1 [N2 PAYLOAD2 ...] [eof]

Sends each PAYLOAD exactly as given (write it with bash's $'...' quoting: $'PING\\r\\n') and
then reads N replies, printing each as resp_wire.render shows it (+PONG, $"a b", -ERR ...).
A trailing `eof` then waits up to 1 s and prints EOF if the server closed the connection,
OPEN if it did not. Prints `TIMEOUT` for a reply that does not come within 5 s and `EOF`
when the connection is closed before it, and stops there. Loopback addresses only.
"""
import os
import socket
import sys
import time

from resp_wire import Incomplete, parse, render

READ_S = 5.0


def main():
    argv = sys.argv[1:]
    if len(argv) < 3:
        sys.exit(__doc__)
    host, _, port = argv[0].rpartition(":")
    host = host.strip("[]")
    if not (host.startswith("127.") or host in ("localhost", "::1")) and not os.environ.get("COMPAT_ALLOW_NONLOOPBACK"):
        sys.exit(f"rawsock.py: {host}: only loopback addresses")
    want_eof = argv[-1] == "eof"
    steps = argv[1:-1] if want_eof else argv[1:]
    if len(steps) % 2:
        sys.exit("rawsock.py: arguments after HOST:PORT go in pairs: COUNT PAYLOAD")
    sock = socket.create_connection((host, int(port)), timeout=READ_S)
    buf = b""

    def read_more(deadline):
        nonlocal buf
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = sock.recv(65536)
        if not data:
            raise EOFError
        buf += data

    try:
        for k in range(0, len(steps), 2):
            count, payload = int(steps[k]), os.fsencode(steps[k + 1])
            sock.sendall(payload)
            for _ in range(count):
                deadline = time.monotonic() + READ_S
                while True:
                    try:
                        frame, n = parse(buf)
                        break
                    except Incomplete:
                        try:
                            read_more(deadline)
                        except (socket.timeout, TimeoutError):
                            print("TIMEOUT", flush=True)
                            return 1
                        except (EOFError, ConnectionResetError):
                            print("EOF", flush=True)
                            return 1
                buf = buf[n:]
                print(render(frame), flush=True)
        if want_eof:
            try:
                while True:
                    read_more(time.monotonic() + 1.0)
                    if buf:
                        print(f"OPEN (and more bytes: {buf[:80]!r})")
                        return 1
            except (EOFError, ConnectionResetError):
                print("EOF")
            except (socket.timeout, TimeoutError):
                print("OPEN")
        elif buf:
            print(f"(unexpected bytes left: {buf[:80]!r})")
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
