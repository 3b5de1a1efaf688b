"""ar_guide: augmented-reality overlay for image-guided therapy.

Research use only: not a medical device, never the sole source of guidance.
"""

__version__ = "0.1.0"
