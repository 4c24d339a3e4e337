"""FullTextIndex: BM25 keyword search over texts kept under keys, in a synadb file.

Use it beside a :class:`~synadb.vectors.store.VectorStore` (in the same file
or not) for the lexical half of hybrid retrieval; :func:`rrf` and
:func:`weighted_sum` fuse its ranking with a vector search's.

>>> import tempfile, os
>>> with FullTextIndex(os.path.join(tempfile.mkdtemp(), "t.db")) as fts:
...     fts.add(["a", "b", "c"], ["the cat sat", "the dog ran", "a cat and a dog"])
...     [key for key, _ in fts.search("cat", k=5)]
3
['a', 'c']

Scoring is Okapi BM25 (``k1 = 1.2``, ``b = 0.75``) with Lucene's idf,
``log(1 + (N - df + 0.5) / (df + 0.5))`` (never negative), summed over the
*distinct* query terms::

    score(d, q) = sum_t idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avgdl))

``N``, ``df`` and ``avgdl`` are over the whole index; ``search(keys=...)``
only restricts which documents are returned.  Only documents holding at
least one query term are returned.

Text is analysed into lowercase, NFC-normalised Unicode words (``\\w+``),
minus the ``stopwords`` if any, then (with ``stemming=True``) through
:func:`stem`, a small Porter-style suffix stripper.  The index keeps
analysed terms only, never the texts.

Layout, under ``__fts__/<name>/``:

- ``config``: JSON text, the layout version and the analyser settings.
- ``d/<key>``: one latest-only bytes record per document: its length in
  terms and its distinct terms with their counts (:data:`_DOC` head, the
  counts as ``<u4``, then the terms joined by NUL).  These records are the
  truth; everything else is derived from them.
- ``snap``: a latest-only snapshot of the whole inverted index (document
  keys and lengths, the vocabulary, CSR postings), with the log offset and
  file salt it covers.

Why this shape: an upsert touches one small record per document (so a
writer never rewrites postings lists), yet open does not re-analyse or even
re-decode the corpus: it maps the snapshot (NumPy views of the file) and
replays only the ``d/<key>`` records written after the snapshot's offset,
found with ``Storage.keys_written_since``.  The same catch-up runs before
every read, which is how another process's adds are seen live.  Documents
changed since the snapshot live in a small in-memory "delta" beside it; when
the delta passes a quarter of the snapshot (and at least
:data:`MERGE_MIN_DOCS`), it is merged in with NumPy, and a writer then
persists the merged snapshot (also on ``close()``).  The geometric threshold
keeps the merge cost amortised O(1) per changed document.  A snapshot that
is damaged or older than a compaction (the salt differs) is ignored: the
index is rebuilt from the ``d/<key>`` records, still without re-analysing.

Memory is updated only from committed records (``add`` writes, the next read
catches up), so an ``add`` inside an outer ``db.batch()`` that aborts leaves
the index exactly as the file says.
"""

from __future__ import annotations

import atexit
import functools
import json
import math
import os
import re
import struct
import threading
import unicodedata
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from . import errors
from .db import DbConfig, SynaDB

__all__ = ["FullTextIndex", "rrf", "weighted_sum", "tokenize", "stem", "ENGLISH_STOPWORDS"]

K1 = 1.2
B = 0.75
LAYOUT_VERSION = 1
ROOT = "__fts__/"
#: A snapshot is merged and rewritten once this many documents (at least)
#: changed since it was taken...
MERGE_MIN_DOCS = 2_000
#: ...and more than this fraction of the documents it holds.
MERGE_RATIO = 0.25
#: A writer rewrites the snapshot in the file once the documents changed
#: since it pass this fraction of the index (and MERGE_MIN_DOCS): opening
#: then replays at most that many records, and a bulk load writes about
#: three times its postings in snapshots in all (compaction drops the old).
PERSIST_RATIO = 0.5
#: close() persists the in-memory merge once this many documents changed.
SNAPSHOT_ON_CLOSE_DOCS = 256

# Writable indexes still open, for the snapshot at interpreter exit.
_OPEN: "weakref.WeakSet[FullTextIndex]" = weakref.WeakSet()


@atexit.register
def _persist_open_indexes() -> None:
    for index in list(_OPEN):
        index._at_exit()

_DOC = struct.Struct("<BII")  # record version, length in terms, distinct terms
_DOC_VERSION = 1
_SNAP_HEAD = struct.Struct("<4sII")  # magic, JSON length, snapshot version
_SNAP_MAGIC = b"SFT1"
_SNAP_VERSION = 1
_WORD = re.compile(r"\w+")

#: Lucene's English stop set (``stopwords="english"``).
ENGLISH_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their "
    "then there these they this to was will with".split())


# ----------------------------------------------------------------- analysis
def _cv(w: str) -> str:
    # "y" is a vowel after a consonant (Porter's rule).
    out: list[str] = []
    for i, c in enumerate(w):
        if c in "aeiou" or (c == "y" and i > 0 and out[-1] == "c"):
            out.append("v")
        else:
            out.append("c")
    return "".join(out)


def _measure(w: str) -> int:
    return _cv(w).count("vc")


