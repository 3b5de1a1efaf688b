"""Registration workflow: point files, registration and tool files, surface refinement.

The geometry (rigid fit, error prediction, pivot calibration) is pure numpy in
``ar_guide.geometry``; this package holds what reads and writes the user's files and what needs
heavier libraries (open3d for surface ICP).
"""
