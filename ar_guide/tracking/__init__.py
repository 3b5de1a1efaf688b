"""Marker detection (one adapter over cv2.aruco), rigid bodies, pose estimation, tracking status."""
