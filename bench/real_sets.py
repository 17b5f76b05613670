"""The two public rating sets of issue 31, read as they come, and their
seeded per-user 80/20 splits (written in each set's own raw format, so
`reelkit tune` reads the training part as a user would read the export).

Sources (kept under the ignored bench/data/, never committed):
  lastfm:       github.com/omarriaga/hybrid-recommender, data/user_artists.dat
                (HetRec 2011 Last.fm: userID, artistID, play count; tab-separated,
                a `//` header line)
  bookcrossing: github.com/cyadusha/BX-CSV-Dump, BX-Book-Ratings.csv
                (`\\r` line ends, ISBNs in tripled quotes, ratings 0 = implicit,
                1-10 explicit; the stored snapshot holds 9,006 rating rows among
                ~900,000 empty `,,` records and a few malformed rows; every stored
                version of that repository is as small or absent)
  bx100k:       github.com/fernandajacob/analise, BX-Book-Ratings.csv, saved as
                bench/data/BX-Book-Ratings-100k.csv (the first 99,999 rows of the
                original Book-Crossing dump, `;`-separated, `\n` line ends, the
                ISBNs' leading zeros lost to a spreadsheet: the largest stored
                copy of the ratings found)
"""
import csv
import io
import os

import numpy as np

from common import DATA


def load(name):
    """(user ids, item ids (strings for bookcrossing), weights) of a set, cleaned
    the way a careful analyst would: empty and malformed rows dropped."""
    if name == "lastfm":
        u, i, w = [], [], []
        with open(os.path.join(DATA, "user_artists.dat")) as f:
            for line in f:
                if line.startswith("//") or not line.strip():
                    continue
                a, b, c = line.rstrip("\n").split("\t")
                u.append(int(a))
                i.append(int(b))
                w.append(float(c))
        return np.array(u), np.array(i), np.array(w)
    if name == "bookcrossing":
        raw = open(os.path.join(DATA, "BX-Book-Ratings.csv"), "rb").read().decode("latin-1")
        rows = csv.reader(io.StringIO(raw.replace("\r", "\n")))
        next(rows)
        u, i, w = [], [], []
        for r in rows:
            if len(r) != 3 or not r[0].strip().isdigit() or not r[2].strip().isdigit():
                continue
            isbn = r[1].strip().strip('"')
            if not isbn:
                continue
            u.append(int(r[0]))
            i.append(isbn)
            w.append(float(r[2]))
        return np.array(u), np.array(i, dtype=object), np.array(w)
    if name == "bx100k":
        u, i, w = [], [], []
        with open(os.path.join(DATA, "BX-Book-Ratings-100k.csv"), encoding="latin-1") as f:
            next(f)
            for line in f:
                r = line.rstrip("\r\n").split(";")
                if len(r) != 3 or not r[0].strip().isdigit() or not r[2].strip().isdigit() or not r[1].strip():
                    continue
                u.append(int(r[0]))
                i.append(r[1].strip())
                w.append(float(r[2]))
        return np.array(u), np.array(i, dtype=object), np.array(w)
    raise SystemExit(f"unknown set {name}")


def write_raw(name, path, users, items, weights):
    """The rows in the set's own raw format."""
    if name == "lastfm":
        with open(path, "w") as f:
            f.write("//userID\tartistID\tweight\n")
            for a, b, c in zip(users, items, weights):
                f.write(f"{a}\t{b}\t{int(c)}\n")
    elif name == "bx100k":
        with open(path, "w", encoding="latin-1") as f:
            f.write("User-ID;ISBN;Book-Rating\n")
            for a, b, c in zip(users, items, weights):
                f.write(f"{a};{b};{int(c)}\n")
    else:
        with open(path, "wb") as f:
            f.write(b"User-ID,ISBN,Book-Rating\r")
            for a, b, c in zip(users, items, weights):
                f.write(f'{a},"""{b}""",{int(c)}\r'.encode("latin-1"))
