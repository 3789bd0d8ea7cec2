"""Elasticsearch and OpenSearch: two dialects on one shared base (``_base``, ``_filters``)."""
