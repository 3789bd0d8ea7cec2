"""Schema mapping: the mapping file, lossless casts, and the compiled mapping copy applies."""

from vecmigrate.mapping.compile import build_mapping, reading_schema
from vecmigrate.mapping.spec import FieldSpec, IdSpec, MappingSpec, VectorSpec
from vecmigrate.mapping.transform import Mapping, Refusal

__all__ = [
    "FieldSpec",
    "IdSpec",
    "Mapping",
    "MappingSpec",
    "Refusal",
    "VectorSpec",
    "build_mapping",
    "reading_schema",
]
