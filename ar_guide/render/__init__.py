"""Offscreen anatomy rendering, 2-D annotations (targets, paths, HUD) and compositing."""
