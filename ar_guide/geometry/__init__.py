"""Pure numpy geometry: transforms, projection, error models. No I/O, no OpenCV."""
