#!/usr/bin/env python3
"""A logging TCP proxy, for seeing exactly what a client sends and gets on connect.

    capture_proxy.py --listen 127.0.0.1:16400 --target 127.0.0.1:16379 --seconds 20 [--bytes]

Forwards every connection made to --listen to --target and prints every RESP frame that
passes, one line each: `[conn] C> "HELLO" "3"` for a command from the client and
`[conn] S< %{"server": "redis", ...}` for a reply, with the RESP type shown by its first
byte (+ - : $ * % = _ # , ( ~ >). Long replies are cut at 160 characters. With --bytes the
raw chunks are printed instead. It stops by itself after --seconds.

MONITOR on a real server does not show commands that were refused (an unknown command or
subcommand, such as CLIENT SETINFO on Redis 7.0), nor the replies: this shows both.
Loopback addresses only.
"""
import argparse, select, socket, sys, threading, time

from resp_wire import Incomplete, command, parse, quote as q, render

def addr(s):
    host, _, port = s.rpartition(":")
    if host.strip("[]") not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"capture_proxy: {host}: only loopback addresses are allowed")
    return host.strip("[]"), int(port)

def pump(n, client, server, deadline, lock, raw):
    socks = {client: [server, "C>", b""], server: [client, "S<", b""]}
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select(list(socks), [], [], 0.2)
            for s in ready:
                data = s.recv(65536)
                if not data:
                    with lock:
                        print(f"[{n}] -- closed by the {'client' if s is client else 'server'}", flush=True)
                    return
                st = socks[s]
                st[0].sendall(data)
                lines = []
                if raw:
                    lines.append(data.decode("latin-1").encode("unicode_escape").decode())
                else:
                    st[2] += data
                    while st[2]:
                        try:
                            frame, k = parse(st[2])
                        except Incomplete:
                            break
                        except ValueError:
                            lines.append("(unparsed) " + q(st[2][:160])); st[2] = b""; break
                        st[2] = st[2][k:]
                        text = command(frame) if st[1] == "C>" else render(frame)
                        lines.append(text if len(text) <= 160 else text[:157] + "...")
                with lock:
                    for line in lines:
                        print(f"[{n}] {st[1]} {line}", flush=True)
    finally:
        client.close(); server.close()

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True, type=addr)
    p.add_argument("--target", required=True, type=addr)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--bytes", action="store_true", help="print raw chunks, not frames")
    a = p.parse_args()
    deadline = time.monotonic() + a.seconds
    lsock = socket.create_server(a.listen)
    lsock.settimeout(0.2)
    lock, n = threading.Lock(), 0
    print(f"-- listening on {a.listen[0]}:{a.listen[1]}, forwarding to {a.target[0]}:{a.target[1]}", flush=True)
    while time.monotonic() < deadline:
        try:
            c, _ = lsock.accept()
        except socket.timeout:
            continue
        n += 1
        s = socket.create_connection(a.target, timeout=5)
        s.settimeout(None)
        with lock:
            print(f"[{n}] -- connection {n} opened", flush=True)
        threading.Thread(target=pump, args=(n, c, s, deadline, lock, a.bytes), daemon=True).start()
    time.sleep(0.3)

if __name__ == "__main__":
    main()
