"""Schema mapping: the mapping file, lossless casts, and the compiled mapping copy applies."""

from vecmigrate.mapping.plan import Mapping, Refusal, build_mapping
from vecmigrate.mapping.spec import FieldSpec, IdSpec, MappingSpec, VectorSpec

__all__ = [
    "FieldSpec",
    "IdSpec",
    "Mapping",
    "MappingSpec",
    "Refusal",
    "VectorSpec",
    "build_mapping",
]
