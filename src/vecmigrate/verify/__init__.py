"""Proving a migration: data digests and diffs (retrieval parity arrives in verify.recall)."""
