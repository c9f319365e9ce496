"""Prints the BitTorrent info-hash (SHA-1 of the bencoded info dictionary,
BEP 3) of a .torrent file, in hex: the line opentracker's whitelist wants."""
import hashlib
import sys


def skip(b, i):
    """Returns the index just past the bencoded value starting at b[i]."""
    c = b[i:i + 1]
    if c == b"i":
        return b.index(b"e", i) + 1
    if c in (b"l", b"d"):
        i += 1
        while b[i:i + 1] != b"e":
            i = skip(b, i)
        return i + 1
    colon = b.index(b":", i)
    return colon + 1 + int(b[i:colon])


data = open(sys.argv[1], "rb").read()
if data[:1] != b"d":
    raise SystemExit(f"{sys.argv[1]}: not a torrent (no bencoded dictionary)")
i = 1
while data[i:i + 1] != b"e":
    key_end = skip(data, i)
    key = data[data.index(b":", i) + 1:key_end]
    value_end = skip(data, key_end)
    if key == b"info":
        print(hashlib.sha1(data[key_end:value_end]).hexdigest())
        break
    i = value_end
else:
    raise SystemExit(f"{sys.argv[1]}: no info dictionary")