def _has_vowel(w: str) -> bool:
    return "v" in _cv(w)


def _ends_cvc(w: str) -> bool:
    return len(w) >= 3 and _cv(w)[-3:] == "cvc" and w[-1] not in "wxy"


# Porter's steps 2 and 3, longest suffix first.
_SUFFIXES = sorted([
    ("ational", "ate"), ("tional", "tion"), ("enci", "ence"), ("anci", "ance"),
    ("izer", "ize"), ("abli", "able"), ("alli", "al"), ("entli", "ent"), ("eli", "e"),
    ("ousli", "ous"), ("ization", "ize"), ("ation", "ate"), ("ator", "ate"), ("alism", "al"),
    ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous"), ("aliti", "al"),
    ("iviti", "ive"), ("biliti", "ble"), ("icate", "ic"), ("ative", ""), ("alize", "al"),
    ("iciti", "ic"), ("ical", "ic"), ("ful", ""), ("ness", "")], key=lambda p: -len(p[0]))


@functools.lru_cache(maxsize=1 << 16)
def stem(word: str) -> str:
    """A light English stemmer: Porter's steps 1a-1c, 2 and 3.

    Plurals, ``-ed``/``-ing`` and common derivational suffixes go; words of
    three letters or less, and words that are not plain ASCII letters, are
    left alone (the rules are English ones).

    >>> [stem(w) for w in ("running", "runs", "ponies", "pony", "relational", "hopeful")]
    ['run', 'run', 'poni', 'poni', 'relate', 'hope']
    """
    if len(word) <= 3 or not word.isascii() or not word.isalpha():
        return word
    w = word
    # 1a: plurals
    if w.endswith("sses") or w.endswith("ies"):
        w = w[:-2]
    elif not w.endswith(("ss", "us", "is")) and w.endswith("s"):
        w = w[:-1]
    # 1b: -eed, -ed, -ing
    if w.endswith("eed"):
        if _measure(w[:-3]) > 0:
            w = w[:-1]
    else:
        for suf in ("ed", "ing"):
            if w.endswith(suf) and _has_vowel(w[:-len(suf)]):
                w = w[:-len(suf)]
                if w.endswith(("at", "bl", "iz")):
                    w += "e"
                elif len(w) >= 2 and w[-1] == w[-2] and w[-1] not in "aeioulsz":
                    w = w[:-1]
                elif _measure(w) == 1 and _ends_cvc(w):
                    w += "e"
                break
    # 1c: a final y after a vowel-bearing stem becomes i (pony, ponies -> poni)
    if w.endswith("y") and len(w) > 2 and _has_vowel(w[:-1]):
        w = w[:-1] + "i"
    # 2 and 3: derivational suffixes, when enough stem is left
    for suf, rep in _SUFFIXES:
        if w.endswith(suf):
            base = w[:-len(suf)]
            if _measure(base) > 0:
                w = base + rep
            break
    return w


def tokenize(text: str, *, stemming: bool = False,
             stopwords: Iterable[str] | None = None) -> list[str]:
    """The terms of ``text``: lowercase ``\\w+`` words (NFC-normalised, so
    that composed and decomposed accents match), minus ``stopwords``
    (compared lowercase, before stemming), stemmed if asked.

    >>> tokenize("The Cats, the CAFÉ!", stemming=True, stopwords={"the"})
    ['cat', 'café']
    """
    words = _WORD.findall(unicodedata.normalize("NFC", text.lower()))
    if stopwords:
        stop = stopwords if isinstance(stopwords, (set, frozenset)) else set(stopwords)
        words = [w for w in words if w not in stop]
    if stemming:
        words = [stem(w) for w in words]
    return words


def _stopword_set(stopwords: Any) -> frozenset[str] | None:
    if stopwords is None:
        return None
    if isinstance(stopwords, str):
        if stopwords.lower() != "english":
            raise errors.InvalidArgument(
                f"stopwords is 'english' or a collection of words, not {stopwords!r:.80}")
        return ENGLISH_STOPWORDS
    try:
        words = list(stopwords)
    except TypeError:
        raise errors.InvalidType(f"stopwords must be a collection of str, not "
                                 f"{type(stopwords).__name__}") from None
    if not all(isinstance(w, str) for w in words):
        raise errors.InvalidType("stopwords must all be str")
    return frozenset(w.lower() for w in words)


# ------------------------------------------------------------------- fusion
def _ranked(lst: Any, i: int) -> list[tuple[str, float | None]]:
    out: list[tuple[str, float | None]] = []
    for item in lst:
        if isinstance(item, str):
            out.append((item, None))
        else:
            try:
                key, score = item[0], item[1]
            except (TypeError, IndexError, KeyError):
                key, score = getattr(item, "key", None), getattr(item, "score", None)
            if not isinstance(key, str):
                raise errors.InvalidType(f"ranked list {i}: items are keys, (key, score) "
                                         f"pairs or results with .key/.score, not {item!r:.80}")
            out.append((key, None if score is None else float(score)))
    return out


