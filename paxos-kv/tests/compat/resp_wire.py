"""RESP frames as bytes on the wire, for rawsock.py and capture_proxy.py (no client library).

parse(buf) reads one frame, RESP2 or RESP3, and raises Incomplete until it is all there;
render(frame) shows it on one line with its type byte first, strings quoted the way
redis-cli's --no-raw quotes them (sdscatrepr: \\n \\r \\t \\a \\b \\" \\\\ and \\xHH):

    +PONG   -ERR msg   :3   $"a b"   $-1   *[$"1", $-1]   %{$"proto": :3}   _   =txt:...
"""


class Incomplete(Exception):
    pass


def quote(b):
    out = ['"']
    for byte in b:
        ch = chr(byte)
        if ch in '\\"':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out) + '"'


def parse(buf, i=0):
    """One frame at buf[i:] as ((type byte, payload), next index). The payload is bytes for
    a string or a line, a list of frames for an aggregate, None for a null."""
    end = buf.find(b"\r\n", i)
    if end < 0:
        raise Incomplete
    t, line, nxt = buf[i:i + 1], buf[i + 1:end], end + 2
    if t and t in b"+-:_#,(":
        return (t, line), nxt
    if t in (b"$", b"=", b"!"):
        n = int(line)
        if n < 0:
            return (t, None), nxt
        if len(buf) < nxt + n + 2:
            raise Incomplete
        return (t, buf[nxt:nxt + n]), nxt + n + 2
    if t in (b"*", b"~", b">", b"%", b"|"):
        n = int(line)
        if n < 0:
            return (t, None), nxt
        items = []
        for _ in range(n * (2 if t in (b"%", b"|") else 1)):
            f, nxt = parse(buf, nxt)
            items.append(f)
        return (t, items), nxt
    # not a RESP type byte: an inline command, one line
    end = buf.find(b"\n", i)
    if end < 0:
        raise Incomplete
    return (b"inline", buf[i:end + 1]), end + 1


def render(frame):
    t, p = frame
    if p is None:
        return t.decode() + "-1"
    if t == b"inline":
        return "(inline) " + quote(p)
    if t in (b"$", b"!"):
        return t.decode() + quote(p)
    if t == b"=":  # verbatim: the 3-letter format, a colon, then the text
        return "=" + p[:4].decode("latin-1") + quote(p[4:])
    if t in (b"%", b"|"):
        pairs = (f"{render(p[k])}: {render(p[k + 1])}" for k in range(0, len(p), 2))
        return t.decode() + "{" + ", ".join(pairs) + "}"
    if isinstance(p, list):
        return t.decode() + "[" + ", ".join(map(render, p)) + "]"
    return t.decode() + p.decode("latin-1")


def command(frame):
    """A client's multibulk command shown as MONITOR shows it: "SET" "k" "v"."""
    t, p = frame
    if t == b"*" and p and all(f[0] == b"$" and f[1] is not None for f in p):
        return " ".join(quote(f[1]) for f in p)
    return render(frame)
