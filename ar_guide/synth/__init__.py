"""Synthetic phantom sequences with exact ground truth (for ``ar-guide demo`` and the tests).

Public API: :class:`SequenceSpec`, :data:`DEMO_SPEC`, :data:`TEST_SPEC`, :class:`SyntheticSequence`,
:func:`cache_root`, :func:`ensure_sequence`, :class:`GroundTruth`, :func:`load_ground_truth`
(all in :mod:`ar_guide.synth.sequence`).
"""

from ar_guide.synth.sequence import (DEMO_SPEC, TEST_SPEC, GroundTruth, SequenceSpec, SyntheticSequence,
                                     cache_root, ensure_sequence, load_ground_truth)

__all__ = ["DEMO_SPEC", "TEST_SPEC", "GroundTruth", "SequenceSpec", "SyntheticSequence", "cache_root",
           "ensure_sequence", "load_ground_truth"]