def _weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0] * n
    w = [float(x) for x in weights]
    if len(w) != n:
        raise errors.InvalidArgument(f"{len(w)} weights for {n} ranked lists")
    if any(not math.isfinite(x) or x < 0 for x in w):
        raise errors.InvalidArgument(f"weights must be finite and >= 0, got {w}")
    return w


def rrf(*ranked_lists: Any, k: float = 60, weights: Sequence[float] | None = None
        ) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: ``score(key) = sum_i w_i / (k + rank_i(key))``.

    Args:
        ranked_lists: each a list, best first, of keys, ``(key, score)``
            pairs, or results with ``.key`` (a :class:`SearchResult`); scores
            are ignored.  A key repeated in one list counts at its best rank.
        k: the rank offset (60, as in Cormack et al. 2009).
        weights: one per list (default 1 each).

    Returns:
        ``(key, fused score)`` best first; ties keep first-seen order.

    >>> rrf(["a", "b", "c"], [("b", 9.0), ("c", 3.0)])[0][0]
    'b'
    """
    if not isinstance(k, (int, float)) or isinstance(k, bool) or not k >= 0:
        raise errors.InvalidArgument(f"k must be a number >= 0, got {k!r}")
    w = _weights(weights, len(ranked_lists))
    fused: dict[str, float] = {}
    for i, lst in enumerate(ranked_lists):
        seen: set[str] = set()
        for rank, (key, _) in enumerate(_ranked(lst, i), start=1):
            if key in seen:
                continue
            seen.add(key)
            fused[key] = fused.get(key, 0.0) + w[i] / (k + rank)
    return sorted(fused.items(), key=lambda kv: -kv[1])


def weighted_sum(*scored_lists: Any, weights: Sequence[float] | None = None,
                 higher_is_better: bool | Sequence[bool] = True
                 ) -> list[tuple[str, float]]:
    """Fuse scored lists by a weighted sum of min-max normalised scores.

    Each list's scores are mapped to [0, 1] (its best 1, its worst 0; a
    list whose scores are all equal gives 1 to each); a key missing from a
    list gets 0 from it.

    Args:
        scored_lists: each a list of ``(key, score)`` pairs or results with
            ``.key``/``.score``.
        weights: one per list (default 1 each); ``(alpha, 1 - alpha)`` for
            a convex blend of two.
        higher_is_better: per list (or one for all): False for distances,
            such as :class:`~synadb.vectors.store.VectorStore` scores.

    Returns:
        ``(key, fused score)`` best first.

    >>> weighted_sum([("a", 2.0), ("b", 1.0)], [("b", 0.1), ("a", 0.9)],
    ...              higher_is_better=[True, False])
    [('a', 1.0), ('b', 1.0)]
    """
    n = len(scored_lists)
    w = _weights(weights, n)
    hib = [higher_is_better] * n if isinstance(higher_is_better, bool) else list(higher_is_better)
    if len(hib) != n:
        raise errors.InvalidArgument(f"{len(hib)} higher_is_better flags for {n} lists")
    fused: dict[str, float] = {}
    for i, lst in enumerate(scored_lists):
        items = _ranked(lst, i)
        if any(s is None or not math.isfinite(s) for _, s in items):
            raise errors.InvalidArgument(f"list {i}: weighted_sum needs a finite score for "
                                         "every key")
        best: dict[str, float] = {}
        for key, s in items:
            s = s if hib[i] else -s  # type: ignore[operator]
            if key not in best or s > best[key]:  # type: ignore[operator]
                best[key] = s  # type: ignore[assignment]
        if not best:
            continue
        lo, hi = min(best.values()), max(best.values())
        for key, s in best.items():
            norm = 1.0 if hi == lo else (s - lo) / (hi - lo)
            fused[key] = fused.get(key, 0.0) + w[i] * norm
    return sorted(fused.items(), key=lambda kv: -kv[1])


# -------------------------------------------------------------------- index
class FullTextIndex:
    """A BM25 keyword index of texts stored under keys in a synadb file.

    Args:
        path_or_db: the database file, or an open :class:`SynaDB` to share
            (then its batches cover this index's writes too, and ``close()``
            leaves it open).
        name: the index's name; several indexes can share a file.
        read_only: open for reading; still sees other processes' adds.
        stemming: use :func:`stem`.  ``None`` (default): as the index was
            created (False for a new one).
        stopwords: ``"english"`` (:data:`ENGLISH_STOPWORDS`) or words to
            drop.  ``None`` (default): as the index was created (none for a
            new one); ``()`` means none.

    Raises:
        InvalidArgument: a bad name, or analyser settings that disagree with
            the stored index (its terms were analysed with those).
        FormatVersionError: the index was written by a newer synadb.
    """

    def __init__(self, path_or_db: str | os.PathLike[str] | SynaDB, name: str = "default", *,
                 read_only: bool = False, stemming: bool | None = None,
                 stopwords: Iterable[str] | str | None = None) -> None:
        if not isinstance(name, str) or not name or "/" in name or "\0" in name:
            raise errors.InvalidArgument(f"an index name is a non-empty str without '/', "
                                         f"not {name!r:.80}")
        if stemming is not None and not isinstance(stemming, bool):
            raise errors.InvalidType(f"stemming must be a bool, not {stemming!r:.80}")
        stop = _stopword_set(stopwords)
        self.name = name
        self._lock = threading.RLock()
        if isinstance(path_or_db, SynaDB):
            self._db = path_or_db
            self._owns = False
        else:
            self._db = SynaDB(path_or_db, config=DbConfig(read_only=read_only,
                                                          enable_compression=False))
            self._owns = True
        self.path = self._db.path
        self.read_only = bool(read_only or self._db.config.read_only)
        self._prefix = f"{ROOT}{name}/"
        self._dp = self._prefix + "d/"
        self._snap_key = self._prefix + "snap"
        self._conf_key = self._prefix + "config"
        self._pid = os.getpid()
        try:
            self._configure(stemming, stop)
            self._reset()
            self._load()
        except BaseException:
            if self._owns:
                self._db.close()
            raise
        if not self.read_only:
            _OPEN.add(self)

    def _configure(self, stemming: bool | None, stop: frozenset[str] | None) -> None:
        try:
            raw = self._db.get_text(self._conf_key)
        except errors.TypeMismatch as e:
            raise errors.CorruptDatabase(f"{self.path!r}: {self._conf_key!r} is not a "
                                         "full-text index's config") from e
        if raw is not None:
            try:
                conf = json.loads(raw)
                version, s_stem = conf["version"], bool(conf["stemming"])
                s_stop = frozenset(conf["stopwords"])
            except (ValueError, KeyError, TypeError) as e:
                raise errors.CorruptDatabase(
                    f"{self.path!r}: the config of full-text index {self.name!r} is damaged") \
                    from e
            if version > LAYOUT_VERSION:
                raise errors.FormatVersionError(
                    f"{self.path!r}: full-text index {self.name!r} has layout {version}; this "
                    f"synadb reads up to {LAYOUT_VERSION}: upgrade synadb")
            if stemming is not None and stemming != s_stem:
                raise errors.InvalidArgument(
                    f"full-text index {self.name!r} was built with stemming={s_stem}; "
                    f"open it with stemming={s_stem} (or None)")
            if stop is not None and stop != s_stop:
                raise errors.InvalidArgument(
                    f"full-text index {self.name!r} was built with other stopwords "
                    f"({len(s_stop)} words); open it with stopwords=None")
            self.stemming, self.stopwords = s_stem, s_stop
            return
        self.stemming = bool(stemming)
        self.stopwords = stop or frozenset()
        if not self.read_only:
            self._db.put_text(self._conf_key, json.dumps({
                "version": LAYOUT_VERSION, "stemming": self.stemming,
                "stopwords": sorted(self.stopwords)}))

    # ----------------------------------------------------------- lifecycle
    def __enter__(self) -> FullTextIndex:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Persist the merged index if enough changed, then close the file
        (unless it was handed in open).  Idempotent."""
        if self._db.closed:
            return
        with self._guard():
            try:
                if (not self.read_only and not self._db.storage.in_batch()
                        and self._unsnapped >= SNAPSHOT_ON_CLOSE_DOCS):
                    self._persist()
            finally:
                if self._owns:
                    self._db.close()

    def checkpoint(self) -> bool:
        """Write the snapshot now if enough changed since the last one (as a
        write outside any batch does by itself); returns whether it did.

        For callers whose writes go inside their own ``batch()`` (the RAG
        adapters write text and vectors together): call it after the batch,
        so that the next open replays a bounded tail.  A no-op read-only,
        inside a batch, or once closed."""
        if self.read_only or self._db.closed or self._db.storage.in_batch():
            return False
        with self._guard():
            self._refresh()
            if self._unsnapped > max(MERGE_MIN_DOCS, PERSIST_RATIO * self._n):
                self._persist()
                return True
        return False

    def _at_exit(self) -> None:
        """At interpreter exit: what close() would persist, never raising
        (scripts often just end; the next open then replays less)."""
        if os.getpid() != self._pid or self.read_only or self._db.closed:
            return
        try:
            with self._guard():
                if not self._db.storage.in_batch() and \
                        self._unsnapped >= SNAPSHOT_ON_CLOSE_DOCS:
                    self._persist()
        except Exception:  # noqa: BLE001 - a cache: the records are the truth
            pass

    @property
    def closed(self) -> bool:
        return self._db.closed

    @contextmanager
    def _guard(self) -> Iterator[None]:
        # The handle's lock first, then ours: a caller's db.batch() holds the
        # handle's lock when it calls add(), so taking them in the other
        # order in a reader thread could deadlock.
        with self._db.storage.locked(), self._lock:
            yield

    def __repr__(self) -> str:
        return f"FullTextIndex({self.path!r}, {self.name!r})"

    def analyze(self, text: str) -> list[str]:
        """The terms this index makes of ``text``."""
        return tokenize(text, stemming=self.stemming, stopwords=self.stopwords)

    # --------------------------------------------------------------- state
    def _reset(self) -> None:
        # The base: the snapshot's (or the last merge's) documents, as arrays.
        self._bkeys: list[str] = []
        self._bindex: dict[str, int] = {}
        self._blens = np.zeros(0, dtype=np.uint32)
        self._balive = np.zeros(0, dtype=bool)
        self._bdead = 0
        self._terms: list[str] = []
        self._tindex: dict[str, int] = {}
        self._toff = np.zeros(1, dtype=np.int64)
        self._pdoc = np.zeros(0, dtype=np.int32)
        self._ptf = np.zeros(0, dtype=np.float32)
        # The delta: documents changed since, key -> (length, terms, counts),
        # and their postings, term -> {key: count}.
        self._dd: dict[str, tuple[int, list[str], list[int]]] = {}
        self._dpost: dict[str, dict[str, int]] = {}
        self._n = 0
        self._total = 0
        self._seen = 0  # the log offset our state reflects
        self._salt = 0
        self._unsnapped = 0  # documents changed since the persisted snapshot
        self.damaged: list[str] = []  # keys whose records could not be read

    def _load(self) -> None:
        st = self._db.storage
        self._salt = st.salt()
        if self._load_snapshot():
            return
        self._reset()
        self._salt = st.salt()
        # The offset first (as VectorStore._load): records written after it
        # are applied again by the next catch-up, which is harmless.
        end = st.log_end()
        dp = self._dp
        names = [k for k in self._db.keys() if k.startswith(dp)]
        self._apply(names)
        self._seen = end
        if self._dd:
            self._merge()

    def _load_snapshot(self) -> bool:
        st = self._db.storage
        try:
            view = st.value_view(self._snap_key)
            if view is None:
                return False
            buf = np.frombuffer(view, dtype=np.uint8)
            magic, jlen, version = _SNAP_HEAD.unpack_from(view, 0)
            if magic != _SNAP_MAGIC or version != _SNAP_VERSION:
                return False
            info = json.loads(bytes(view[_SNAP_HEAD.size:_SNAP_HEAD.size + jlen]))
            if info["salt"] != self._salt:
                return False  # taken before a compaction: its offsets mean nothing

            def sec(name: str) -> np.ndarray:
                off, nbytes = info["sections"][name]
                if off < 0 or off + nbytes > len(buf):
                    raise ValueError(name)
                return buf[off:off + nbytes]

            nd, nt, npost = info["ndocs"], info["nterms"], info["npost"]
            keys = sec("keys").tobytes().decode("utf-8").split("\0") if nd else []
            terms = sec("terms").tobytes().decode("utf-8").split("\0") if nt else []
            lens = sec("lens").view("<u4")
            toff = sec("toff").view("<i8")
            pdoc = sec("pdoc").view("<i4")
            ptf = sec("ptf").view("<f4")
            if (len(keys) != nd or len(terms) != nt or len(lens) != nd or len(toff) != nt + 1
                    or len(pdoc) != npost or len(ptf) != npost or int(toff[-1]) != npost
                    or (npost and (int(pdoc.min()) < 0 or int(pdoc.max()) >= nd))):
                raise ValueError("inconsistent sections")
        except (errors.ChecksumError, errors.TypeMismatch, ValueError, KeyError, TypeError,
                struct.error, UnicodeDecodeError):
            return False
        self._bkeys = keys
        self._bindex = dict(zip(keys, range(nd)))
        self._blens = lens
        self._balive = np.ones(nd, dtype=bool)
        self._bdead = 0
        self._terms = terms
        self._tindex = dict(zip(terms, range(nt)))
        self._toff, self._pdoc, self._ptf = toff, pdoc, ptf
        self._n = nd
        self._total = int(info["total_len"])
        self._seen = int(info["covered_end"])
        self._unsnapped = 0
        self._refresh()
        return True

    def _refresh(self) -> None:
        """Take in what was committed since we last looked (by any handle)."""
        st = self._db.storage
        changed, end = st.keys_written_since(self._seen)  # also follows a swap
        if st.salt() != self._salt:
            # Compacted (by us or another handle): offsets mean nothing now.
            self._reset()
            self._load()
            return
        if changed:
            dp = self._dp
            names = [k for k in changed if k.startswith(dp)]
            if names:
                self._apply(names)
        self._seen = end

    def _decode(self, view: memoryview) -> tuple[int, list[str], list[int]]:
        version, length, nt = _DOC.unpack_from(view, 0)
        if version != _DOC_VERSION:
            raise ValueError(f"record version {version}")
        at = _DOC.size + 4 * nt
        counts = np.frombuffer(view, dtype="<u4", count=nt, offset=_DOC.size).tolist()
        terms = bytes(view[at:]).decode("utf-8").split("\0") if nt else []
        if len(terms) != nt or sum(counts) != length:
            raise ValueError("inconsistent record")
        return length, terms, counts

    def _drop(self, key: str) -> None:
        old = self._dd.pop(key, None)
        if old is not None:
            self._n -= 1
            self._total -= old[0]
            dpost = self._dpost
            for t in old[1]:
                p = dpost.get(t)
                if p is not None:
                    p.pop(key, None)
                    if not p:
                        del dpost[t]
            return
        i = self._bindex.get(key)
        if i is not None and self._balive[i]:
            self._balive[i] = False
            self._bdead += 1
            self._n -= 1
            self._total -= int(self._blens[i])

    def _apply(self, names: list[str]) -> None:
        """Make memory agree with the file for these ``d/<key>`` records."""
        st = self._db.storage
        cut = len(self._dp)
        new: list[tuple[str, tuple[int, list[str], list[int]]]] = []
        for name in names:
            key = name[cut:]
            self._drop(key)
            try:
                view = st.value_view(name, refresh=False)
                if view is None:
                    continue
                new.append((key, self._decode(view)))
            except (errors.ChecksumError, errors.TypeMismatch, ValueError, struct.error,
                    UnicodeDecodeError):
                # Never returned as data; verify() on the file names the record.
                self.damaged.append(key)
        self._unsnapped += len(names)
        dd = self._dd
        for key, doc in new:
            dd[key] = doc
            self._n += 1
            self._total += doc[0]
        if len(dd) + self._bdead > max(MERGE_MIN_DOCS, MERGE_RATIO * len(self._bkeys)):
            self._merge()  # builds its postings from dd: no need for _dpost here
            return
        dpost = self._dpost
        for key, (_, terms, counts) in new:
            for t, c in zip(terms, counts):
                p = dpost.get(t)
                if p is None:
                    dpost[t] = {key: c}
                else:
                    p[key] = c

    def _merge(self) -> None:
        """Fold the delta (and the deletions) into new base arrays."""
        alive = self._balive
        keep = np.flatnonzero(alive)
        nb = len(self._bkeys)
        nt = len(self._terms)
        tid = np.repeat(np.arange(nt, dtype=np.int64), np.diff(self._toff))
        pdoc = np.asarray(self._pdoc, dtype=np.int64)
        ptf = np.asarray(self._ptf, dtype=np.float32)
        if self._bdead:
            m = alive[pdoc]
            tid, pdoc, ptf = tid[m], pdoc[m], ptf[m]
            remap = np.full(nb, -1, dtype=np.int64)
            remap[keep] = np.arange(len(keep))
            pdoc = remap[pdoc]
            keys = [self._bkeys[i] for i in keep.tolist()]
        else:
            keys = list(self._bkeys)
        lens = [np.asarray(self._blens[keep], dtype=np.uint32)]
        terms = list(self._terms)
        tindex = dict(self._tindex)
        dt: list[int] = []
        dd_: list[int] = []
        dtf: list[int] = []
        dl: list[int] = []
        at = len(keys)
        for j, (key, (length, dterms, counts)) in enumerate(self._dd.items()):
            keys.append(key)
            dl.append(length)
            doc = at + j
            for t in dterms:
                i = tindex.get(t)
                if i is None:
                    i = tindex[t] = len(terms)
                    terms.append(t)
                dt.append(i)
            dd_.extend([doc] * len(dterms))
            dtf.extend(counts)
        tid = np.concatenate([tid, np.asarray(dt, dtype=np.int64)])
        pdoc = np.concatenate([pdoc, np.asarray(dd_, dtype=np.int64)])
        ptf = np.concatenate([ptf, np.asarray(dtf, dtype=np.float32)])
        lens.append(np.asarray(dl, dtype=np.uint32))
        cnt = np.bincount(tid, minlength=len(terms))
        if len(cnt) and not cnt.all():
            # Terms no live document holds any more leave the vocabulary.
            live = cnt > 0
            newid = np.cumsum(live) - 1
            tid = newid[tid]
            terms = [t for t, keep_t in zip(terms, live.tolist()) if keep_t]
            tindex = dict(zip(terms, range(len(terms))))
            cnt = cnt[live]
        order = np.lexsort((pdoc, tid))
        self._bkeys = keys
        self._bindex = dict(zip(keys, range(len(keys))))
        self._blens = np.concatenate(lens)
        self._balive = np.ones(len(keys), dtype=bool)
        self._bdead = 0
        self._terms = terms
        self._tindex = tindex
        self._toff = np.concatenate([[0], np.cumsum(cnt)]).astype(np.int64)
        self._pdoc = pdoc[order].astype(np.int32)
        self._ptf = ptf[order]
        self._dd = {}
        self._dpost = {}

    def _persist(self) -> None:
        """Merge and write the snapshot (all or nothing)."""
        st = self._db.storage
        with self._db.batch():
            self._refresh()
            if self._dd or self._bdead:
                self._merge()
            covered = self._seen  # under the lock: nothing can fall in between
            keys = "\0".join(self._bkeys).encode("utf-8")
            terms = "\0".join(self._terms).encode("utf-8")
            arrays = [("keys", keys), ("lens", np.ascontiguousarray(self._blens, "<u4")),
                      ("terms", terms), ("toff", np.ascontiguousarray(self._toff, "<i8")),
                      ("pdoc", np.ascontiguousarray(self._pdoc, "<i4")),
                      ("ptf", np.ascontiguousarray(self._ptf, "<f4"))]
            info: dict[str, Any] = {"salt": st.salt(), "covered_end": covered,
                                    "ndocs": len(self._bkeys), "nterms": len(self._terms),
                                    "npost": len(self._pdoc), "total_len": self._total,
                                    "sections": {}}
            # The JSON holds the offsets, which depend on its size: lay out
            # until that size stops changing (two or three rounds).
            head_len = -1
            while True:
                js = json.dumps(info).encode()
                if _SNAP_HEAD.size + len(js) == head_len:
                    break
                head_len = _SNAP_HEAD.size + len(js)
                at = (head_len + 7) & ~7
                parts: list[Any] = []
                for name, arr in arrays:
                    nbytes = len(arr) if isinstance(arr, bytes) else arr.nbytes
                    info["sections"][name] = [at, nbytes]
                    parts.append((arr, (-nbytes) % 8))
                    at += nbytes + (-nbytes) % 8
            head = _SNAP_HEAD.pack(_SNAP_MAGIC, len(js), _SNAP_VERSION) + js
            out: list[Any] = [head + b"\0" * ((-len(head)) % 8)]
            if len(out[0]) != info["sections"]["keys"][0]:
                raise AssertionError("snapshot layout")  # pragma: no cover
            for arr, pad in parts:
                out.append(arr)
                if pad:
                    out.append(b"\0" * pad)
            st.put_blob_parts(self._snap_key, out, keep_history=False)
        self._unsnapped = 0

    # ---------------------------------------------------------------- writes
    def _writable(self) -> None:
        if self._db.closed:
            raise errors.ClosedError(f"{self.path!r} is closed")
        if self.read_only:
            raise errors.ReadOnlyError(f"full-text index {self.name!r} of {self.path!r} is "
                                       "open read-only")

    def _key_list(self, keys: Any, what: str) -> list[str]:
        if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
            raise errors.InvalidType(f"{what} takes a list of keys, not {type(keys).__name__}")
        keys = list(keys)
        check = self._db.storage.check_key
        for key in keys:
            if not isinstance(key, str):
                raise errors.InvalidKeyType(f"keys are str, not {type(key).__name__}: "
                                            f"{key!r:.80}")
            if not key:
                raise errors.InvalidKey("a key is empty")
            try:
                check(self._dp + key)
            except errors.InvalidKey as e:
                raise errors.InvalidKey(f"key {key[:60]!r} cannot be indexed: {e}") from None
        return keys

    def add(self, keys: Sequence[str], texts: Sequence[str]) -> int:
        """Index ``texts`` under ``keys``, replacing what those keys held.

        All or nothing: a bad key or text raises before anything is written.
        A key given twice keeps its last text.  Returns how many texts were
        given.

        Raises:
            InvalidKey, InvalidKeyType: a bad key.
            InvalidArgument: ``keys`` and ``texts`` differ in length, or a
                text is not a str.
            ReadOnlyError: the index is open read-only.
        """
        with self._guard():
            self._writable()
            keys = self._key_list(keys, "add")
            if isinstance(texts, (str, bytes)) or not isinstance(texts, Iterable):
                raise errors.InvalidType(f"add takes a list of texts, not "
                                         f"{type(texts).__name__}")
            texts = list(texts)
            if len(texts) != len(keys):
                raise errors.InvalidArgument(f"{len(keys)} keys but {len(texts)} texts")
            records: dict[str, bytes] = {}
            for key, text in zip(keys, texts):
                if not isinstance(text, str):
                    raise errors.InvalidArgument(f"the text of {key!r} is a "
                                                 f"{type(text).__name__}, not a str")
                counts = Counter(self.analyze(text))
                terms = "\0".join(counts).encode("utf-8")
                tfs = np.fromiter(counts.values(), dtype="<u4", count=len(counts))
                records[self._dp + key] = (_DOC.pack(_DOC_VERSION, int(tfs.sum()), len(counts))
                                           + tfs.tobytes() + terms)
            if records:
                self._write(list(records.items()))
            return len(keys)

    def _write(self, items: list[tuple[str, Any]] | None, deletes: Sequence[str] = ()) -> int:
        """Write records and deletes in one batch; memory catches up from the
        file at the next read (see the module docstring).  Returns how many
        of ``deletes`` existed."""
        db = self._db
        st = db.storage
        gone = 0
        outer = st.in_batch()
        with db.batch():
            if items:
                st.put_blobs(items, keys_checked=True, keep_history=False)
            for name in deletes:
                gone += db.delete(name)
        if not outer:
            self._refresh()
            if self._unsnapped > max(MERGE_MIN_DOCS, PERSIST_RATIO * self._n):
                self._persist()
        return gone

    def delete(self, keys: Sequence[str]) -> int:
        """Remove these keys from the index (absent ones, and strs that could
        never be indexed, are ignored).  All or nothing.  Returns how many
        were indexed.

        Raises:
            InvalidKeyType: a key is not a str.
        """
        with self._guard():
            self._writable()
            if isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable):
                raise errors.InvalidType(f"delete takes a list of keys, not "
                                         f"{type(keys).__name__}")
            names = []
            for key in dict.fromkeys(keys):
                if not isinstance(key, str):
                    raise errors.InvalidKeyType(f"keys are str, not {type(key).__name__}: "
                                                f"{key!r:.80}")
                try:
                    self._db.storage.check_key(self._dp + key)
                except errors.InvalidKey:
                    continue  # empty, too long or NUL: add() never took it
                if key:
                    names.append(self._dp + key)
            return self._write(None, names)

    def clear(self) -> None:
        """Remove every document (the settings stay)."""
        with self._guard():
            self._writable()
            names = [k for k in self._db.keys() if k.startswith(self._dp)]
            if self._db.exists(self._snap_key):
                names.append(self._snap_key)
            self._write(None, names)

    # ----------------------------------------------------------------- reads
    def _readable(self) -> None:
        if self._db.closed:
            raise errors.ClosedError(f"{self.path!r} is closed")
        self._refresh()

    def __len__(self) -> int:
        with self._guard():
            self._readable()
            return self._n

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        with self._guard():
            self._readable()
            if key in self._dd:
                return True
            i = self._bindex.get(key)
            return i is not None and bool(self._balive[i])

    def keys(self) -> list[str]:
        """The indexed keys (in no promised order)."""
        with self._guard():
            self._readable()
            alive = self._balive
            return [k for k, a in zip(self._bkeys, alive.tolist()) if a] + list(self._dd)

    def stats(self) -> dict[str, Any]:
        """Documents, average length, vocabulary and delta sizes."""
        with self._guard():
            self._readable()
            return {"documents": self._n, "avg_length": self._total / self._n if self._n else 0.0,
                    "terms": len(self._tindex.keys() | self._dpost.keys()),
                    "delta_documents": len(self._dd), "stemming": self.stemming,
                    "stopwords": len(self.stopwords)}

    def search(self, query: str, k: int = 10,
               keys: Iterable[str] | None = None) -> list[tuple[str, float]]:
        """The ``k`` best documents for ``query``: ``(key, BM25 score)``, best first.

        Args:
            query: text, analysed like the documents.
            k: how many results at most (0 gives none).
            keys: only return documents among these keys (a set is used as
                given).  The statistics stay those of the whole index.

        Returns:
            Documents with at least one query term; ties in key order.

        Raises:
            InvalidArgument: ``query`` is not a str, or ``k`` is negative.
        """
        if not isinstance(query, str):
            raise errors.InvalidArgument(f"query must be a str, not {type(query).__name__}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise errors.InvalidArgument(f"k must be an int >= 0, got {k!r}")
        allowed: Any = None
        if keys is not None:
            allowed = keys if isinstance(keys, (set, frozenset, Mapping)) else set(keys)
        terms = list(dict.fromkeys(self.analyze(query)))
        with self._guard():
            self._readable()
            n = self._n
            if not k or not n or not terms or not self._total or (
                    allowed is not None and not allowed):
                return []
            return self._search(terms, int(k), allowed)

    def _search(self, terms: list[str], k: int, allowed: Any) -> list[tuple[str, float]]:
        n = self._n
        avgdl = self._total / n
        nb = len(self._bkeys)
        alive = self._balive
        toff, pdoc, ptf, lens = self._toff, self._pdoc, self._ptf, self._blens
        scores: np.ndarray | None = None
        dscores: dict[str, float] = {}
        for t in terms:
            tid = self._tindex.get(t)
            ids = None
            df = 0
            if tid is not None:
                s, e = int(toff[tid]), int(toff[tid + 1])
                ids = pdoc[s:e]
                df = e - s if not self._bdead else int(np.count_nonzero(alive[ids]))
            dpost = self._dpost.get(t)
            if dpost:
                df += len(dpost)
            if not df:
                continue
            idf = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
            if ids is not None and len(ids):
                tf = ptf[s:e].astype(np.float64)
                norm = K1 * (1.0 - B + B * lens[ids] / avgdl)
                if scores is None:
                    scores = np.zeros(nb, dtype=np.float64)
                scores[ids] += idf * tf * (K1 + 1.0) / (tf + norm)
            if dpost:
                dd = self._dd
                for key, c in dpost.items():
                    norm = K1 * (1.0 - B + B * dd[key][0] / avgdl)
                    dscores[key] = dscores.get(key, 0.0) + idf * c * (K1 + 1.0) / (c + norm)
        hits: list[tuple[str, float]] = []
        if scores is not None:
            cand = np.flatnonzero(scores)
            if self._bdead:
                cand = cand[alive[cand]]
            if allowed is not None:
                mask = np.zeros(nb, dtype=bool)
                idx = [i for key in allowed if (i := self._bindex.get(key)) is not None]
                mask[idx] = True
                cand = cand[mask[cand]]
            sc = scores[cand]
            if len(cand) > k:
                # Everything tied with the k-th best stays, so that the key
                # tie-break below is the same whatever the partition did.
                kth = np.partition(sc, len(sc) - k)[len(sc) - k]
                sel = sc >= kth
                cand, sc = cand[sel], sc[sel]
            bkeys = self._bkeys
            hits = [(bkeys[i], s) for i, s in zip(cand.tolist(), sc.tolist())]
        if dscores:
            hits.extend((key, s) for key, s in dscores.items()
                        if allowed is None or key in allowed)
        hits.sort(key=lambda h: (-h[1], h[0]))
        return hits[:k]
