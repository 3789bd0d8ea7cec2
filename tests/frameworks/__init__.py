"""Acceptance tests with the real LangChain and LlamaIndex packages (issue #14)."""
