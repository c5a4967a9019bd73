"""The near-duplicate index: exact Hamming-distance engines behind one interface
(`index.engine.HashIndex`), per-(account, kind) sets of them, and snapshots."""

from index.engine import ENGINE_NAMES, HashIndex, Match, make_index
from index.registry import IndexSet

__all__ = ["ENGINE_NAMES", "HashIndex", "IndexSet", "Match", "make_index"]
