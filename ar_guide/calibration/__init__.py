"""Camera calibration: boards, corner detection, solving, quality checks and reports."""
