"""Frame sources, video writers, pose logs and reports: everything that touches files or devices."""
